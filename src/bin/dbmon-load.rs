//! `dbmon-load`: measures dbmon under load, and Prometheus beside it on the
//! same targets.
//!
//! It starts N simulated CockroachDB nodes (HTTP servers replaying a real
//! captured `/_status/vars`), a real `dbmon server` and `dbmon collector`
//! over mutual TLS polling them, and M `Watch` subscribers over TLS. It
//! reports collector CPU per 1,000 polls, peak RSS of server and collector,
//! ingest rate, delivery latency (observed-at to a subscriber's receipt),
//! detection latency (a node stops to a subscriber seeing it crit), lost
//! reports, and the server's memory holding the latest state of many
//! clusters. When a `prometheus` binary is on PATH it scrapes the same N
//! targets at the same interval in the same run, with an alert on
//! `up == 0`, and its CPU, RSS and detection latency are reported beside.

use anyhow::{Context, Result, bail};
use axum::routing::get;
use clap::Parser;
use dbmon_pki::{Ca, Role};
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::{Hello, PublishRequest, WatchRequest, publish_request, watch_event};
use dbmon_proto::{Report, Status, now_ms};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

const STATUS_VARS: &str =
    include_str!("../../collector/tests/fixtures/cockroachdb/status-vars.txt");

#[derive(Parser)]
#[command(
    name = "dbmon-load",
    about = "Measure dbmon under load, beside Prometheus"
)]
struct Args {
    /// Simulated cluster nodes (grouped in clusters of 3).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Watch subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Poll (and scrape) interval.
    #[arg(long, default_value = "10s")]
    interval: String,
    /// Measuring window, after the warm-up.
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Clusters whose latest state the server holds in the memory phase.
    #[arg(long, default_value_t = 10_000)]
    state_clusters: usize,
    /// Where results go (JSON, Markdown, SVG).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Reports per second published in the fan-out phase.
    #[arg(long, default_value_t = 1000)]
    fanout_rate: u64,
    /// Skip Prometheus even if it is installed.
    #[arg(long)]
    no_prometheus: bool,
}

/// Latencies in milliseconds, bucketed 0..=60,000 ms.
struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..=60_000).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, ms: i64) {
        let ms = ms.clamp(0, 60_000) as usize;
        self.buckets[ms].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(ms as u64, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (ms, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                return ms as u64;
            }
        }
        60_000
    }
}

/// CPU seconds (user + system) and peak RSS (bytes) of a process.
fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((cpu, kb("VmHWM:"), kb("VmRSS:")))
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Simulated nodes: each serves /health and the real /_status/vars on its
/// own port; `stop` closes one.
struct Nodes {
    ports: Vec<u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_nodes(n: usize) -> Result<Nodes> {
    let app = axum::Router::new()
        .route("/health", get(|| async { "{}" }))
        .route("/_status/vars", get(|| async { STATUS_VARS }));
    let mut ports = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ports.push(l.local_addr()?.port());
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        }));
    }
    Ok(Nodes { ports, tasks })
}

fn dbmon_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("dbmon");
    if !bin.exists() {
        bail!(
            "{} not found: build it with cargo build --release --bin dbmon",
            bin.display()
        );
    }
    Ok(bin)
}

fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s).with_context(|| format!("{s:?} is not a duration"))
}

#[path = "../../tests/support/softlogin.rs"]
mod softlogin;

/// Invites a viewer in the server's auth directory, registers a software
/// passkey on the sign-in API and completes a login with it: the token.
async fn sign_in(url: &str, auth_dir: &Path, pki: &Path) -> Result<String> {
    use dbmon_proto::v1::auth_client::AuthClient;
    use dbmon_proto::v1::{PollLoginRequest, StartLoginRequest};
    let store = dbmon_auth::store::AuthStore::open(auth_dir)?;
    let secret = store.add_user("load", dbmon_auth::Role::Viewer, vec![], 600_000)?;
    let origin = url.replace("127.0.0.1", "localhost");
    let http = softlogin::http_client(Some(&std::fs::read(pki.join("ca.crt"))?));
    let mut key = softlogin::register(&http, &format!("{origin}/invite#{secret}"))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut auth = AuthClient::new(channel(url, pki, None).await?);
    let started = auth.start_login(StartLoginRequest {}).await?.into_inner();
    softlogin::approve(&http, &started.url, "load", &mut key)
        .await
        .map_err(anyhow::Error::msg)?;
    let poll = auth
        .poll_login(PollLoginRequest {
            device_code: started.device_code,
        })
        .await?
        .into_inner();
    if poll.macaroon.is_empty() {
        bail!("the login was approved but no token came back");
    }
    Ok(poll.macaroon)
}

