//! `kind: redis` against real Redis servers from Debian's `redis-server`:
//! a master with two replicas watched through the real collector and server
//! and followed by a real `dbmon-client watch` (a node that sleeps, a
//! replica that dies); wrong credentials; TLS with the right and a wrong
//! CA; and a three-master Redis Cluster that loses a master.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use dbmon_collector::{Observation, Registry, registry};
use dbmon_proto::Status;
use std::path::Path;
use std::time::{Duration, Instant};
use support::redis::{RedisServer, monitor_user, start_cluster, wait_replicas};
use support::*;

const PASSWORD: &str = "redis-monitor-S3cret-9021";

#[test]
fn a_node_sleeps_a_replica_dies_and_watch_follows() {
    let dir = tempfile::tempdir().unwrap();
    let master = RedisServer::start(dir.path(), "master", &monitor_user(PASSWORD));
    let replica_args = |m: &RedisServer| {
        let mut a = vec![
            "--replicaof".to_string(),
            "127.0.0.1".into(),
            m.port.to_string(),
        ];
        a.extend(monitor_user(PASSWORD));
        a
    };
    let mut r1 = RedisServer::start(dir.path(), "replica1", &replica_args(&master));
    let r2 = RedisServer::start(dir.path(), "replica2", &replica_args(&master));
    wait_replicas(&master, 2);
    let password = secret_file(dir.path(), "redis-password", PASSWORD);
    let clusters = format!(
        "  - name: cache\n    kind: redis\n    interval: 1s\n    timeout: 900ms\n    nodes: [{}, {}, {}]\n    auth:\n      username: monitor\n      password: {{file: {}}}\n",
        master.addr(),
        r1.addr(),
        r2.addr(),
        password.display()
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let mut watch = stack.watch_json(&["--cluster", "cache"]);

    watch.wait_for(Duration::from_secs(30), "cache healthy, 3 of 3 up", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 3
    });
    let ev = watch.wait_for(Duration::from_secs(10), "one master", |v| {
        report_is(v, None, "quorum", "ok")
    });
    assert_eq!(
        ev["report"]["message"],
        format!("one master, {}", master.addr())
    );
    let ev = watch.wait_for(Duration::from_secs(10), "two replicas", |v| {
        report_is(v, Some(&master.addr()), "replicas", "ok")
    });
    let msg = ev["report"]["message"].as_str().unwrap();
    assert!(msg.starts_with("2 of 2 replica(s) connected ("), "{ev}");
    let ev = watch.wait_for(Duration::from_secs(10), "a replica's lag", |v| {
        report_is(v, Some(&r1.addr()), "replication_lag", "ok")
    });
    assert_eq!(ev["report"]["unit"], "B");
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("behind master {}", master.addr())),
        "{ev}"
    );

    // One node sleeps: it is unknown, with why; the others go on.
    let mut sleeper = r2.cli_background(&["DEBUG", "SLEEP", "5"]);
    let ev = watch.wait_for(Duration::from_secs(10), "the sleeping node unknown", |v| {
        report_is(v, Some(&r2.addr()), "up", "unknown")
    });
    assert_eq!(ev["report"]["message"], "no answer within 900ms", "{ev}");
    let since = ev["position"].as_u64().unwrap();
    watch.wait_for(Duration::from_secs(5), "the master still answers", |v| {
        report_is(v, Some(&master.addr()), "up", "ok") && v["position"].as_u64().unwrap() > since
    });
    let _ = sleeper.wait();
    watch.wait_for(Duration::from_secs(15), "healthy after the sleep", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 3
    });

    // A replica dies: down, and the master misses it.
    r1.kill();
    let ev = watch.wait_for(Duration::from_secs(10), "the dead replica crit", |v| {
        report_is(v, Some(&r1.addr()), "up", "crit") && health_of(v) == "degraded"
    });
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect: "),
        "{ev}"
    );
    let ev = watch.wait_for(Duration::from_secs(15), "one replica missing", |v| {
        report_is(v, Some(&master.addr()), "replicas", "warn")
    });
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 2 replica(s) connected"),
        "{ev}"
    );

    // The password reached Redis and nothing else.
    let seen: Vec<String> = watch.seen.iter().map(|v| v.to_string()).collect();
    assert!(!seen.concat().contains(PASSWORD));
    assert!(!stack.server_log().contains(PASSWORD));
    assert!(
        !stack
            .collector
            .as_ref()
            .unwrap()
            .log_text()
            .contains(PASSWORD)
    );
}

fn connector(yaml: &str) -> Box<dyn dbmon_collector::Connector> {
    let cfg = dbmon_config::Config::parse(yaml, Path::new("test.yaml"), &Registry)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (registry::find("redis").unwrap().build)(&cfg.clusters[0]).expect("connector builds")
}

fn find<'a>(obs: &'a [Observation], node: &str, check: &str) -> &'a Observation {
    obs.iter()
        .find(|o| o.node == node && o.check == check)
        .unwrap_or_else(|| panic!("no {check} for {node:?} in {obs:#?}"))
}

