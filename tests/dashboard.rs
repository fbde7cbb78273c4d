//! The live dashboard against a real etcd watched by the real collector and
//! server over TLS: signing in with a passkey to a browser login held in a
//! cookie, what each person may see (in pages and on the live channel),
//! the guard in front of every web route (cookie flags, CSP, framing,
//! origin and CSRF on changes, tampered and expired cookies, badge tokens),
//! and logins that end closing the live view.
//!
//! The browser test drives headless Chromium: it registers a passkey, signs
//! in, sees a member die on the overview without a reload, fits a phone's
//! width, and a sign-out in one tab ends the live view in another.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};
use support::browser::{page, start_browser};
use support::*;

/// A browser's side of the dashboard over HTTPS, with a session cookie.
struct Web {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Web {
    fn new(stack: &Stack, cookie: &str) -> Web {
        Web {
            http: stack.http(),
            base: stack.grpc.clone(),
            cookie: cookie.to_string(),
        }
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let url = format!("{}{path}", self.base);
        block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), &url)
                .header("cookie", &self.cookie);
            if method == "POST" {
                req = req.header("content-type", "application/json").body("{}");
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            Got {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.text().await.unwrap_or_default(),
            }
        })
    }

    fn get(&self, path: &str) -> Got {
        self.send("GET", path, &[])
    }

    /// Reads the live channel at `path` until `done` holds for what it
    /// sent so far, or `within` passes; everything it sent.
    fn live_until(&self, path: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        self.live_opened(path, within, done, || {})
    }

    /// Reads the live channel in a thread until it sends `event: end`;
    /// returns once the channel is open, with the thread giving what was
    /// sent and when the end came.
    fn live_until_end(self, path: &str) -> std::thread::JoinHandle<(String, Instant)> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let path = path.to_string();
        let reader = std::thread::spawn(move || {
            let sent = self.live_opened(
                &path,
                Duration::from_secs(20),
                |t| t.contains("event: end"),
                || {
                    let _ = tx.send(());
                },
            );
            (sent, Instant::now())
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the live channel opens");
        reader
    }

    fn live_opened(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
        opened: impl FnOnce(),
    ) -> String {
        let url = format!("{}{path}", self.base);
        block_on(async {
            let mut r = self
                .http
                .get(&url)
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            opened();
            let mut text = String::new();
            let deadline = tokio::time::Instant::now() + within;
            while !done(&text) {
                match tokio::time::timeout_at(deadline, r.chunk()).await {
                    Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
                    Ok(_) | Err(_) => break,
                }
            }
            text
        })
    }
}

