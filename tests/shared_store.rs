//! Servers sharing one PostgreSQL database: a report a collector sends to
//! one reaches a Watch on the other, both number it the same, a watch can
//! resume on the other server where it left off, and a restarted server
//! comes back with what the database holds.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::watch_event::Event;
use dbmon_proto::v1::{ListReportsRequest, WatchRequest};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::postgres::Postgres;
use support::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn dead_cluster(name: &str) -> String {
    format!(
        "  - name: {name}\n    kind: etcd\n    interval: 200ms\n    timeout: 200ms\n    max_backoff: 200ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    )
}

async fn channel(stack: &Stack, grpc: &str) -> Channel {
    let ca = stack.pki.join("ca.crt");
    let td = dbmon_pki::trust_domain_of(&ca).unwrap();
    let trust = dbmon_pki::tls::Trust::load(&ca, None, &td).unwrap();
    let cfg = Arc::new(dbmon_pki::tls::people_client(trust).unwrap());
    dbmon_pki::transport::channel(grpc, cfg, Duration::from_secs(5))
        .await
        .unwrap()
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("macaroon", token.parse().expect("token fits in a header"));
    r
}

/// (collector, seq) of every report a server holds, latest and history.
async fn held(ch: &Channel, token: &str) -> BTreeSet<(String, u64)> {
    let resp = MonitorClient::new(ch.clone())
        .list_reports(authed(
            ListReportsRequest {
                clusters: vec![],
                include_history: true,
            },
            token,
        ))
        .await
        .expect("ListReports")
        .into_inner();
    resp.latest
        .iter()
        .chain(resp.history.iter())
        .map(|r| (r.collector_id.clone(), r.seq))
        .collect()
}

/// A plaintext server (no PKI) on free ports with `store_lines` in its
/// server section: the config file and the collector port.
fn plain_config(dir: &std::path::Path, name: &str, store_lines: &str) -> (std::path::PathBuf, u16) {
    let path = dir.join(format!("{name}.yaml"));
    let collector_port = free_port();
    std::fs::write(
        &path,
        format!(
            "server:\n  listen: 127.0.0.1:{}\n  collector_listen: 127.0.0.1:{collector_port}\n  http_listen: 127.0.0.1:{}\n  insecure_plaintext: true\n  auth:\n    dir: {}\n{store_lines}",
            free_port(),
            free_port(),
            dir.join("auth").display()
        ),
    )
    .unwrap();
    (path, collector_port)
}

/// `dbmon server` on `config`, which must fail: what it printed.
fn server_fails(config: &std::path::Path) -> String {
    let out = Command::new(DBMON)
        .args(["server", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dbmon server` on `config`, once `port` listens.
fn server_listening(config: &std::path::Path, port: u16, log: std::path::PathBuf) -> Proc {
    let mut server = Proc::spawn(
        Command::new(DBMON).args(["server", "--config"]).arg(config),
        log,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(_)) = server.child.try_wait() {
            panic!("the server stopped: {}", server.log_text());
        }
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::park_timeout(Duration::from_millis(50));
    }
    server
}

#[test]
fn two_servers_on_one_postgresql_share_reports_positions_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let mut a = start_server_with(
        dir.path(),
        &dead_cluster("shared"),
        &format!("  store: {}\n  history_per_cluster: 5\n", pg.url()),
    );
    // B keeps no users of its own: they are in the database.
    let b_auth = dir.path().join("auth-b");
    let b_only = format!("  auth:\n    dir: {}\n", b_auth.display());
    let b = a.start_replica("b", &b_only);
    // Signed in through A (`dbmon user add`, A's pages, A's login flow).
    let token = a.admin_token().to_string();
    assert!(!dir.path().join("auth/auth.json").exists());
    assert!(!b_auth.join("auth.json").exists());
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM dbmon_auth WHERE convert_from(doc, 'UTF8') LIKE '%root_key%'"
        ),
        "1"
    );

    // A Watch on B; the collector publishes to A.
    let ca = a.pki.join("ca.crt");
    let mut watch_b = Watcher::spawn_with(
        &b.grpc,
        &["--ca", ca.to_str().unwrap(), "--cluster", "shared"],
        dir.path(),
        Some(&token),
    );
    watch_b.wait_for(Duration::from_secs(20), "B's watcher is subscribed", |v| {
        v["type"] == "snapshot"
    });
    // A row that is not a report (written by hand, say) is skipped with an
    // error, and what follows it still flows.
    pg.psql("INSERT INTO dbmon_reports (collector, epoch, seq, cluster, node, check_name, observed_at_ms, report) VALUES ('hand', 1, 1, 'shared', '', 'up', 0, '\\xdeadbeef')");
    a.start_collector();
    watch_b.wait_for(Duration::from_secs(30), "reports sent to A, on B", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= 20)
    });
    watch_b.assert_no_gap_from(1);
    assert_eq!(pg.psql("SELECT max(version) FROM dbmon_schema"), "4");
    for log in [a.server.log_text(), b.server.log_text()] {
        assert!(
            log.contains("a row of dbmon_reports is not a report; skipped"),
            "{log}"
        );
    }
    let rows: u64 = pg
        .psql("SELECT count(*) FROM dbmon_reports")
        .parse()
        .unwrap();
    assert!(rows >= 20, "{rows} rows");

    block_on(async {
        let ch_a = channel(&a, &a.grpc).await;
        let ch_b = channel(&a, &b.grpc).await;
        // A watch on A, cut after some reports, resumes on B with A's
        // position: no snapshot, and the next report of the collector.
        let mut on_a = MonitorClient::new(ch_a.clone())
            .watch(authed(
                WatchRequest {
                    clusters: vec!["shared".into()],
                    after_position: 0,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        let (mut position, mut last_seq) = (0, 0);
        let mut reports = 0;
        while reports < 5 {
            let ev = tokio::time::timeout(Duration::from_secs(10), on_a.next())
                .await
                .expect("an event from A")
                .unwrap()
                .unwrap();
            match ev.event {
                Some(Event::Report(r)) => {
                    reports += 1;
                    last_seq = r.seq;
                }
                Some(Event::Batch(b)) => {
                    reports += b.reports.len();
                    last_seq = b.reports.last().map_or(last_seq, |r| r.seq);
                }
                _ => continue,
            }
            position = ev.position;
        }
        drop(on_a);
        let mut on_b = MonitorClient::new(ch_b.clone())
            .watch(authed(
                WatchRequest {
                    clusters: vec!["shared".into()],
                    after_position: position,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        let ev = tokio::time::timeout(Duration::from_secs(10), on_b.next())
            .await
            .expect("an event from B")
            .unwrap()
            .unwrap();
        let first = match ev.event {
            Some(Event::Report(r)) => r,
            Some(Event::Batch(b)) => b.reports[0].clone(),
            other => panic!("B resynced a watch resumed at A's position {position}: {other:?}"),
        };
        assert_eq!(
            first.seq,
            last_seq + 1,
            "resumed at position {position}: the next report of the collector"
        );
        assert!(ev.position > position);
    });

    // With the collector stopped, both servers hold the same reports, and
    // so does B after a SIGKILL and a restart.
    drop(a.collector.take());
    let mut b = b;
    block_on(async {
        let ch_a = channel(&a, &a.grpc).await;
        let ch_b = channel(&a, &b.grpc).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (on_a, on_b) = (held(&ch_a, &token).await, held(&ch_b, &token).await);
            if on_a == on_b && !on_a.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "A and B disagree: {} vs {} reports",
                on_a.len(),
                on_b.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let before = block_on(async { held(&channel(&a, &a.grpc).await, &token).await });
    assert!(
        Command::new("kill")
            .args(["-KILL", &b.server.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let _ = b.server.child.wait();
    b = a.start_replica("b2", &b_only);
    let after = block_on(async { held(&channel(&a, &b.grpc).await, &token).await });
    assert_eq!(before, after, "a restarted B holds what A holds");
    let log = b.server.log_text();
    assert!(
        log.contains("reports restored from the shared store"),
        "{log}"
    );
    // A user removed through A's configuration loses the watch open on B.
    let viewer = a.person("viewer", "viewer", &[]);
    let mut watch = Watcher::spawn_with(
        &b.grpc,
        &["--ca", ca.to_str().unwrap()],
        dir.path(),
        Some(&viewer.token),
    );
    watch.wait_for(Duration::from_secs(20), "the viewer watches B", |v| {
        v["type"] == "snapshot"
    });
    let removed = Instant::now();
    dbmon(&[
        "user",
        "remove",
        "viewer",
        "--config",
        dir.path().join("dbmon.yaml").to_str().unwrap(),
    ]);
    let said = watch.wait_exit(Duration::from_secs(5));
    eprintln!(
        "B closed the removed user's watch {:?} after the removal",
        removed.elapsed()
    );
    assert!(said.contains("user \"viewer\" no longer exists"), "{said}");

    // Retention ran at B's start: per cluster, the 5 newest reports and
    // the latest of each (node, check) are left.
    let keys: u64 = pg
        .psql("SELECT count(DISTINCT (node, check_name)) FROM dbmon_reports")
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: u64 = pg
            .psql("SELECT count(*) FROM dbmon_reports")
            .parse()
            .unwrap();
        if rows <= 5 + keys {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} rows left for {keys} keys and a history of 5"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn a_newer_schema_or_an_unreachable_database_stops_the_server_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    pg.psql(
        "CREATE TABLE dbmon_schema (version INT NOT NULL); INSERT INTO dbmon_schema VALUES (99)",
    );
    let run = |store: &str, name: &str| {
        server_fails(&plain_config(dir.path(), name, &format!("  store: {store}\n")).0)
    };
    let newer = run(&pg.url(), "newer");
    assert!(
        newer.contains("schema version 99, newer than this server's 4; run a newer dbmon"),
        "{newer}"
    );
    let port = free_port();
    let down = run(
        &format!("postgresql://dbmon@127.0.0.1:{port}/dbmon"),
        "down",
    );
    assert!(
        down.contains(&format!(
            "shared store postgresql://dbmon@127.0.0.1:{port}/dbmon"
        )) && down.contains("check server.store"),
        "{down}"
    );
}

#[test]
fn users_kept_in_a_file_move_into_the_shared_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let auth = dir.path().join("auth");
    let config = |store: &str| {
        let path = dir.path().join("dbmon.yaml");
        std::fs::write(
            &path,
            format!(
                "server:\n  auth:\n    dir: {}\n  store: {store}\n",
                auth.display()
            ),
        )
        .unwrap();
        path
    };
    let file_config = config(&dir.path().join("reports.redb").display().to_string());
    dbmon(&[
        "user",
        "add",
        "alice",
        "--role",
        "operator",
        "--config",
        file_config.to_str().unwrap(),
    ]);
    let shared_config = config(&pg.url());
    let listed = dbmon(&["user", "list", "--config", shared_config.to_str().unwrap()]);
    assert!(
        listed.contains("alice") && listed.contains("operator"),
        "{listed}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM dbmon_auth WHERE convert_from(doc, 'UTF8') LIKE '%alice%'"),
        "1"
    );
    // From now on the database is the truth: a user added there is not in
    // the file, and a second start does not import the file again.
    dbmon(&[
        "user",
        "add",
        "bob",
        "--role",
        "viewer",
        "--config",
        shared_config.to_str().unwrap(),
    ]);
    dbmon(&[
        "user",
        "remove",
        "alice",
        "--config",
        shared_config.to_str().unwrap(),
    ]);
    let listed = dbmon(&["user", "list", "--config", shared_config.to_str().unwrap()]);
    assert!(
        listed.contains("bob") && !listed.contains("alice"),
        "{listed}"
    );
    let file = std::fs::read_to_string(auth.join("auth.json")).unwrap();
    assert!(file.contains("alice") && !file.contains("bob"));
}

#[test]
fn a_database_that_requires_tls_is_reached_with_the_ca_given() {
    use dbmon_pki::{Ca, Role};
    let dir = tempfile::tempdir().unwrap();
    let db_pki = dir.path().join("db-pki");
    let ca = Ca::init(&db_pki, "db.test", false).unwrap();
    let cert = ca
        .issue(
            Role::Server,
            "postgres",
            None,
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(86_400),
            false,
        )
        .unwrap();
    let pg = Postgres::start_with(dir.path(), Some((&cert.cert_path, &cert.key_path)));
    let other = Ca::init(&dir.path().join("other-pki"), "other.test", false).unwrap();
    drop(other);
    let config = |name: &str, ca_file: Option<&std::path::Path>| {
        let mut lines = format!("  store: {}\n", pg.url());
        if let Some(ca) = ca_file {
            lines.push_str(&format!("  store_ca_file: {}\n", ca.display()));
        }
        plain_config(dir.path(), name, &lines)
    };
    // Without TLS the database refuses, and the server says what it said.
    let (plain, _) = config("plain", None);
    let said = server_fails(&plain);
    assert!(said.contains("no encryption"), "{said}");
    // A CA that did not sign the database's certificate.
    let (wrong, _) = config("wrong", Some(&dir.path().join("other-pki/ca.crt")));
    let said = server_fails(&wrong);
    assert!(
        said.contains("certificate") && said.contains("check server.store"),
        "{said}"
    );
    // The right CA: the server starts, over TLS.
    let (good, port) = config("good", Some(&db_pki.join("ca.crt")));
    let _server = server_listening(&good, port, dir.path().join("server-tls.log"));
    let tls: u64 = pg
        .psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbmon-server' AND s.ssl")
        .parse()
        .unwrap();
    assert!(tls >= 1, "no TLS connection from the server");
    let plain_conns: u64 = pg
        .psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbmon-server' AND NOT s.ssl")
        .parse()
        .unwrap();
    assert_eq!(plain_conns, 0);
}

#[test]
fn while_the_database_is_down_collectors_keep_their_reports_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Postgres::start(dir.path());
    let mut stack = start_server_with(
        dir.path(),
        &dead_cluster("outage"),
        &format!("  store: {}\n", pg.url()),
    );
    let mut watch = stack.watch_json(&["--cluster", "outage"]);
    watch.wait_for(Duration::from_secs(20), "subscribed", |v| {
        v["type"] == "snapshot"
    });
    stack.start_collector();
    watch.wait_for(Duration::from_secs(20), "reports flowing", |v| {
        v["report"]["seq"].as_u64().is_some_and(|s| s >= 5)
    });

    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = stack.http_get("/healthz");
        let metrics = stack.http_get("/metrics");
        let errors = metrics
            .lines()
            .find_map(|l| l.strip_prefix("dbmon_store_write_errors_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if health.contains("cannot be written") && errors >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server does not say the store is gone: {health}"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let before = *watch
        .report_seqs()
        .last()
        .expect("reports before the outage");
    pg.start_again();
    let target = before + 30;
    watch.wait_for(
        Duration::from_secs(60),
        "the reports of the outage and new ones",
        |v| v["report"]["seq"].as_u64().is_some_and(|s| s >= target),
    );
    watch.assert_no_gap_from(1);
    let healthy = |stack: &Stack| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stack.http_get("/healthz").ends_with("\r\n\r\nok\n") {
            assert!(Instant::now() < deadline, "{}", stack.http_get("/healthz"));
            std::thread::park_timeout(Duration::from_millis(100));
        }
    };
    healthy(&stack);

    // A database that hangs (stopped, connections open) is a failed write
    // after 30 s, said on /healthz; when it answers again, nothing is lost.
    pg.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = stack.http_get("/healthz");
        if health.contains("no answer to a write within 30s") {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::park_timeout(Duration::from_millis(200));
    }
    pg.signal(libc::SIGCONT);
    let healed = std::time::SystemTime::now() + Duration::from_secs(1);
    watch.wait_for(
        Duration::from_secs(60),
        "a report observed after the database answers again",
        |v| {
            v["report"]["observed_at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t >= healed)
        },
    );
    watch.assert_no_gap_from(1);
    healthy(&stack);
}

#[test]
fn a_report_whose_names_the_database_cannot_hold_as_text_does_not_stall_it() {
    use dbmon_proto::v1::ingest_client::IngestClient;
    use dbmon_proto::v1::{Hello, PublishRequest, publish_request};
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let (config, collector_port) =
        plain_config(dir.path(), "plain", &format!("  store: {}\n", pg.url()));
    let _server = server_listening(&config, collector_port, dir.path().join("server.log"));
    block_on(async {
        let mut ingest = IngestClient::connect(format!("http://127.0.0.1:{collector_port}"))
            .await
            .unwrap();
        let mut msgs = vec![PublishRequest {
            msg: Some(publish_request::Msg::Hello(Hello {
                collector_id: "odd".into(),
                epoch: 1,
                clusters: vec!["odd".into()],
            })),
        }];
        for seq in 1..=3 {
            let mut r = dbmon_proto::Report {
                cluster: "odd".into(),
                // A NUL, as a node name read from a broken answer could carry.
                node: if seq == 2 {
                    "n\0de".into()
                } else {
                    "node".into()
                },
                check: "up".into(),
                collector_id: "odd".into(),
                seq,
                kind: "etcd".into(),
                ..Default::default()
            };
            r.set_status(dbmon_proto::Status::Ok);
            msgs.push(PublishRequest {
                msg: Some(publish_request::Msg::Report(r)),
            });
        }
        let mut acks = ingest
            .publish(tokio_stream::iter(msgs).chain(tokio_stream::pending()))
            .await
            .unwrap()
            .into_inner();
        loop {
            let ack = tokio::time::timeout(Duration::from_secs(10), acks.next())
                .await
                .expect("an ack within 10 s: the store is not stalled")
                .expect("the stream goes on")
                .expect("an ack");
            if ack.acked_seq >= 3 {
                break;
            }
        }
    });
    assert_eq!(
        pg.psql("SELECT count(*) FROM dbmon_reports WHERE cluster = 'odd'"),
        "3"
    );
}
