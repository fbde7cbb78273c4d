//! `dbmon`: the operator's binary. A thin layer of argument parsing over
//! the server, collector, pki and config crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dbmon::operator::pki::{PkiCmd, probe};
use dbmon::operator::user::{TokenCmd, UserCmd};
use dbmon::operator::{config_check, healthcheck, join_token, load, shutdown_signal};
use dbmon_config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Tokens of service accounts, on the server's host (it holds the auth store).
    Token {
        /// The server's configuration file (for server.auth.dir and the limits).
        #[arg(long, short, env = "DBMON_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: TokenCmd,
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
enum ConfigCmd {
    /// Check a configuration file and print every error with its line and column.
    Check { file: PathBuf },
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
        Cmd::Pki { command } => dbmon::operator::pki::pki(command),
        Cmd::User { config, command } => dbmon::operator::user::user(config.as_deref(), command),
        Cmd::Token { config, command } => dbmon::operator::user::token(config.as_deref(), command),
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

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Server { config } => {
            let cfg = match &config {
                Some(p) => load(p)?,
                None => Config::embedded_default(),
            };
            // What can change without a restart is reloaded on SIGHUP or
            // when the file changes.
            let reload = config.map(|file| dbmon_server::reload::Reloader {
                file,
                load: std::sync::Arc::new(|p: &std::path::Path| {
                    Config::load(p, &dbmon_collector::Registry)
                }),
            });
            dbmon_server::serve_reloading(cfg, reload, shutdown_signal()).await?;
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
            // The clusters are reloaded on SIGHUP or when the file changes.
            dbmon_collector::run_watching(cfg, Some(config.clone()), shutdown_signal()).await?;
        }
        Cmd::Local {
            dir,
            cockroach,
            interval,
        } => dbmon::operator::local::local(dir, cockroach, &interval).await?,
        Cmd::Config { .. }
        | Cmd::Pki { .. }
        | Cmd::Healthcheck { .. }
        | Cmd::User { .. }
        | Cmd::Token { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(())
}
