//! The native kinds' cost: collector CPU per 1,000 polls of a real
//! PostgreSQL, a real Redis and a real etcd (the baseline), each polled by
//! the connector dbmon runs, in this process, at a fixed pace; and beside
//! them Prometheus scraping the matching Debian exporter (etcd: its own
//! `/metrics`) at the same pace, its CPU and the exporter's counted.

use crate::measure::{http_get, usage};
use crate::stack::free_port;
use anyhow::{Context, Result, bail};
use dbmon_collector::{Registry, registry};
use serde::Serialize;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/postgres.rs"]
#[allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod postgres;

/// One kind's figures.
#[derive(Serialize, Debug, Clone)]
pub struct KindCost {
    pub kind: String,
    /// Collector CPU seconds per 1,000 polls of one node.
    pub dbmon_cpu_per_1000: f64,
    /// Prometheus plus exporter CPU seconds per 1,000 scrapes of the same
    /// node, when both are installed.
    pub prometheus_cpu_per_1000: Option<f64>,
    pub exporter: Option<String>,
    pub polls: u64,
    pub scrapes: Option<u64>,
}

/// A child killed when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[String], envs: &[(&str, String)], log: &Path) -> Result<Kill> {
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    for (k, v) in envs {
        c.env(k, v);
    }
    Ok(Kill(
        c.spawn()
            .with_context(|| format!("cannot start {program}"))?,
    ))
}

