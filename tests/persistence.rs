//! The embedded store: a server killed with SIGKILL comes back with its
//! reports, the collector replays what was not yet on disk, and a watching
//! client resumes without a gap.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::time::Duration;
use support::*;

fn cluster(name: &str) -> String {
    format!(
        "  - name: {name}\n    kind: etcd\n    interval: 300ms\n    timeout: 200ms\n    max_backoff: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    )
}

#[test]
fn a_killed_server_restarts_with_its_reports_and_the_watch_has_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = start_server(dir.path(), &cluster("crash"));
    let mut watch = stack.watch_json(&["--cluster", "crash"]);
    watch.wait_for(Duration::from_secs(20), "the watcher is subscribed", |v| {
        v["type"] == "snapshot"
    });
    stack.start_collector();
    watch.wait_for(Duration::from_secs(20), "reports flowing", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= 10)
    });

    stack.crash_and_restart_server();
    let log = stack.server_log();
    assert!(log.contains("reports restored from the store"), "{log}");

    // The collector reconnects and replays; the watcher resumes.
    let last_before: u64 = watch
        .seen
        .iter()
        .filter_map(|v| v["report"]["seq"].as_u64())
        .max()
        .unwrap();
    let target = last_before + 15;
    watch.wait_for(Duration::from_secs(30), "reports after the restart", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= target)
    });
    let mut seqs: Vec<u64> = watch
        .seen
        .iter()
        .filter_map(|v| v["report"]["seq"].as_u64())
        .collect();
    // Reports the server had not stored when it died come again (the
    // collector still held them): at least once, never a gap.
    seqs.dedup();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted[0], 1, "{seqs:?}");
    for w in sorted.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in {seqs:?}");
    }
    assert!(*sorted.last().unwrap() >= target);
}

#[test]
fn a_restarted_server_serves_what_it_stored_before_any_collector_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = start_server(dir.path(), &cluster("kept"));
    stack.start_collector();
    wait_until(Duration::from_secs(20), "reports of kept", || {
        let out = stack.client(&["get", "cluster", "kept", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["history"].as_array().is_some_and(|h| h.len() >= 6)
    });
    // No collector any more: whatever the server shows next comes from disk.
    stack.collector = None;
    let before: serde_json::Value = serde_json::from_slice(
        &stack
            .client(&["get", "cluster", "kept", "-o", "json"])
            .stdout,
    )
    .unwrap();
    stack.crash_and_restart_server();
    let after: serde_json::Value = serde_json::from_slice(
        &stack
            .client(&["get", "cluster", "kept", "-o", "json"])
            .stdout,
    )
    .unwrap_or_else(|e| panic!("{e}; server log:\n{}", stack.server_log()));
    assert_eq!(
        after["checks"], before["checks"],
        "the latest state survived"
    );
    let n = |v: &serde_json::Value| v["history"].as_array().map_or(0, |h| h.len());
    assert!(
        n(&after) >= n(&before),
        "history: {} before, {} after",
        n(&before),
        n(&after)
    );
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_store_write_errors_total 0"),
        "{metrics}"
    );
}
