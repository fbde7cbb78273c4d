//! Collector → server → two clients at once: `status` (table and JSON) and
//! `watch` (line mode), plus `get cluster`, the server's own /metrics, and
//! what a client says when there is no server.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn status_and_watch_clients_see_the_same_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).expect("start etcd");
    etcd.wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    let clusters = format!(
        "  - name: shop-etcd\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n    labels: {{env: test}}\n",
        etcd.client_urls().join(", ")
    );
    let mut stack = start_server(dir.path(), &clusters);

    // The watcher subscribes before any report exists, in line mode (not a terminal).
    let mut watcher = Proc::spawn(
        Command::new(CLIENT)
            .args([
                "--server",
                &stack.grpc,
                "watch",
                "--cluster",
                "shop-etcd",
                "--ca",
            ])
            .arg(stack.pki.join("ca.crt"))
            .env("DBMON_TOKEN", stack.admin_token())
            .stdout(Stdio::piped()),
        dir.path().join("watch-lines.log"),
    );
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = watcher.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // The watcher is subscribed (its first line is the empty snapshot) before any report exists.
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("watch printed nothing; its stderr:\n{}", watcher.log_text()));
    assert!(
        first.starts_with("-- initial (0 reports) --"),
        "first the snapshot: {first}"
    );
    stack.start_collector();

    // Watch: a line per report, each with the cluster's health.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "watch printed no healthy line; got:\n{}\n{}",
                seen.join("\n"),
                watcher.log_text()
            )
        });
        let done = l.contains("shop-etcd")
            && l.contains(" up ok: healthy")
            && l.ends_with("[cluster healthy]");
        seen.push(l);
        if done {
            break;
        }
    }

    // Status, at the same time, as a table: every node up.
    wait_until(Duration::from_secs(10), "status shows 3/3 healthy", || {
        let out = stack.client(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success()
            && text.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() >= 5
                    && cols[0] == "shop-etcd"
                    && cols[1] == "etcd"
                    && cols[2] == "healthy"
                    && cols[3] == "3/3"
            })
    });
    let out = stack.client(&["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status -o json");
    assert_eq!(json[0]["cluster"], "shop-etcd");
    assert_eq!(json[0]["health"], "healthy");
    assert_eq!(json[0]["nodes_total"], 3);
    assert!(json[0]["age_s"].as_f64().unwrap() < 10.0, "{json}");

    let out = stack.client(&["status", "-o", "yaml"]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("cluster: shop-etcd") && yaml.contains("health: healthy"),
        "{yaml}"
    );

    // get cluster: every check of every node.
    let out = stack.client(&["get", "cluster", "shop-etcd", "-o", "json"]);
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).expect("get -o json");
    let checks: Vec<&str> = detail["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for c in [
        "up",
        "quorum",
        "has_leader",
        "leader_changes",
        "db_size",
        "proposals_failed",
    ] {
        assert!(checks.contains(&c), "get cluster lacks {c}: {checks:?}");
    }
    assert!(!detail["history"].as_array().unwrap().is_empty());
    // History: by default the changes of each (node, check); --all everything.
    let changes: serde_json::Value = serde_json::from_slice(
        &stack
            .client(&["history", "shop-etcd", "--since", "1h", "-o", "json"])
            .stdout,
    )
    .expect("history json");
    let everything: serde_json::Value = serde_json::from_slice(
        &stack
            .client(&["history", "shop-etcd", "--all", "-o", "json"])
            .stdout,
    )
    .expect("history --all json");
    let (changes, everything) = (changes.as_array().unwrap(), everything.as_array().unwrap());
    assert!(
        changes.len() >= checks.len() && changes.len() <= everything.len(),
        "{} changes, {} reports",
        changes.len(),
        everything.len()
    );
    for c in &checks {
        assert!(
            changes.iter().any(|r| r["check"] == *c),
            "history shows {c}"
        );
    }
    let out = stack.client(&["history", "shop-etcd", "--since", "soon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since \"soon\": expected a duration"));

    let out = stack.client(&["get", "cluster", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster named \"nosuch\""));

    // The server's own health and metrics.
    assert!(stack.http_get("/healthz").contains("200 OK"));
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_cluster_health{cluster=\"shop-etcd\",kind=\"etcd\"} 0"),
        "{metrics}"
    );
    // Every check, as a status and (when it has one) a value.
    assert!(
        metrics.contains(
            "dbmon_check_status{cluster=\"shop-etcd\",node=\"\",check=\"quorum\",kind=\"etcd\"} 0"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("dbmon_check_value{cluster=\"shop-etcd\",node=\"\",check=\"quorum\",kind=\"etcd\",unit=\"members\"} 3"),
        "{metrics}"
    );
    // The server's own share of delivery latency, as histograms: to the
    // subscriber's stream, and to its queue.
    for name in ["dbmon_watch_fanout_seconds", "dbmon_watch_dispatch_seconds"] {
        assert!(
            metrics.contains(&format!("# TYPE {name} histogram"))
                && metrics.contains(&format!("{name}_bucket{{le=\"+Inf\"}}")),
            "{name}: {metrics}"
        );
    }
    // Well-formed for Prometheus's own checker.
    let body = metrics
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; deploy/install-deps.sh installs it)");
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    // It parses the whole text. Its linter predates OpenMetrics counters,
    // whose HELP names the family (`x`) and whose sample is `x_total`: that
    // one complaint is expected, for counters only; anything else fails.
    assert!(
        !said.contains("error while") && !said.contains("parsing error"),
        "promtool check metrics: {said}"
    );
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        let family = line
            .strip_suffix(" no help text")
            .and_then(|n| n.strip_suffix("_total"))
            .unwrap_or_else(|| panic!("promtool check metrics: {line}"));
        assert!(
            body.contains(&format!("# TYPE {family} counter")),
            "promtool check metrics: {line}"
        );
    }
    assert!(metrics.contains("dbmon_watch_subscribers 1"), "{metrics}");
    assert!(
        metrics.contains("dbmon_collectors_connected 1"),
        "{metrics}"
    );
    let ingested: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dbmon_reports_ingested_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ingested counter");
    assert!(
        ingested >= 16,
        "one poll of 3 members is 16 reports (5 per member, and quorum): {ingested}"
    );

    // The collector stops: once its reports outlive their promise, `get
    // cluster` shows each as stale with what it last said, not as ok.
    stack.collector = None;
    wait_until(Duration::from_secs(15), "every check stale", || {
        let out = stack.client(&["get", "cluster", "shop-etcd", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|r| r["stale"] == true))
    });
    let table =
        String::from_utf8_lossy(&stack.client(&["get", "cluster", "shop-etcd"]).stdout).to_string();
    assert!(table.contains("stale (was ok)"), "{table}");
    assert!(
        !table.lines().skip(1).any(|l| l.contains("  ok  ")),
        "{table}"
    );
}

