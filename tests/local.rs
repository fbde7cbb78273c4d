//! `dbmon local`, the README's first command: a local etcd cluster, server
//! and collector in one process, seen healthy by a client, and gone after
//! SIGTERM.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn local_stack_comes_up_healthy_and_goes_away_cleanly_twice_in_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut passkey = None;
    run_local_once(dir.path(), &mut passkey);
    // Again in the same folder (as `make local` does): the old cluster data
    // must not get in the way, and the passkey registered the first time
    // still signs in.
    run_local_once(dir.path(), &mut passkey);
}

/// One run of `dbmon local` in `dir`: up, signed in, healthy, SIGTERM, gone.
fn run_local_once(dir: &std::path::Path, passkey: &mut Option<support::softlogin::Passkey>) {
    let mut local = Proc::spawn(
        Command::new(DBMON)
            .args(["local", "--interval", "1s", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped()),
        dir.join("local.log"),
    );
    let stdout = local.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no banner; log:\n{}", local.log_text()));
    let mut text = banner;
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        text.push_str(&l);
        text.push('\n');
    }
    assert!(
        text.contains("dbmon is watching a local 3-member etcd cluster"),
        "{text}"
    );
    assert!(
        text.contains("dbmon-client -- --config"),
        "says how to watch: {text}"
    );
    assert!(text.contains("over mutual TLS"), "{text}");

    // The banner's invite (on the first run) registers a passkey; then the
    // CLI signs in as the banner says.
    let http =
        support::softlogin::http_client(Some(&std::fs::read(dir.join("pki/ca.crt")).unwrap()));
    let key = match text.split_whitespace().find(|w| w.contains("/invite#")) {
        Some(invite) => {
            assert!(
                passkey.is_none(),
                "a second invite though a passkey is registered: {text}"
            );
            // Someone on SSH is told how to reach it with the origin intact.
            let port = invite
                .split("://localhost:")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .expect("an invite on localhost");
            assert!(
                text.contains(&format!("ssh -L {port}:localhost:{port} ")),
                "{text}"
            );
            passkey.insert(block_on(support::softlogin::register(&http, invite)).unwrap())
        }
        None => {
            assert!(text.contains("Sign in with the passkey of admin"), "{text}");
            passkey.as_mut().expect("an invite on the first run")
        }
    };
    let home = dir.join("home");
    let config = dir.join("dbmon.yaml");
    let args = ["--config", config.to_str().unwrap()];
    let token = cli_login(&args, &home, "admin", key, &http).unwrap();
    assert!(!token.is_empty());

    wait_until(
        Duration::from_secs(30),
        "dbmon-client status shows local-etcd healthy 3/3",
        || {
            let out = Command::new(CLIENT)
                .arg("--config")
                .arg(dir.join("dbmon.yaml"))
                .args(["status", "-o", "json"])
                .env_remove("DBMON_SERVER")
                .env_remove("DBMON_TOKEN")
                .env("XDG_CONFIG_HOME", &home)
                .output()
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|v| {
                    v[0]["cluster"] == "local-etcd"
                        && v[0]["health"] == "healthy"
                        && v[0]["nodes_up"] == 3
                })
                .unwrap_or(false)
        },
    );

    let pid = local.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    wait_until(
        Duration::from_secs(20),
        "dbmon local exits after SIGTERM",
        || {
            exited = local.child.try_wait().unwrap();
            exited.is_some()
        },
    );
    assert!(
        exited.unwrap().success(),
        "clean exit; log:\n{}",
        local.log_text()
    );
    let data = dir.display().to_string();
    wait_until(
        Duration::from_secs(10),
        "no etcd member of the local stack is left running",
        || {
            !Command::new("pgrep")
                .args(["-f", &data])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        },
    );
}

#[test]
fn asking_for_cockroachdb_without_the_binary_says_what_to_do() {
    let out = Command::new(DBMON)
        .args(["local", "--cockroach"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no `cockroach` binary on PATH") && err.contains("put it on PATH"),
        "{err}"
    );
}
