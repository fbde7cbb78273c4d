//! Collectors get certificates without copying keys (one-time join tokens
//! checked against a CA pin), renew them over a live stream without losing
//! a report, and refuse to start on a certificate problem with one line
//! saying what to do.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A cluster whose only node never answers: reports flow all the same.
fn dead_cluster(name: &str) -> String {
    format!(
        "  - name: {name}\n    kind: etcd\n    interval: 300ms\n    timeout: 200ms\n    max_backoff: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    )
}

/// A collector-only config in `dir` for collector `id`, with its own PKI folder.
fn collector_config(stack: &Stack, dir: &Path, id: &str, cluster: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let yaml = format!(
        "collector:\n  id: {id}\n  server: {}\n  enroll_server: {}\n  pki_dir: {}\nclusters:\n{}",
        stack.collector_grpc,
        stack.grpc,
        dir.join("pki").display(),
        dead_cluster(cluster)
    );
    let path = dir.join("collector.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn token(stack: &Stack, collector: &str, ttl: &str) -> (String, String) {
    let out = dbmon(&[
        "pki",
        "token",
        "create",
        "--collector",
        collector,
        "--ttl",
        ttl,
        "--dir",
        stack.pki.to_str().unwrap(),
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("token:"), field("ca pin:"))
}

fn token_file(dir: &Path, token: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("join-token");
    std::fs::write(&p, token).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A collector `id` in its own folder `dir`, enrolling with `token` and
/// `pin`, expected to stop with an error: its stderr.
fn join_fails(
    stack: &Stack,
    dir: &Path,
    id: &str,
    cluster: &str,
    token: &str,
    pin: &str,
) -> String {
    let cfg = collector_config(stack, dir, id, cluster);
    let tf = token_file(dir, token);
    collector_fails(
        &cfg,
        &["--join-token-file", tf.to_str().unwrap(), "--ca-pin", pin],
    )
}

/// Runs `dbmon collector` expecting it to stop with an error; its stderr.
fn collector_fails(config: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(DBMON)
        .arg("collector")
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(status.code(), Some(2), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dbmon collector kept running; it should have stopped with an error");
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn join_tokens_work_once_and_only_with_the_right_pin() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_server(dir.path(), "");
    let (tok, pin) = token(&stack, "joiner", "15m");
    assert!(
        tok.starts_with("dbmon-join-") && pin.starts_with("sha256:"),
        "{tok} {pin}"
    );

    // A wrong pin: refused before the token is sent, so the token stays good.
    let a = dir.path().join("a");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = join_fails(&stack, &a, "joiner", "joined", &tok, &wrong);
    let (cfg, tf) = (a.join("collector.yaml"), a.join("join-token"));
    assert!(
        err.contains("the server's CA does not match the pin"),
        "{err}"
    );
    assert!(!a.join("pki/collector.joiner.key").exists());
    assert!(
        !stack.server_log().contains("collector joined"),
        "nothing reached the server"
    );

    // The right pin: enrolled, key made locally (0600), reports flow under its name.
    let mut joined = Proc::spawn(
        Command::new(DBMON)
            .arg("collector")
            .arg("--config")
            .arg(&cfg)
            .args(["--join-token-file", tf.to_str().unwrap(), "--ca-pin", &pin])
            .stdout(Stdio::null()),
        a.join("collector.log"),
    );
    wait_until(
        Duration::from_secs(20),
        "reports of the joined collector",
        || {
            let out = stack.client(&["get", "cluster", "joined", "-o", "json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|v| v["checks"][0]["collector"] == "joiner")
                .unwrap_or(false)
        },
    );
    let mode = std::fs::metadata(a.join("pki/collector.joiner.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(stack.server_log().contains("collector joined"));
    assert!(joined.child.try_wait().unwrap().is_none(), "still running");

    // The same token again: refused.
    let err = join_fails(
        &stack,
        &dir.path().join("b"),
        "joiner",
        "joined-again",
        &tok,
        &pin,
    );
    assert!(err.contains("was already used"), "{err}");

    // An expired token: refused.
    let (short, _) = token(&stack, "late", "1s");
    let created = Instant::now();
    wait_until(Duration::from_secs(5), "the 1s token expires", || {
        created.elapsed() > Duration::from_millis(1100)
    });
    let err = join_fails(&stack, &dir.path().join("c"), "late", "late", &short, &pin);
    assert!(err.contains("expired at"), "{err}");
    drop(joined);
}

#[test]
fn a_renewal_during_a_live_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = start_server_with(
        dir.path(),
        &dead_cluster("renewing"),
        "  collector_cert_ttl: 6s\n",
    );
    let p = stack.pki.to_str().unwrap().to_string();
    issue_collector(&stack.pki, "test-collector", Some("6s"));
    let cert = stack.pki.join("collector.test-collector.crt");
    let serial = || {
        dbmon_pki::ca::inspect(&cert)
            .map(|c| c.serial)
            .unwrap_or_default()
    };
    let first = serial();

    let mut watch = stack.watch_json(&["--cluster", "renewing"]);
    watch.wait_for(Duration::from_secs(20), "the watcher is subscribed", |v| {
        v["type"] == "snapshot"
    });
    stack.start_collector();
    // Renewed at two thirds of 6s, twice.
    let mut serials = vec![first.clone()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while serials.len() < 3 {
        let s = serial();
        if !serials.contains(&s) {
            serials.push(s);
        }
        assert!(
            Instant::now() < deadline,
            "no two renewals within 30s ({serials:?})\ncollector log:\n{}\nserver log:\n{}",
            stack
                .collector
                .as_ref()
                .map(|c| c.log_text())
                .unwrap_or_default(),
            stack.server_log()
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
    // Reports keep coming after the renewals, on the same stream.
    let renewed_at = dbmon_proto::now_ms();
    let after = std::cell::Cell::new(0);
    watch.wait_for(
        Duration::from_secs(10),
        "three reports observed after the second renewal",
        |v| {
            let late = v["type"] == "report"
                && v["report"]["observed_at"].as_str().is_some_and(|t| {
                    humantime::parse_rfc3339(t).is_ok_and(|t| {
                        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
                            > renewed_at
                    })
                });
            if late {
                after.set(after.get() + 1);
            }
            after.get() >= 3
        },
    );

    // The server's own certificate replaced on disk, and a SIGHUP: both
    // reload it, new connections get it, the open stream goes on.
    let server_serial = || {
        dbmon_pki::ca::inspect(&stack.pki.join("server.crt"))
            .unwrap()
            .serial
    };
    let old_server = server_serial();
    dbmon(&[
        "pki",
        "issue",
        "server",
        "--name",
        "server",
        "--host",
        "127.0.0.1",
        "--force",
        "--dir",
        &p,
    ]);
    assert_ne!(server_serial(), old_server);
    wait_until(
        Duration::from_secs(10),
        "the server reloads its new certificate",
        || {
            stack
                .server_log()
                .matches("server certificate reloaded")
                .count()
                == 1
        },
    );
    let pid = stack.server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_until(Duration::from_secs(10), "SIGHUP reloads it again", || {
        stack
            .server_log()
            .matches("server certificate reloaded")
            .count()
            == 2
    });
    // A certificate put in the collector's folder from outside is picked up too.
    issue_collector(&stack.pki, "test-collector", Some("6s"));
    wait_until(
        Duration::from_secs(10),
        "the collector reloads the re-issued certificate",
        || {
            stack
                .collector
                .as_ref()
                .unwrap()
                .log_text()
                .contains("collector certificate reloaded")
        },
    );
    let out = stack.client(&["status", "-o", "json"]);
    assert!(
        out.status.success(),
        "a new connection gets the new certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = watch.seen.len();
    watch.wait_for(Duration::from_secs(10), "reports still flowing", |v| {
        v["type"] == "report"
    });
    assert!(watch.seen.len() > before);

    let seqs: Vec<u64> = watch
        .seen
        .iter()
        .filter(|v| v["type"] == "report")
        .filter_map(|v| v["report"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs[0], 1, "the watcher saw the stream from its start");
    for w in seqs.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "a gap or a repeat in the sequence: {seqs:?}"
        );
    }
    let log = stack.server_log();
    assert_eq!(
        log.matches("collector connected").count(),
        1,
        "the stream never dropped:\n{log}"
    );
    assert!(
        log.matches("collector certificate renewed").count() >= 2,
        "{log}"
    );
}

#[test]
fn certificate_problems_stop_the_collector_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_server(dir.path(), &dead_cluster("x"));
    let p = stack.pki.to_str().unwrap().to_string();
    let config = dir.path().join("dbmon.yaml");
    let cert = stack.pki.join("collector.test-collector.crt");
    let key = stack.pki.join("collector.test-collector.key");
    let restore = || issue_collector(&stack.pki, "test-collector", None);

    // Expired.
    issue_collector(&stack.pki, "test-collector", Some("1s"));
    let not_after = dbmon_pki::ca::inspect(&cert).unwrap().not_after;
    wait_until(Duration::from_secs(5), "the certificate expires", || {
        dbmon_proto::now_ms() / 1000 > not_after
    });
    let err = collector_fails(&config, &[]);
    assert!(
        err.contains("expired at") && err.contains("dbmon pki issue collector"),
        "{err}"
    );

    // Key readable by others.
    restore();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = collector_fails(&config, &[]);
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );

    // Key of another certificate.
    restore();
    std::fs::copy(stack.pki.join("server.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = collector_fails(&config, &[]);
    assert!(err.contains("does not belong to certificate"), "{err}");

    // A server certificate in the collector's place.
    std::fs::copy(stack.pki.join("server.crt"), &cert).unwrap();
    std::fs::copy(stack.pki.join("server.key"), &key).unwrap();
    let err = collector_fails(&config, &[]);
    assert!(
        err.contains("a collector needs a collector certificate"),
        "{err}"
    );

    // No certificate at all.
    std::fs::remove_file(&cert).unwrap();
    let err = collector_fails(&config, &[]);
    assert!(
        err.contains("cannot read") && err.contains("collector.test-collector.crt"),
        "{err}"
    );

    // The server, given a collector certificate as its own, refuses to start.
    restore();
    let server_cfg = dir.path().join("bad-server.yaml");
    std::fs::write(
        &server_cfg,
        format!(
            "server:\n  listen: 127.0.0.1:{}\n  collector_listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:{}\n  tls:\n    ca_file: {p}/ca.crt\n    cert_file: {p}/collector.test-collector.crt\n    key_file: {p}/collector.test-collector.key\n",
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(DBMON)
        .arg("server")
        .arg("--config")
        .arg(&server_cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a server needs a server certificate"), "{err}");
}

/// A rogue endpoint that shows a collector certificate as if it were the
/// server: the collector refuses it and says why.
#[test]
fn a_collector_certificate_presented_as_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let identity = dbmon_pki::tls::ReloadingIdentity::load(
        &pki.join("collector.test-collector.crt"),
        &pki.join("collector.test-collector.key"),
        dbmon_pki::Role::Collector,
    )
    .unwrap();
    let cfg = std::sync::Arc::new(dbmon_pki::tls::client_facing(identity).unwrap());
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let yaml = format!(
        "collector:\n  id: test-collector\n  server: https://127.0.0.1:{port}\n  pki_dir: {}\nclusters:\n{}",
        pki.display(),
        dead_cluster("x")
    );
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, yaml).unwrap();
    let collector = Proc::spawn(
        Command::new(DBMON)
            .arg("collector")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null()),
        dir.path().join("collector.log"),
    );
    wait_until(
        Duration::from_secs(20),
        "the collector refuses the rogue server",
        || {
            collector
                .log_text()
                .contains("extended key usage for server authentication")
        },
    );
}
