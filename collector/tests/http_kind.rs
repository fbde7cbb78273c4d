//! `kind: http` end to end: configurations compiled as `dbmon` loads them,
//! the connector's real requests to real HTTP servers on loopback (plain
//! and TLS) that answer JSON, Prometheus text, errors, garbage, truncated
//! and huge bodies, redirects and silence, and every check's status and
//! sentence. Envoy's and Istio's presets are judged on their real captured
//! answers (tests/fixtures/PROVENANCE.md).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use dbmon_collector::{Observation, Registry, registry};
use dbmon_config::Config;
use dbmon_proto::Status;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const ISTIOD: &str = include_str!("fixtures/istio/istiod-1.5.0.txt");
const ENVOY: &str = include_str!("fixtures/envoy/stats-prometheus-envoy-2023.txt");
const VARZ_2_10: &str = include_str!("fixtures/nats/varz-v2.10.24-jetstream.json");
const VARZ_2_0: &str = include_str!("fixtures/nats/varz-v2.0.0.json");
const HEALTHZ: &str = include_str!("fixtures/nats/healthz-ok-v2.10.24.json");

/// What the test server does for one path.
#[derive(Clone)]
enum Route {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accepts the request and never answers.
    Hang,
    /// Announces `declared` bytes, sends `body`, and closes.
    Cut { declared: usize, body: Vec<u8> },
}

fn ok(body: &str) -> Route {
    answer(200, body)
}

fn answer(status: u16, body: &str) -> Route {
    Route::Answer {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

/// An HTTP/1.1 server on loopback written against the socket, so it can
/// misbehave in ways a framework would not let it.
#[derive(Clone, Default)]
struct Server {
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn new(routes: &[(&str, Route)]) -> Server {
        let s = Server::default();
        for (p, r) in routes {
            s.set(p, r.clone());
        }
        s
    }

    fn set(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(s).await });
            }
        });
        format!("http://{addr}")
    }

    async fn start_tls(&self, cert: &std::path::Path, key: &std::path::Path) -> String {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(dbmon_pki::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (me, acceptor) = (me.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        me.serve(tls).await
                    }
                });
            }
        });
        format!("https://{addr}")
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            headers,
        });
        let route = {
            let routes = self.routes.lock().unwrap();
            routes
                .get(&path)
                .or_else(|| routes.get(path.split('?').next().unwrap_or("")))
                .cloned()
        };
        match route.unwrap_or_else(|| answer(404, "not found")) {
            Route::Answer {
                status,
                headers,
                body,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.flush().await;
                let _ = s.shutdown().await;
            }
            Route::Hang => {
                // Held open until the client gives up and closes.
                let _ = s.read(&mut buf).await;
            }
            Route::Cut { declared, body } => {
                let out = format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n");
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.write_all(&body).await;
            }
        }
    }
}

fn label(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

fn load(yaml: &str) -> dbmon_config::ClusterConfig {
    let cfg = Config::parse(yaml, std::path::Path::new("test.yaml"), &Registry)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    cfg.clusters[0].clone()
}

fn connector(yaml: &str) -> Box<dyn dbmon_collector::Connector> {
    (registry::find("http").unwrap().build)(&load(yaml)).expect("connector builds")
}

fn find<'a>(obs: &'a [Observation], node: &str, check: &str) -> &'a Observation {
    obs.iter()
        .find(|o| o.node == node && o.check == check)
        .unwrap_or_else(|| panic!("no {check} observation for node {node:?} in {obs:#?}"))
}

fn yaml(nodes: &[&str], body: &str) -> String {
    format!(
        "clusters:\n  - name: svc\n    kind: http\n    interval: 2s\n    timeout: 500ms\n    nodes: [{}]\n{body}",
        nodes.join(", ")
    )
}

