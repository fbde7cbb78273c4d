//! `dbmon user`: people, their roles and invites, on the server's host.

use super::load;
use anyhow::{Context, Result};
use clap::Subcommand;
use dbmon_config::Config;
use std::path::Path;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user and print a one-time invite URL to register a passkey.
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Only these clusters (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        clusters: Vec<String>,
    },
    /// Print a new invite URL for an existing user (another passkey).
    Invite { name: String },
    /// Users, their passkeys and logins.
    List,
    /// Remove a user (passkeys, invites and logins with them), or with
    /// --credential only one passkey (and the logins made with it).
    Remove {
        name: String,
        /// Id (or a unique prefix) of the passkey, from `dbmon user list`.
        #[arg(long)]
        credential: Option<String>,
    },
}

pub fn user(config: Option<&Path>, command: UserCmd) -> Result<()> {
    let server = match config {
        Some(p) => load(p)?.server,
        None => Config::embedded_default().server,
    };
    let store = dbmon_server::open_auth_store(&server)?;
    let origin = dbmon_auth::webauthn::Url::parse(&server.origin())
        .with_context(|| format!("server.auth.origin {:?}", server.origin()))?;
    let ttl = server.auth.invite_ttl;
    let invite_ms = ttl.as_millis() as i64;
    let print_invite = |name: &str, secret: &str| {
        println!(
            "Invite for {name} (valid {}, once). Send it privately; whoever opens it registers a passkey as {name}:\n\n    {}\n",
            humantime::format_duration(ttl),
            dbmon_auth::passkey::Passkeys::invite_url(&origin, secret)
        );
    };
    match command {
        UserCmd::Add {
            name,
            role,
            clusters,
        } => {
            let role = dbmon_auth::Role::parse(&role).context("--role")?;
            let clusters: Vec<String> = clusters.into_iter().filter(|c| !c.is_empty()).collect();
            let secret = store.add_user(&name, role, clusters, invite_ms)?;
            tracing::info!(target: "dbmon::audit", event = "user_add", user = %name, role = %role, "audit");
            print_invite(&name, &secret);
        }
        UserCmd::Invite { name } => {
            let secret = store.invite(&name, invite_ms)?;
            tracing::info!(target: "dbmon::audit", event = "invite", user = %name, "audit");
            print_invite(&name, &secret);
        }
        UserCmd::List => {
            let s = store.snapshot();
            let now = dbmon_auth::store::now_ms();
            if s.users.is_empty() {
                println!("no users; add one with `dbmon user add NAME --role admin`");
            }
            for (name, u) in &s.users {
                let logins = s
                    .sessions
                    .values()
                    .filter(|l| &l.user == name && l.revoked_ms.is_none() && l.expires_ms > now)
                    .count();
                let pending = s
                    .invites
                    .iter()
                    .filter(|i| &i.user == name && i.expires_ms > now)
                    .count();
                println!(
                    "{name}  role: {}  clusters: {}  passkeys: {}  logins: {logins}  open invites: {pending}",
                    u.role,
                    if u.clusters.is_empty() {
                        "all".to_string()
                    } else {
                        u.clusters.join(",")
                    },
                    u.credentials.len()
                );
                for c in &u.credentials {
                    println!(
                        "    passkey {}  added {}  last used {}",
                        c.id,
                        dbmon_auth::caveat::format_ms(c.created_ms),
                        c.last_used_ms
                            .map_or("never".into(), dbmon_auth::caveat::format_ms)
                    );
                }
            }
        }
        UserCmd::Remove { name, credential } => match credential {
            Some(id) => {
                let full = store.remove_credential(&name, &id)?;
                tracing::info!(target: "dbmon::audit", event = "passkey_remove", user = %name, credential = %full, "audit");
                println!("removed passkey {full} of {name}; its logins are revoked");
            }
            None => {
                store.remove_user(&name)?;
                tracing::info!(target: "dbmon::audit", event = "user_remove", user = %name, "audit");
                println!("removed {name}; their logins no longer work");
            }
        },
    }
    Ok(())
}