/// The origin the server's pages are served from, as browsers send it.
fn origin(stack: &Stack) -> String {
    let invite = stack.add_user("origin-probe", "viewer", &[]);
    softlogin::origin_of(&invite)
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

/// A person with a software passkey, signed in to the dashboard.
fn signed_in(stack: &Stack, name: &str, role: &str, clusters: &[&str]) -> (String, String) {
    let invite = stack.add_user(name, role, clusters);
    let mut key = stack.register(&invite);
    let origin = softlogin::origin_of(&invite);
    block_on(softlogin::signin(&stack.http(), &origin, name, &mut key))
        .unwrap_or_else(|e| panic!("sign-in failed: {e}\nserver log:\n{}", stack.server_log()))
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn the_dashboard_shows_each_person_what_they_may_see_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 1).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    let node = etcd.client_urls()[0].clone();
    let clusters = format!(
        "  - {{name: alpha, kind: etcd, interval: 1s, timeout: 500ms, nodes: [{node}]}}\n  - {{name: bravo, kind: etcd, interval: 1s, timeout: 500ms, nodes: [{node}]}}\n"
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();

    // Signing in sets a session cookie no script can read, sent only over
    // TLS and only by this site's own pages.
    let origin = origin(&stack);
    let (cookie, set) = signed_in(&stack, "ada", "admin", &[]);
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    let ada = Web::new(&stack, &cookie);
    wait_until(
        Duration::from_secs(20),
        "the overview shows both clusters",
        || {
            let b = ada.get("/").body;
            b.contains("id=\"tile-alpha\"") && b.contains("id=\"tile-bravo\"")
        },
    );
    let home = ada.get("/");
    assert_eq!(home.status, 200);
    let h = |k: &str| home.headers[k].to_str().unwrap().to_string();
    assert!(h("content-security-policy").contains("default-src 'none'"));
    assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
    assert!(!home.body.contains("<script>"), "no inline script");
    // The browser's login is listed like any other.
    let sessions = String::from_utf8_lossy(&stack.client(&["sessions", "list"]).stdout).to_string();
    let ada_login = wait_for_login(&stack, "ada");
    assert!(sessions.contains(&ada_login), "{sessions}");

    // Every route of the table is served behind the guard; others are not.
    let served = |g: &Got| g.headers.contains_key("x-content-type-options");
    for (method, pattern, _) in dbmon_auth::perms::WEB_ROUTES {
        let path = route_path(pattern, "alpha");
        let g = if *method == "GET" && path == "/live" {
            // A stream: its headers are enough.
            let url = format!("{}{path}", ada.base);
            block_on(async {
                let r = ada
                    .http
                    .get(&url)
                    .header("cookie", &ada.cookie)
                    .send()
                    .await
                    .unwrap();
                Got {
                    status: r.status().as_u16(),
                    headers: r.headers().clone(),
                    body: String::new(),
                }
            })
        } else if *method == "POST" && path == "/api/signout" {
            continue; // below, with its CSRF token
        } else {
            ada.send(method, &path, &[])
        };
        assert!(served(&g), "{method} {path}: {} {}", g.status, g.body);
    }
    assert!(!served(&ada.get("/nosuch-route")));

    // A viewer of alpha: bravo is nowhere, in pages or on the live channel.
    let (vcookie, _) = signed_in(&stack, "vic", "viewer", &["alpha"]);
    let vic = Web::new(&stack, &vcookie);
    let overview = vic.get("/");
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("tile-alpha"), "{}", overview.body);
    assert!(!overview.body.contains("bravo"), "{}", overview.body);
    // Every route of the table that names a cluster, asked for bravo (and
    // the live channel of bravo): the answer of a cluster that does not exist.
    let mut probes: Vec<String> = dbmon_auth::perms::WEB_ROUTES
        .iter()
        .filter(|(m, p, _)| *m == "GET" && p.contains("{cluster}"))
        .map(|(_, p, _)| route_path(p, "bravo"))
        .collect();
    probes.push("/live?cluster=bravo".into());
    probes.push("/badge/bravo.svg".into());
    assert!(probes.len() >= 4, "{probes:?}");
    for path in &probes {
        let g = vic.get(path);
        let nosuch = vic.get(&path.replace("bravo", "nosuch"));
        assert_eq!(g.status, 404, "{path}: {}", g.body);
        assert_eq!(
            g.body,
            nosuch.body.replace("nosuch", "bravo"),
            "{path} tells bravo from no cluster"
        );
        assert!(!g.body.contains("tile-bravo"), "{path}: {}", g.body);
    }
    assert_eq!(vic.get("/clusters/alpha").status, 200);
    let page = vic.get("/clusters/alpha").body;
    assert!(page.contains("id=\"strip\"") && page.contains("class=\"matrix\""));
    let detail = vic.get("/clusters/alpha/nodes/(cluster)/checks/quorum");
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("Essential"), "{}", detail.body);
    // The live channel, from the start: alpha's tile, twice (the snapshot,
    // then a poll), and never bravo's.
    let sent = vic.live_until("/live", Duration::from_secs(10), |t| {
        t.matches("tile-alpha").count() >= 2
    });
    assert!(sent.matches("tile-alpha").count() >= 2, "{sent}");
    assert!(!sent.contains("bravo"), "{sent}");
    assert!(
        sent.contains("event: html") && sent.contains("id: "),
        "{sent}"
    );
    // Resuming from the last position sent carries on from there.
    let last_id: u64 = sent
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .unwrap();
    let resumed = vic.live_until(
        &format!("/live?after={last_id}"),
        Duration::from_secs(10),
        |t| t.contains("tile-alpha"),
    );
    let first_id: u64 = resumed
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    assert!(first_id > last_id, "{first_id} after {last_id}");
    // As a browser reconnects: the last id it saw in `Last-Event-ID`,
    // which wins over the page's `?after=`.
    let url = format!("{}/live?after=0", vic.base);
    let resumed_at = block_on(async {
        let mut r = vic
            .http
            .get(&url)
            .header("cookie", &vic.cookie)
            .header("last-event-id", last_id.to_string())
            .send()
            .await
            .unwrap();
        let c = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&c).to_string()
    });
    let id: u64 = resumed_at
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{resumed_at}"));
    assert!(id > last_id, "{id} after {last_id}: {resumed_at}");

    // A tampered cookie, an expired one: the sign-in page, the cookie cleared.
    let tampered = Web::new(&stack, &format!("{cookie}x"));
    let g = tampered.get("/");
    assert_eq!(g.status, 401);
    assert!(g.body.contains("data-page=\"signin\""), "{}", g.body);
    assert!(
        g.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "{:?}",
        g.headers
    );
    let token = cookie.trim_start_matches("dbmon_session=");
    let past = dbmon_auth::store::now_ms() - 1000;
    let expired =
        dbmon_auth::token::attenuate(token, &[dbmon_auth::caveat::Caveat::Expires(past)]).unwrap();
    let g = Web::new(&stack, &format!("dbmon_session={expired}")).get("/clusters/alpha");
    assert_eq!(g.status, 401);
    assert!(g.body.contains("expired"), "{}", g.body);
    assert_eq!(
        Web::new(&stack, &format!("dbmon_session={expired}"))
            .get("/live")
            .status,
        401
    );

    // A badge token in the cookie opens nothing.
    let out = stack.client(&["token", "badge", "--cluster", "alpha", "--ttl", "1d"]);
    assert!(out.status.success());
    let badge = String::from_utf8_lossy(&out.stdout)
        .split("token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let b = Web::new(&stack, &format!("dbmon_session={badge}"));
    for (method, pattern, access) in dbmon_auth::perms::WEB_ROUTES {
        if *access == dbmon_auth::perms::Access::Public {
            continue;
        }
        let path = route_path(pattern, "alpha");
        let g = b.send(method, &path, &[("origin", &origin)]);
        assert_eq!(g.status, 403, "{method} {path}: {}", g.body);
        assert!(g.body.contains("this token allows badge"), "{}", g.body);
    }

    // Signing out needs the page's origin and its CSRF token.
    let csrf = csrf_of(&ada.get("/").body);
    for (headers, why) in [
        (vec![("origin", origin.as_str())], "no CSRF token"),
        (vec![("x-csrf-token", csrf.as_str())], "no Origin"),
        (
            vec![("origin", "https://evil.example"), ("x-csrf-token", &csrf)],
            "another origin",
        ),
        (
            vec![("origin", origin.as_str()), ("x-csrf-token", "0000")],
            "a wrong token",
        ),
    ] {
        let g = ada.send("POST", "/api/signout", &headers);
        assert_eq!(g.status, 403, "{why}: {}", g.body);
    }
    assert_eq!(ada.get("/").status, 200, "still signed in");
    // The real sign-out ends the login: its live view closes.
    let live = Web::new(&stack, &cookie).live_until_end("/live");
    // The page is counted once its stream is served, a moment after the
    // answer's head reached the reader.
    wait_until(Duration::from_secs(10), "the live page counted", || {
        stack
            .http_get("/metrics")
            .contains("dbmon_dashboard_live_pages 1")
    });
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_dashboard_live_pages 1"),
        "{metrics}"
    );
    assert!(metrics.contains("dbmon_watch_subscribers 0"), "{metrics}");
    let g = ada.send(
        "POST",
        "/api/signout",
        &[("origin", &origin), ("x-csrf-token", &csrf)],
    );
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(
        g.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (ended, _) = live.join().unwrap();
    assert!(
        ended.contains("event: end") && ended.contains("revoked"),
        "{ended}"
    );
    let g = ada.get("/");
    assert_eq!(g.status, 401);
    assert!(g.body.contains("revoked"), "{}", g.body);
    let sessions = String::from_utf8_lossy(&stack.client(&["sessions", "list"]).stdout).to_string();
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with(&ada_login) && !l.trim_end().ends_with(" -")),
        "ada's browser login is not shown revoked:\n{sessions}"
    );

    // `sessions revoke` and `dbmon user remove` end a live view within a second.
    let (bea, _) = signed_in(&stack, "bea", "operator", &[]);
    for (who, cookie, end) in [
        ("bea", bea.as_str(), "revoke"),
        ("vic", vcookie.as_str(), "remove"),
    ] {
        let login = wait_for_login(&stack, who);
        let reader = Web::new(&stack, cookie).live_until_end("/live");
        // From the moment the command starts: its own start-up counts.
        let asked = Instant::now();
        if end == "revoke" {
            let out = stack.client(&["sessions", "revoke", "--login", &login]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let config = dir.path().join("dbmon.yaml");
            dbmon(&["user", "remove", who, "--config", config.to_str().unwrap()]);
        }
        let (sent, at) = reader.join().unwrap();
        assert!(sent.contains("event: end"), "{who}: {sent}");
        let took = at.saturating_duration_since(asked);
        eprintln!("{who}'s live view ended {took:?} after `{end}`");
        assert!(took < Duration::from_secs(1), "{who}: {took:?}");
    }
}

