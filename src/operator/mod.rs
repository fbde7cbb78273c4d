//! The bodies of the `dbmon` operator binary's subcommands; the binary
//! itself only parses arguments and dispatches here.

pub mod local;
pub mod pki;
pub mod user;

use anyhow::{Context, Result};
use dbmon_config::Config;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

pub fn load(path: &Path) -> Result<Config> {
    Config::load(path, &dbmon_collector::Registry).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{} error(s) in {}; `dbmon config check` prints them too",
            e.0.len(),
            path.display()
        )
    })
}

pub fn config_check(file: &Path) -> ExitCode {
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

pub fn duration(text: &str, what: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{what} {text:?}: expected a duration like 15m, 12h or 7d"))
}

pub fn date(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64),
    )
    .to_string()
}

/// Turns true on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
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

pub fn join_token(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read join token file {}", f.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("DBMON_JOIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

/// GET `url` with plain HTTP/1.0; success only on 200.
pub fn healthcheck(url: &str) -> ExitCode {
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
    // The whole body: its first line says how it is, the next ones why.
    let body = |a: &str| {
        a.split_once("\r\n\r\n")
            .map_or(a, |(_, b)| b)
            .trim()
            .to_string()
    };
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200") => {
            println!("{}", body(&a));
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("{url}: {}", body(&a));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::from(1)
        }
    }
}
