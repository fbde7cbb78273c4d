//! Phases on fresh servers beyond the run's defaults: backpressure (a
//! fan-out baseline, then the same with 1 % of the subscribers reading
//! slowly), fan-out to 10,000 subscribers, and the collector polling
//! 1,000 and then 10,000 nodes.

use crate::measure::{mb, usage};
use crate::readers::Readers;
use crate::stack::Guard;
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One fan-out measured on a fresh server.
#[derive(serde::Serialize, Default, Clone)]
pub struct FanoutRun {
    pub subscribers: usize,
    pub slow: usize,
    pub rate: f64,
    pub connect_s: f64,
    /// Of the prompt subscribers.
    pub expected: u64,
    pub deliveries: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    pub resyncs: u64,
    pub silent_gaps: u64,
    pub ended: u64,
    /// The server's own share, to the subscribers' streams and queues.
    pub server_share: crate::measure::Share,
    pub server_cpu_s: f64,
    pub server_rss_mb: f64,
    /// The slow subscribers: reports received, resyncs, silent gaps; how
    /// many of them came to hold the last report sent, and how long after
    /// the prompt ones had everything.
    pub slow_received: u64,
    pub slow_resyncs: u64,
    pub slow_silent_gaps: u64,
    pub slow_caught_up: usize,
    pub slow_drain_s: f64,
}

/// The same fan-out twice on one fresh server with the default queue: the
/// prompt subscribers alone, then with 1 % more reading slowly.
#[derive(serde::Serialize, Default, Clone)]
pub struct Backpressure {
    pub baseline: FanoutRun,
    pub with_slow: FanoutRun,
    /// How long each published, and the stalled ones stopped reading.
    pub window_s: f64,
}

/// What a fan-out phase needs of the run.
pub struct Fanout<'a> {
    pub people_url: &'a str,
    pub collector_url: &'a str,
    pub pki: &'a Path,
    pub token: &'a str,
    pub server: &'a Guard,
    pub http_port: u16,
    /// The last sequence number published to this server.
    pub seq: AtomicU64,
}