#[tokio::test]
async fn json_answers_are_judged_with_paths_functions_and_patterns() {
    let body = r#"{"state":"ok","items":[1,2,3],"data":[{"state":"ready"}],"version":"1.2.3","draining":false,"used":81,"max":100}"#;
    let a = Server::new(&[("/status", ok(body))]);
    let b = Server::new(&[(
        "/status",
        ok(&body
            .replace("1.2.3", "1.3.0")
            .replace("\"used\":81", "\"used\":97")),
    )]);
    let (ua, ub) = (a.start().await, b.start().await);
    let c = connector(&yaml(
        &[&ua, &ub],
        r#"    requests:
      status: {path: /status, format: json}
    checks:
      state: {request: status, crit: '[BODY].state != "ok"'}
      items: {request: status, value: "len([BODY].items)", warn: "> 2", unit: items}
      ready: {request: status, crit: '[BODY].data[0].state != pat("^(ready|ok)$")'}
      missing: {request: status, value: "[BODY].nope", warn: "> 1"}
      out_of_range: {request: status, value: "[BODY].data[3].state", warn: '== "x"'}
      has_version: {request: status, crit: "!has([BODY].version) || [BODY].draining"}
      usage: {request: status, value: "[BODY].used / [BODY].max * 100", warn: "> 80%", crit: "> 95%"}
      latency: {request: status, value: "[RESPONSE_TIME]", warn: "> 1us", crit: "> 1h"}
      version: {request: status, value: "[BODY].version", cluster: distinct, warn: "> 1"}
      total_items: {request: status, value: "sum([BODY].items)", cluster: sum, warn: "> [NODES] * 5"}
      most_used: {request: status, value: "[BODY].used", cluster: max, crit: "> 95"}
      least_used: {request: status, value: "[BODY].used", cluster: min, warn: "< 90"}
      ok_nodes: {request: status, value: "[BODY].used < 90", cluster: count_ok, crit: "< [NODES]"}
"#,
    ));
    let obs = c.poll().await;
    let (na, nb) = (label(&ua), label(&ub));
    let o = find(&obs, &na, "state");
    assert_eq!(
        (o.status, o.message.as_str()),
        (Status::Ok, "[BODY].state = \"ok\"")
    );
    let o = find(&obs, &na, "items");
    assert_eq!(o.status, Status::Warn);
    assert_eq!((o.value, o.unit.as_str()), (Some(3.0), "items"));
    assert_eq!(o.message, "3 items (warn: > 2)");
    assert_eq!(find(&obs, &na, "ready").status, Status::Ok);
    let o = find(&obs, &na, "missing");
    assert_eq!(o.status, Status::Unknown);
    assert!(
        o.message.contains("[BODY].nope is missing from the answer"),
        "{o:?}"
    );
    let o = find(&obs, &na, "out_of_range");
    assert_eq!(o.status, Status::Unknown);
    assert!(
        o.message.contains("[BODY].data has 1 item(s), so no [3]"),
        "{o:?}"
    );
    assert_eq!(find(&obs, &na, "has_version").status, Status::Ok);
    let o = find(&obs, &na, "usage");
    assert_eq!(
        (o.status, o.value, o.unit.as_str()),
        (Status::Warn, Some(81.0), "%")
    );
    assert_eq!(o.message, "81% (warn: > 80%)");
    let o = find(&obs, &nb, "usage");
    assert_eq!(o.status, Status::Crit, "{o:?}");
    // Every real answer takes more than a microsecond, and far less than an hour.
    let o = find(&obs, &na, "latency");
    assert_eq!((o.status, o.unit.as_str()), (Status::Warn, "us"));
    assert!(o.value.unwrap() > 1.0, "{o:?}");
    let o = find(&obs, "", "version");
    assert_eq!(o.status, Status::Warn, "{o:?}");
    assert_eq!(o.value, Some(2.0));
    assert!(o.message.contains(&format!("\"1.2.3\" on {na}")), "{o:?}");
    assert!(o.message.contains(&format!("\"1.3.0\" on {nb}")), "{o:?}");
    let o = find(&obs, "", "total_items");
    assert_eq!((o.status, o.value), (Status::Warn, Some(12.0)), "{o:?}");
    assert_eq!(o.message, "sum of 12 (warn: > [NODES] * 5)");
    let o = find(&obs, "", "most_used");
    assert_eq!((o.status, o.value), (Status::Crit, Some(97.0)), "{o:?}");
    let o = find(&obs, "", "least_used");
    assert_eq!((o.status, o.value), (Status::Warn, Some(81.0)), "{o:?}");
    let o = find(&obs, "", "ok_nodes");
    assert_eq!(
        (o.status, o.value, o.unit.as_str()),
        (Status::Crit, Some(1.0), "nodes"),
        "{o:?}"
    );
    assert_eq!(o.message, "1 of 2 nodes ok (crit: < [NODES])");
    // No `up` check defined: every node answering every request is up.
    assert_eq!(find(&obs, &na, "up").status, Status::Ok);
    assert_eq!(a.seen("/status")[0].method, "GET");
}