#[test]
fn wrong_credentials_are_clear_errors_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = monitor_user(PASSWORD);
    extra.extend(["--requirepass".to_string(), "default-pass-77".into()]);
    let node = RedisServer::start(dir.path(), "auth", &extra);
    let wrong = secret_file(dir.path(), "wrong", "not-the-password");
    for user in ["monitor", "default"] {
        let c = connector(&format!(
            "clusters:\n  - name: c\n    kind: redis\n    nodes: [{}]\n    auth: {{username: {user}, password: {{file: {}}}}}\n",
            node.addr(),
            wrong.display()
        ));
        let obs = block_on(c.poll());
        let up = find(&obs, &node.addr(), "up");
        assert_eq!(up.status, Status::Crit, "{obs:#?}");
        assert!(
            up.message
                .contains(&format!("the node refused the login of user {user:?}"))
                && up
                    .message
                    .contains("check auth.username (default for requirepass)"),
            "{}",
            up.message
        );
        assert!(!format!("{obs:?}").contains("not-the-password"));
    }
    // No login at all where one is required.
    let c = connector(&format!(
        "clusters:\n  - name: c\n    kind: redis\n    nodes: [{}]\n",
        node.addr()
    ));
    let obs = block_on(c.poll());
    let up = find(&obs, &node.addr(), "up");
    assert!(
        up.message.contains("NOAUTH") && up.message.contains("set auth.username"),
        "{obs:#?}"
    );
    // The right one.
    let good = secret_file(dir.path(), "good", PASSWORD);
    let c = connector(&format!(
        "clusters:\n  - name: c\n    kind: redis\n    nodes: [{}]\n    auth: {{username: monitor, password: {{file: {}}}}}\n",
        node.addr(),
        good.display()
    ));
    let obs = block_on(c.poll());
    assert_eq!(
        find(&obs, &node.addr(), "up").status,
        Status::Ok,
        "{obs:#?}"
    );
    assert_eq!(find(&obs, "", "quorum").status, Status::Ok, "{obs:#?}");
}

#[test]
fn tls_is_verified_against_the_ca_given_with_a_client_certificate() {
    use dbmon_pki::{Ca, Role};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(&dir.path().join("redis-pki"), "redis.test", false).unwrap();
    let cert = ca
        .issue(
            Role::Server,
            "redis",
            None,
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(86_400),
            false,
        )
        .unwrap();
    drop(Ca::init(&dir.path().join("other-pki"), "other.test", false).unwrap());
    let tls_port = free_port();
    let mut extra: Vec<String> = [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert.cert_path.display().to_string(),
        "--tls-key-file",
        &cert.key_path.display().to_string(),
        "--tls-ca-cert-file",
        &dir.path().join("redis-pki/ca.crt").display().to_string(),
        "--tls-auth-clients",
        "yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    extra.extend(monitor_user(PASSWORD));
    let _node = RedisServer::start(dir.path(), "tls", &extra);
    // The node asks for a client certificate (tls-auth-clients yes).
    let client = ca
        .issue(
            Role::Collector,
            "dbmon",
            Some("dbmon"),
            &[],
            Duration::from_secs(86_400),
            false,
        )
        .unwrap();
    let password = secret_file(dir.path(), "pw", PASSWORD);
    let tls_of = |ca: &str, cert: bool| {
        let mut tls = format!("{{ca_file: {}", dir.path().join(ca).display());
        if cert {
            tls.push_str(&format!(
                ", cert_file: {}, key_file: {}",
                client.cert_path.display(),
                client.key_path.display()
            ));
        }
        connector(&format!(
            "clusters:\n  - name: c\n    kind: redis\n    nodes: [127.0.0.1:{tls_port}]\n    auth: {{username: monitor, password: {{file: {}}}}}\n    tls: {tls}}}\n",
            password.display(),
        ))
    };
    let with_ca = |ca: &str| tls_of(ca, true);
    let node = format!("127.0.0.1:{tls_port}");
    let obs = block_on(with_ca("redis-pki/ca.crt").poll());
    assert_eq!(find(&obs, &node, "up").status, Status::Ok, "{obs:#?}");
    let obs = block_on(with_ca("other-pki/ca.crt").poll());
    let up = find(&obs, &node, "up");
    assert_eq!(up.status, Status::Crit, "{obs:#?}");
    assert!(
        up.message.contains("not signed by the CA in tls.ca_file"),
        "{}",
        up.message
    );
    // The right CA but no client certificate: the node refuses.
    let obs = block_on(tls_of("redis-pki/ca.crt", false).poll());
    let up = find(&obs, &node, "up");
    assert_eq!(up.status, Status::Crit, "{obs:#?}");
    assert!(up.message.starts_with("cannot connect: "), "{}", up.message);
}

#[test]
fn a_cluster_that_loses_a_master_is_crit() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), PASSWORD);
    let password = secret_file(dir.path(), "pw", PASSWORD);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let c = connector(&format!(
        "clusters:\n  - name: c\n    kind: redis\n    timeout: 1s\n    nodes: [{}]\n    auth: {{username: monitor, password: {{file: {}}}}}\n",
        addrs.join(", "),
        password.display()
    ));
    let obs = block_on(c.poll());
    let q = find(&obs, "", "quorum");
    assert_eq!(q.status, Status::Ok, "{obs:#?}");
    assert!(
        q.message.starts_with(
            "cluster_state:ok on 3 answering node(s); 16384 of 16384 slots ok, 3 master(s)"
        ),
        "{}",
        q.message
    );
    assert!(
        find(&obs, &addrs[0], "up")
            .message
            .contains("(cluster mode)")
    );

    nodes[2].kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let obs = block_on(c.poll());
        let q = find(&obs, "", "quorum");
        if q.status == Status::Crit {
            assert!(
                q.message.contains("says cluster_state:fail"),
                "{}",
                q.message
            );
            assert_eq!(find(&obs, &addrs[2], "up").status, Status::Crit);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quorum not crit 20s after a master died: {obs:#?}"
        );
        std::thread::park_timeout(Duration::from_millis(200));
    }
}