impl Fanout<'_> {
    /// `rate` reports per second for 20 s, straight to the server, as
    /// clusters `PREFIX-N`; deliveries to `prompt` waited for (at most
    /// 10 s more).
    async fn run(
        &self,
        prompt: &Readers,
        slow: Option<(&Readers, tokio::sync::watch::Sender<bool>)>,
        prefix: &str,
        rate: u64,
        window: Duration,
    ) -> Result<FanoutRun> {
        let (slow, release) = match slow {
            Some((r, tx)) => (Some(r), Some(tx)),
            None => (None, None),
        };
        prompt.reset();
        if let Some(s) = slow {
            s.reset();
        }
        let pid = self.server.0.id();
        let (cpu0, _, _) = usage(pid)?;
        let share0 = crate::measure::ServerHists::read(self.http_port).await;
        let started = Instant::now();
        let after = self.seq.load(Ordering::Relaxed);
        let sent = crate::phases::publish_steady(
            self.collector_url,
            self.pki,
            prefix,
            rate,
            window,
            after,
        )
        .await?;
        let last = after + sent;
        self.seq.store(last, Ordering::Relaxed);
        let rate = sent as f64 / started.elapsed().as_secs_f64();
        let expected = sent * prompt.n as u64;
        crate::measure::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            prompt.hist.count() >= expected
        })
        .await;
        let (cpu1, _, rss) = usage(pid)?;
        let share = crate::measure::ServerHists::read(self.http_port)
            .await
            .since(&share0);
        // The stalled ones read on, through what is queued for them and
        // their resyncs, until each holds the last report (at most 90 s).
        let drain = Instant::now();
        if let Some(tx) = release {
            let _ = tx.send(false);
        }
        if let Some(s) = slow {
            crate::measure::wait_until(Duration::from_secs(90), Duration::from_millis(100), || {
                s.holding(last) >= s.n
            })
            .await;
        }
        let h = &prompt.hist;
        Ok(FanoutRun {
            subscribers: prompt.n,
            slow: slow.map_or(0, |s| s.n),
            rate,
            expected,
            deliveries: h.count(),
            p50_ms: h.percentile(0.50),
            p99_ms: h.percentile(0.99),
            max_ms: h.max.load(Ordering::Relaxed),
            resyncs: prompt.resyncs.load(Ordering::Relaxed),
            silent_gaps: prompt.gaps.load(Ordering::Relaxed),
            ended: prompt.ended.load(Ordering::Relaxed)
                + slow.map_or(0, |s| s.ended.load(Ordering::Relaxed)),
            server_share: share,
            server_cpu_s: cpu1 - cpu0,
            server_rss_mb: mb(rss),
            slow_received: slow.map_or(0, |s| s.hist.count()),
            slow_resyncs: slow.map_or(0, |s| s.resyncs.load(Ordering::Relaxed)),
            slow_silent_gaps: slow.map_or(0, |s| s.gaps.load(Ordering::Relaxed)),
            slow_caught_up: slow.map_or(0, |s| s.holding(last)),
            slow_drain_s: drain.elapsed().as_secs_f64(),
            ..Default::default()
        })
    }

    /// Backpressure: `n` prompt subscribers at `rate` for `window`, then the
    /// same with `n / 100` (at least one) more that stop reading for the
    /// whole window and then read on.
    pub async fn backpressure(
        &self,
        n: usize,
        rate: u64,
        window: Duration,
    ) -> Result<Backpressure> {
        let started = Instant::now();
        let prompt = Readers::start(self.people_url, self.pki, self.token, n, None).await?;
        let connect_s = started.elapsed().as_secs_f64();
        eprintln!(
            "dbmon-load: backpressure, {n} prompt subscribers, {rate} reports/s for {window:?}"
        );
        let mut baseline = self.run(&prompt, None, "calm", rate, window).await?;
        baseline.connect_s = connect_s;
        let slow_n = (n / 100).max(1);
        let (hold, held) = tokio::sync::watch::channel(true);
        let slow =
            Readers::start(self.people_url, self.pki, self.token, slow_n, Some(held)).await?;
        eprintln!("dbmon-load: backpressure, and {slow_n} stalled ones");
        let with_slow = self
            .run(&prompt, Some((&slow, hold)), "stall", rate, window)
            .await?;
        prompt.stop();
        slow.stop();
        Ok(Backpressure {
            baseline,
            with_slow,
            window_s: window.as_secs_f64(),
        })
    }

    /// `n` subscribers (10,000 by default), 20 s at each of `rates`.
    pub async fn wide(&self, n: usize, rates: &[u64]) -> Result<Vec<FanoutRun>> {
        let started = Instant::now();
        let readers = Readers::start(self.people_url, self.pki, self.token, n, None).await?;
        let connect_s = started.elapsed().as_secs_f64();
        let mut runs = Vec::new();
        for &rate in rates {
            eprintln!(
                "dbmon-load: {n} subscribers (connected in {connect_s:.1} s), {rate} reports/s for 20 s"
            );
            let mut run = self
                .run(&readers, None, "wide", rate, Duration::from_secs(20))
                .await?;
            run.connect_s = connect_s;
            runs.push(run);
        }
        readers.stop();
        Ok(runs)
    }
}

/// The collector polling `nodes` simulated nodes on a fresh server.
#[derive(serde::Serialize, Default, Clone)]
pub struct PollScale {
    pub nodes: usize,
    pub interval_s: f64,
    pub window_s: f64,
    pub polls: f64,
    pub cpu_s: f64,
    pub cpu_s_per_1000_polls: f64,
    pub peak_rss_mb: f64,
}