fn authed<T>(msg: T, token: &str) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(dbmon_auth::METADATA_KEY, token.parse()?);
    Ok(r)
}

async fn channel(
    url: &str,
    pki: &Path,
    collector: Option<&str>,
) -> Result<tonic::transport::Channel> {
    let td = dbmon_pki::trust_domain_of(&pki.join("ca.crt"))?;
    let trust = dbmon_pki::tls::Trust::load(&pki.join("ca.crt"), None, &td)?;
    let cfg = match collector {
        Some(name) => {
            let id = dbmon_pki::tls::ReloadingIdentity::load(
                &pki.join(format!("collector.{name}.crt")),
                &pki.join(format!("collector.{name}.key")),
                Role::Collector,
            )?;
            dbmon_pki::tls::collector_client(id, trust)?
        }
        None => dbmon_pki::tls::people_client(trust)?,
    };
    dbmon_pki::transport::channel(url, Arc::new(cfg), Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

#[derive(serde::Serialize, Default)]
struct Results {
    machine: String,
    date: String,
    nodes: usize,
    clusters: usize,
    subscribers: usize,
    interval_s: f64,
    window_s: f64,
    polls: f64,
    collector_cpu_s: f64,
    collector_cpu_s_per_1000_polls: f64,
    collector_peak_rss_mb: f64,
    server_cpu_s: f64,
    server_peak_rss_mb: f64,
    ingested: u64,
    ingest_per_s: f64,
    deliveries: u64,
    delivery_p50_ms: u64,
    delivery_p99_ms: u64,
    delivery_max_ms: u64,
    resyncs: u64,
    lost_reports: u64,
    detection_ms: Option<u64>,
    detection_quiet_ms: Option<u64>,
    fanout_rate: f64,
    fanout_expected: u64,
    fanout_deliveries: u64,
    fanout_p50_ms: u64,
    fanout_p99_ms: u64,
    fanout_max_ms: u64,
    fanout_server_cpu_s: f64,
    resyncs_after_fanout: u64,
    state_clusters: usize,
    server_rss_idle_mb: f64,
    server_rss_with_state_mb: f64,
    prometheus: Option<PromResults>,
}

#[derive(serde::Serialize, Default)]
struct PromResults {
    version: String,
    cpu_s: f64,
    cpu_s_per_1000_scrapes: f64,
    peak_rss_mb: f64,
    evaluation_interval_s: f64,
    detection_ms: Option<u64>,
    collector_cpu_ratio: f64,
    collector_rss_ratio: f64,
}

fn mb(b: u64) -> f64 {
    (b as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let interval = parse_duration(&args.interval)?;
    let window = parse_duration(&args.duration)?;
    let dbmon = dbmon_binary()?;
    let dir = std::env::temp_dir().join(format!("dbmon-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&args.out)?;
    eprintln!(
        "dbmon-load: {} nodes, {} subscribers, interval {:?}, window {:?}",
        args.nodes, args.subscribers, interval, window
    );

    let pki = dir.join("pki");
    let ca = Ca::init(&pki, "load.local", true)?;
    ca.issue(
        Role::Server,
        "server",
        None,
        &["localhost".into(), "127.0.0.1".into()],
        Duration::from_secs(86_400),
        true,
    )?;
    ca.issue(
        Role::Collector,
        "load",
        Some("load"),
        &[],
        Duration::from_secs(86_400),
        true,
    )?;
    ca.issue(
        Role::Collector,
        "state",
        Some("state"),
        &[],
        Duration::from_secs(86_400),
        true,
    )?;

    let timeout =
        humantime::format_duration((interval / 2).min(Duration::from_secs(3))).to_string();
    let nodes = start_nodes(args.nodes).await?;
    let clusters: Vec<&[u16]> = nodes.ports.chunks(3).collect();
    let (people, collectors, http) = (free_port(), free_port(), free_port());
    let mut yaml = format!(
        "server:\n  listen: 127.0.0.1:{people}\n  collector_listen: 127.0.0.1:{collectors}\n  http_listen: 127.0.0.1:{http}\n  pki_dir: {p}\n  subscriber_queue: 65536\n\
         collector:\n  id: load\n  server: https://127.0.0.1:{collectors}\n  pki_dir: {p}\nclusters:\n",
        p = pki.display()
    );
    for (i, c) in clusters.iter().enumerate() {
        let list: Vec<String> = c.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        yaml.push_str(&format!(
            "  - name: crdb-{i}\n    kind: cockroachdb\n    interval: {}\n    timeout: {timeout}\n    nodes: [{}]\n",
            args.interval,
            list.join(", ")
        ));
    }
    let config = dir.join("dbmon.yaml");
    std::fs::write(&config, yaml)?;
    let log = |name: &str| std::fs::File::create(dir.join(name));
    let server = Guard(
        Command::new(&dbmon)
            .args(["server", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("server.log")?)
            .spawn()?,
    );
    let people_url = format!("https://127.0.0.1:{people}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", collectors)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the server did not start; see {}",
                dir.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Subscribers are people: a viewer signed in with a software passkey.
    let token = sign_in(&people_url, &dir.join("auth"), &pki).await?;

    // The audit subscriber: sequence gaps of the collector, and detection.
    let gaps = Arc::new(AtomicU64::new(0));
    let (detect_tx, mut detect_rx) = tokio::sync::watch::channel::<Option<(String, i64)>>(None);
    let target = Arc::new(std::sync::Mutex::new(String::new()));
    {
        let ch = channel(&people_url, &pki, None).await?;
        let mut stream = MonitorClient::new(ch)
            .watch(authed(WatchRequest::default(), &token)?)
            .await?
            .into_inner();
        let (gaps, target) = (gaps.clone(), target.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            while let Some(Ok(e)) = stream.next().await {
                for r in e.into_reports() {
                    if r.collector_id == "load" {
                        if last != 0 && r.seq != last + 1 {
                            gaps.fetch_add(r.seq.saturating_sub(last + 1), Ordering::Relaxed);
                        }
                        last = r.seq;
                    }
                    let t = target.lock().map(|t| t.clone()).unwrap_or_default();
                    if !t.is_empty() && r.node == t && r.check == "up" && r.status() == Status::Crit
                    {
                        let _ = detect_tx.send(Some((t, now_ms())));
                    }
                }
            }
        });
    }

    let collector = Guard(
        Command::new(&dbmon)
            .args(["collector", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("collector.log")?)
            .spawn()?,
    );

    // Prometheus on the same targets, same interval.
    let prom_port = free_port();
    let prometheus = match (args.no_prometheus, dbmon::local::which("prometheus")) {
        (false, Some(bin)) => {
            let targets: Vec<String> = nodes
                .ports
                .iter()
                .map(|p| format!("'127.0.0.1:{p}'"))
                .collect();
            std::fs::write(
                dir.join("rules.yml"),
                "groups:\n  - name: dbmon-load\n    rules:\n      - alert: NodeDown\n        expr: up == 0\n",
            )?;
            std::fs::write(
                dir.join("prometheus.yml"),
                format!(
                    "global:\n  scrape_interval: {}\n  scrape_timeout: {timeout}\nrule_files: [{}]\nscrape_configs:\n  - job_name: crdb\n    metrics_path: /_status/vars\n    static_configs:\n      - targets: [{}]\n",
                    args.interval,
                    dir.join("rules.yml").display(),
                    targets.join(", ")
                ),
            )?;
            let child = Command::new(bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prom-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
                .stdout(Stdio::null())
                .stderr(log("prometheus.log")?)
                .spawn()?;
            Some(Guard(child))
        }
        _ => None,
    };

    eprintln!("dbmon-load: warming up");
    // Warm up: one interval and a bit, so that every target was polled.
    tokio::time::sleep(interval + Duration::from_secs(3)).await;

    // Detection with no other subscriber: a node stops; how long until the
    // audit subscriber sees it crit.
    let quiet_victim = nodes.ports[nodes.ports.len() / 4];
    let quiet_detection = stop_and_wait(
        &nodes,
        nodes.ports.len() / 4,
        &target,
        &mut detect_rx,
        interval,
    )
    .await?;
    eprintln!(
        "dbmon-load: node 127.0.0.1:{quiet_victim} stopped with no load; seen after {quiet_detection:?} ms"
    );

    // The M subscribers.
    let hist = Arc::new(Histogram::new());
    // Deliveries of the fan-out phase (clusters named fanout-*).
    let fanout_hist = Arc::new(Histogram::new());
    let resyncs = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let ch = channel(&people_url, &pki, None)
            .await
            .with_context(|| format!("subscriber {i}"))?;
        let mut stream = MonitorClient::new(ch)
            .watch(authed(WatchRequest::default(), &token)?)
            .await?
            .into_inner();
        let (hist, fanout_hist, resyncs) = (hist.clone(), fanout_hist.clone(), resyncs.clone());
        subs.push(tokio::spawn(async move {
            while let Some(Ok(e)) = stream.next().await {
                if let Some(watch_event::Event::Snapshot(s)) = &e.event {
                    if s.reason != "initial" && s.part == 0 {
                        resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let now = now_ms();
                for r in e.into_reports() {
                    if r.cluster.starts_with("fanout-") {
                        fanout_hist.record(now - r.observed_at_ms)
                    } else {
                        hist.record(now - r.observed_at_ms)
                    }
                }
            }
        }));
    }
    let metrics = |port: u16| async move {
        let body = reqwest_get(&format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix("dbmon_reports_ingested_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (c0, _, _) = usage(collector.0.id())?;
    let (s0, _, _) = usage(server.0.id())?;
    let p0 = prometheus
        .as_ref()
        .map(|p| usage(p.0.id()).map(|u| u.0).unwrap_or(0.0));
    let i0 = metrics(http).await;
    let d0 = hist.count();
    let started = Instant::now();

    eprintln!("dbmon-load: measuring for {window:?}");
    // Halfway through the window, a node stops.
    tokio::time::sleep(window / 2).await;
    let victim = nodes.ports[nodes.ports.len() / 2];
    let stop_ms = now_ms();
    let detection = stop_and_wait(
        &nodes,
        nodes.ports.len() / 2,
        &target,
        &mut detect_rx,
        interval,
    )
    .await?;
    eprintln!("dbmon-load: node stopped; dbmon saw it after {detection:?} ms");
    let prom_detection = if prometheus.is_some() {
        let url = format!("http://127.0.0.1:{prom_port}/api/v1/alerts");
        let needle = format!("127.0.0.1:{victim}");
        tokio::time::timeout(Duration::from_secs(180), async {
            loop {
                if let Some(body) = reqwest_get(&url).await
                    && body.contains(&needle)
                    && body.contains("\"state\":\"firing\"")
                {
                    return (now_ms() - stop_ms) as u64;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .ok()
    } else {
        None
    };
    let rest = window.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;

    let elapsed = started.elapsed().as_secs_f64();
    let (c1, c_hwm, _) = usage(collector.0.id())?;
    let (s1, s_hwm, _) = usage(server.0.id())?;
    let i1 = metrics(http).await;
    let polls = args.nodes as f64 * elapsed / interval.as_secs_f64();
    let mut results = Results {
        machine: machine(),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        nodes: args.nodes,
        clusters: clusters.len(),
        subscribers: args.subscribers,
        interval_s: interval.as_secs_f64(),
        window_s: elapsed,
        polls,
        collector_cpu_s: c1 - c0,
        collector_cpu_s_per_1000_polls: (c1 - c0) / polls * 1000.0,
        collector_peak_rss_mb: mb(c_hwm),
        server_cpu_s: s1 - s0,
        server_peak_rss_mb: mb(s_hwm),
        ingested: i1 - i0,
        ingest_per_s: (i1 - i0) as f64 / elapsed,
        deliveries: hist.count() - d0,
        delivery_p50_ms: hist.percentile(0.50),
        delivery_p99_ms: hist.percentile(0.99),
        delivery_max_ms: hist.max.load(Ordering::Relaxed),
        resyncs: resyncs.load(Ordering::Relaxed),
        lost_reports: gaps.load(Ordering::Relaxed),
        detection_ms: detection,
        detection_quiet_ms: quiet_detection,
        state_clusters: args.state_clusters,
        ..Default::default()
    };
    if let (Some(p), Some(p0)) = (&prometheus, p0) {
        let (p1, p_hwm, _) = usage(p.0.id())?;
        let version = Command::new("prometheus")
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let cpu = p1 - p0;
        results.prometheus = Some(PromResults {
            version,
            cpu_s: cpu,
            cpu_s_per_1000_scrapes: cpu / polls * 1000.0,
            peak_rss_mb: mb(p_hwm),
            evaluation_interval_s: 60.0,
            detection_ms: prom_detection,
            collector_cpu_ratio: if cpu > 0.0 { (c1 - c0) / cpu } else { 0.0 },
            collector_rss_ratio: if p_hwm > 0 {
                c_hwm as f64 / p_hwm as f64
            } else {
                0.0
            },
        });
    }
    drop(collector);
    drop(prometheus);

    // Fan-out phase: the collector stopped, reports published straight to
    // the server at a steady rate, delivered to every subscriber.
    let rate = args.fanout_rate;
    let fanout_window = Duration::from_secs(20);
    eprintln!("dbmon-load: fan-out phase, {rate} reports/s for {fanout_window:?}");
    let collector_url = format!("https://127.0.0.1:{collectors}");
    let (ftx, mut facks) = open_publisher(&collector_url, &pki).await?;
    tokio::spawn(async move { while let Some(Ok(_)) = facks.next().await {} });
    let (s_f0, _, _) = usage(server.0.id())?;
    let fanout_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut fseq = 0u64;
    while fanout_started.elapsed() < fanout_window {
        tick.tick().await;
        for _ in 0..per_tick {
            fseq += 1;
            let mut r = Report {
                cluster: format!("fanout-{}", fseq % 100),
                node: format!("n{}", fseq % 3),
                check: "up".into(),
                message: "ok".into(),
                observed_at_ms: now_ms(),
                seq: fseq,
                kind: "cockroachdb".into(),
                stale_after_ms: 60_000,
                ..Default::default()
            };
            r.set_status(Status::Ok);
            ftx.send(PublishRequest {
                msg: Some(publish_request::Msg::Report(r)),
            })
            .await?;
        }
    }
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s_f1, _, _) = usage(server.0.id())?;
    results.fanout_rate = fseq as f64 / fanout_started.elapsed().as_secs_f64();
    results.fanout_deliveries = fanout_hist.count();
    results.fanout_expected = fseq * args.subscribers as u64;
    results.fanout_p50_ms = fanout_hist.percentile(0.50);
    results.fanout_p99_ms = fanout_hist.percentile(0.99);
    results.fanout_max_ms = fanout_hist.max.load(Ordering::Relaxed);
    results.fanout_server_cpu_s = s_f1 - s_f0;
    results.resyncs_after_fanout = resyncs.load(Ordering::Relaxed);
    drop(ftx);
    for s in &subs {
        s.abort();
    }
    drop(subs);

    eprintln!(
        "dbmon-load: memory phase ({} clusters)",
        args.state_clusters
    );
    // Memory phase, on a fresh server (so that memory the allocator keeps
    // from the phases before is not counted): the latest state of many
    // clusters, published directly.
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", collectors)).is_ok()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = Guard(
        Command::new(&dbmon)
            .args(["server", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("server-state.log")?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", collectors)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the second server did not start; see {}",
                dir.join("server-state.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, idle_rss) = usage(server.0.id())?;
    results.server_rss_idle_mb = mb(idle_rss);
    let checks = [
        "up",
        "live_nodes",
        "ranges_unavailable",
        "ranges_underreplicated",
        "clock_offset",
        "capacity_available",
    ];
    let total = args.state_clusters * 3 * checks.len();
    let (tx, mut acks) = open_publisher(&collector_url, &pki).await?;
    let feeder = tokio::spawn(async move {
        let mut seq = 0;
        for c in 0..args.state_clusters {
            for n in 0..3 {
                for check in checks {
                    seq += 1;
                    let mut r = Report {
                        cluster: format!("state-{c}"),
                        node: format!("10.{}.{}.{n}:26258", c / 250, c % 250),
                        check: check.into(),
                        value: Some(1.0),
                        message: "ok".into(),
                        observed_at_ms: now_ms(),
                        seq,
                        kind: "cockroachdb".into(),
                        stale_after_ms: 60_000,
                        ..Default::default()
                    };
                    r.set_status(Status::Ok);
                    if tx
                        .send(PublishRequest {
                            msg: Some(publish_request::Msg::Report(r)),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    while let Some(Ok(a)) = acks.next().await {
        if a.acked_seq as usize >= total {
            break;
        }
    }
    feeder.await?;
    let (_, _, s_rss) = usage(server.0.id())?;
    results.server_rss_with_state_mb = mb(s_rss);
    drop(server);

    write_results(&args.out, &results)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A publish stream as collector `state` (its Hello sent: the server
/// answers only after it), and the stream of acknowledgements.
async fn open_publisher(
    url: &str,
    pki: &Path,
) -> Result<(
    tokio::sync::mpsc::Sender<PublishRequest>,
    tonic::Streaming<dbmon_proto::v1::PublishAck>,
)> {
    let ch = channel(url, pki, Some("state")).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tx.send(PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: "state".into(),
            epoch: 1,
            clusters: vec![],
        })),
    })
    .await?;
    let acks = IngestClient::new(ch)
        .publish(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, acks))
}

/// Stops node `i` and waits (up to three intervals) until the audit
/// subscriber sees it crit; milliseconds from the stop.
async fn stop_and_wait(
    nodes: &Nodes,
    i: usize,
    target: &std::sync::Mutex<String>,
    seen: &mut tokio::sync::watch::Receiver<Option<(String, i64)>>,
    interval: Duration,
) -> Result<Option<u64>> {
    let node = format!("127.0.0.1:{}", nodes.ports[i]);
    *target.lock().map_err(|_| anyhow::anyhow!("lock"))? = node.clone();
    let stop_ms = now_ms();
    nodes.tasks[i].abort();
    let waited = tokio::time::timeout(interval * 3, async {
        loop {
            if let Some((n, at)) = seen.borrow().clone()
                && n == node
            {
                return Some((at - stop_ms).max(0) as u64);
            }
            if seen.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    Ok(waited.ok().flatten())
}

async fn reqwest_get(url: &str) -> Option<String> {
    // A tiny HTTP/1.0 GET: the load tool avoids adding an HTTP client of its own.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}")))?;
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {} GiB", mem / 1_048_576)
}

fn write_results(out: &Path, r: &Results) -> Result<()> {
    std::fs::write(out.join("load.json"), serde_json::to_string_pretty(r)?)?;
    let mut md = format!(
        "# dbmon load run\n\n{} — {}\n\n{} simulated CockroachDB nodes in {} clusters, interval {} s, {} Watch subscribers over TLS, window {:.0} s.\n\n",
        r.date, r.machine, r.nodes, r.clusters, r.interval_s, r.subscribers, r.window_s
    );
    md.push_str(
        "| measure | dbmon | Prometheus | ratio (dbmon / Prometheus) |\n|---|---|---|---|\n",
    );
    let p = r.prometheus.as_ref();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    md.push_str(&format!(
        "| CPU s per 1,000 polls (collector) / scrapes | {:.3} | {} | {} |\n",
        r.collector_cpu_s_per_1000_polls,
        opt(p.map(|p| format!("{:.3}", p.cpu_s_per_1000_scrapes))),
        opt(p.map(|p| format!("{:.2}", p.collector_cpu_ratio)))
    ));
    md.push_str(&format!(
        "| peak RSS (collector) | {} MB | {} | {} |\n",
        r.collector_peak_rss_mb,
        opt(p.map(|p| format!("{} MB", p.peak_rss_mb))),
        opt(p.map(|p| format!("{:.2}", p.collector_rss_ratio)))
    ));
    md.push_str(&format!(
        "| detection (node stops → seen) | {} with no other subscriber, {} under load | {} | |\n",
        opt(r.detection_quiet_ms.map(|d| format!("{d} ms"))),
        opt(r.detection_ms.map(|d| format!("{d} ms"))),
        opt(p.map(|p| p
            .detection_ms
            .map(|d| format!("{d} ms (evaluation every {} s)", p.evaluation_interval_s))
            .unwrap_or_else(|| "not within 180 s".into())))
    ));
    md.push_str(&format!(
        "\n| dbmon | value |\n|---|---|\n| server peak RSS | {} MB |\n| server CPU in window | {:.1} s |\n| ingest | {:.0} reports/s |\n| deliveries | {} |\n| delivery latency p50 / p99 / max | {} / {} / {} ms |\n| resyncs | {} |\n| lost reports | {} |\n| server RSS holding {} clusters' latest state (fresh server; {} MB idle) | {} MB |\n",
        r.server_peak_rss_mb, r.server_cpu_s, r.ingest_per_s, r.deliveries, r.delivery_p50_ms, r.delivery_p99_ms, r.delivery_max_ms, r.resyncs, r.lost_reports, r.state_clusters, r.server_rss_idle_mb, r.server_rss_with_state_mb
    ));
    md.push_str(&format!(
        "\nFan-out alone (collector and Prometheus stopped): {:.0} reports/s to {} subscribers, {} of {} deliveries, latency p50 / p99 / max {} / {} / {} ms, server CPU {:.1} s in 20 s, resyncs so far {}.\n",
        r.fanout_rate, r.subscribers, r.fanout_deliveries, r.fanout_expected, r.fanout_p50_ms, r.fanout_p99_ms, r.fanout_max_ms, r.fanout_server_cpu_s, r.resyncs_after_fanout
    ));
    std::fs::write(out.join("load.md"), &md)?;
    std::fs::write(out.join("latency.svg"), svg(r))?;
    println!("{md}");
    println!("results: {}", out.display());
    Ok(())
}

/// Bar charts of delivery latency percentiles: during the polling run and
/// in the fan-out phase.
fn svg(r: &Results) -> String {
    let groups = [
        (
            "polling run",
            [
                ("p50", r.delivery_p50_ms),
                ("p99", r.delivery_p99_ms),
                ("max", r.delivery_max_ms),
            ],
        ),
        (
            "fan-out alone",
            [
                ("p50", r.fanout_p50_ms),
                ("p99", r.fanout_p99_ms),
                ("max", r.fanout_max_ms),
            ],
        ),
    ];
    let mut s = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"280\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">Watch delivery latency, ms (observed to received)</text>\n",
    );
    for (g, (title, bars)) in groups.iter().enumerate() {
        let top = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
        let x0 = 20 + g * 380;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"50\" text-anchor=\"middle\">{title}</text>\n",
            x0 + 170
        ));
        for (i, (label, v)) in bars.iter().enumerate() {
            let h = (*v as f64 / top * 170.0).max(1.0);
            let x = x0 + 20 + i * 110;
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{:.0}\" width=\"80\" height=\"{h:.0}\" fill=\"#4a78b5\"/>\n<text x=\"{}\" y=\"265\" text-anchor=\"middle\">{label}</text>\n<text x=\"{}\" y=\"{:.0}\" text-anchor=\"middle\">{v}</text>\n",
                240.0 - h,
                x + 40,
                x + 40,
                235.0 - h
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}
