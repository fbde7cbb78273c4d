//! A real browser signs in: headless Chromium (Debian's), driven over the
//! DevTools protocol with a virtual authenticator, trusting the deployment's
//! CA through its certificate store, opens an invite and registers a
//! passkey, then completes a `dbmon-client login`, and the CLI's token works.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::time::Duration;
use support::browser::{page, start_browser};
use support::*;

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