#[tokio::test]
async fn prometheus_answers_selectors_aggregates_and_rates() {
    let s = Server::new(&[("/metrics", ok(ISTIOD))]);
    let url = s.start().await;
    let node = label(&url);
    let c = connector(&yaml(
        &[&url],
        r#"    requests:
      metrics: {path: /metrics, format: prometheus}
    checks:
      xds: {request: metrics, value: "[METRIC].pilot_xds", warn: "< 1"}
      pushes: {request: metrics, value: "sum([METRIC].pilot_xds_pushes)"}
      cds: {request: metrics, value: '[METRIC].pilot_xds_pushes{type="cds"}'}
      not_rds: {request: metrics, value: 'count([METRIC].pilot_xds_pushes{type!="rds"})'}
      re: {request: metrics, value: 'max([METRIC].pilot_xds_pushes{type=~"[ce]ds"})'}
      lowest: {request: metrics, value: "min([METRIC].pilot_xds_pushes)"}
      mean: {request: metrics, value: "avg([METRIC].pilot_xds_pushes)"}
      several: {request: metrics, value: "[METRIC].pilot_xds_pushes", warn: "> 1"}
      absent: {request: metrics, value: "[METRIC].no_such_metric", warn: "> 1"}
      tag: {request: metrics, value: 'label([METRIC].istio_build{component="pilot"}, "tag")'}
      push_rate: {request: metrics, value: "rate(sum([METRIC].pilot_xds_pushes))", unit: /s}
"#,
    ));
    let obs = c.poll().await;
    let v = |check: &str| find(&obs, &node, check).value;
    assert_eq!(v("xds"), Some(5.0));
    assert_eq!(v("pushes"), Some(97.0)); // 26 + 26 + 26 + 19
    assert_eq!(v("cds"), Some(26.0));
    assert_eq!(v("not_rds"), Some(3.0));
    assert_eq!(v("re"), Some(26.0));
    assert_eq!(v("lowest"), Some(19.0));
    assert_eq!(v("mean"), Some(24.25));
    let o = find(&obs, &node, "several");
    assert_eq!(o.status, Status::Unknown);
    assert!(
        o.message.contains("4 samples match pilot_xds_pushes"),
        "{o:?}"
    );
    let o = find(&obs, &node, "absent");
    assert_eq!(o.status, Status::Unknown);
    assert!(o.message.contains("no sample of no_such_metric"), "{o:?}");
    assert_eq!(find(&obs, &node, "tag").message, "\"1.5.0\"");
    let o = find(&obs, &node, "push_rate");
    assert_eq!(o.status, Status::Unknown);
    assert!(o.message.contains("needs two polls"), "{o:?}");

    // The second poll sees 20 more cds pushes (an edit of the real
    // `pilot_xds_pushes{type="cds"} 26` line): a positive rate.
    let edited = ISTIOD.replace(
        "pilot_xds_pushes{type=\"cds\"} 26",
        "pilot_xds_pushes{type=\"cds\"} 46",
    );
    assert_ne!(edited, ISTIOD);
    s.set("/metrics", ok(&edited));
    let obs = c.poll().await;
    let o = find(&obs, &node, "push_rate");
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(o.value.unwrap() > 0.0, "{o:?}");
    assert_eq!(o.unit, "/s");
}

