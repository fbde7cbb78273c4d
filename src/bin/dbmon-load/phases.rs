//! The phases of a run: the audit subscriber (sequence gaps, detection),
//! the measuring window, fan-out alone, the memory of many clusters'
//! latest state, the viewers and the badges. The M subscribers are
//! [`crate::readers::Readers`].

use crate::measure::{CpuMark, Histogram, ServerHists, http_get, machine, mb, usage};
use crate::readers::Readers;
use crate::report::{PromResults, Results};
use crate::stack::{Guard, Nodes, authed, channel, open_publisher};
use anyhow::{Context, Result};
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::{PublishRequest, WatchRequest, publish_request};
use dbmon_proto::{Report, Status, now_ms};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

/// A subscriber that counts the collector's sequence gaps and notices when
/// a chosen node turns crit.
pub struct Audit {
    pub gaps: Arc<AtomicU64>,
    target: Arc<std::sync::Mutex<String>>,
    seen: tokio::sync::watch::Receiver<Option<(String, i64)>>,
}

impl Audit {
    pub async fn start(url: &str, pki: &Path, token: &str) -> Result<Audit> {
        let gaps = Arc::new(AtomicU64::new(0));
        let (detect_tx, seen) = tokio::sync::watch::channel::<Option<(String, i64)>>(None);
        let target = Arc::new(std::sync::Mutex::new(String::new()));
        let ch = channel(url, pki, None).await?;
        let mut stream = MonitorClient::new(ch)
            .watch(authed(WatchRequest::default(), token)?)
            .await?
            .into_inner();
        let (g, t) = (gaps.clone(), target.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            while let Some(Ok(e)) = stream.next().await {
                for r in e.into_reports() {
                    if r.collector_id == "load" {
                        if last != 0 && r.seq != last + 1 {
                            g.fetch_add(r.seq.saturating_sub(last + 1), Ordering::Relaxed);
                        }
                        last = r.seq;
                    }
                    let t = t.lock().map(|t| t.clone()).unwrap_or_default();
                    if !t.is_empty() && r.node == t && r.check == "up" && r.status() == Status::Crit
                    {
                        let _ = detect_tx.send(Some((t, now_ms())));
                    }
                }
            }
        });
        Ok(Audit { gaps, target, seen })
    }

    /// Stops node `i` and waits (up to three intervals) until the audit
    /// subscriber sees it crit; milliseconds from the stop.
    pub async fn stop_and_wait(
        &mut self,
        nodes: &Nodes,
        i: usize,
        interval: Duration,
    ) -> Result<Option<u64>> {
        let node = format!("127.0.0.1:{}", nodes.ports[i]);
        *self.target.lock().map_err(|_| anyhow::anyhow!("lock"))? = node.clone();
        let stop_ms = now_ms();
        nodes.tasks[i].abort();
        let seen = &mut self.seen;
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
}

