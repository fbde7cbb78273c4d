//! A `kind: http` cluster whose requests carry a token in a header, watched
//! by the real collector (logging at debug level) and server: the node gets
//! the token; no log, report or client view shows it, even when the node
//! echoes it back.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const TOKEN: &str = "tok-9f8e7d6c5b4a-secret";

/// Answers every request 401 with the Authorization header it was sent,
/// as a careless service might, and keeps the headers it saw.
fn echo_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let auth = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .to_string();
            keep.lock().unwrap().push(auth.clone());
            // The credential alone, without its scheme.
            let body = format!("denied: {}", auth.trim_start_matches("Bearer "));
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn a_header_token_reaches_the_node_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("Bearer {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (url, seen) = echo_server();
    let clusters = format!(
        "  - name: api\n    kind: http\n    interval: 1s\n    timeout: 500ms\n    nodes: [{url}]\n    requests:\n      api: {{path: /api, format: text, headers: {{Authorization: {{file: {}}}}}}}\n    checks:\n      up: {{request: api, value: \"[BODY]\", crit: \"[STATUS] != 200\"}}\n",
        token_file.display()
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector_with_env(&[("RUST_LOG", "debug")]);
    let mut watch = stack.watch_json(&["--cluster", "api"]);
    let ev = watch.wait_for(
        Duration::from_secs(20),
        "up crit with the echo masked",
        |v| report_is(v, None, "up", "crit"),
    );
    let msg = ev["report"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("[redacted]"), "{ev}");
    assert!(msg.contains("(crit: [STATUS] != 200)"), "{ev}");
    // The node got the token (the file's trailing newline is not sent).
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|a| a == &format!("Bearer {TOKEN}")),
        "{:?}",
        seen.lock().unwrap()
    );
    let get = stack.client(&["get", "cluster", "api"]);
    let get = String::from_utf8_lossy(&get.stdout).to_string();
    assert!(get.contains("[redacted]"), "{get}");
    for (what, text) in [
        (
            "watch",
            watch
                .seen
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("get cluster", get),
        ("server log", stack.server_log()),
        (
            "collector log",
            stack.collector.as_ref().unwrap().log_text(),
        ),
    ] {
        assert!(!text.contains(TOKEN), "the token is in the {what}:\n{text}");
    }
    assert!(
        stack
            .collector
            .as_ref()
            .unwrap()
            .log_text()
            .contains("DEBUG"),
        "the collector logged at debug level"
    );
}
