//! A real 3-member etcd cluster watched by the real collector and server,
//! followed by a real `dbmon-client watch`: members die and come back, and
//! the client sees each change within two poll intervals.

mod support;

use std::time::Duration;
use support::*;

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);

/// Two poll intervals, the request timeout, and the interval's jitter.
fn two_polls() -> Duration {
    INTERVAL * 2 + TIMEOUT + INTERVAL / 5
}

#[test]
fn members_die_and_return_and_watch_follows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).expect("start etcd");
    etcd.wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    let nodes: Vec<String> = etcd.client_urls();
    let labels: Vec<String> = etcd
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    let clusters = format!(
        "  - name: e2e-etcd\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n",
        nodes.join(", ")
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let mut watch = stack.watch_json(&["--cluster", "e2e-etcd"]);

    // All members ok.
    watch.wait_for(
        Duration::from_secs(20),
        "cluster healthy with 3/3 nodes",
        |v| {
            v["type"] == "report"
                && health_of(v) == "healthy"
                && v["nodes_up"] == 3
                && v["nodes_total"] == 3
        },
    );

    // One member dies: that node crit, the cluster degraded.
    etcd.kill(0);
    let ev = watch.wait_for(
        two_polls(),
        "killed member crit and cluster degraded",
        |v| report_is(v, Some(&labels[0]), "up", "crit") && health_of(v) == "degraded",
    );
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no answer"),
        "the reason is given: {ev}"
    );

    // A second one dies: no majority, the cluster is unavailable.
    etcd.kill(1);
    watch.wait_for(
        two_polls(),
        "cluster unavailable after the second death",
        |v| v["type"] == "report" && health_of(v) == "unavailable",
    );
    let ev = watch.wait_for(two_polls(), "quorum crit", |v| {
        report_is(v, None, "quorum", "crit")
    });
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("1 of 3 members answer"),
        "{ev}"
    );

    // Both come back: healthy again.
    etcd.restart(0).expect("restart member 1");
    etcd.restart(1).expect("restart member 2");
    watch.wait_for(Duration::from_secs(30), "cluster healthy again", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 3
    });

    // The unary view agrees.
    let out = stack.client(&["status", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status[0]["cluster"], "e2e-etcd");
    assert_eq!(status[0]["nodes_up"], 3, "{status}");
}