/// `dbmon_reports_ingested_total` of the server's `/metrics`.
async fn ingested(port: u16) -> u64 {
    let body = http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("dbmon_reports_ingested_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// What the measuring window needs.
pub struct Window<'a> {
    pub nodes: &'a Nodes,
    pub clusters: usize,
    pub subscribers: &'a Readers,
    pub audit: &'a mut Audit,
    pub server: &'a Guard,
    pub collector: &'a Guard,
    pub prometheus: Option<(&'a Guard, u16)>,
    pub http_port: u16,
    pub interval: Duration,
    pub window: Duration,
    pub state_clusters: usize,
}

/// The measuring window: CPU, memory, ingest and deliveries over `window`,
/// with a node stopped halfway through (and Prometheus's detection of it).
pub async fn measure(w: Window<'_>, quiet_detection: Option<u64>) -> Result<Results> {
    let (c0, _, _) = usage(w.collector.0.id())?;
    let (s0, _, _) = usage(w.server.0.id())?;
    let p0 = w
        .prometheus
        .map(|(p, _)| usage(p.0.id()).map(|u| u.0).unwrap_or(0.0));
    let i0 = ingested(w.http_port).await;
    let share0 = ServerHists::read(w.http_port).await;
    let cpus0 = CpuMark::take();
    let hist = &w.subscribers.polled;
    let d0 = hist.count();
    let started = Instant::now();

    eprintln!("dbmon-load: measuring for {:?}", w.window);
    // Halfway through the window, a node stops.
    tokio::time::sleep(w.window / 2).await;
    let victim = w.nodes.ports[w.nodes.ports.len() / 2];
    let stop_ms = now_ms();
    let detection = w
        .audit
        .stop_and_wait(w.nodes, w.nodes.ports.len() / 2, w.interval)
        .await?;
    eprintln!("dbmon-load: node stopped; dbmon saw it after {detection:?} ms");
    let prom_detection = match w.prometheus {
        Some((_, port)) => {
            let url = format!("http://127.0.0.1:{port}/api/v1/alerts");
            let needle = format!("127.0.0.1:{victim}");
            tokio::time::timeout(Duration::from_secs(180), async {
                loop {
                    if let Some(body) = http_get(&url).await
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
        }
        None => None,
    };
    let rest = w.window.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;

    let elapsed = started.elapsed().as_secs_f64();
    let (c1, c_hwm, _) = usage(w.collector.0.id())?;
    let (s1, s_hwm, _) = usage(w.server.0.id())?;
    let i1 = ingested(w.http_port).await;
    let share = ServerHists::read(w.http_port).await.since(&share0);
    let (cpu_busy, load_tool_cpu_s) = CpuMark::take().since(&cpus0);
    let polls = w.nodes.ports.len() as f64 * elapsed / w.interval.as_secs_f64();
    let mut results = Results {
        machine: machine(),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        nodes: w.nodes.ports.len(),
        clusters: w.clusters,
        subscribers: w.subscribers.n,
        interval_s: w.interval.as_secs_f64(),
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
        resyncs: w.subscribers.resyncs.load(Ordering::Relaxed),
        lost_reports: w.audit.gaps.load(Ordering::Relaxed),
        detection_ms: detection,
        detection_quiet_ms: quiet_detection,
        state_clusters: w.state_clusters,
        cpu_busy,
        load_tool_cpu_s,
        server_share: share,
        ..Default::default()
    };
    if let (Some((p, prom_port)), Some(p0)) = (w.prometheus, p0) {
        let (p1, p_hwm, _) = usage(p.0.id())?;
        // Prometheus read dbmon's own /metrics too: how many cluster
        // health series it holds.
        let dbmon_health_series = crate::measure::http_get(&format!(
            "http://127.0.0.1:{prom_port}/api/v1/query?query=count(dbmon_cluster_health)"
        ))
        .await
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["data"]["result"][0]["value"][1].as_str()?.parse().ok());
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
            dbmon_health_series,
            collector_rss_ratio: if p_hwm > 0 {
                c_hwm as f64 / p_hwm as f64
            } else {
                0.0
            },
        });
    }
    Ok(results)
}

/// Fan-out alone: the collector stopped, `rate` reports per second
/// published straight to the server for 20 s, delivered to every subscriber.
pub async fn fanout(
    results: &mut Results,
    collector_url: &str,
    pki: &Path,
    server: &Guard,
    http_port: u16,
    subs: &Readers,
    rate: u64,
) -> Result<()> {
    let fanout_window = Duration::from_secs(20);
    eprintln!("dbmon-load: fan-out phase, {rate} reports/s for {fanout_window:?}");
    let (s_f0, _, _) = usage(server.0.id())?;
    let share0 = ServerHists::read(http_port).await;
    let cpus0 = CpuMark::take();
    let fanout_started = Instant::now();
    let fseq = publish_steady(collector_url, pki, "fanout", rate, fanout_window, 0).await?;
    // Until the last deliveries land (or 10 s: what is missing by then is
    // counted as not delivered).
    let expected = fseq * subs.n as u64;
    crate::measure::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        subs.hist.count() >= expected
    })
    .await;
    let (s_f1, _, _) = usage(server.0.id())?;
    let share = ServerHists::read(http_port).await.since(&share0);
    let (cpu_busy, load_tool_cpu_s) = CpuMark::take().since(&cpus0);
    results.fanout_cpu_busy = cpu_busy;
    results.fanout_load_tool_cpu_s = load_tool_cpu_s;
    results.fanout_server_share = share;
    let h = &subs.hist;
    results.fanout_rate = fseq as f64 / fanout_started.elapsed().as_secs_f64();
    results.fanout_deliveries = h.count();
    results.fanout_expected = expected;
    results.fanout_p50_ms = h.percentile(0.50);
    results.fanout_p99_ms = h.percentile(0.99);
    results.fanout_max_ms = h.max.load(Ordering::Relaxed);
    results.fanout_server_cpu_s = s_f1 - s_f0;
    results.resyncs_after_fanout = subs.resyncs.load(Ordering::Relaxed);
    Ok(())
}

