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

mod kinds;
mod measure;
mod phases;
mod readers;
mod report;
mod scale;
mod stack;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Pin the server to CPU 0 and everything else (simulated nodes,
    /// subscribers, collector, Prometheus) to the other CPUs, so that the
    /// server's share is measured apart from the load it is given.
    #[arg(long)]
    pin: bool,
    /// Viewers in the viewers phase: this many `watch` subscribers on one
    /// fresh server, then as many open dashboards on another (0: skip).
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// Reports per second published in the viewers phase.
    #[arg(long, default_value_t = 300)]
    viewer_rate: u64,
    /// Run only the native kinds' phase (PostgreSQL, Redis, etcd).
    #[arg(long)]
    only_kinds: bool,
    /// Run only the collector's scale phase (`--nodes`, then
    /// `--scale-nodes`), its table written to `out/scale.md`.
    #[arg(long)]
    only_scale: bool,
    /// Polls (and scrapes) per kind in the kinds' phase (0: no kinds' phase).
    #[arg(long, default_value_t = 1000)]
    kind_polls: u64,
    /// One poll (and one scrape) every this long in the kinds' phase.
    #[arg(long, default_value = "20ms")]
    kind_pace: String,
    /// Backpressure phase: the fan-out for this long on a fresh server with
    /// the default queue, then the same with 1 % more subscribers that stop
    /// reading for as long ("0s": skip).
    #[arg(long, default_value = "40s")]
    stall: String,
    /// Subscribers of the wide fan-out phase (0: skip).
    #[arg(long, default_value_t = 10_000)]
    wide_subscribers: usize,
    /// Reports per second of the wide fan-out phase, one 20 s run per rate
    /// on the same subscribers.
    #[arg(long, value_delimiter = ',', default_values_t = [30, 100])]
    wide_rates: Vec<u64>,
    /// Nodes of the collector's scale phase, polled after the same with
    /// `--nodes` (0: skip).
    #[arg(long, default_value_t = 10_000)]
    scale_nodes: usize,
    /// Poll interval of the scale phase.
    #[arg(long, default_value = "30s")]
    scale_interval: String,
}

/// The collector polling `--nodes`, then `--scale-nodes` nodes, each for
/// two intervals on a fresh server.
async fn scale_phase(
    args: &Args,
    dir: &std::path::Path,
    pki: &std::path::Path,
    pinned: bool,
) -> Result<Vec<scale::PollScale>> {
    let every = parse_duration(&args.scale_interval)?;
    let mut runs = Vec::new();
    for n in [args.nodes, args.scale_nodes] {
        eprintln!("dbmon-load: the collector polling {n} nodes every {every:?}");
        runs.push(scale::poll_scale(dir, pki, n, every, every * 2, pinned).await?);
    }
    Ok(runs)
}

