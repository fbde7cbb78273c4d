//! A collector cut off from its server for a minute loses nothing: it keeps
//! what the server has not acknowledged, sends it again in order when the
//! server answers, the server drops what it already had, and a watching
//! client ends up with every report once, in order.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn kill(sig: &str, pid: u32) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// The largest `buffered=N` the collector logged while it could not reach the server.
fn buffered(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("cannot stream reports to the server"))
        .filter_map(|l| l.split("buffered").nth(1))
        .filter_map(|r| {
            r.trim_start_matches(|c: char| !c.is_ascii_digit())
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_minute_cut_off_loses_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!(
        "  - name: cut\n    kind: etcd\n    interval: 300ms\n    timeout: 200ms\n    max_backoff: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    );
    let mut stack = start_server(dir.path(), &cluster);
    let mut watch = stack.watch_json(&["--cluster", "cut"]);
    watch.wait_for(Duration::from_secs(20), "the watcher is subscribed", |v| {
        v["type"] == "snapshot"
    });
    stack.start_collector();
    watch.wait_for(Duration::from_secs(20), "reports flowing", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= 5)
    });

    // The server stops answering (SIGSTOP: from outside, a dead link).
    let server = stack.server.child.id();
    kill("-STOP", server);
    let collector_log = || stack.collector.as_ref().unwrap().log_text();
    // Two reports per poll every 300 ms: 400 buffered is about a minute.
    let waited = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while buffered(&collector_log()) < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "no minute of buffered reports; collector log:\n{}",
            collector_log()
        );
        std::thread::park_timeout(Duration::from_millis(200));
    }
    kill("-CONT", server);
    let held = buffered(&collector_log());
    eprintln!(
        "cut off for {:?}; {held} reports buffered",
        waited.elapsed()
    );

    // Everything arrives: the watcher's sequence runs on without a gap.
    let target = held + 20;
    watch.wait_for(
        Duration::from_secs(60),
        "the buffered reports and new ones",
        |v| v["report"]["seq"].as_u64().is_some_and(|s| s >= target),
    );
    let seqs: Vec<u64> = watch
        .seen
        .iter()
        .filter(|v| v["type"] == "report")
        .filter_map(|v| v["report"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs[0], 1);
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a repeat: ... {:?} ...", w);
    }
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_collectors_connected 1"),
        "{metrics}"
    );
}
