//! A collector cut off from its server for a minute loses nothing: it keeps
//! what the server has not acknowledged, sends it again in order when the
//! server answers, the server drops what it already had, and a watching
//! client ends up with every report once, in order.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

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
    watch.assert_no_gap_from(1);
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_collectors_connected 1"),
        "{metrics}"
    );
}

/// The largest `field=N` in lines of the collector's log that contain `what`.
fn logged(log: &str, what: &str, field: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| l.split(&format!("{field}=")).nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn wait_logged(log: &dyn Fn() -> String, what: &str, field: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = logged(&log(), what, field);
        if n >= at_least {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {field}>={at_least} in {what:?} lines; collector log:\n{}",
            log()
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn a_cut_off_collector_spills_to_disk_restarts_and_delivers_everything_in_order() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!(
        "  - name: spill\n    kind: etcd\n    interval: 100ms\n    timeout: 100ms\n    max_backoff: 100ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    );
    let mut stack = start_server(dir.path(), &cluster);
    // Little memory, so that nearly all of the outage goes to disk.
    let config = dir.path().join("dbmon.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "  id: test-collector\n",
        "  id: test-collector\n  buffer_reports: 20\n  spill_max_size: 8MiB\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let spill = dir.path().join("spill");

    let mut watch = stack.watch_json(&["--cluster", "spill"]);
    watch.wait_for(Duration::from_secs(20), "the watcher is subscribed", |v| {
        v["type"] == "snapshot"
    });
    stack.start_collector();
    watch.wait_for(Duration::from_secs(20), "reports flowing", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= 5)
    });

    let server = stack.server.child.id();
    kill("-STOP", server);
    let first = stack.collector.take().unwrap();
    let log1 = || first.log_text();
    wait_logged(&log1, "cannot stream reports to the server", "on_disk", 100);
    // A clean stop in mid-outage keeps what memory held on disk too.
    kill("-TERM", first.child.id());
    let kept = wait_logged(&log1, "kept on disk for the next start", "reports", 1);
    let mut segments = 0;
    for entry in std::fs::read_dir(&spill).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        if path.extension().is_some_and(|e| e == "seg") {
            segments += 1;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
    assert!(segments > 0);
    assert_eq!(
        std::fs::metadata(&spill).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // The next start takes over every report, and goes on buffering.
    std::fs::rename(
        dir.path().join("collector.log"),
        dir.path().join("collector.1.log"),
    )
    .unwrap();
    stack.start_collector();
    let log2 = || stack.collector.as_ref().unwrap().log_text();
    let taken = wait_logged(&log2, "took over reports", "reports", 1);
    assert_eq!(taken, kept, "kept {kept} at the stop, took over {taken}");
    wait_logged(
        &log2,
        "cannot stream reports to the server",
        "buffered",
        kept + 20,
    );
    assert!(
        log2().contains("same_epoch=true"),
        "the clean stop's numbering goes on: {}",
        log2()
    );
    // A reload in mid-outage (the cluster's settings change, so its agent
    // restarts) leaves the buffer and the spill as they are.
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "    max_backoff: 100ms\n",
        "    max_backoff: 100ms\n    labels: {reloaded: \"yes\"}\n",
    );
    std::fs::write(&config, yaml).unwrap();
    wait_until(Duration::from_secs(10), "the collector reloads", || {
        log2().contains("configuration reloaded") && log2().contains("changed spill")
    });
    let at_reload = logged(&log2(), "cannot stream reports to the server", "buffered");
    let outage = wait_logged(
        &log2,
        "cannot stream reports to the server",
        "buffered",
        at_reload + 20,
    );
    kill("-CONT", server);
    let healed = std::time::SystemTime::now() + Duration::from_secs(1);
    eprintln!("{kept} reports kept over the restart; {outage} buffered at the end of the outage");

    // Everything arrives, once: the observations of the whole outage with
    // no hole longer than the restart. Reports arrive in order, so one
    // observed after the healing comes after all the buffered ones.
    watch.wait_for(
        Duration::from_secs(60),
        "the spilled reports, then one observed after the healing",
        |v| {
            v["report"]["observed_at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t >= healed)
        },
    );
    let reports: Vec<&serde_json::Value> = watch
        .seen
        .iter()
        .filter(|v| v["type"] == "report")
        .map(|v| &v["report"])
        .collect();
    // A clean stop keeps the epoch and the numbering: across the restart
    // the sequence runs on from 1 with no gap and no repeat (the reports
    // the stopped server had taken in are not taken twice).
    watch.assert_no_gap_from(1);
    let mut up: Vec<u128> = reports
        .iter()
        .filter(|r| r["check"] == "up")
        .filter_map(|r| humantime::parse_rfc3339(r["observed_at"].as_str()?).ok())
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .collect();
    up.sort();
    up.dedup();
    let widest = up.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest < 3000,
        "{widest} ms without an observation: reports were lost"
    );
}