/// An ok report of a simulated CockroachDB node, observed now.
fn ok_report(cluster: String, node: String, check: &str, seq: u64) -> Report {
    let mut r = Report {
        cluster,
        node,
        check: check.into(),
        message: "ok".into(),
        observed_at_ms: now_ms(),
        seq,
        kind: "cockroachdb".into(),
        stale_after_ms: 60_000,
        ..Default::default()
    };
    r.set_status(Status::Ok);
    r
}

/// Publishes `rate` reports per second for `window` straight to the
/// server, as collector `state`: 100 clusters named `PREFIX-N` of three
/// nodes each, their `up` checks ok, observed when sent, numbered from
/// `after_seq + 1`. How many.
pub async fn publish_steady(
    collector_url: &str,
    pki: &Path,
    prefix: &str,
    rate: u64,
    window: Duration,
    after_seq: u64,
) -> Result<u64> {
    let (tx, mut acks) = open_publisher(collector_url, pki).await?;
    tokio::spawn(async move { while let Some(Ok(_)) = acks.next().await {} });
    let started = Instant::now();
    // Ticks of 10 ms, or one report per tick below 100 a second.
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        per_tick as f64 / rate.max(1) as f64,
    ));
    let mut seq = after_seq;
    while started.elapsed() < window {
        tick.tick().await;
        for _ in 0..per_tick {
            seq += 1;
            let r = ok_report(
                format!("{prefix}-{}", seq % 100),
                format!("n{}", seq % 3),
                "up",
                seq,
            );
            tx.send(PublishRequest {
                msg: Some(publish_request::Msg::Report(r)),
            })
            .await?;
        }
    }
    Ok(seq - after_seq)
}

/// Which live channel the viewers phase opens.
#[derive(Clone, Copy, PartialEq)]
pub enum Viewer {
    /// `Monitor.Watch` over gRPC, as `dbmon-client watch`.
    Watch,
    /// The dashboard's `GET /live` (Server-Sent Events of drawn tiles), as
    /// an open overview page.
    Dashboard,
}

/// What one viewers phase measured on its own fresh server.
#[derive(serde::Serialize, Default, Clone)]
pub struct ViewerRun {
    pub viewers: usize,
    pub rate: f64,
    pub connect_s: f64,
    pub server_rss_idle_mb: f64,
    pub server_rss_connected_mb: f64,
    pub server_rss_after_mb: f64,
    pub server_cpu_s: f64,
    pub deliveries: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub failed: u64,
}

