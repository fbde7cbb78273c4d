//! `dbmon`: the operator's binary. A thin layer of argument parsing over
//! the server, collector, pki and config crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use dbmon_config::Config;
use dbmon_pki::{Ca, Role};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "dbmon",
    version,
    about = "Watch the health of database clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: receives reports from collectors, serves clients.
    Server {
        /// Configuration file (YAML).
        #[arg(long, short, env = "DBMON_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the collector: polls the configured clusters, streams reports to the server.
    Collector {
        #[arg(long, short, env = "DBMON_CONFIG")]
        config: PathBuf,
        /// Enroll first with a one-time join token read from this file (or
        /// from DBMON_JOIN_TOKEN), unless the collector already has a certificate.
        #[arg(long)]
        join_token_file: Option<PathBuf>,
        /// sha256 pin of the server's CA, printed by `dbmon pki token create`;
        /// required to enroll.
        #[arg(long)]
        ca_pin: Option<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// The deployment's certificate authority.
    Pki {
        #[command(subcommand)]
        command: PkiCmd,
    },
    /// People who may sign in: add, invite, list, remove. Works on the
    /// server's auth directory (server.auth.dir); a running server picks
    /// changes up within a second.
    User {
        /// The server's configuration file (for server.auth.dir and the origin).
        #[arg(long, short, env = "DBMON_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Exit 0 if an HTTP health endpoint answers 200 (for container health checks).
    Healthcheck {
        /// URL of a /healthz endpoint.
        #[arg(
            env = "DBMON_HEALTH_URL",
            default_value = "http://127.0.0.1:7071/healthz"
        )]
        url: String,
    },
    /// Start a local 3-member etcd cluster (and CockroachDB with --cockroach),
    /// a certificate authority, a server and a collector, all on loopback.
    Local {
        /// Where cluster data, certificates and logs go (a temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also start a 3-node CockroachDB cluster (needs `cockroach` on PATH).
        #[arg(long)]
        cockroach: bool,
        /// Poll interval of the local clusters.
        #[arg(long, default_value = "2s")]
        interval: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
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

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file and print every error with its line and column.
    Check { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Server,
    Collector,
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Create the CA (ca.crt, ca.key) and a server certificate (server.crt, server.key).
    Init {
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
        /// Trust domain of every identity, spiffe://<trust-domain>/...
        #[arg(long, default_value = dbmon_pki::ca::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// DNS names and IP addresses the server is reached at (repeatable).
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
        /// Name of the server identity.
        #[arg(long, default_value = "server")]
        name: String,
        /// Replace an existing CA key (every certificate it signed stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate and its key: server.crt, or collector.NAME.crt.
    Issue {
        kind: Kind,
        #[arg(long)]
        name: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
        /// DNS names and IP addresses, for server certificates.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Lifetime, like 7d or 12h (defaults: collector 7d, server 365d).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Every certificate in the directory: identity, serial, expiry, days left.
    List {
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
    /// Show one certificate file.
    Inspect { file: PathBuf },
    /// Revoke a certificate by serial; servers refuse it once they reload (on change or SIGHUP).
    Revoke {
        serial: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
    /// One-time join tokens for enrolling collectors.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Check whether a server's collector endpoint accepts a certificate
    /// (or none), and say why not.
    Probe {
        /// Collector endpoint, https://HOST:PORT.
        url: String,
        /// CA certificate to verify the server with.
        #[arg(long)]
        ca: PathBuf,
        /// Certificate to present (with --key).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a join token for one collector, and the CA pin it must check.
    Create {
        #[arg(long)]
        collector: String,
        #[arg(long, default_value = "15m")]
        ttl: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs in files and containers stay plain.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Cmd::Config {
            command: ConfigCmd::Check { file },
        } => return config_check(&file),
        Cmd::Pki {
            command: PkiCmd::Probe { url, ca, cert, key },
        } => {
            return match tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(probe(&url, &ca, cert.as_deref(), key.as_deref())))
            {
                Ok(msg) => {
                    println!("accepted: {msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("refused: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Cmd::Healthcheck { url } => return healthcheck(&url),
        Cmd::Pki { command } => pki(command),
        Cmd::User { config, command } => user(config.as_deref(), command),
        other => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(run(other))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn user(config: Option<&Path>, command: UserCmd) -> Result<()> {
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

fn load(path: &Path) -> Result<Config> {
    Config::load(path, &dbmon_collector::Registry).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{} error(s) in {}; `dbmon config check` prints them too",
            e.0.len(),
            path.display()
        )
    })
}

fn config_check(file: &Path) -> ExitCode {
    match Config::load(file, &dbmon_collector::Registry) {
        Ok(c) => {
            println!(
                "{}: ok ({} clusters, {} alert rules, {} receivers, {} maintenance windows)",
                file.display(),
                c.clusters.len(),
                c.alerting.rules.len(),
                c.alerting.receivers.len(),
                c.alerting.maintenance.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), file.display());
            ExitCode::from(1)
        }
    }
}

fn duration(text: &str, what: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{what} {text:?}: expected a duration like 15m, 12h or 7d"))
}

fn date(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64),
    )
    .to_string()
}

fn pki(cmd: PkiCmd) -> Result<()> {
    match cmd {
        PkiCmd::Init {
            dir,
            trust_domain,
            hosts,
            name,
            force,
        } => {
            let ca = Ca::init(&dir, &trust_domain, force)?;
            let server = ca.issue(
                Role::Server,
                &name,
                None,
                &hosts,
                dbmon_pki::ca::SERVER_TTL,
                force,
            )?;
            println!(
                "CA:      {} (key {})",
                dir.join("ca.crt").display(),
                dir.join("ca.key").display()
            );
            println!("pin:     {}", ca.pin());
            println!(
                "server:  {} for {} ({})",
                server.cert_path.display(),
                server.identity,
                hosts.join(", ")
            );
            println!("revoked: {}", dir.join("ca.crl").display());
        }
        PkiCmd::Issue {
            kind,
            name,
            dir,
            hosts,
            ttl,
            force,
        } => {
            let ca = Ca::load(&dir)?;
            let (role, default_ttl) = match kind {
                Kind::Server => (Role::Server, dbmon_pki::ca::SERVER_TTL),
                Kind::Collector => (Role::Collector, dbmon_pki::ca::COLLECTOR_TTL),
            };
            let ttl = ttl
                .map(|t| duration(&t, "--ttl"))
                .transpose()?
                .unwrap_or(default_ttl);
            // A server's files are server.crt/.key (one server per directory);
            // collectors' are collector.NAME.crt/.key, made here and handed out.
            let file = match role {
                Role::Server => None,
                Role::Collector => Some(name.as_str()),
            };
            let issued = ca.issue(role, &name, file, &hosts, ttl, force)?;
            println!(
                "{} for {} (serial {}, valid until {})",
                issued.cert_path.display(),
                issued.identity,
                issued.serial,
                date(issued.not_after.unix_timestamp())
            );
        }
        PkiCmd::List { dir } => {
            let ca = Ca::load(&dir)?;
            let revoked: Vec<String> = ca.revoked()?.into_iter().map(|(s, _)| s).collect();
            let now = dbmon_proto::now_ms() / 1000;
            println!(
                "{:<28} {:<45} {:<34} {:<22} DAYS LEFT",
                "FILE", "IDENTITY", "SERIAL", "NOT AFTER"
            );
            for c in ca.list()? {
                let file = c
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let id = match &c.identity {
                    Ok(id) => id.to_string(),
                    Err(e) => e.clone(),
                };
                let days = if revoked.contains(&c.serial) {
                    "revoked".to_string()
                } else {
                    c.days_left(now).to_string()
                };
                println!(
                    "{file:<28} {id:<45} {:<34} {:<22} {days}",
                    c.serial,
                    date(c.not_after)
                );
            }
        }
        PkiCmd::Inspect { file } => {
            let c = dbmon_pki::ca::inspect(&file)?;
            let now = dbmon_proto::now_ms() / 1000;
            println!("file:       {}", c.path.display());
            println!("subject:    {}", c.subject);
            match &c.identity {
                Ok(id) => println!("identity:   {id}"),
                Err(e) => println!("identity:   none ({e})"),
            }
            println!("usage:      {}", c.usages.join(", "));
            println!("serial:     {}", c.serial);
            println!("not before: {}", date(c.not_before));
            println!(
                "not after:  {} ({} days left)",
                date(c.not_after),
                c.days_left(now)
            );
            println!("pin:        {}", c.pin);
        }
        PkiCmd::Revoke { serial, dir } => {
            let ca = Ca::load(&dir)?;
            ca.revoke(&serial)?;
            println!(
                "revoked {serial}; servers refuse it once they reload {} (on change, or SIGHUP)",
                dir.join("ca.crl").display()
            );
        }
        PkiCmd::Probe { .. } => unreachable!("handled with a runtime"),
        PkiCmd::Token {
            command:
                TokenCmd::Create {
                    collector,
                    ttl,
                    dir,
                },
        } => {
            let ca = Ca::load(&dir)?;
            let ttl = duration(&ttl, "--ttl")?;
            let token = dbmon_pki::tokens::TokenStore::new(&dir).create(&collector, ttl)?;
            println!("token:   {token}");
            println!("ca pin:  {}", ca.pin());
            println!(
                "expires: in {}, after one use",
                humantime::format_duration(ttl)
            );
            println!(
                "\nOn the collector's machine (the token is a secret: keep it out of shell history and argv):"
            );
            println!("  printf '%s' \"$TOKEN\" > join-token && chmod 600 join-token");
            println!(
                "  dbmon collector --config dbmon.yaml --join-token-file join-token --ca-pin {}",
                ca.pin()
            );
        }
    }
    Ok(())
}

/// Turns true on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

fn join_token(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read join token file {}", f.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("DBMON_JOIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Server { config } => {
            let cfg = match config {
                Some(p) => load(&p)?,
                None => Config::embedded_default(),
            };
            dbmon_server::serve_deployment(cfg, shutdown_signal()).await?;
        }
        Cmd::Collector {
            config,
            join_token_file,
            ca_pin,
        } => {
            let cfg = load(&config)?;
            if cfg.clusters.is_empty() {
                anyhow::bail!(
                    "{} lists no clusters; add at least one under `clusters:`",
                    config.display()
                );
            }
            if let Some(token) = join_token(join_token_file.as_deref())? {
                let enrolled = cfg.collector.pki_dir.as_ref().is_some_and(|d| {
                    dbmon_collector::link::files(d, &cfg.collector.id)
                        .1
                        .exists()
                });
                if enrolled {
                    tracing::info!(
                        "already enrolled: the collector has a certificate; the join token is not used"
                    );
                } else {
                    let pin = ca_pin.context(
                        "enrolling needs --ca-pin sha256:..., printed by `dbmon pki token create`",
                    )?;
                    let name = dbmon_collector::link::join(&cfg.collector, &token, &pin).await?;
                    tracing::info!(collector = %name, "enrolled: certificate received");
                }
            }
            dbmon_collector::run(cfg, shutdown_signal()).await?;
        }
        Cmd::Local {
            dir,
            cockroach,
            interval,
        } => local(dir, cockroach, &interval).await?,
        Cmd::Config { .. } | Cmd::Pki { .. } | Cmd::Healthcheck { .. } | Cmd::User { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(())
}

/// The user `dbmon local` invites.
const LOCAL_ADMIN: &str = "admin";

async fn local(dir: Option<PathBuf>, cockroach: bool, interval: &str) -> Result<()> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dbmon-local-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    // A fresh start each time: cluster data of an earlier run, and the
    // reports stored or spilled about it, name other ports. Users and
    // passkeys stay.
    for stale in [
        "data",
        "spill",
        "etcd1",
        "etcd2",
        "etcd3",
        "cockroach1",
        "cockroach2",
        "cockroach3",
        "pki",
    ] {
        let p = dir.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    let crdb = if cockroach {
        Some(dbmon::local::CockroachCluster::start(&dir)?)
    } else {
        None
    };
    let mut etcd = dbmon::local::EtcdCluster::start(&dir, 3)?;
    etcd.wait_healthy(Duration::from_secs(30))?;

    let pki = dir.join("pki");
    let ca = Ca::init(&pki, dbmon_pki::ca::DEFAULT_TRUST_DOMAIN, true)?;
    ca.issue(
        Role::Server,
        "local",
        None,
        &["localhost".into(), "127.0.0.1".into()],
        dbmon_pki::ca::SERVER_TTL,
        true,
    )?;
    ca.issue(
        Role::Collector,
        "local",
        Some("local"),
        &[],
        dbmon_pki::ca::COLLECTOR_TTL,
        true,
    )?;

    let defaults = Config::embedded_default();
    let mut yaml = format!(
        "server:\n  pki_dir: {pki}\ncollector:\n  id: local\n  pki_dir: {pki}\n  server: https://{collectors}\n\
         client:\n  server: https://{people}\n  ca_file: {pki}/ca.crt\nclusters:\n",
        pki = pki.display(),
        collectors = defaults.server.collector_listen,
        people = defaults.server.listen,
    );
    yaml.push_str(&format!(
        "  - name: local-etcd\n    kind: etcd\n    interval: {interval}\n    timeout: 1s\n    nodes: [{}]\n    labels: {{env: local}}\n",
        etcd.client_urls().join(", ")
    ));
    if let Some(c) = &crdb {
        let nodes: Vec<String> = c
            .http_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        yaml.push_str(&format!(
            "  - name: local-cockroachdb\n    kind: cockroachdb\n    interval: {interval}\n    timeout: 1s\n    nodes: [{}]\n    labels: {{env: local}}\n",
            nodes.join(", ")
        ));
    }
    let path = dir.join("dbmon.yaml");
    std::fs::write(&path, &yaml)?;
    let cfg = load(&path)?;
    // Someone has to sign in: an admin with a passkey, or an invite for one.
    let store = dbmon_auth::store::AuthStore::open(&cfg.server.auth.dir)?;
    let invite_ms = cfg.server.auth.invite_ttl.as_millis() as i64;
    let has_passkey = store
        .snapshot()
        .users
        .get(LOCAL_ADMIN)
        .is_some_and(|u| !u.credentials.is_empty());
    let invite = if has_passkey {
        None
    } else if store.snapshot().users.contains_key(LOCAL_ADMIN) {
        Some(store.invite(LOCAL_ADMIN, invite_ms)?)
    } else {
        Some(store.add_user(LOCAL_ADMIN, dbmon_auth::Role::Admin, vec![], invite_ms)?)
    };
    let origin = dbmon_auth::webauthn::Url::parse(&cfg.server.origin())?;
    let sign_in = match &invite {
        Some(secret) => format!(
            "Sign in first: open this one-time invite in a browser on this machine and register a passkey\n\
             for the user {LOCAL_ADMIN} (the server's certificate is signed by {pki}/ca.crt; trust it, or accept the warning):\n  \
             {}\n\
             then:\n  cargo run --bin dbmon-client -- --config {path} login\n",
            dbmon_auth::passkey::Passkeys::invite_url(&origin, secret),
            pki = pki.display(),
            path = path.display()
        ),
        None => format!(
            "Sign in with the passkey of {LOCAL_ADMIN}:\n  cargo run --bin dbmon-client -- --config {} login\n",
            path.display()
        ),
    };
    let shutdown = shutdown_signal();
    let server = tokio::spawn(dbmon_server::serve_deployment(
        cfg.clone(),
        shutdown.clone(),
    ));
    let collector = tokio::spawn(dbmon_collector::run(cfg.clone(), shutdown.clone()));
    println!(
        "\ndbmon is watching a local 3-member etcd cluster{}, over mutual TLS with certificates from its own CA.\n\
         configuration: {path}\n\
         data and logs:  {dir}\n\n\
         {sign_in}\n\
         In another terminal:\n  \
         cargo run --bin dbmon-client -- --config {path} watch\n  \
         cargo run --bin dbmon-client -- --config {path} status\n  \
         cargo run --bin dbmon-client -- --config {path} get cluster local-etcd\n\n\
         Kill an etcd member to see it degrade: pkill -f 'name etcd2'\n\
         Ctrl-C stops everything.\n",
        if crdb.is_some() {
            " and a 3-node CockroachDB cluster"
        } else {
            ""
        },
        path = path.display(),
        dir = dir.display()
    );
    let r = server.await?;
    let c = collector.await?;
    drop(etcd);
    drop(crdb);
    r?;
    c?;
    Ok(())
}

/// GET `url` with plain HTTP/1.0; success only on 200.
fn healthcheck(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("{url}: expected http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let answer = (|| -> std::io::Result<String> {
        use std::net::ToSocketAddrs;
        let addr = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200") => {
            println!("{}", a.lines().last().unwrap_or("").trim());
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("{url}: {}", a.lines().last().unwrap_or(""));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Connects to a collector endpoint with (or without) a certificate and
/// makes one call; what the server thinks of the certificate.
async fn probe(url: &str, ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<String> {
    use dbmon_proto::v1::CertificateRequest;
    use dbmon_proto::v1::ingest_client::IngestClient;
    let td = dbmon_pki::trust_domain_of(ca)?;
    let trust = dbmon_pki::tls::Trust::load(ca, None, &td)?;
    let cfg = match (cert, key) {
        (Some(c), Some(k)) => {
            // Presented as is: probing is for finding out what the server refuses.
            let pem = dbmon_pki::read_identity(c, k)?;
            probe_config(&pem, trust)?
        }
        _ => dbmon_pki::tls::people_client(trust)?,
    };
    let channel =
        dbmon_pki::transport::channel(url, std::sync::Arc::new(cfg), Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    match IngestClient::new(channel)
        .renew(CertificateRequest {
            csr_pem: String::new(),
        })
        .await
    {
        Ok(_) => Ok("the call went through".into()),
        // The service itself answered (it wants a real request, or holds no
        // CA key): the TLS link and the certificate were accepted.
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            Ok(format!(
                "the server answered the call ({:?}: {})",
                s.code(),
                s.message()
            ))
        }
        Err(s) if s.code() == tonic::Code::PermissionDenied => Err(anyhow::anyhow!(
            "the TLS link was accepted but the service refused: {}",
            s.message()
        )),
        Err(s) => {
            let detail = std::error::Error::source(&s)
                .map(dbmon_pki::transport::describe_chain)
                .unwrap_or_else(|| s.message().to_string());
            Err(anyhow::anyhow!(
                "the server ended the connection at the TLS handshake: it does not accept this certificate, and its log says why ({detail})"
            ))
        }
    }
}

fn probe_config(
    identity_pem: &[u8],
    trust: std::sync::Arc<dbmon_pki::tls::Trust>,
) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_slice_iter(identity_pem)
            .collect::<Result<_, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity_pem)?;
    Ok(dbmon_pki::tls::probe_client(chain, key, trust)?)
}
