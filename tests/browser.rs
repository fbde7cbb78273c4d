//! A real browser signs in: headless Chromium (Debian's), driven over the
//! DevTools protocol with a virtual authenticator, trusting the deployment's
//! CA through its certificate store, opens an invite and registers a
//! passkey, then completes a `dbmon-client login`, and the CLI's token works.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One page of a browser, over the DevTools protocol.
struct Page {
    ws: Ws,
    session: String,
    next: u64,
}

impl Page {
    async fn call_in(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send to the browser");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("the browser did not answer {method}"))
                .expect("the browser closed the connection")
                .expect("read from the browser");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_in(Some(&s), method, params).await
    }

    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval("document.readyState").await != "complete"
            || self.eval("!!document.getElementById('status')").await != true
        {
            assert!(Instant::now() < deadline, "{url} did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the page's status line to say done (or fails with what it says).
    async fn wait_done(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self
                .eval("document.getElementById('status').dataset.state || ''")
                .await;
            let text = self
                .eval("document.getElementById('status').textContent")
                .await;
            match state.as_str() {
                Some("done") => return text.as_str().unwrap_or("").to_string(),
                Some("error") => panic!("{what}: the page says {text}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{what}: still {state} / {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Headless Chromium with its own profile and a home whose certificate
/// store trusts `ca`; killed when dropped.
struct Browser {
    proc: Proc,
}

fn start_browser(dir: &Path, ca: &Path) -> (Browser, String) {
    let home = dir.join("browser-home");
    let nss = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    let ok = |c: &mut Command| {
        let out = c.output().expect("certutil (libnss3-tools)");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]));
    ok(Command::new("certutil")
        .args(["-A", "-t", "C,,", "-n", "dbmon-test-ca", "-d", &db, "-i"])
        .arg(ca));
    let profile = dir.join("browser-profile");
    let proc = Proc::spawn(
        Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .env("HOME", &home)
            .stdout(Stdio::null()),
        dir.join("browser.log"),
    );
    let port_file = profile.join("DevToolsActivePort");
    let mut text = String::new();
    wait_until(
        Duration::from_secs(30),
        "Chromium writes DevToolsActivePort",
        || {
            text = std::fs::read_to_string(&port_file).unwrap_or_default();
            text.lines().count() >= 2
        },
    );
    let mut lines = text.lines();
    let port = lines.next().unwrap().trim().to_string();
    let path = lines.next().unwrap().trim().to_string();
    (Browser { proc }, format!("ws://127.0.0.1:{port}{path}"))
}

async fn page(ws_url: &str) -> Page {
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("DevTools connection");
    let mut p = Page {
        ws,
        session: String::new(),
        next: 0,
    };
    let t = p
        .call_in(None, "Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    let a = p
        .call_in(
            None,
            "Target.attachToTarget",
            json!({ "targetId": t["targetId"], "flatten": true }),
        )
        .await;
    p.session = a["sessionId"].as_str().unwrap().to_string();
    p.call("Page.enable", json!({})).await;
    p.call("WebAuthn.enable", json!({})).await;
    // A platform authenticator that verifies its user, as a laptop's does.
    p.call(
        "WebAuthn.addVirtualAuthenticator",
        json!({ "options": {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true
        }}),
    )
    .await;
    p
}

#[test]
fn a_browser_registers_a_passkey_and_completes_a_cli_login() {
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, clusters) = {
        let etcd = EtcdCluster::start(&dir.path().join("etcd"), 1).expect("start etcd");
        let y = format!(
            "  - name: web\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{}]\n",
            etcd.client_urls().join(", ")
        );
        (etcd, y)
    };
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let invite = stack.add_user("chris", "admin", &[]);
    let (browser, ws_url) = start_browser(dir.path(), &stack.pki.join("ca.crt"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut p = rt.block_on(async {
        let mut p = page(&ws_url).await;
        p.open(&invite).await;
        p.eval("document.getElementById('go').click()").await;
        let said = p.wait_done("registration").await;
        assert!(said.contains("Passkey registered for chris"), "{said}");
        // The secret left the address bar once used.
        let url = p.eval("location.href").await;
        assert!(!url.as_str().unwrap().contains('#'), "{url}");
        p
    });

    // `dbmon-client login`; the browser opens its URL and signs in.
    let ca = stack.pki.join("ca.crt");
    let args = ["--server", &stack.grpc, "--ca", ca.to_str().unwrap()];
    let home = dir.path().join("chris-home");
    let token = cli_login_with(&args, &home, |url, printed| {
        let code = printed
            .iter()
            .find_map(|l| l.split("shows the code ").nth(1))
            .and_then(|rest| rest.split(',').next())
            .ok_or_else(|| format!("no code in {printed:?}"))?
            .to_string();
        rt.block_on(async {
            p.open(url).await;
            let shown = p.eval("document.getElementById('code').textContent").await;
            assert_eq!(shown.as_str(), Some(code.as_str()), "the page shows the CLI's code");
            p.eval("document.getElementById('user').value = 'chris'; document.getElementById('go').click()")
                .await;
            let said = p.wait_done("login").await;
            assert!(said.contains("Signed in as chris"), "{said}");
        });
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}\nbrowser log:\n{}", stack.server_log(), browser.proc.log_text()));

    // The token works, and says who it is.
    let out = stack.client_as(&token, &["whoami"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("user:     chris") && text.contains("role:     admin"),
        "{text}"
    );
    wait_until(
        Duration::from_secs(20),
        "status shows the web cluster",
        || {
            let out = stack.client_as(&token, &["status", "-o", "json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"cluster\": \"web\"")
        },
    );
    // A used login page is gone.
    rt.block_on(async {
        let state = p.eval("fetch(location.href).then(r => r.status)").await;
        assert_eq!(state, 404, "a finished login's page is gone");
    });
    let log = stack.server_log();
    assert!(log.contains("event=\"register\" user=\"chris\""), "{log}");
    assert!(log.contains("event=\"mint\" user=\"chris\""), "{log}");
}
