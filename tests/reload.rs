//! The collector reloads its clusters without a restart, under a live
//! `watch`: a cluster added, one removed, one changed, a broken file
//! refused (the running clusters stay), and SIGHUP alone reloading. The
//! stream to the server never drops: the collector's sequence has no gap.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;
use support::*;

/// `GET path` on a loopback port; the whole answer.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn etcd_cluster(name: &str, urls: &[String]) -> String {
    format!(
        "  - name: {name}\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n",
        urls.join(", ")
    )
}

/// etcd's `/health` watched as a YAML-defined cluster.
fn http_cluster(name: &str, urls: &[String], extra_check: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n    requests:\n      health: {{path: /health, format: json}}\n    checks:\n      up: {{request: health, crit: '[BODY].health != \"true\"'}}\n{extra_check}",
        urls.join(", ")
    )
}

#[test]
fn clusters_are_added_removed_changed_and_a_broken_file_refused_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    let urls = etcd.client_urls();
    let mut stack = start_server(dir.path(), &etcd_cluster("alpha", &urls));
    // The collector answers /healthz; its part of the file gains the port.
    let path = dir.path().join("dbmon.yaml");
    let health_port = free_port();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "collector:\n",
        &format!("collector:\n  http_listen: 127.0.0.1:{health_port}\n"),
        1,
    );
    std::fs::write(&path, &text).unwrap();
    let head = text.split("clusters:\n").next().unwrap().to_string() + "clusters:\n";
    let write = |clusters: &str| std::fs::write(&path, format!("{head}{clusters}")).unwrap();

    let mut watch = stack.watch_json(&[]);
    stack.start_collector();
    let from = |v: &serde_json::Value, cluster: &str| {
        v["type"] == "report" && v["report"]["cluster"] == cluster
    };
    watch.wait_for(Duration::from_secs(20), "alpha reports", |v| {
        from(v, "alpha")
    });
    let healthz = || get(health_port, "/healthz");
    assert!(!healthz().contains("configuration"), "{}", healthz());

    // Added.
    write(&(etcd_cluster("alpha", &urls) + &http_cluster("beta", &urls, "")));
    watch.wait_for(Duration::from_secs(10), "beta reports once added", |v| {
        from(v, "beta") && v["report"]["check"] == "up" && v["report"]["status"] == "ok"
    });
    wait_until(
        Duration::from_secs(5),
        "healthz says beta was added",
        || healthz().contains("reloaded at") && healthz().contains("added beta"),
    );

    // Removed and changed at once: alpha goes, beta polls every 2s and
    // gains a check.
    write(
        &http_cluster(
            "beta",
            &urls,
            "      fast: {request: health, value: \"[RESPONSE_TIME]\", warn: \"> 1s\"}\n",
        )
        .replace("interval: 1s", "interval: 2s"),
    );
    wait_until(
        Duration::from_secs(5),
        "healthz says alpha removed, beta changed",
        || {
            let h = healthz();
            h.contains("removed alpha") && h.contains("changed beta")
        },
    );
    for _ in 0..2 {
        watch.wait_for(Duration::from_secs(10), "beta's new check", |v| {
            from(v, "beta") && v["report"]["check"] == "fast"
        });
    }
    // Two polls of beta later, nothing more from alpha.
    let mark = watch.seen.len();
    for _ in 0..2 {
        watch.wait_for(Duration::from_secs(10), "beta's new check again", |v| {
            from(v, "beta") && v["report"]["check"] == "fast"
        });
    }
    assert!(
        !watch.seen[mark..].iter().any(|v| from(v, "alpha")),
        "alpha still reports after its removal"
    );

    // A broken file is refused where it is wrong; beta goes on.
    write(&http_cluster("beta", &urls, "").replace("interval: 1s", "interval: soon"));
    wait_until(
        Duration::from_secs(5),
        "healthz says the reload was refused",
        || healthz().contains("refused"),
    );
    let h = healthz();
    assert!(
        h.contains("dbmon.yaml:") && h.contains("clusters[0].interval: \"soon\" is not a duration"),
        "{h}"
    );
    let log = stack.collector.as_ref().unwrap().log_text();
    assert!(log.contains("configuration not reloaded"), "{log}");
    for _ in 0..2 {
        watch.wait_for(Duration::from_secs(10), "beta still reports", |v| {
            from(v, "beta") && v["report"]["check"] == "fast"
        });
    }

    // SIGHUP alone: a good file whose modification time did not change is
    // read on the signal.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    write(&(etcd_cluster("alpha", &urls) + &http_cluster("beta", &urls, "")));
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    let pid = stack.collector.as_ref().unwrap().child.id();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    watch.wait_for(Duration::from_secs(10), "alpha back after SIGHUP", |v| {
        from(v, "alpha")
    });
    wait_until(
        Duration::from_secs(5),
        "healthz says alpha was added",
        || healthz().contains("added alpha"),
    );

    // One stream all along: every report numbered, none missing.
    watch.assert_no_gap_from(1);
    // ... on one connection: it was opened once and never reopened.
    let log = stack.collector.as_ref().unwrap().log_text();
    assert_eq!(
        log.matches("streaming reports to the server").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("closed the report stream"), "{log}");
}

