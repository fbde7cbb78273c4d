//! `dbmon`: the operator's binary. A thin layer of argument parsing over
//! the server, collector and config crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dbmon_config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
        /// Configuration file (YAML); embedded defaults without it.
        #[arg(long, short, env = "DBMON_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the collector: polls the configured clusters, streams reports to the server.
    Collector {
        #[arg(long, short, env = "DBMON_CONFIG")]
        config: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Start a local 3-member etcd cluster (and CockroachDB with --cockroach),
    /// a server and a collector watching them, all on loopback.
    Local {
        /// Where cluster data and logs go (a temporary directory by default).
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Cmd::Config {
            command: ConfigCmd::Check { file },
        } => return config_check(&file),
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
            println!("{}: ok ({} clusters)", file.display(), c.clusters.len());
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

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Server { config } => {
            let cfg = match config {
                Some(p) => load(&p)?,
                None => Config::embedded_default(),
            };
            dbmon_server::serve(cfg.server, shutdown_signal()).await?;
        }
        Cmd::Collector { config } => {
            let cfg = load(&config)?;
            if cfg.clusters.is_empty() {
                anyhow::bail!(
                    "{} lists no clusters; add at least one under `clusters:`",
                    config.display()
                );
            }
            dbmon_collector::run(cfg, shutdown_signal()).await;
        }
        Cmd::Local {
            dir,
            cockroach,
            interval,
        } => local(dir, cockroach, &interval).await?,
        Cmd::Config { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}

async fn local(dir: Option<PathBuf>, cockroach: bool, interval: &str) -> Result<()> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dbmon-local-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let crdb = if cockroach {
        Some(dbmon::local::CockroachCluster::start(&dir)?)
    } else {
        None
    };
    let mut etcd = dbmon::local::EtcdCluster::start(&dir, 3)?;
    etcd.wait_healthy(std::time::Duration::from_secs(30))?;
    let mut yaml = String::from("clusters:\n");
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
    let shutdown = shutdown_signal();
    let server = tokio::spawn(dbmon_server::serve(cfg.server.clone(), shutdown.clone()));
    let collector = tokio::spawn(dbmon_collector::run(cfg.clone(), shutdown.clone()));
    println!(
        "\ndbmon is watching a local 3-member etcd cluster{}.\n\
         configuration: {}\n\
         data and logs:  {}\n\n\
         In another terminal:\n  \
         cargo run --bin dbmon-client -- status\n  \
         cargo run --bin dbmon-client -- watch\n  \
         cargo run --bin dbmon-client -- get cluster local-etcd\n\n\
         Kill an etcd member to see it degrade: pkill -f 'name etcd2'\n\
         Ctrl-C stops everything.\n",
        if crdb.is_some() {
            " and a 3-node CockroachDB cluster"
        } else {
            ""
        },
        path.display(),
        dir.display()
    );
    let r = server.await?;
    collector.await?;
    drop(etcd);
    drop(crdb);
    r?;
    Ok(())
}