#[tokio::test]
async fn failures_become_crit_or_unknown_with_the_reason() {
    let s = Server::new(&[
        ("/err", answer(500, "{\"error\":\"boom\"}")),
        ("/garbage", ok("<html>not json</html>")),
        ("/garbage-metrics", ok("<html>not metrics</html>")),
        ("/huge", ok(&"x".repeat(200 << 10))),
        (
            "/moved",
            Route::Answer {
                status: 302,
                headers: vec![("location".into(), "/target".into())],
                body: Vec::new(),
            },
        ),
        ("/target", ok("{}")),
    ]);
    let url = s.start().await;
    let node = label(&url);
    let c = connector(&yaml(
        &[&url],
        r#"    requests:
      err: {path: /err, format: json}
      garbage: {path: /garbage, format: json}
      garbage_metrics: {path: /garbage-metrics, format: prometheus}
      huge: {path: /huge, max_body: 64KiB}
      moved: {path: /moved}
    checks:
      up: {request: err, crit: "[STATUS] != 200"}
      err_body: {request: err, crit: '[BODY].error == "boom"'}
      garbage: {request: garbage, crit: '[BODY].state != "ok"'}
      garbage_metrics: {request: garbage_metrics, value: "[METRIC].up", crit: "< 1"}
      huge: {request: huge, crit: "[STATUS] != 200"}
      moved: {request: moved, crit: "[STATUS] != 302"}
"#,
    ));
    let obs = c.poll().await;
    let o = find(&obs, &node, "up");
    assert_eq!(
        (o.status, o.message.as_str()),
        (Status::Crit, "[STATUS] = 500 (crit: [STATUS] != 200)")
    );
    let o = find(&obs, &node, "err_body");
    assert_eq!(o.status, Status::Crit);
    assert_eq!(
        o.message,
        "[BODY].error = \"boom\" (crit: [BODY].error == \"boom\")"
    );
    let o = find(&obs, &node, "garbage");
    assert_eq!(o.status, Status::Unknown);
    assert!(
        o.message.contains("is not JSON") && o.message.contains("<html>"),
        "{o:?}"
    );
    let o = find(&obs, &node, "garbage_metrics");
    assert_eq!(o.status, Status::Unknown);
    assert!(o.message.contains("not Prometheus text"), "{o:?}");
    let o = find(&obs, &node, "huge");
    assert_eq!(o.status, Status::Unknown);
    assert!(o.message.contains("larger than 64 KiB"), "{o:?}");
    // A redirect is the answer; the client does not follow it.
    let o = find(&obs, &node, "moved");
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(s.seen("/target").is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn silent_truncating_and_closed_nodes_are_down_and_quorum_counts_them() {
    let good = Server::new(&[("/ready", ok("ok"))]);
    let hang = Server::new(&[("/ready", Route::Hang)]);
    let cut = Server::new(&[(
        "/ready",
        Route::Cut {
            declared: 1000,
            body: b"partial".to_vec(),
        },
    )]);
    let (ug, uh, uc) = (good.start().await, hang.start().await, cut.start().await);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = connector(&yaml(
        &[&ug, &uh, &uc, &closed],
        r#"    requests:
      ready: {path: /ready, timeout: 300ms}
    checks:
      text: {request: ready, crit: '[BODY] != "ok"'}
      quorum: {request: ready, crit: "[STATUS] != 200"}
"#,
    ));
    let started = std::time::Instant::now();
    let obs = c.poll().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(find(&obs, &label(&ug), "up").status, Status::Ok);
    assert_eq!(find(&obs, &label(&ug), "text").status, Status::Ok);
    let o = find(&obs, &label(&uh), "up");
    assert_eq!(
        (o.status, o.message.as_str()),
        (Status::Crit, "ready: no answer within 300ms")
    );
    let o = find(&obs, &label(&uc), "up");
    assert_eq!(o.status, Status::Crit);
    assert!(o.message.contains("answer cut short"), "{o:?}");
    let o = find(&obs, &label(&closed), "up");
    assert_eq!(o.status, Status::Crit);
    assert!(o.message.contains("no answer"), "{o:?}");
    // A check whose request got no answer cannot be judged.
    assert_eq!(find(&obs, &label(&uh), "text").status, Status::Unknown);
    let o = find(&obs, "", "quorum");
    assert_eq!((o.status, o.value), (Status::Crit, Some(1.0)), "{o:?}");
    assert!(o.message.starts_with("1 of 4 nodes in; out: "), "{o:?}");
}

#[tokio::test]
async fn secrets_ride_in_headers_and_bodies_and_never_in_sentences() {
    let token = "s3cr3t-token-value-1234";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, format!("{{\"key\":\"{token}\"}}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The server echoes what it was sent, as a careless service might.
    let s = Server::new(&[("/echo", answer(401, &format!("denied: Bearer {token}")))]);
    let url = s.start().await;
    // SAFETY of the test: the variable is unique to this test.
    let var = "DBMON_TEST_HTTP_TOKEN";
    unsafe_env(var, &format!("Bearer {token}"));
    let y = yaml(
        &[&url],
        &format!(
            r#"    requests:
      echo:
        path: /echo?x=1
        method: post
        headers: {{Authorization: {{env: {var}}}, X-Plain: visible}}
        body: {{file: {}}}
    checks:
      up: {{request: echo, value: "[BODY]", crit: "[STATUS] != 200"}}
"#,
            file.display()
        ),
    );
    let cluster = load(&y);
    assert!(!format!("{cluster:?}").contains(token));
    let c = (registry::find("http").unwrap().build)(&cluster).unwrap();
    let obs = c.poll().await;
    let o = find(&obs, &label(&url), "up");
    assert_eq!(o.status, Status::Crit);
    assert!(!o.message.contains(token), "{o:?}");
    assert!(o.message.contains("[redacted]"), "{o:?}");
    let seen = s.seen("/echo?x=1");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {token}"));
    assert_eq!(seen[0].headers["x-plain"], "visible");

    // Written inline, a credential header is refused where it is written.
    let bad = yaml(
        &[&url],
        "    requests:\n      echo: {path: /echo, headers: {Authorization: Bearer abc}}\n    checks:\n      up: {request: echo, crit: \"[STATUS] != 200\"}\n",
    );
    let e = Config::parse(&bad, std::path::Path::new("t.yaml"), &Registry).unwrap_err();
    assert!(
        e.to_string()
            .contains("requests.echo.headers.Authorization: secrets are never written inline"),
        "{e}"
    );
    assert!(!e.to_string().contains("Bearer abc"), "{e}");
}

#[test]
fn a_check_marked_essential_is_essential_and_others_are_not() {
    let cluster = load(&yaml(
        &["127.0.0.1:1"],
        "    requests:\n      r: {path: /r, format: json}\n    checks:\n      leader: {request: r, crit: \"[BODY].leader == false\", essential: true}\n      other: {request: r, crit: \"[STATUS] != 200\"}\n",
    ));
    assert!(registry::essential(&cluster, "leader"));
    assert!(!registry::essential(&cluster, "other"));
    let etcd = load("clusters:\n  - {name: e, kind: etcd, nodes: [127.0.0.1:1]}\n");
    assert!(registry::essential(&etcd, "quorum"));
    assert!(!registry::essential(&etcd, "db_size"));
}

#[tokio::test]
async fn auth_logs_in_with_http_basic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "pa55-w0rd-long\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Server::new(&[("/ready", ok("ok"))]);
    let url = s.start().await;
    let c = connector(&format!(
        "clusters:\n  - name: svc\n    kind: http\n    nodes: [{url}]\n    auth: {{username: dbmon, password: {{file: {}}}}}\n    requests:\n      ready: {{path: /ready}}\n    checks:\n      up: {{request: ready, crit: \"[STATUS] != 200\"}}\n",
        file.display()
    ));
    let obs = c.poll().await;
    assert_eq!(find(&obs, &label(&url), "up").status, Status::Ok);
    // "dbmon:pa55-w0rd-long" in base64.
    assert_eq!(
        s.seen("/ready")[0].headers["authorization"],
        "Basic ZGJtb246cGE1NS13MHJkLWxvbmc="
    );
}

fn unsafe_env(var: &str, value: &str) {
    // Tests in this file run on threads of one process; only this test
    // reads this variable.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(var, value)
    };
}

#[tokio::test]
async fn certificate_expiration_is_read_from_the_nodes_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dbmon_pki::Ca::init(&dir.path().join("ca"), "svc.test", false).unwrap();
    let cert = ca
        .issue(
            dbmon_pki::Role::Server,
            "node",
            None,
            &["127.0.0.1".into()],
            Duration::from_secs(10 * 86400),
            false,
        )
        .unwrap();
    let s = Server::new(&[("/ready", ok("ok"))]);
    let url = s.start_tls(&cert.cert_path, &cert.key_path).await;
    let plain = Server::new(&[("/ready", ok("ok"))]).start().await;
    let c = connector(&format!(
        "clusters:\n  - name: svc\n    kind: http\n    nodes: [{url}, {plain}]\n    tls: {{ca_file: {}}}\n    requests:\n      ready: {{path: /ready}}\n    checks:\n      cert: {{request: ready, value: \"[CERTIFICATE_EXPIRATION]\", warn: \"< 30d\", crit: \"< 7d\"}}\n",
        dir.path().join("ca/ca.crt").display()
    ));
    let obs = c.poll().await;
    let o = find(&obs, &label(&url), "cert");
    assert_eq!((o.status, o.unit.as_str()), (Status::Warn, "d"), "{o:?}");
    let days = o.value.unwrap();
    assert!((9.0..=10.0).contains(&days), "{o:?}");
    let o = find(&obs, &label(&plain), "cert");
    assert_eq!(o.status, Status::Unknown);
    assert!(o.message.contains("plain HTTP"), "{o:?}");
}