/// The kinds' phase, its table written to `out/kinds.md` and `kinds.json`.
async fn kinds_phase(args: &Args, dir: &std::path::Path) -> Result<()> {
    let pace = parse_duration(&args.kind_pace)?;
    eprintln!(
        "dbmon-load: kinds phase, {} polls each, one every {pace:?}",
        args.kind_polls
    );
    let rows = kinds::run(dir, args.kind_polls, pace).await?;
    std::fs::write(
        args.out.join("kinds.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    let base = rows
        .iter()
        .find(|r| r.kind == "etcd")
        .map(|r| r.dbmon_cpu_per_1000);
    let mut md = format!(
        "# Native kinds: CPU per 1,000 polls of one node\n\n{}, one poll every {pace:?}\n\n| kind | dbmon collector, CPU s | vs etcd | Prometheus + exporter, CPU s | dbmon / Prometheus |\n|---|---|---|---|---|\n",
        measure::machine()
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {:.3} | {} | {} | {} |\n",
            r.kind,
            r.dbmon_cpu_per_1000,
            base.map(|b| format!("{:.2}x", r.dbmon_cpu_per_1000 / b))
                .unwrap_or_default(),
            r.prometheus_cpu_per_1000
                .map(|p| format!(
                    "{p:.3} ({})",
                    r.exporter.as_deref().unwrap_or("its own /metrics")
                ))
                .unwrap_or_else(|| "-".into()),
            r.prometheus_cpu_per_1000
                .map(|p| format!("{:.2}x", r.dbmon_cpu_per_1000 / p))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    print!("{md}");
    std::fs::write(args.out.join("kinds.md"), md)?;
    Ok(())
}

/// With two CPUs or more, runs this process again under `taskset` on CPUs
/// 1 and up (its children inherit them; the server alone goes on CPU 0).
/// True when this process is the pinned one.
fn pin_self() -> Result<bool> {
    // Already pinned: this process sees only its own CPUs now.
    if std::env::var_os("DBMON_LOAD_PINNED").is_some() {
        return Ok(true);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || dbmon::local::which("taskset").is_none() {
        eprintln!("dbmon-load: --pin needs two CPUs and taskset; running unpinned");
        return Ok(false);
    }
    let status = std::process::Command::new("taskset")
        .arg("-c")
        .arg(format!("1-{}", cpus - 1))
        .args(std::env::args_os())
        .env("DBMON_LOAD_PINNED", "1")
        .status()
        .context("run taskset")?;
    std::process::exit(status.code().unwrap_or(1));
}

fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s).with_context(|| format!("{s:?} is not a duration"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let pinned = args.pin && pin_self()?;
    let interval = parse_duration(&args.interval)?;
    let window = parse_duration(&args.duration)?;
    let dir = std::env::temp_dir().join(format!("dbmon-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&args.out)?;
    if args.only_kinds {
        kinds_phase(&args, &dir).await?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    if args.only_scale {
        let pki = stack::make_pki(&dir)?;
        let results = report::Results {
            poll_scale: scale_phase(&args, &dir, &pki, pinned).await?,
            ..Default::default()
        };
        let md = scale::markdown(&results);
        std::fs::write(args.out.join("scale.md"), &md)?;
        println!("{md}");
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let dbmon = stack::dbmon_binary()?;
    eprintln!(
        "dbmon-load: {} nodes, {} subscribers, interval {:?}, window {:?}",
        args.nodes, args.subscribers, interval, window
    );

    let pki = stack::make_pki(&dir)?;
    let timeout =
        humantime::format_duration((interval / 2).min(Duration::from_secs(3))).to_string();
    let nodes = stack::start_nodes(args.nodes).await?;
    let ports = stack::Ports::pick();
    let config_for =
        |setup| stack::write_config(&dir, &pki, &ports, &nodes, &args.interval, &timeout, setup);
    let (config, clusters) = config_for(&stack::RUN)?;
    // Fresh servers start empty: with the first one's store they would
    // restore the whole run's history. The viewers phase keeps the run's
    // deep queue; the memory, backpressure and wide fan-out phases run the
    // server as configured by default.
    let (fresh_config, _) = config_for(&stack::FRESH)?;
    let (defaults, _) = config_for(&stack::DEFAULTS)?;
    let server_log = dir.join("server.log");
    let server = stack::spawn_pinned(&dbmon, "server", &config, &server_log, pinned)?;
    stack::wait_listening(ports.collectors, "the server", &server_log).await?;
    let people_url = format!("https://127.0.0.1:{}", ports.people);
    let collector_url = format!("https://127.0.0.1:{}", ports.collectors);

    // Subscribers are people: a viewer signed in with a software passkey.
    let token = stack::sign_in(&people_url, &dir.join("auth"), &pki).await?;
    // The audit subscriber: sequence gaps of the collector, and detection.
    let mut audit = phases::Audit::start(&people_url, &pki, &token).await?;
    let collector = stack::spawn(&dbmon, "collector", &config, &dir.join("collector.log"))?;
    // Prometheus on the same targets, same interval.
    let prom_port = stack::free_port();
    let prometheus = if args.no_prometheus {
        None
    } else {
        stack::start_prometheus(
            &dir,
            &nodes,
            &args.interval,
            &timeout,
            prom_port,
            ports.http,
        )?
    };

    eprintln!("dbmon-load: warming up");
    // Warm up: one interval and a bit, so that every target was polled.
    tokio::time::sleep(interval + Duration::from_secs(3)).await;

    // Detection with no other subscriber: a node stops; how long until the
    // audit subscriber sees it crit.
    let quiet = nodes.ports.len() / 4;
    let quiet_detection = audit.stop_and_wait(&nodes, quiet, interval).await?;
    eprintln!(
        "dbmon-load: node 127.0.0.1:{} stopped with no load; seen after {quiet_detection:?} ms",
        nodes.ports[quiet]
    );

    let subs = readers::Readers::start(&people_url, &pki, &token, args.subscribers, None).await?;
    let mut results = phases::measure(
        phases::Window {
            nodes: &nodes,
            clusters,
            subscribers: &subs,
            audit: &mut audit,
            server: &server,
            collector: &collector,
            prometheus: prometheus.as_ref().map(|p| (p, prom_port)),
            http_port: ports.http,
            interval,
            window,
            state_clusters: args.state_clusters,
        },
        quiet_detection,
    )
    .await?;
    drop(collector);
    drop(prometheus);

    phases::fanout(
        &mut results,
        &collector_url,
        &pki,
        &server,
        ports.http,
        &subs,
        args.fanout_rate,
    )
    .await?;
    subs.stop();

    eprintln!("dbmon-load: badge phase, 32 clients for 10 s");
    let (rate, failed) = phases::badges(&people_url, &pki, &token, "crdb-0").await?;
    results.badges_per_s = rate;
    results.badge_failures = failed;

    eprintln!(
        "dbmon-load: memory phase ({} clusters)",
        args.state_clusters
    );
    // Memory phase, on a fresh server configured by default (so that
    // memory the allocator keeps from the phases before is not counted, nor
    // the run's 65,536-deep broadcast ring): the latest state of many
    // clusters, published directly.
    drop(server);
    stack::wait_closed(ports.collectors).await;
    let state_log = dir.join("server-state.log");
    let server = stack::spawn_pinned(&dbmon, "server", &defaults, &state_log, pinned)?;
    stack::wait_listening(ports.collectors, "the second server", &state_log).await?;
    phases::memory(
        &mut results,
        &server,
        &collector_url,
        &pki,
        args.state_clusters,
    )
    .await?;
    drop(server);
    stack::wait_closed(ports.collectors).await;

    // The viewers phase: the same load seen by `watch` subscribers, then
    // by open dashboards, each on a fresh server.
    if args.viewers > 0 {
        for kind in [phases::Viewer::Watch, phases::Viewer::Dashboard] {
            let name = match kind {
                phases::Viewer::Watch => "watch",
                phases::Viewer::Dashboard => "dashboard",
            };
            eprintln!(
                "dbmon-load: viewers phase, {} {name} viewers, {} reports/s for 20 s",
                args.viewers, args.viewer_rate
            );
            let log = dir.join(format!("server-{name}.log"));
            let server = stack::spawn_pinned(&dbmon, "server", &fresh_config, &log, pinned)?;
            stack::wait_listening(ports.people, "the viewers' server", &log).await?;
            let run = phases::viewers(
                kind,
                &people_url,
                &collector_url,
                &pki,
                &token,
                &server,
                args.viewers,
                args.viewer_rate,
            )
            .await?;
            match kind {
                phases::Viewer::Watch => results.viewers_watch = Some(run),
                phases::Viewer::Dashboard => results.viewers_dashboard = Some(run),
            }
            drop(server);
            stack::wait_closed(ports.people).await;
        }
    }

    // Fan-out phases on fresh servers configured by default.
    let stall = parse_duration(&args.stall)?;
    if !stall.is_zero() || args.wide_subscribers > 0 {
        for phase in ["backpressure", "wide"] {
            if phase == "backpressure" && stall.is_zero()
                || phase == "wide" && args.wide_subscribers == 0
            {
                continue;
            }
            let log = dir.join(format!("server-{phase}.log"));
            let server = stack::spawn_pinned(&dbmon, "server", &defaults, &log, pinned)?;
            stack::wait_listening(ports.people, "a fan-out phase's server", &log).await?;
            let run = scale::Fanout {
                people_url: &people_url,
                collector_url: &collector_url,
                pki: &pki,
                token: &token,
                server: &server,
                http_port: ports.http,
                seq: Default::default(),
            };
            if phase == "backpressure" {
                results.backpressure = Some(
                    run.backpressure(args.subscribers, args.fanout_rate, stall)
                        .await?,
                );
            } else {
                results.wide = run.wide(args.wide_subscribers, &args.wide_rates).await?;
            }
            drop(server);
            stack::wait_closed(ports.people).await;
        }
    }
    if args.scale_nodes > 0 {
        drop(nodes);
        // The run's other results are written even if this phase fails.
        match scale_phase(&args, &dir, &pki, pinned).await {
            Ok(runs) => results.poll_scale = runs,
            Err(e) => eprintln!("dbmon-load: the scale phase failed: {e:#}"),
        }
    }

    results.pinned = pinned;
    report::write_results(&args.out, &results)?;
    if args.kind_polls > 0 {
        kinds_phase(&args, &dir).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
