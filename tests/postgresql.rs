//! `kind: postgresql` against real PostgreSQL servers from Debian's
//! packages: a primary and a streaming standby made with pg_basebackup,
//! watched through the real collector and server and followed by a real
//! `dbmon-client watch`; then a wrong password and a wrong CA.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use dbmon_collector::{Observation, Registry, registry};
use dbmon_proto::Status;
use std::path::Path;
use std::time::Duration;
use support::postgres::Postgres;
use support::*;

const PASSWORD: &str = "pg-monitor-S3cret-4417";

/// A monitoring role that logs in with a password (SCRAM) and holds
/// pg_monitor, as docs/postgresql.md tells users to create.
fn monitoring_role(primary: &Postgres, dir: &Path) -> std::path::PathBuf {
    primary.psql(&format!(
        "CREATE ROLE monitor LOGIN PASSWORD '{PASSWORD}'; GRANT pg_monitor TO monitor;"
    ));
    primary.hba_first("host all monitor 127.0.0.1/32 scram-sha-256");
    secret_file(dir, "pg-password", PASSWORD)
}

const ALL_CHECKS: &[&str] = &[
    "up",
    "quorum",
    "streaming",
    "replay_lag",
    "replication_slots",
    "connections",
    "xid_wraparound",
    "long_transactions",
    "version_skew",
];