#[test]
fn clients_without_a_server_say_what_to_do() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    for args in [
        &["status"][..],
        &["watch"][..],
        &["get", "cluster", "x"][..],
    ] {
        let out = Command::new(CLIENT)
            .arg("--server")
            .arg(&server)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot reach the dbmon server at {server}"))
                && err.contains("--server or DBMON_SERVER"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_client_finds_the_server_in_a_config_file_and_reports_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let good = dir.path().join("client.yaml");
    std::fs::write(
        &good,
        format!("client:\n  server: http://127.0.0.1:{port}\n"),
    )
    .unwrap();
    let out = Command::new(CLIENT)
        .arg("--config")
        .arg(&good)
        .arg("status")
        .env_remove("DBMON_SERVER")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach the dbmon server at http://127.0.0.1:{port}"
        )),
        "{err}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "client:\n  server: 127.0.0.1\n").unwrap();
    let out = Command::new(CLIENT)
        .arg("--config")
        .arg(&bad)
        .arg("status")
        .env_remove("DBMON_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:11: client.server: \"127.0.0.1\" is not a server URL",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn completions_for_each_shell_and_bash_reads_its_script() {
    for (shell, marker) in [
        ("bash", "complete -F _dbmon__client"),
        ("zsh", "#compdef dbmon-client"),
        ("fish", "complete -c dbmon-client"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = Command::new(CLIENT)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for sub in ["watch", "status", "sessions"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("dbmon-client.bash");
            std::fs::write(&file, &script).unwrap();
            let ok = Command::new("bash").arg("-n").arg(&file).status().unwrap();
            assert!(ok.success(), "bash cannot read its completion script");
        }
    }
}
