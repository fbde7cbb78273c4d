//! Headless Chromium (Debian's), driven over the DevTools protocol with a
//! virtual authenticator, its certificate store trusting the deployment's CA.

use super::{Proc, wait_until};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One page of a browser, over the DevTools protocol.
pub struct Page {
    ws: Ws,
    pub session: String,
    next: u64,
}

impl Page {
    pub async fn call_in(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
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

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_in(Some(&s), method, params).await
    }

    pub async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_js(
            "document.readyState === 'complete' && !!document.getElementById('status')",
            Duration::from_secs(20),
            &format!("{url} loads"),
        )
        .await;
    }

    /// Waits until the expression `js` is true; how long it took.
    pub async fn wait_js(&mut self, js: &str, within: Duration, what: &str) -> Duration {
        let started = Instant::now();
        while self.eval(js).await != true {
            if started.elapsed() >= within {
                let page = self
                    .eval("location.href + ': ' + document.body.innerText")
                    .await;
                panic!("not true within {within:?}: {what}; the page: {page}");
            }
            // The page is another process: ask again shortly.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        started.elapsed()
    }

    /// A PNG of what the page shows, written to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .expect("a PNG in base64");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("mkdir");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Waits for the page's status line to say done (or fails with what it says).
    pub async fn wait_done(&mut self, what: &str) -> String {
        self.wait_js(
            "['done', 'error'].includes(document.getElementById('status').dataset.state)",
            Duration::from_secs(20),
            what,
        )
        .await;
        let state = self
            .eval("document.getElementById('status').dataset.state")
            .await;
        let text = self
            .eval("document.getElementById('status').textContent")
            .await;
        assert_eq!(state, "done", "{what}: the page says {text}");
        text.as_str().unwrap_or("").to_string()
    }
}

/// Headless Chromium with its own profile and a home whose certificate
/// store trusts `ca`; killed when dropped.
pub struct Browser {
    pub proc: Proc,
}

pub fn start_browser(dir: &Path, ca: &Path) -> (Browser, String) {
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

pub async fn page(ws_url: &str) -> Page {
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