#[test]
fn a_standby_lags_stops_and_the_primary_stops_and_watch_follows() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Postgres::start(&dir.path().join("primary"));
    let password = monitoring_role(&primary, dir.path());
    let mut standby = Postgres::standby_of(&primary, &dir.path().join("standby"));
    let (p, s) = (
        format!("127.0.0.1:{}", primary.port),
        format!("127.0.0.1:{}", standby.port),
    );
    // Every check, with a lag threshold a test can cross in a moment.
    let mut checks: String = ALL_CHECKS.iter().map(|c| format!("      {c}:\n")).collect();
    checks.push_str("      replication_lag: {warn: 4194304}\n");
    let clusters = format!(
        "  - name: pg\n    kind: postgresql\n    interval: 1s\n    timeout: 900ms\n    nodes: [{p}, {s}]\n    auth:\n      username: monitor\n      password: {{file: {}}}\n    checks:\n{checks}",
        password.display()
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let mut watch = stack.watch_json(&["--cluster", "pg"]);

    watch.wait_for(Duration::from_secs(30), "pg healthy, 2 of 2 up", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 2
    });
    let ev = watch.wait_for(Duration::from_secs(10), "one primary", |v| {
        report_is(v, None, "quorum", "ok")
    });
    assert_eq!(
        ev["report"]["message"],
        format!("one primary, {p}; 1 standby(s) stream from it"),
        "{ev}"
    );
    let ev = watch.wait_for(Duration::from_secs(10), "the standby streams", |v| {
        report_is(v, Some(&s), "streaming", "ok")
    });
    assert_eq!(ev["report"]["message"], "streaming WAL from the primary");
    let ev = watch.wait_for(Duration::from_secs(10), "the standby is up", |v| {
        report_is(v, Some(&s), "up", "ok")
    });
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap()
            .starts_with("standby, PostgreSQL "),
        "{ev}"
    );
    watch.wait_for(Duration::from_secs(10), "slots on the primary", |v| {
        report_is(v, Some(&p), "replication_slots", "ok")
    });

    // Replay paused on the standby while the primary writes: it falls
    // behind by the bytes written.
    standby.psql("SELECT pg_wal_replay_pause()");
    primary.psql(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 60000) g",
    );
    let ev = watch.wait_for(Duration::from_secs(20), "replication_lag warn", |v| {
        report_is(v, Some(&s), "replication_lag", "warn")
    });
    let lag = ev["report"]["value"].as_f64().unwrap();
    assert!(lag > 4_194_304.0, "{ev}");
    assert_eq!(ev["report"]["unit"], "B", "{ev}");
    let msg = ev["report"]["message"].as_str().unwrap();
    assert!(
        msg.contains("behind the primary (replay is paused)") && msg.contains("MiB"),
        "{ev}"
    );
    standby.psql("SELECT pg_wal_replay_resume()");
    watch.wait_for(Duration::from_secs(20), "caught up", |v| {
        report_is(v, Some(&s), "replication_lag", "ok")
    });

    // The standby stops: degraded, and it is the one named.
    standby.stop();
    let ev = watch.wait_for(Duration::from_secs(15), "the standby down", |v| {
        report_is(v, Some(&s), "up", "crit") && health_of(v) == "degraded"
    });
    assert!(
        ev["report"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect: "),
        "{ev}"
    );
    watch.wait_for(
        Duration::from_secs(10),
        "the primary streams to none",
        |v| {
            report_is(v, None, "quorum", "ok")
                && v["report"]["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("0 standby(s) stream from it"))
                && health_of(v) == "degraded"
        },
    );

    standby.start_again();
    watch.wait_for(Duration::from_secs(30), "healthy again", |v| {
        v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 2
    });

    // The primary stops: no primary, so no writes: unavailable.
    let mut primary = primary;
    primary.stop();
    let ev = watch.wait_for(Duration::from_secs(15), "no primary", |v| {
        report_is(v, None, "quorum", "crit") && health_of(v) == "unavailable"
    });
    assert_eq!(
        ev["report"]["message"], "no primary: the 1 answering node(s) are all standbys",
        "{ev}"
    );
    watch.wait_for(
        Duration::from_secs(15),
        "the standby stops streaming",
        |v| report_is(v, Some(&s), "streaming", "crit"),
    );

    // The password reached PostgreSQL and nothing else.
    let seen: Vec<String> = watch.seen.iter().map(|v| v.to_string()).collect();
    assert!(!seen.concat().contains(PASSWORD));
    assert!(!stack.server_log().contains(PASSWORD));
    let collector_log = stack.collector.as_ref().unwrap().log_text();
    assert!(!collector_log.contains(PASSWORD));
}

fn cluster(yaml: &str) -> dbmon_config::ClusterConfig {
    let cfg = dbmon_config::Config::parse(yaml, Path::new("test.yaml"), &Registry)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    cfg.clusters[0].clone()
}

fn poll(yaml: &str) -> Vec<Observation> {
    let c = cluster(yaml);
    let connector = (registry::find("postgresql").unwrap().build)(&c).expect("connector builds");
    block_on(connector.poll())
}

fn up_of(obs: &[Observation]) -> &Observation {
    obs.iter().find(|o| o.check == "up").unwrap()
}

#[test]
fn a_wrong_password_and_a_wrong_ca_are_clear_errors() {
    use dbmon_pki::{Ca, Role};
    let dir = tempfile::tempdir().unwrap();
    let plain = Postgres::start(&dir.path().join("plain"));
    let _ = monitoring_role(&plain, dir.path());
    let wrong = secret_file(dir.path(), "wrong-password", "not-the-password");
    let obs = poll(&format!(
        "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [127.0.0.1:{}]\n    auth: {{username: monitor, password: {{file: {}}}}}\n",
        plain.port,
        wrong.display()
    ));
    let up = up_of(&obs);
    assert_eq!(up.status, Status::Crit, "{obs:#?}");
    assert!(
        up.message
            .contains("password authentication failed for user \"monitor\"")
            && up.message.contains("check auth.username and the password"),
        "{}",
        up.message
    );
    assert!(!format!("{obs:?}").contains("not-the-password"));

    // A server that speaks TLS only, and a CA that did not sign it.
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
    let tls = Postgres::start_with(
        &dir.path().join("tls"),
        Some((&cert.cert_path, &cert.key_path)),
    );
    drop(Ca::init(&dir.path().join("other-pki"), "other.test", false).unwrap());
    let other_ca = dir.path().join("other-pki/ca.crt");
    let with_ca = |ca: &Path| {
        format!(
            "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [127.0.0.1:{}]\n    auth: {{username: dbmon}}\n    tls: {{ca_file: {}}}\n",
            tls.port,
            ca.display()
        )
    };
    let obs = poll(&with_ca(&other_ca));
    let up = up_of(&obs);
    assert_eq!(up.status, Status::Crit, "{obs:#?}");
    assert!(
        up.message.contains("certificate")
            && up.message.contains(&format!(
                "not signed by the CA in tls.ca_file ({})",
                other_ca.display()
            )),
        "{}",
        up.message
    );
    // The right CA: up, over TLS.
    let obs = poll(&with_ca(&db_pki.join("ca.crt")));
    assert_eq!(up_of(&obs).status, Status::Ok, "{obs:#?}");
    // Without tls: the configuration refuses plaintext off loopback only;
    // on loopback the TLS-only server refuses it, and says so.
    let obs = poll(&format!(
        "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [127.0.0.1:{}]\n    auth: {{username: dbmon}}\n",
        tls.port
    ));
    let up = up_of(&obs);
    assert_eq!(up.status, Status::Crit);
    assert!(up.message.contains("no encryption"), "{}", up.message);
}

#[test]
fn plaintext_off_loopback_and_credentials_in_the_address_are_refused() {
    let (code, out, err) = config_check(
        "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [db1.example.com:5432]\n",
    );
    let err = out + &err;
    assert_ne!(code, 0);
    assert!(
        err.contains("clusters[0].nodes[0]")
            && err.contains("db1.example.com is not this machine")
            && err.contains("set tls.ca_file"),
        "{err}"
    );
    let (code, out, err) = config_check(
        "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [\"postgresql://monitor:Pw-7@127.0.0.1:5432/postgres\"]\n",
    );
    let err = out + &err;
    assert_ne!(code, 0);
    assert!(
        err.contains("\"postgresql://[redacted]@127.0.0.1:5432/postgres\" is not a node address")
            && err.contains("credentials go in auth:"),
        "{err}"
    );
    assert!(!err.contains("Pw-7"), "{err}");
    let (code, out, err) = config_check(
        "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [127.0.0.1, \"postgresql://localhost:5433/app\"]\n",
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_node_that_hangs_mid_poll_is_unknown_and_the_poll_returns() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(&dir.path().join("pg"));
    let yaml = format!(
        "clusters:\n  - name: pg\n    kind: postgresql\n    interval: 2s\n    timeout: 1s\n    nodes: [127.0.0.1:{}]\n    auth: {{username: dbmon}}\n",
        pg.port
    );
    let c = cluster(&yaml);
    let connector = (registry::find("postgresql").unwrap().build)(&c).expect("connector builds");
    let obs = block_on(connector.poll());
    assert_eq!(up_of(&obs).status, Status::Ok, "{obs:#?}");
    // The server and its backends stop, the kept connection open.
    pg.signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let obs = block_on(connector.poll());
    let took = started.elapsed();
    pg.signal(libc::SIGCONT);
    let up = up_of(&obs);
    assert_eq!(
        (up.status, up.message.as_str()),
        (Status::Unknown, "no answer within 1s"),
        "{obs:#?}"
    );
    assert!(
        obs.iter()
            .filter(|o| o.check != "quorum" && o.check != "version_skew")
            .all(|o| o.status == Status::Unknown || o.status == Status::NotApplicable),
        "{obs:#?}"
    );
    assert!(took < Duration::from_secs(5), "the poll took {took:?}");
    // Back: a new connection, and up again.
    let obs = block_on(connector.poll());
    assert_eq!(up_of(&obs).status, Status::Ok, "{obs:#?}");
}

#[test]
fn a_role_that_logs_in_by_client_certificate() {
    use dbmon_pki::{Ca, Role};
    let dir = tempfile::tempdir().unwrap();
    let db_pki = dir.path().join("db-pki");
    let ca = Ca::init(&db_pki, "db.test", false).unwrap();
    let day = Duration::from_secs(86_400);
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let server = ca
        .issue(Role::Server, "postgres", None, &hosts, day, false)
        .unwrap();
    let client = ca
        .issue(Role::Collector, "monitor", Some("monitor"), &[], day, false)
        .unwrap();
    let pg = Postgres::start_with(
        &dir.path().join("pg"),
        Some((&server.cert_path, &server.key_path)),
    );
    pg.psql("CREATE ROLE monitor LOGIN; GRANT pg_monitor TO monitor;");
    std::fs::copy(db_pki.join("ca.crt"), pg.data.join("client-ca.crt")).unwrap();
    pg.psql("ALTER SYSTEM SET ssl_ca_file = 'client-ca.crt'");
    pg.hba_first("hostssl all monitor 127.0.0.1/32 cert");
    let yaml = |cert: bool| {
        let mut tls = format!("{{ca_file: {}", db_pki.join("ca.crt").display());
        if cert {
            tls.push_str(&format!(
                ", cert_file: {}, key_file: {}",
                client.cert_path.display(),
                client.key_path.display()
            ));
        }
        format!(
            "clusters:\n  - name: pg\n    kind: postgresql\n    nodes: [127.0.0.1:{}]\n    auth: {{username: monitor}}\n    tls: {tls}}}\n",
            pg.port
        )
    };
    let obs = poll(&yaml(true));
    let up = up_of(&obs);
    assert_eq!(up.status, Status::Ok, "{obs:#?}");
    assert!(up.message.starts_with("primary, PostgreSQL "), "{up:?}");
    // Without the certificate: refused, and told what to set.
    let obs = poll(&yaml(false));
    let up = up_of(&obs);
    assert_eq!(up.status, Status::Crit, "{obs:#?}");
    assert!(
        up.message.contains("set tls.cert_file and tls.key_file"),
        "{}",
        up.message
    );
}

#[test]
fn tls_without_a_ca_is_refused_where_it_is_written() {
    for kind in ["postgresql", "redis"] {
        let (code, out, err) = config_check(&format!(
            "clusters:\n  - name: db\n    kind: {kind}\n    nodes: [db1.example.com]\n    tls: {{cert_file: /etc/c.crt, key_file: /etc/c.key}}\n"
        ));
        let said = out + &err;
        assert_ne!(code, 0, "{said}");
        assert!(
            said.contains("clusters[0].tls.ca_file: expected ca_file"),
            "{kind}: {said}"
        );
    }
}
