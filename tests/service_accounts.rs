//! Service accounts: made on the server's host, with tokens minted there
//! (never a passkey), used by scripts for status and watch, listed and
//! revoked like people's logins (an open watch closes), bounded by a
//! maximum lifetime, and never able to manage people's logins.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn operator(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let config = stack.dir.join("dbmon.yaml");
    let out = Command::new(DBMON)
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_service_account_reads_and_watches_with_a_minted_token_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    // No etcd answers on this port: its reports say so, which is enough.
    let clusters = format!(
        "  - name: builds\n    kind: etcd\n    interval: 1s\n    timeout: 300ms\n    nodes: [127.0.0.1:{}]\n  - name: other\n    kind: etcd\n    interval: 1s\n    timeout: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port(),
        free_port()
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();

    let (ok, out, err) = operator(
        &stack,
        &[
            "user",
            "add",
            "ci-bot",
            "--service",
            "--role",
            "admin",
            "--clusters",
            "builds",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("service account ci-bot added"), "{out}");
    assert!(
        !out.contains("/invite#"),
        "no invite for a service account: {out}"
    );
    // Never a passkey.
    let (ok, _, err) = operator(&stack, &["user", "invite", "ci-bot"]);
    assert!(
        !ok && err.contains("is a service account: it never registers a passkey"),
        "{err}"
    );
    // At most server.auth.service_token_max_ttl (90 days by default).
    let (ok, _, err) = operator(&stack, &["token", "mint", "ci-bot", "--ttl", "1000d"]);
    assert!(
        !ok && err.contains("longer than server.auth.service_token_max_ttl"),
        "{err}"
    );
    // People sign in with passkeys; nobody mints their tokens.
    stack.admin_token();
    let (ok, _, err) = operator(&stack, &["token", "mint", "admin", "--ttl", "1h"]);
    assert!(!ok && err.contains("is a person"), "{err}");

    let (ok, token, err) = operator(&stack, &["token", "mint", "ci-bot", "--ttl", "30d"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    assert!(err.contains("not shown again"), "{err}");
    // Usable at once: a request with a login the server has not read yet
    // waits for its next look at the store instead of being refused.
    let out = stack.client_as(&token, &["status"]);
    assert!(
        out.status.success(),
        "a token just minted was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // It reads and watches its clusters only.
    wait_until(Duration::from_secs(20), "status shows builds", || {
        let out = stack.client_as(&token, &["status"]);
        String::from_utf8_lossy(&out.stdout).contains("builds")
    });
    let status = String::from_utf8_lossy(&stack.client_as(&token, &["status"]).stdout).to_string();
    assert!(!status.contains("other"), "{status}");
    let mut watch = stack.watch_json_as(&token, &["--cluster", "builds"]);
    watch.wait_for(Duration::from_secs(20), "a report of builds", |v| {
        v["type"] == "report" && v["report"]["cluster"] == "builds"
    });

    // Listed where people's logins are.
    let (_, list, _) = operator(&stack, &["user", "list"]);
    assert!(
        list.contains("ci-bot  (service account)  role: admin  clusters: builds"),
        "{list}"
    );
    assert!(list.contains("    token "), "{list}");
    let sessions = String::from_utf8_lossy(&stack.client(&["sessions", "list"]).stdout).to_string();
    let login = sessions
        .lines()
        .find(|l| l.contains(" ci-bot ") && l.contains("dbmon token mint"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no ci-bot login in:\n{sessions}"))
        .to_string();

    // Even as admin, it cannot manage people's logins.
    let out = stack.client_as(&token, &["sessions", "revoke", "--user", "admin"]);
    assert!(!out.status.success(), "a service account revoked a person");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sessions"), "{err}");

    // Revoked like anyone's: the open watch closes, the token stops working.
    let out = stack.client(&["sessions", "revoke", "--login", &login]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let why = watch.wait_exit(Duration::from_secs(10));
    assert!(why.to_lowercase().contains("revoked"), "{why}");
    let out = stack.client_as(&token, &["status"]);
    assert!(!out.status.success());

    // The token is in no log.
    let server_log = stack.server_log();
    assert!(!server_log.contains(&token), "the server logged the token");
    assert!(
        server_log.contains("ci-bot"),
        "the server's audit names ci-bot: {server_log}"
    );
}
