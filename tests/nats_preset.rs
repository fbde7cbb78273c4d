//! The NATS preset against a real 3-server NATS cluster (Debian's
//! `nats-server`), watched by the real collector and server and followed by
//! a real `dbmon-client watch`: a server dies and comes back.

mod support;

use std::time::Duration;
use support::nats::NatsCluster;
use support::*;

#[test]
fn a_nats_server_dies_and_returns_and_watch_follows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nats = NatsCluster::start(&dir.path().join("nats"), 3);
    let urls = nats.monitor_urls();
    let labels: Vec<String> = nats
        .servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.monitor_port))
        .collect();
    let clusters = format!(
        "  - name: bus\n    preset: nats\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n",
        urls.join(", ")
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let mut watch = stack.watch_json(&["--cluster", "bus"]);

    watch.wait_for(Duration::from_secs(20), "bus healthy, 3 of 3 up", |v| {
        v["type"] == "report"
            && health_of(v) == "healthy"
            && v["nodes_up"] == 3
            && v["nodes_total"] == 3
    });
    watch.wait_for(Duration::from_secs(10), "quorum ok with 3 of 3 in", |v| {
        report_is(v, None, "quorum", "ok") && v["report"]["value"] == 3.0
    });

    // One server dies: it is down, quorum holds with a warning, and the
    // others lose their route to it.
    nats.kill(1);
    let ev = watch.wait_for(Duration::from_secs(10), "the dead server crit", |v| {
        report_is(v, Some(&labels[1]), "up", "crit") && health_of(v) == "degraded"
    });
    let msg = ev["report"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("no answer"), "{ev}");
    let ev = watch.wait_for(Duration::from_secs(10), "quorum warn, 2 of 3 in", |v| {
        report_is(v, None, "quorum", "warn")
    });
    let msg = ev["report"]["message"].as_str().unwrap_or("");
    assert!(msg.starts_with("2 of 3 nodes in; out: "), "{ev}");
    assert!(msg.contains(&labels[1]), "{ev}");
    let ev = watch.wait_for(Duration::from_secs(15), "a survivor has one route", |v| {
        report_is(v, Some(&labels[0]), "routes", "warn")
    });
    assert_eq!(ev["report"]["value"], 1.0, "{ev}");
    assert_eq!(
        ev["report"]["message"], "1 routes (warn: < [NODES] - 1)",
        "{ev}"
    );

    // It comes back: routed again, and the cluster is healthy.
    nats.restart(1);
    nats.wait_routed(Duration::from_secs(30));
    watch.wait_for(Duration::from_secs(20), "bus healthy again", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 3
    });
}
