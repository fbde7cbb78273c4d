//! The results of a run: JSON, Markdown and an SVG of delivery latency.

use anyhow::Result;
use std::path::Path;

#[derive(serde::Serialize, Default)]
pub struct Results {
    pub machine: String,
    pub date: String,
    pub nodes: usize,
    pub clusters: usize,
    pub subscribers: usize,
    pub interval_s: f64,
    pub window_s: f64,
    pub polls: f64,
    pub collector_cpu_s: f64,
    pub collector_cpu_s_per_1000_polls: f64,
    pub collector_peak_rss_mb: f64,
    pub server_cpu_s: f64,
    pub server_peak_rss_mb: f64,
    pub ingested: u64,
    pub ingest_per_s: f64,
    pub deliveries: u64,
    pub delivery_p50_ms: u64,
    pub delivery_p99_ms: u64,
    pub delivery_max_ms: u64,
    pub resyncs: u64,
    pub lost_reports: u64,
    pub detection_ms: Option<u64>,
    pub detection_quiet_ms: Option<u64>,
    pub fanout_rate: f64,
    pub fanout_expected: u64,
    pub fanout_deliveries: u64,
    pub fanout_p50_ms: u64,
    pub fanout_p99_ms: u64,
    pub fanout_max_ms: u64,
    pub fanout_server_cpu_s: f64,
    pub resyncs_after_fanout: u64,
    /// The server's own share of delivery in the polling window and the
    /// fan-out phase.
    pub server_share: crate::measure::Share,
    pub fanout_server_share: crate::measure::Share,
    /// Each CPU's busy share during the polling window and the fan-out
    /// phase, and this load tool's own CPU seconds (the simulated nodes,
    /// the subscribers, the publisher) in each.
    pub cpu_busy: Vec<f64>,
    pub fanout_cpu_busy: Vec<f64>,
    pub load_tool_cpu_s: f64,
    pub fanout_load_tool_cpu_s: f64,
    /// The server ran on CPU 0, everything else on the others.
    pub pinned: bool,
    /// `/badge/NAME.svg` with a badge token, 32 clients, after the run.
    pub badges_per_s: f64,
    pub badge_failures: u64,
    pub state_clusters: usize,
    pub server_rss_idle_mb: f64,
    pub server_rss_with_state_mb: f64,
    pub prometheus: Option<PromResults>,
    /// The viewers phase: `watch` subscribers and open dashboards, each on
    /// a fresh server under the same published load.
    pub viewers_watch: Option<crate::phases::ViewerRun>,
    pub viewers_dashboard: Option<crate::phases::ViewerRun>,
    /// Fan-out with the default queue, without and with 1 % slow readers.
    pub backpressure: Option<crate::scale::Backpressure>,
    /// Fan-out to 10,000 subscribers, at each rate.
    pub wide: Vec<crate::scale::FanoutRun>,
    /// The collector polling 1,000 and 10,000 nodes.
    pub poll_scale: Vec<crate::scale::PollScale>,
}

#[derive(serde::Serialize, Default)]
pub struct PromResults {
    pub version: String,
    pub cpu_s: f64,
    pub cpu_s_per_1000_scrapes: f64,
    pub peak_rss_mb: f64,
    pub evaluation_interval_s: f64,
    pub detection_ms: Option<u64>,
    pub collector_cpu_ratio: f64,
    pub collector_rss_ratio: f64,
    /// Series of `dbmon_cluster_health` Prometheus read from the server's
    /// own `/metrics` in the same run (None: it could not scrape them).
    pub dbmon_health_series: Option<u64>,
}