/// The server reloads its alerting sections, assignments and login
/// lifetime on a file change: alerting that was off starts and notifies a
/// receiver added by the reload; a broken file is refused and said so.
#[test]
fn the_server_reloads_alerting_and_refuses_a_broken_file() {
    use support::receivers::Hook;
    let dir = tempfile::tempdir().unwrap();
    // Nothing answers there: the cluster is down, which a rule will see.
    let cluster = format!(
        "  - name: gone\n    kind: etcd\n    interval: 1s\n    timeout: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    );
    let mut stack = start_server(dir.path(), &cluster);
    stack.start_collector();
    let path = dir.path().join("dbmon.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Nothing said about reloads before the first.
    assert!(!stack.http_get("/healthz").contains("configuration"));
    wait_until(Duration::from_secs(20), "gone is reported", || {
        String::from_utf8_lossy(&stack.client(&["status"]).stdout).contains("gone")
    });

    let hook = Hook::start(&[]);
    let with_alerting = text.replacen(
        "server:\n",
        "server:\n  assignments: {test-collector: [gone]}\n  auth: {session_ttl: 2h}\n",
        1,
    ) + &format!(
        "receivers:\n  - name: hook\n    webhook: {{url: {}}}\n\
         alerts:\n  - name: Gone\n    when: health\n    for: 0s\n    group_wait: 0s\n    receivers: [hook]\n",
        hook.url
    );
    std::fs::write(&path, &with_alerting).unwrap();
    let hit = hook.wait_for(
        Duration::from_secs(20),
        "Gone notified after the reload",
        |h| h.json()["alerts"][0]["labels"]["alertname"] == "Gone",
    );
    assert_eq!(hit.json()["alerts"][0]["labels"]["cluster"], "gone");
    let h = stack.http_get("/healthz");
    assert!(
        h.contains("configuration reloaded at")
            && h.contains(
                "assignments for 1 collector(s), 0 public badge(s), session_ttl 2h, alerting: 1 rule(s), 1 receiver(s)"
            ),
        "{h}"
    );

    // Broken: refused where it is wrong, the running alerting stays.
    std::fs::write(&path, with_alerting.replace("for: 0s", "for: soon")).unwrap();
    wait_until(
        Duration::from_secs(5),
        "the server refuses the file",
        || stack.http_get("/healthz").contains("reload refused"),
    );
    let h = stack.http_get("/healthz");
    assert!(
        h.contains("dbmon.yaml:") && h.contains("alerts[0].for"),
        "{h}"
    );
    let log = stack.server_log();
    assert!(log.contains("configuration not reloaded"), "{log}");
    let alerts = String::from_utf8_lossy(&stack.client(&["alerts"]).stdout).to_string();
    assert!(alerts.contains("Gone"), "{alerts}");
}