async fn wait_http(url: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(url).await.is_none() {
        if Instant::now() > deadline {
            bail!("{what} does not answer at {url}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// This process's CPU seconds.
fn own_cpu() -> Result<f64> {
    Ok(usage(std::process::id())?.0)
}

/// Polls `yaml`'s first cluster `polls` times, one every `pace`; the
/// collector CPU seconds per 1,000 polls.
async fn poll_cost(kind: &str, yaml: &str, polls: u64, pace: Duration) -> Result<f64> {
    let cfg = dbmon_config::Config::parse(yaml, Path::new("kinds.yaml"), &Registry)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reg = registry::find(kind).context("kind not registered")?;
    let connector = (reg.build)(&cfg.clusters[0]).map_err(|e| anyhow::anyhow!("{e}"))?;
    // One poll first: connections made, as in a running collector.
    let first = connector.poll().await;
    if let Some(bad) = first
        .iter()
        .find(|o| o.check == "up" && o.status != dbmon_proto::Status::Ok)
    {
        bail!("{kind}: the node is not up: {}", bad.message);
    }
    let mut tick = tokio::time::interval(pace);
    let before = own_cpu()?;
    for _ in 0..polls {
        tick.tick().await;
        std::hint::black_box(connector.poll().await);
    }
    Ok((own_cpu()? - before) * 1000.0 / polls as f64)
}

/// Prometheus scraping `target` every `pace` for `scrapes` scrapes: its
/// CPU plus the exporter's, per 1,000 scrapes.
async fn scrape_cost(
    dir: &Path,
    target: &str,
    exporter: Option<&Kill>,
    scrapes: u64,
    pace: Duration,
) -> Result<Option<(f64, u64)>> {
    let Some(bin) = dbmon::local::which("prometheus") else {
        return Ok(None);
    };
    let port = free_port();
    let pace_ms = pace.as_millis();
    let config = dir.join("kinds-prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {pace_ms}ms\n  scrape_timeout: {pace_ms}ms\nscrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )?;
    let data = dir.join(format!("kinds-prom-{port}"));
    let prom = spawn(
        &bin.display().to_string(),
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
        &dir.join("kinds-prometheus.log"),
    )?;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    wait_http(&metrics, "prometheus").await?;
    let count = || async {
        http_get(&metrics)
            .await
            .map(|body| {
                body.lines()
                    .filter(|l| l.starts_with("prometheus_target_interval_length_seconds_count"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            })
            .unwrap_or(0)
    };
    // Warm up: a few scrapes, so that start-up is not counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count().await < 10 {
        if Instant::now() > deadline {
            bail!("prometheus does not scrape {target}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = |k: &Kill| usage(k.0.id()).map(|u| u.0).unwrap_or(0.0);
    let (p0, e0, s0) = (cpu(&prom), exporter.map(cpu).unwrap_or(0.0), count().await);
    let deadline = Instant::now() + pace * (scrapes as u32) * 3;
    while count().await < s0 + scrapes {
        if Instant::now() > deadline {
            bail!("prometheus scrapes too slowly");
        }
        tokio::time::sleep(pace * 10).await;
    }
    let (p1, e1, s1) = (cpu(&prom), exporter.map(cpu).unwrap_or(0.0), count().await);
    let done = s1 - s0;
    drop(prom);
    let _ = std::fs::remove_dir_all(&data);
    Ok(Some(((p1 - p0 + e1 - e0) * 1000.0 / done as f64, done)))
}

/// Debian's `exporter` started with `args` (and its listening address:
/// `--web.listen-address`, one dash for the Redis one) and `envs`, then
/// [`scrape_cost`] through it; None when it is not installed.
async fn exporter_cost(
    dir: &Path,
    exporter: &str,
    args: &[String],
    envs: &[(&str, String)],
    scrapes: u64,
    pace: Duration,
) -> Result<Option<(f64, u64)>> {
    let Some(bin) = dbmon::local::which(exporter) else {
        return Ok(None);
    };
    let port = free_port();
    let dashes = if exporter.contains("redis") {
        "-"
    } else {
        "--"
    };
    let mut all = args.to_vec();
    all.push(format!("{dashes}web.listen-address=127.0.0.1:{port}"));
    let running = spawn(
        &bin.display().to_string(),
        &all,
        envs,
        &dir.join(format!("{exporter}.log")),
    )?;
    wait_http(&format!("http://127.0.0.1:{port}/metrics"), exporter).await?;
    scrape_cost(
        dir,
        &format!("127.0.0.1:{port}"),
        Some(&running),
        scrapes,
        pace,
    )
    .await
}

/// Runs the phase: `polls` polls (and scrapes) per kind, one every `pace`.
pub async fn run(dir: &Path, polls: u64, pace: Duration) -> Result<Vec<KindCost>> {
    let mut out = Vec::new();
    let mut row = |kind: &str, dbmon: f64, prom: Option<(f64, u64)>, exporter: Option<&str>| {
        eprintln!(
            "dbmon-load: {kind}: dbmon {dbmon:.3} CPU s per 1,000 polls; prometheus {}",
            prom.map(|p| format!("{:.3} per 1,000 scrapes", p.0))
                .unwrap_or_else(|| "not installed".into())
        );
        out.push(KindCost {
            kind: kind.to_string(),
            dbmon_cpu_per_1000: dbmon,
            prometheus_cpu_per_1000: prom.map(|p| p.0),
            exporter: exporter.map(str::to_string),
            polls,
            scrapes: prom.map(|p| p.1),
        });
    };

    // etcd, the baseline: one member, its own /metrics for Prometheus.
    let mut etcd = dbmon::local::EtcdCluster::start(&dir.join("etcd"), 1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    etcd.wait_healthy(Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let etcd_url = etcd.client_urls()[0].clone();
    let cost = poll_cost(
        "etcd",
        &format!("clusters:\n  - name: e\n    kind: etcd\n    nodes: [{etcd_url}]\n"),
        polls,
        pace,
    )
    .await?;
    let target = etcd_url.trim_start_matches("http://").to_string();
    let prom = scrape_cost(dir, &target, None, polls, pace).await?;
    row("etcd", cost, prom, None);
    drop(etcd);

    // PostgreSQL: one primary.
    let pg = postgres::Postgres::start(&dir.join("postgres"));
    let cost = poll_cost(
        "postgresql",
        &format!(
            "clusters:\n  - name: p\n    kind: postgresql\n    nodes: [127.0.0.1:{}]\n    auth: {{username: dbmon}}\n",
            pg.port
        ),
        polls,
        pace,
    )
    .await?;
    let prom = exporter_cost(
        dir,
        "prometheus-postgres-exporter",
        &[],
        &[(
            "DATA_SOURCE_NAME",
            format!(
                "postgresql://dbmon@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port
            ),
        )],
        polls,
        pace,
    )
    .await?;
    row(
        "postgresql",
        cost,
        prom,
        Some("prometheus-postgres-exporter"),
    );
    drop(pg);

    // Redis: one master.
    let redis_port = free_port();
    let redis_dir = dir.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let redis = spawn(
        "redis-server",
        &[
            "--port".into(),
            redis_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--dir".into(),
            redis_dir.display().to_string(),
        ],
        &[],
        &dir.join("redis.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", redis_port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server does not listen");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cost = poll_cost(
        "redis",
        &format!("clusters:\n  - name: r\n    kind: redis\n    nodes: [127.0.0.1:{redis_port}]\n"),
        polls,
        pace,
    )
    .await?;
    let prom = exporter_cost(
        dir,
        "prometheus-redis-exporter",
        &[format!("-redis.addr=redis://127.0.0.1:{redis_port}")],
        &[],
        polls,
        pace,
    )
    .await?;
    row("redis", cost, prom, Some("prometheus-redis-exporter"));
    drop(redis);
    Ok(out)
}