pub fn write_results(out: &Path, r: &Results) -> Result<()> {
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
    if let Some(p) = &r.prometheus {
        md.push_str(&match p.dbmon_health_series {
            Some(n) => format!(
                "\nPrometheus also scraped the server's own `/metrics` in the same run: {n} `dbmon_cluster_health` series.\n"
            ),
            None => "\nPrometheus did not return dbmon's own `dbmon_cluster_health` series.\n".to_string(),
        });
    }
    let (polling, polling_queue) = r.server_share.text();
    let (fanout, fanout_queue) = r.fanout_server_share.text();
    md.push_str(&format!(
        "\nThe server's own share, p50 / p99 in ms (interpolated in its buckets): to each subscriber's stream (`dbmon_watch_fanout_seconds`, a report in to its message written, which waits for room on the subscriber's connection) {polling} during the polling run, {fanout} in the fan-out phase; to each subscriber's queue (`dbmon_watch_dispatch_seconds`, the server's scheduling alone) {polling_queue} and {fanout_queue}; {}.\n",
        if r.pinned {
            "the server pinned to CPU 0, the load generator, collector and Prometheus to the others"
        } else {
            "every process shares every CPU"
        }
    ));
    let busy = |b: &[f64]| {
        b.iter()
            .enumerate()
            .map(|(i, f)| format!("CPU {i} {:.0} %", f * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    md.push_str(&format!(
        "\nThe machine, busy: {} during the polling window (CPU seconds: server {:.1}, collector {:.1}, Prometheus {}, this load tool's nodes and subscribers {:.1}); {} in the fan-out phase (server {:.1}, the load tool {:.1}).\n",
        busy(&r.cpu_busy),
        r.server_cpu_s,
        r.collector_cpu_s,
        opt(p.map(|p| format!("{:.1}", p.cpu_s))),
        r.load_tool_cpu_s,
        busy(&r.fanout_cpu_busy),
        r.fanout_server_cpu_s,
        r.fanout_load_tool_cpu_s,
    ));
    md.push_str(&format!(
        "\nBadges: {:.0} `/badge/NAME.svg` per second with a badge token (32 HTTPS clients on kept connections, 10 s; each request verifies the token and derives the health), {} failed.\n",
        r.badges_per_s, r.badge_failures
    ));
    if let (Some(w), Some(d)) = (&r.viewers_watch, &r.viewers_dashboard) {
        md.push_str(&viewers_table(w, d));
    }
    md.push_str(&crate::scale::markdown(r));
    std::fs::write(out.join("load.md"), &md)?;
    std::fs::write(out.join("latency.svg"), svg(r))?;
    println!("{md}");
    println!("results: {}", out.display());
    Ok(())
}

/// The viewers phase: watchers against dashboards, with the ratio.
fn viewers_table(w: &crate::phases::ViewerRun, d: &crate::phases::ViewerRun) -> String {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let grown = |r: &crate::phases::ViewerRun| r.server_rss_after_mb - r.server_rss_idle_mb;
    let mut md = format!(
        "\nViewers: {} `watch` subscribers, then {} open dashboards (`/live`, the overview), each on a fresh server, {:.0} reports/s for 20 s (100 clusters of 3 nodes):\n\n\
         | measure | watch | dashboards | dashboards / watch |\n|---|---|---|---|\n",
        w.viewers, d.viewers, w.rate
    );
    md.push_str(&format!(
        "| server CPU, s | {:.2} | {:.2} | {:.2}x |\n",
        w.server_cpu_s,
        d.server_cpu_s,
        ratio(d.server_cpu_s, w.server_cpu_s)
    ));
    md.push_str(&format!(
        "| server RSS idle / connected / after, MB | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.2}x (growth) |\n",
        w.server_rss_idle_mb,
        w.server_rss_connected_mb,
        w.server_rss_after_mb,
        d.server_rss_idle_mb,
        d.server_rss_connected_mb,
        d.server_rss_after_mb,
        ratio(grown(d), grown(w))
    ));
    md.push_str(&format!(
        "| deliveries (reports / tiles) | {} | {} | |\n| delivery p50 / p99, ms | {} / {} | {} / {} | |\n| connecting all, s | {:.1} | {:.1} | |\n| viewers that fell off | {} | {} | |\n",
        w.deliveries, d.deliveries, w.p50_ms, w.p99_ms, d.p50_ms, d.p99_ms, w.connect_s, d.connect_s, w.failed, d.failed
    ));
    md
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