/// Starts `n` simulated nodes, a fresh server and a collector polling them
/// every `interval`; after one interval and a bit, measures the
/// collector for `window`.
pub async fn poll_scale(
    dir: &Path,
    pki: &Path,
    n: usize,
    interval: Duration,
    window: Duration,
    pinned: bool,
) -> Result<PollScale> {
    let dbmon = crate::stack::dbmon_binary()?;
    let nodes = crate::stack::start_nodes(n).await?;
    let ports = crate::stack::Ports::pick();
    let interval_text = humantime::format_duration(interval).to_string();
    let file = format!("dbmon-scale-{n}.yaml");
    let (config, _) = crate::stack::write_config(
        dir,
        pki,
        &ports,
        &nodes,
        &interval_text,
        "3s",
        &crate::stack::Setup {
            store: Some("memory"),
            queue: None,
            file: &file,
        },
    )?;
    let log = dir.join(format!("server-scale-{n}.log"));
    let server = crate::stack::spawn_pinned(&dbmon, "server", &config, &log, pinned)?;
    crate::stack::wait_listening(ports.collectors, "the scale phase's server", &log).await?;
    let collector = crate::stack::spawn(
        &dbmon,
        "collector",
        &config,
        &dir.join(format!("collector-scale-{n}.log")),
    )?;
    // Every node polled once (the collector spreads its clusters' first
    // polls over the interval).
    tokio::time::sleep(interval + Duration::from_secs(3)).await;
    let pid = collector.0.id();
    let (c0, _, _) = usage(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (c1, hwm, _) = usage(pid)?;
    drop(collector);
    drop(server);
    drop(nodes);
    crate::stack::wait_closed(ports.collectors).await;
    let polls = n as f64 * elapsed / interval.as_secs_f64();
    Ok(PollScale {
        nodes: n,
        interval_s: interval.as_secs_f64(),
        window_s: elapsed,
        polls,
        cpu_s: c1 - c0,
        cpu_s_per_1000_polls: (c1 - c0) / polls * 1000.0,
        peak_rss_mb: mb(hwm),
    })
}

/// This module's phases in the run's Markdown.
pub fn markdown(r: &crate::report::Results) -> String {
    let row = |name: &str, f: &FanoutRun| {
        let (to_stream, to_queue) = f.server_share.text();
        format!(
            "| {name} | {} | {:.0} | {} of {} | {} / {} / {} | {} | {} | {:.1} | {:.0} | {} | {} |\n",
            f.subscribers,
            f.rate,
            f.deliveries,
            f.expected,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            to_stream,
            to_queue,
            f.server_cpu_s,
            f.server_rss_mb,
            f.resyncs,
            f.silent_gaps
        )
    };
    let mut md = String::new();
    if r.backpressure.is_some() || !r.wide.is_empty() {
        md.push_str("\n| fan-out on a fresh server (default queue) | prompt subscribers | reports/s | deliveries | end to end p50 / p99 / max, ms | server's own to the stream p50 / p99, ms | to the queue p50 / p99, ms | server CPU s | server RSS MB | resyncs | silent gaps |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    if let Some(b) = &r.backpressure {
        md.push_str(&row("baseline", &b.baseline));
        md.push_str(&row(
            &format!("with stalled subscribers ({})", b.with_slow.slow),
            &b.with_slow,
        ));
    }
    for w in &r.wide {
        md.push_str(&row(
            &format!(
                "{} subscribers (connected in {:.1} s)",
                w.subscribers, w.connect_s
            ),
            w,
        ));
    }
    if let Some(b) = &r.backpressure {
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        md.push_str(&format!(
            "\nThe {} stalled subscribers (no reading for the {:.0} s of publishing, then reading on) received {} reports live, were resynchronized {} times and saw {} silent gaps; {} of them held the last report {:.1} s after the prompt ones had everything; the prompt ones' p99 with them is {:.2}x of the baseline's.\n",
            b.with_slow.slow,
            b.window_s,
            b.with_slow.slow_received,
            b.with_slow.slow_resyncs,
            b.with_slow.slow_silent_gaps,
            b.with_slow.slow_caught_up,
            b.with_slow.slow_drain_s,
            ratio(b.with_slow.p99_ms, b.baseline.p99_ms)
        ));
    }
    if !r.poll_scale.is_empty() {
        md.push_str("\n| collector polling | interval | polls in window | CPU s per 1,000 polls | peak RSS MB |\n|---|---|---|---|---|\n");
        for p in &r.poll_scale {
            md.push_str(&format!(
                "| {} nodes | {} s | {:.0} | {:.3} | {:.1} |\n",
                p.nodes, p.interval_s, p.polls, p.cpu_s_per_1000_polls, p.peak_rss_mb
            ));
        }
        if let [a, b] = r.poll_scale.as_slice() {
            let per_k = (b.peak_rss_mb - a.peak_rss_mb) / ((b.nodes - a.nodes) as f64 / 1000.0);
            md.push_str(&format!(
                "\nSlope: {per_k:.1} MB of peak RSS per 1,000 more nodes; CPU per poll at {} nodes is {:.2}x of that at {}.\n",
                b.nodes,
                b.cpu_s_per_1000_polls / a.cpu_s_per_1000_polls.max(f64::EPSILON),
                a.nodes
            ));
        }
    }
    md
}