#[tokio::test]
async fn istio_preset_on_a_real_istiod_answer() {
    let s = Server::new(&[("/metrics", ok(ISTIOD))]);
    let (a, b) = (s.start().await, s.start().await);
    let c = connector(&format!(
        "clusters:\n  - name: mesh\n    preset: istio\n    nodes: [{a}, {b}]\n"
    ));
    let obs = c.poll().await;
    let node = label(&a);
    for check in [
        "up",
        "connected_proxies",
        "convergence",
        "config_conflicts",
        "duplicate_clusters",
        "root_cert_expiry",
    ] {
        assert_eq!(
            find(&obs, &node, check).status,
            Status::Ok,
            "{check}: {obs:#?}"
        );
    }
    assert_eq!(find(&obs, &node, "connected_proxies").message, "5 proxies");
    let o = find(&obs, &node, "convergence");
    assert!((o.value.unwrap() - 0.019777191 / 6.0).abs() < 1e-9, "{o:?}");
    // citadel_server_root_cert_expiry_timestamp 1.900963606e+09 is in 2030.
    let o = find(&obs, &node, "root_cert_expiry");
    assert_eq!(o.unit, "d");
    assert!(o.value.unwrap() > 30.0, "{o:?}");
    let o = find(&obs, "", "version");
    assert_eq!((o.status, o.value), (Status::Ok, Some(1.0)), "{o:?}");
    assert!(o.message.contains("\"1.5.0\""), "{o:?}");
    // Rates are known from the second poll.
    assert_eq!(find(&obs, &node, "pushes").status, Status::Unknown);
    let obs = c.poll().await;
    let o = find(&obs, &node, "pushes");
    assert_eq!((o.status, o.value), (Status::Ok, Some(0.0)), "{o:?}");
}