/// `n` viewers of one kind open on `server` (fresh), then `rate` reports
/// per second for 20 s: the server's CPU and memory, and how fast the
/// viewers heard (a watcher from each report's observation time; a
/// dashboard from the tile's newest observation, `data-at`).
#[allow(clippy::too_many_arguments)]
pub async fn viewers(
    kind: Viewer,
    people_url: &str,
    collector_url: &str,
    pki: &Path,
    token: &str,
    server: &Guard,
    n: usize,
    rate: u64,
) -> Result<ViewerRun> {
    let pid = server.0.id();
    let mut run = ViewerRun {
        viewers: n,
        ..Default::default()
    };
    run.server_rss_idle_mb = mb(usage(pid)?.2);
    let hist = Arc::new(Histogram::new());
    let failed = Arc::new(AtomicU64::new(0));
    let ca = std::fs::read(pki.join("ca.crt"))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (hist, failed) = (hist.clone(), failed.clone());
        match kind {
            Viewer::Watch => {
                let ch = channel(people_url, pki, None)
                    .await
                    .with_context(|| format!("watcher {i}"))?;
                let mut stream = MonitorClient::new(ch)
                    .watch(authed(WatchRequest::default(), token)?)
                    .await?
                    .into_inner();
                tasks.push(tokio::spawn(async move {
                    while let Some(Ok(e)) = stream.next().await {
                        let now = now_ms();
                        for r in e.into_reports() {
                            if r.cluster.starts_with("view-") {
                                hist.record(now - r.observed_at_ms);
                            }
                        }
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                }));
            }
            Viewer::Dashboard => {
                let http = crate::stack::streaming_client(&ca)?;
                let mut r = http
                    .get(format!("{people_url}/live"))
                    .header("cookie", format!("dbmon_session={token}"))
                    .send()
                    .await
                    .with_context(|| format!("dashboard {i}"))?;
                anyhow::ensure!(
                    r.status().is_success(),
                    "dashboard {i}: the live channel answered {}",
                    r.status()
                );
                tasks.push(tokio::spawn(async move {
                    let mut pending = String::new();
                    while let Ok(Some(chunk)) = r.chunk().await {
                        pending.push_str(&String::from_utf8_lossy(&chunk));
                        let Some(end) = pending.rfind('\n') else {
                            continue;
                        };
                        let now = now_ms();
                        for at in tile_times(&pending[..end]) {
                            hist.record(now - at);
                        }
                        pending.drain(..=end);
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                }));
            }
        }
    }
    run.connect_s = started.elapsed().as_secs_f64();
    run.server_rss_connected_mb = mb(usage(pid)?.2);
    let (cpu0, _, _) = usage(pid)?;
    let window = Duration::from_secs(20);
    let begun = Instant::now();
    let sent = publish_steady(collector_url, pki, "view", rate, window, 0).await?;
    run.rate = sent as f64 / begun.elapsed().as_secs_f64();
    // Until deliveries stop growing (at most 10 s more).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    while hist.count() != last && Instant::now() < deadline {
        last = hist.count();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (cpu1, _, rss) = usage(pid)?;
    run.server_cpu_s = cpu1 - cpu0;
    run.server_rss_after_mb = mb(rss);
    run.deliveries = hist.count();
    run.p50_ms = hist.percentile(0.50);
    run.p99_ms = hist.percentile(0.99);
    for t in &tasks {
        t.abort();
    }
    run.failed = failed.load(Ordering::Relaxed);
    Ok(run)
}

/// The `data-at` times (the newest observation) of the tiles of `view-*`
/// clusters in complete Server-Sent Event lines.
fn tile_times(lines: &str) -> Vec<i64> {
    lines
        .lines()
        .filter(|l| l.starts_with("data: ") && l.contains("tile-view-"))
        .filter_map(|l| {
            let rest = l.split("data-at=\\\"").nth(1)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The memory of the latest state of `clusters` clusters (three nodes, six
/// checks each), published directly to `server`, a fresh one.
pub async fn memory(
    results: &mut Results,
    server: &Guard,
    collector_url: &str,
    pki: &Path,
    clusters: usize,
) -> Result<()> {
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
    let total = clusters * 3 * checks.len();
    let (tx, mut acks) = open_publisher(collector_url, pki).await?;
    let feeder = tokio::spawn(async move {
        let mut seq = 0;
        for c in 0..clusters {
            for n in 0..3 {
                for check in checks {
                    seq += 1;
                    let mut r = ok_report(
                        format!("state-{c}"),
                        format!("10.{}.{}.{n}:26258", c / 250, c % 250),
                        check,
                        seq,
                    );
                    r.value = Some(1.0);
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
    Ok(())
}

/// Badges served per second for 10 s by 32 clients over HTTPS (kept
/// connections), with a badge token made by `Sessions/MintBadge` for
/// `cluster`: each request verifies the token and derives the cluster's
/// health from the cache. Requests per second, and how many failed.
pub async fn badges(url: &str, pki: &Path, token: &str, cluster: &str) -> Result<(f64, u64)> {
    use dbmon_proto::v1::sessions_client::SessionsClient;
    let badge = SessionsClient::new(channel(url, pki, None).await?)
        .mint_badge(authed(
            dbmon_proto::v1::MintBadgeRequest {
                cluster: cluster.to_string(),
                ttl_ms: 3_600_000,
            },
            token,
        )?)
        .await?
        .into_inner()
        .token;
    let target = format!("{url}/badge/{cluster}.svg?token={badge}");
    let ca = std::fs::read(pki.join("ca.crt"))?;
    let window = Duration::from_secs(10);
    let started = Instant::now();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let http = crate::stack::https_client(&ca);
        let (target, ok, failed) = (target.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < window {
                let served = match http.get(&target).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                let counter = if served { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let rate = ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, failed.load(Ordering::Relaxed)))
}
