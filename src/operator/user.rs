//! `dbmon user`: people, their roles and invites, on the server's host.

use super::load;
use anyhow::{Context, Result};
use clap::Subcommand;
use dbmon_config::Config;
use std::path::Path;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user and print a one-time invite URL to register a passkey;
    /// with --service, a service account for scripts, CI or dashboards
    /// (no passkey; `dbmon token mint` makes its tokens).
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Only these clusters (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        clusters: Vec<String>,
        /// A service account: never a passkey, tokens minted on this host.
        #[arg(long)]
        service: bool,
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

/// The server's settings (from its file, or the defaults) and its auth store.
fn server_and_store(
    config: Option<&Path>,
) -> Result<(dbmon_config::ServerConfig, dbmon_auth::store::AuthStore)> {
    let server = match config {
        Some(p) => load(p)?.server,
        None => Config::embedded_default().server,
    };
    let store = dbmon_server::open_auth_store(&server)?;
    Ok((server, store))
}

pub fn user(config: Option<&Path>, command: UserCmd) -> Result<()> {
    let (server, store) = server_and_store(config)?;
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
            service,
        } => {
            let role = dbmon_auth::Role::parse(&role).context("--role")?;
            let clusters: Vec<String> = clusters.into_iter().filter(|c| !c.is_empty()).collect();
            if service {
                store.add_service_account(&name, role, clusters)?;
                tracing::info!(target: "dbmon::audit", event = "service_account_add", user = %name, role = %role, "audit");
                println!(
                    "service account {name} added (role {role}); mint its tokens on this host:\n\n    dbmon token mint {name} --ttl 30d\n"
                );
                return Ok(());
            }
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
                let what = if u.service { "  (service account)" } else { "" };
                println!(
                    "{name}{what}  role: {}  clusters: {}  passkeys: {}  logins: {logins}  open invites: {pending}",
                    u.role,
                    if u.clusters.is_empty() {
                        "all".to_string()
                    } else {
                        u.clusters.join(",")
                    },
                    u.credentials.len()
                );
                if u.service {
                    for (id, l) in s.sessions.iter().filter(|(_, l)| {
                        &l.user == name && l.revoked_ms.is_none() && l.expires_ms > now
                    }) {
                        println!(
                            "    token {}  minted {}  expires {}",
                            &id[..8.min(id.len())],
                            dbmon_auth::caveat::format_ms(l.created_ms),
                            dbmon_auth::caveat::format_ms(l.expires_ms)
                        );
                    }
                }
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

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Mint a token for a service account and print it (once) on stdout.
    /// Each token is a login of its own: listed by `dbmon user list` and
    /// `dbmon-client sessions list`, revoked like a person's.
    Mint {
        /// The service account (`dbmon user add NAME --service`).
        name: String,
        /// How long the token lives, at most server.auth.service_token_max_ttl.
        #[arg(long)]
        ttl: String,
        /// Only these operations (comma-separated: read, watch, silence).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Only these clusters (comma-separated), within the account's.
        #[arg(long, value_delimiter = ',')]
        clusters: Vec<String>,
    },
}

pub fn token(config: Option<&Path>, command: TokenCmd) -> Result<()> {
    let (server, store) = server_and_store(config)?;
    match command {
        TokenCmd::Mint {
            name,
            ttl,
            ops,
            clusters,
        } => {
            let ttl = humantime::parse_duration(&ttl).with_context(|| {
                format!("--ttl {ttl:?}: expected a duration such as 30d or 12h")
            })?;
            let max = server.auth.service_token_max_ttl;
            if ttl > max {
                anyhow::bail!(
                    "--ttl {} is longer than server.auth.service_token_max_ttl ({}); ask for less, or raise the limit in the server's configuration",
                    humantime::format_duration(ttl),
                    humantime::format_duration(max)
                );
            }
            let mut caveats = Vec::new();
            let ops: Vec<String> = ops.into_iter().filter(|o| !o.is_empty()).collect();
            if !ops.is_empty() {
                let text = format!("ops = {}", ops.join(","));
                caveats.push(dbmon_auth::caveat::Caveat::parse(&text).context("--ops")?);
            }
            let clusters: Vec<String> = clusters.into_iter().filter(|c| !c.is_empty()).collect();
            if !clusters.is_empty() {
                caveats.push(dbmon_auth::caveat::Caveat::Clusters(
                    clusters.iter().cloned().collect(),
                ));
            }
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into());
            let (id, token) = dbmon_auth::Verifier::new(store).mint_service_token(
                &name,
                ttl.as_millis() as i64,
                &caveats,
                &format!("dbmon token mint on {host}"),
            )?;
            tracing::info!(target: "dbmon::audit", event = "token_mint", user = %name, login = %&id[..8], ttl = %humantime::format_duration(ttl), ops = ?ops, clusters = ?clusters, "audit");
            eprintln!(
                "token for {name} (login {}, valid {}): give it to the script as DBMON_TOKEN; it is not shown again",
                &id[..8],
                humantime::format_duration(ttl)
            );
            println!("{token}");
        }
    }
    Ok(())
}