/// A route of the table made a path, about `cluster`.
fn route_path(pattern: &str, cluster: &str) -> String {
    pattern
        .replace("{cluster}", cluster)
        .replace("{node}", "(cluster)")
        .replace("{check}", "quorum")
        .replace("{id}", "nosuch")
        .replace("{file}", &format!("{cluster}.svg"))
}

/// The browser login of `who` (waiting for `sessions list` to show it).
fn wait_for_login(stack: &Stack, who: &str) -> String {
    let mut login = String::new();
    wait_until(
        Duration::from_secs(10),
        "the browser login is listed",
        || {
            let s =
                String::from_utf8_lossy(&stack.client(&["sessions", "list"]).stdout).to_string();
            if let Some(id) = s
                .lines()
                .find(|l| {
                    l.split_whitespace().nth(1) == Some(who) && l.contains("browser, passkey")
                })
                .and_then(|l| l.split_whitespace().next())
            {
                login = id.to_string();
            }
            !login.is_empty()
        },
    );
    login
}

#[test]
fn a_browser_signs_in_and_sees_a_member_die_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    let interval = Duration::from_secs(2);
    let clusters = format!(
        "  - name: web\n    kind: etcd\n    interval: 2s\n    timeout: 500ms\n    nodes: [{}]\n",
        etcd.client_urls().join(", ")
    );
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let invite = stack.add_user("chris", "admin", &[]);
    let (browser, ws_url) = start_browser(dir.path(), &stack.pki.join("ca.crt"));
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The origin the passkeys belong to (the invite's).
    let base = softlogin::origin_of(&invite)
        .as_str()
        .trim_end_matches('/')
        .to_string();

    let (mut p, mut other) = rt.block_on(async {
        let mut p = page(&ws_url).await;
        p.open(&invite).await;
        p.eval("document.getElementById('go').click()").await;
        p.wait_done("registration").await;
        // Any dashboard page asks a stranger to sign in, then opens.
        p.open(&format!("{base}/clusters/web")).await;
        assert_eq!(p.eval("document.body.dataset.page").await, "signin");
        p.eval("document.getElementById('user').value = 'chris'; document.getElementById('go').click()")
            .await;
        p.wait_js(
            "document.body.dataset.page === 'dashboard' && location.pathname === '/clusters/web'",
            Duration::from_secs(20),
            "signed in, the cluster page opens",
        )
        .await;
        // The cookie is out of scripts' reach.
        assert_eq!(p.eval("document.cookie").await, "");
        p.open(&format!("{base}/")).await;
        p.wait_js(
            "document.getElementById('live').dataset.state === 'open' && !!document.getElementById('tile-web') && document.getElementById('tile-web').dataset.health === 'healthy'",
            Duration::from_secs(30),
            "the overview is live and web is healthy",
        )
        .await;
        p.screenshot(&shots.join("overview.png")).await;
        // A second tab of the same browser, on the cluster page.
        let mut other = page(&ws_url).await;
        other.open(&format!("{base}/clusters/web")).await;
        other
            .wait_js(
                "document.getElementById('live').dataset.state === 'open'",
                Duration::from_secs(20),
                "the second tab is live",
            )
            .await;
        (p, other)
    });

    // A member dies: the tile turns degraded in place, within two polls.
    rt.block_on(p.eval("window.notReloaded = true"));
    etcd.kill(2);
    let killed = Instant::now();
    let took = rt.block_on(p.wait_js(
        "document.getElementById('tile-web').dataset.health === 'degraded'",
        2 * interval,
        "the web tile turns degraded",
    ));
    eprintln!(
        "tile degraded {took:?} after the kill ({:?} since)",
        killed.elapsed()
    );
    assert_eq!(rt.block_on(p.eval("window.notReloaded")), true, "no reload");
    let tile = rt.block_on(p.eval("document.getElementById('tile-web').textContent"));
    assert!(tile.as_str().unwrap().contains("2 of 3 nodes up"), "{tile}");
    rt.block_on(async {
        other
            .wait_js(
                "[...document.querySelectorAll('td.cell')].some(c => /crit|unknown/.test(c.textContent))",
                Duration::from_secs(10),
                "the cluster page shows the dead member's checks",
            )
            .await;
        p.screenshot(&shots.join("degraded.png")).await;
        // A phone's width: nothing wider than the screen; the matrix
        // scrolls in its own box.
        for (tab, path) in [(&mut p, "/"), (&mut other, "/clusters/web")] {
            tab.call(
                "Emulation.setDeviceMetricsOverride",
                serde_json::json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
            )
            .await;
            tab.open(&format!("{base}{path}")).await;
            tab.wait_js(
                "document.getElementById('live').dataset.state === 'open'",
                Duration::from_secs(20),
                "live at a phone's width",
            )
            .await;
            let fits = tab
                .eval("document.documentElement.scrollWidth <= window.innerWidth")
                .await;
            assert_eq!(fits, true, "{path} is wider than a phone");
        }
        p.screenshot(&shots.join("phone-overview.png")).await;
        other.screenshot(&shots.join("phone-cluster.png")).await;
        // With the keyboard: the first tile's link takes the focus.
        let focused = p
            .eval("const a = document.querySelector('#tile-web a'); a.focus(); document.activeElement === a")
            .await;
        assert_eq!(focused, true);

        // Signing out in one tab ends the live view in the other.
        p.eval("document.getElementById('signout').click()").await;
        let ended = other
            .wait_js(
                "document.getElementById('live').dataset.state === 'ended'",
                Duration::from_secs(5),
                "the other tab's live view ends",
            )
            .await;
        eprintln!("the other tab's live view ended {ended:?} after the sign-out click");
        assert!(ended < Duration::from_secs(1), "{ended:?}");
        let said = other
            .eval("document.getElementById('live').textContent")
            .await;
        assert!(said.as_str().unwrap().contains("revoked"), "{said}");
        p.wait_js(
            "location.pathname === '/signin'",
            Duration::from_secs(10),
            "the signed-out tab is on the sign-in page",
        )
        .await;
    });
    drop(browser);
}
