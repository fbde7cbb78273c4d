//! Status badges on the server's people endpoint, against a real etcd
//! member watched by the real collector and server: a public cluster's
//! badge without a token, a private one's with a badge token made by
//! `dbmon-client token badge`, colours that follow the health, cache
//! headers, and every way in that must stay shut.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;
use support::*;

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

fn get(stack: &Stack, path: &str, etag: Option<&str>) -> Got {
    let http = stack.http();
    let url = format!("{}{path}", stack.grpc);
    block_on(async move {
        let mut req = http.get(&url);
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        let r = req.send().await.unwrap();
        Got {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    })
}

/// The badge's words and the colour behind the health, read as XML.
fn read_svg(body: &str) -> (String, Vec<String>, Vec<String>) {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let title = root
        .descendants()
        .find(|n| n.has_tag_name("title"))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string();
    let texts = root
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect();
    let fills = root
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .filter_map(|n| n.attribute("fill").map(str::to_string))
        .collect();
    (title, texts, fills)
}

#[test]
fn badges_show_health_to_whom_they_may_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 1).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    let node = etcd.client_urls()[0].clone();
    let clusters = format!(
        "  - {{name: open, kind: etcd, interval: 1s, timeout: 500ms, nodes: [{node}], public: true}}\n  - {{name: closed, kind: etcd, interval: 1s, timeout: 500ms, nodes: [{node}]}}\n"
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();

    // The public cluster's badge, without a token.
    wait_until(
        Duration::from_secs(20),
        "the open badge says healthy",
        || {
            let g = get(&stack, "/badge/open.svg", None);
            g.status == 200 && g.body.contains("healthy")
        },
    );
    let g = get(&stack, "/badge/open.svg", None);
    assert_eq!(g.headers["content-type"], "image/svg+xml");
    assert_eq!(g.headers["cache-control"], "max-age=30");
    assert_eq!(g.headers["x-content-type-options"], "nosniff");
    let (title, texts, fills) = read_svg(&g.body);
    assert_eq!(title, "open: healthy");
    assert_eq!(texts, ["open", "healthy"]);
    assert!(fills.contains(&"#2e7d32".to_string()), "{fills:?}");
    // Unchanged: 304 to a proxy that has it.
    let etag = g.headers["etag"].to_str().unwrap().to_string();
    let again = get(&stack, "/badge/open.svg", Some(&etag));
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // The shields.io endpoint format.
    let g = get(&stack, "/badge/open.json", None);
    let v: serde_json::Value = serde_json::from_str(&g.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"schemaVersion": 1, "label": "open", "message": "healthy", "color": "2e7d32"})
    );

    // A cluster not marked public: the same 404 as one that does not exist.
    let closed = get(&stack, "/badge/closed.svg", None);
    let missing = get(&stack, "/badge/nosuch.svg", None);
    assert_eq!((closed.status, missing.status), (404, 404));
    assert_eq!(closed.body, missing.body);
    assert!(
        closed.body.contains("dbmon-client token badge"),
        "{}",
        closed.body
    );
    // A login's full token is never taken from a URL.
    let full = get(
        &stack,
        &format!("/badge/closed.svg?token={}", stack.admin_token()),
        None,
    );
    assert_eq!(full.status, 401);
    assert!(
        full.body.contains("a login's token is refused here"),
        "{}",
        full.body
    );
    // Uptime over a window the server offers; others are refused.
    let bad = get(&stack, "/badge/open.svg?window=30d", None);
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("?window=24h or ?window=7d"),
        "{}",
        bad.body
    );
    let g = get(&stack, "/badge/open.svg?window=24h", None);
    assert_eq!(g.status, 200, "{}", g.body);
    let (title, texts, fills) = read_svg(&g.body);
    // Known for seconds of the day so far, all of them up.
    assert!(title.starts_with("open uptime 24h: 100% of "), "{title}");
    assert_eq!(texts[0], "open uptime 24h");
    assert!(fills.contains(&"#2e7d32".to_string()), "{fills:?}");
    let j = get(&stack, "/badge/open.json?window=7d", None);
    let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v["label"], "open uptime 7d");

    // A badge token for the closed cluster.
    let out = stack.client(&["token", "badge", "--cluster", "closed", "--ttl", "1d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let urls = String::from_utf8_lossy(&out.stdout).to_string();
    let svg_url = urls.lines().next().unwrap().to_string();
    assert!(
        svg_url.starts_with(&format!("{}/badge/closed.svg?token=", stack.grpc)),
        "{urls}"
    );
    let token = svg_url.split("token=").nth(1).unwrap().to_string();
    let login = String::from_utf8_lossy(&out.stderr)
        .split("login ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_string();
    let path = svg_url.trim_start_matches(&stack.grpc).to_string();
    let g = get(&stack, &path, None);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(read_svg(&g.body).0, "closed: healthy");
    // For that cluster only.
    let other = get(&stack, &format!("/badge/open.svg?token={token}"), None);
    assert_eq!(other.status, 404);
    // And no RPC takes it.
    for args in [
        vec!["status"],
        vec!["get", "cluster", "closed"],
        vec!["history", "closed"],
        vec!["alerts"],
        vec!["sessions", "list"],
        vec!["token", "badge", "--cluster", "closed"],
        vec!["whoami"],
        vec!["logout"],
    ] {
        let out = stack.client_as(&token, &args);
        assert!(!out.status.success(), "{args:?} took a badge token");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("PermissionDenied") && err.contains("this token allows badge"),
            "{args:?}: {err}"
        );
    }
    let mut watch = stack.watch_json_as(&token, &[]);
    let err = watch.wait_exit(Duration::from_secs(10));
    assert!(err.contains("this token allows badge"), "{err}");

    // The member dies: the badges turn red and say so.
    etcd.kill(0);
    wait_until(
        Duration::from_secs(20),
        "the closed badge says unavailable",
        || get(&stack, &path, None).body.contains("unavailable"),
    );
    let (title, _, fills) = read_svg(&get(&stack, &path, None).body);
    assert_eq!(title, "closed: unavailable");
    assert!(fills.contains(&"#c62828".to_string()), "{fills:?}");
    // Time unavailable takes the uptime below 100%, never rounded up.
    wait_until(
        Duration::from_secs(20),
        "the uptime badge counts the time down",
        || {
            let (title, _, _) = read_svg(&get(&stack, "/badge/open.svg?window=24h", None).body);
            let pct: f64 = title
                .trim_start_matches("open uptime 24h: ")
                .split('%')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(100.0);
            pct < 100.0
        },
    );
    // The open cluster polls the same member on its own schedule.
    wait_until(
        Duration::from_secs(20),
        "the changed open badge is sent again to a proxy holding the old one",
        || {
            let changed = get(&stack, "/badge/open.svg", Some(&etag));
            changed.status == 200 && changed.body.contains("unavailable")
        },
    );

    // Revoked like any login.
    let out = stack.client(&["sessions", "revoke", "--login", &login]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = get(&stack, &path, None);
    assert_eq!(g.status, 401);
    assert!(g.body.contains("revoked"), "{}", g.body);
}