#[tokio::test]
async fn envoy_preset_on_a_real_envoy_answer_with_an_override() {
    let s = Server::new(&[("/stats/prometheus", ok(ENVOY))]);
    let url = s.start().await;
    let node = label(&url);
    // No capture of /ready exists: `up` is pointed at the stats answer,
    // which is also how an override of one field of a preset's check reads.
    let c = connector(&format!(
        "clusters:\n  - name: edge\n    preset: envoy\n    nodes: [{url}]\n    checks:\n      up: {{request: stats}}\n      cert_expiry: {{warn: \"< 60\"}}\n      pending_overflow: {{enabled: false}}\n"
    ));
    let obs = c.poll().await;
    for check in ["up", "live", "state", "healthy_hosts", "cert_expiry"] {
        assert_eq!(
            find(&obs, &node, check).status,
            Status::Ok,
            "{check}: {obs:#?}"
        );
    }
    assert_eq!(find(&obs, &node, "healthy_hosts").message, "100%");
    assert_eq!(find(&obs, &node, "cert_expiry").value, Some(4294967295.0));
    assert!(
        !obs.iter().any(|o| o.check == "pending_overflow"),
        "disabled"
    );
    let o = find(&obs, "", "version");
    assert_eq!((o.status, o.value), (Status::Ok, Some(1.0)), "{o:?}");
    assert!(o.message.contains("9993205"), "{o:?}");
    let obs = c.poll().await;
    for check in ["downstream_5xx", "connect_failures"] {
        let o = find(&obs, &node, check);
        assert_eq!((o.status, o.value), (Status::Ok, Some(0.0)), "{o:?}");
    }
}

#[tokio::test]
async fn nats_preset_on_real_varz_answers_of_two_versions() {
    let new = Server::new(&[("/healthz", ok(HEALTHZ)), ("/varz", ok(VARZ_2_10))]);
    let old = Server::new(&[("/healthz", ok(HEALTHZ)), ("/varz", ok(VARZ_2_0))]);
    let (un, uo) = (new.start().await, old.start().await);
    let c = connector(&format!(
        "clusters:\n  - name: bus\n    preset: nats\n    nodes: [{un}, {uo}]\n"
    ));
    let obs = c.poll().await;
    let n = label(&un);
    assert_eq!(find(&obs, &n, "up").status, Status::Ok);
    assert_eq!(find(&obs, "", "quorum").message, "2 of 2 nodes in");
    // Both captures are standalone servers (routes 0): each should route
    // to the other.
    let o = find(&obs, &n, "routes");
    assert_eq!((o.status, o.value), (Status::Warn, Some(0.0)));
    assert_eq!(o.message, "0 routes (warn: < [NODES] - 1)");
    let o = find(&obs, &n, "connections");
    assert_eq!(o.status, Status::Ok);
    assert!(
        (o.value.unwrap() - 44.0 / 250000.0 * 100.0).abs() < 1e-9,
        "{o:?}"
    );
    let o = find(&obs, "", "version");
    assert_eq!((o.status, o.value), (Status::Warn, Some(2.0)), "{o:?}");
}
