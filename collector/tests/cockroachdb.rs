//! The CockroachDB connector against real captured `/_status/vars`
//! payloads (tests/fixtures/PROVENANCE.md), served at their real paths by
//! HTTP servers on loopback, one per node. Variants are one-line edits of the
//! real payload, each described where it is made.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use dbmon_collector::{Observation, Registry, registry};
use dbmon_config::Config;
use dbmon_proto::Status;
use dbmon_proto::health::summarize;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STATUS_VARS: &str = include_str!("fixtures/cockroachdb/status-vars.txt");
const NOT_COCKROACHDB: &str = include_str!("fixtures/cockroachdb/not-cockroachdb.txt");

/// Replaces the one real line starting with `prefix` by `line`; panics if
/// the payload has no such line, so an edit never invents a metric.
fn edit(payload: &str, prefix: &str, line: &str) -> String {
    let mut found = 0;
    let out: Vec<&str> = payload
        .lines()
        .map(|l| {
            if l.starts_with(prefix) {
                found += 1;
                line
            } else {
                l
            }
        })
        .collect();
    assert_eq!(
        found, 1,
        "the real payload has exactly one line starting {prefix:?}"
    );
    out.join("\n") + "\n"
}

/// What one fake node serves, changeable while it runs.
struct Node {
    vars: Mutex<String>,
    vars_status: AtomicU16,
    health_status: AtomicU16,
    /// When set, `/_status/nodes` needs this session (as secure clusters do).
    session: Mutex<Option<String>>,
    logins: AtomicUsize,
    nodes_requests_with_session: AtomicUsize,
    /// Requests to `/health` and `/_status/vars`.
    requests: AtomicUsize,
    /// When set, `/health` answers with `Connection: close`.
    close_after_health: AtomicBool,
}

impl Node {
    fn new(vars: String) -> Arc<Node> {
        Arc::new(Node {
            vars: Mutex::new(vars),
            vars_status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            session: Mutex::new(None),
            logins: AtomicUsize::new(0),
            nodes_requests_with_session: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            close_after_health: AtomicBool::new(false),
        })
    }
}

async fn health(State(n): State<Arc<Node>>) -> (StatusCode, HeaderMap) {
    n.requests.fetch_add(1, Ordering::SeqCst);
    let mut headers = HeaderMap::new();
    if n.close_after_health.load(Ordering::SeqCst) {
        headers.insert("connection", "close".parse().unwrap());
    }
    let code =
        StatusCode::from_u16(n.health_status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    (code, headers)
}

async fn vars(State(n): State<Arc<Node>>) -> (StatusCode, String) {
    n.requests.fetch_add(1, Ordering::SeqCst);
    let code = StatusCode::from_u16(n.vars_status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    (code, n.vars.lock().unwrap().clone())
}

/// No capture of `/_status/nodes` exists, so no body is invented: 404 once
/// the session (if one is required) is right.
async fn nodes(State(n): State<Arc<Node>>, headers: HeaderMap) -> StatusCode {
    let want = n.session.lock().unwrap().clone();
    if let Some(want) = want {
        let got = headers
            .get("x-cockroach-api-session")
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
        n.nodes_requests_with_session.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::NOT_FOUND
}

/// `/api/v2/login/` as CockroachDB documents it: form fields username and
/// password, answer `{"session": "..."}`.
async fn login(State(n): State<Arc<Node>>, body: String) -> (StatusCode, String) {
    let ok = body.contains("username=dbmon") && body.contains("password=s3cret%21");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"the provided credentials did not match\"}".into(),
        );
    }
    let i = n.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let session = format!("session-{i}");
    *n.session.lock().unwrap() = Some(session.clone());
    (StatusCode::OK, format!("{{\"session\":\"{session}\"}}"))
}

fn app(node: Arc<Node>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/_status/vars", get(vars))
        .route("/_status/nodes", get(nodes))
        .route("/api/v2/login/", post(login))
        .with_state(node)
}

/// Serves `node` on a loopback port until the runtime ends.
async fn serve(node: Arc<Node>) -> (String, tokio::task::JoinHandle<()>) {
    let app = app(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

fn cluster_yaml(nodes: &[String], extra: &str) -> String {
    format!(
        "clusters:\n  - name: crdb\n    kind: cockroachdb\n    interval: 1s\n    timeout: 300ms\n    nodes: [{}]\n{extra}",
        nodes.join(", ")
    )
}

async fn poll(yaml: &str) -> Vec<Observation> {
    let cfg =
        Config::parse(yaml, std::path::Path::new("test.yaml"), &Registry).expect("valid config");
    let cluster = &cfg.clusters[0];
    let connector =
        (registry::find("cockroachdb").unwrap().build)(cluster).expect("connector builds");
    connector.poll().await
}

fn find<'a>(obs: &'a [Observation], node: &str, check: &str) -> &'a Observation {
    obs.iter()
        .find(|o| o.node == node && o.check == check)
        .unwrap_or_else(|| panic!("no {check} observation for node {node:?} in {obs:#?}"))
}

fn label(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// Reports as the agent would stamp them, to derive cluster health.
fn health_of(obs: &[Observation]) -> dbmon_proto::Health {
    summary_of(obs).health
}

/// The summary of the observations, as `status` shows it.
fn summary_of(obs: &[Observation]) -> dbmon_proto::health::ClusterSummary {
    let reports: Vec<dbmon_proto::Report> = obs
        .iter()
        .map(|o| {
            let mut r = dbmon_proto::Report {
                cluster: "crdb".into(),
                node: o.node.clone(),
                check: o.check.clone(),
                observed_at_ms: dbmon_proto::now_ms(),
                essential: dbmon_collector::connectors::cockroachdb::ESSENTIAL
                    .contains(&o.check.as_str()),
                ..Default::default()
            };
            r.set_status(o.status);
            r
        })
        .collect();
    summarize(&reports, dbmon_proto::now_ms()).remove(0)
}

const SECURITY_V22: &str = include_str!("fixtures/cockroachdb/security-metrics-v22.2.8.txt");

/// Nodes that answer /health but whose /_status/vars lacks what the
/// essential checks read: the real partial v22.2.8 answer (certificate
/// metrics only), and the full v19.2.2 answer without its
/// `liveness_livenodes` line. Never healthy: unknown, and the summary says
/// which checks are blind.
#[tokio::test]
async fn an_answer_without_the_essential_metrics_is_never_healthy() {
    let (_nodes, urls, _tasks) = three_nodes([
        SECURITY_V22.into(),
        SECURITY_V22.into(),
        SECURITY_V22.into(),
    ])
    .await;
    let obs = poll(&cluster_yaml(&urls, "")).await;
    for u in &urls {
        assert_eq!(find(&obs, &label(u), "up").status, Status::Ok);
        let vars = find(&obs, &label(u), "vars");
        assert_eq!(vars.status, Status::Unknown);
        assert!(
            vars.message.contains("no sys_uptime or liveness_livenodes"),
            "{vars:?}"
        );
    }
    assert_eq!(find(&obs, "", "live_nodes").status, Status::Unknown);
    assert_eq!(find(&obs, "", "ranges_unavailable").status, Status::Unknown);
    let s = summary_of(&obs);
    assert_eq!(s.health, dbmon_proto::Health::Unknown, "{s:?}");
    assert_eq!(s.blind, vec!["live_nodes", "ranges_unavailable"]);

    // Variant: the real v19.2.2 answer with its one ranges_unavailable
    // sample replaced by a comment.
    let partial = edit(
        STATUS_VARS,
        "ranges_unavailable{",
        "# ranges_unavailable removed",
    );
    let (_nodes, urls, _tasks) = three_nodes([partial.clone(), partial.clone(), partial]).await;
    let obs = poll(&cluster_yaml(&urls, "")).await;
    assert_eq!(find(&obs, "", "live_nodes").status, Status::Ok);
    assert_eq!(find(&obs, "", "ranges_unavailable").status, Status::Unknown);
    let s = summary_of(&obs);
    assert_eq!(s.health, dbmon_proto::Health::Unknown, "{s:?}");
    assert_eq!(s.blind, vec!["ranges_unavailable"]);
}

async fn three_nodes(
    vars: [String; 3],
) -> (
    Vec<Arc<Node>>,
    Vec<String>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for v in vars {
        let n = Node::new(v);
        let (u, t) = serve(n.clone()).await;
        nodes.push(n);
        urls.push(u);
        tasks.push(t);
    }
    (nodes, urls, tasks)
}

#[tokio::test]
async fn healthy_three_node_cluster_from_the_real_payload() {
    let (_nodes, urls, _t) =
        three_nodes([STATUS_VARS.into(), STATUS_VARS.into(), STATUS_VARS.into()]).await;
    let obs = poll(&cluster_yaml(&urls, "")).await;
    for u in &urls {
        assert_eq!(find(&obs, &label(u), "up").status, Status::Ok);
        let cap = find(&obs, &label(u), "capacity_available");
        // capacity_available 4.0402062147584e13 of capacity 6.4202351837184e13
        assert_eq!(cap.status, Status::Ok);
        assert!((cap.value.unwrap() - 62.93).abs() < 0.01, "{cap:?}");
        let clock = find(&obs, &label(u), "clock_offset");
        // clock_offset_meannanos -14326: 0.014 ms
        assert!((clock.value.unwrap() - 0.014326).abs() < 1e-9, "{clock:?}");
        assert_eq!(find(&obs, &label(u), "restarts").value, Some(0.0));
        // v19.2.2 predates the certificate metrics (v20.2): not applicable,
        // and said why; it is not among the worst checks.
        let cert = find(&obs, &label(u), "cert_expiry");
        assert_eq!(cert.status, Status::NotApplicable);
        assert_eq!(
            cert.message,
            "not applicable: CockroachDB v19.2.2 has no security_certificate_expiration_* metrics (they exist from v20.2)"
        );
    }
    let live = find(&obs, "", "live_nodes");
    assert_eq!(
        (live.status, live.value),
        (Status::Ok, Some(3.0)),
        "{live:?}"
    );
    let unavailable = find(&obs, "", "ranges_unavailable");
    assert_eq!(
        (unavailable.status, unavailable.value),
        (Status::Ok, Some(0.0))
    );
    let under = find(&obs, "", "ranges_underreplicated");
    assert_eq!((under.status, under.value), (Status::Ok, Some(0.0)));
    let versions = find(&obs, "", "version_skew");
    assert_eq!(versions.status, Status::Ok);
    assert_eq!(versions.message, "v19.2.2 on 3 nodes");
    // No capture of /_status/nodes exists: the check says so instead of guessing.
    let members = find(&obs, "", "membership");
    assert_eq!(members.status, Status::Unknown);
    assert!(members.message.contains("HTTP 404"), "{members:?}");
    assert_eq!(health_of(&obs), dbmon_proto::Health::Healthy);
    let s = summary_of(&obs);
    assert!(
        !s.worst.iter().any(|r| r.check == "cert_expiry"),
        "{:?}",
        s.worst
    );
}

#[tokio::test]
async fn a_dead_node() {
    // Variant: the survivors' liveness_livenodes edited from 3.0 to 2.0, as a
    // node of a 3-node cluster reports once one peer is dead; the dead
    // node's port is closed.
    let two = edit(STATUS_VARS, "liveness_livenodes ", "liveness_livenodes 2.0");
    let (_nodes, urls, tasks) = three_nodes([two.clone(), two, STATUS_VARS.into()]).await;
    tasks[2].abort();
    let dead = label(&urls[2]);
    // Wait until the aborted listener refuses connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&dead).await.is_ok() {
        assert!(Instant::now() < deadline, "listener still open");
        tokio::task::yield_now().await;
    }
    let obs = poll(&cluster_yaml(&urls, "")).await;
    let up = find(&obs, &dead, "up");
    assert_eq!(up.status, Status::Crit);
    assert!(up.message.starts_with("no answer"), "{up:?}");
    let live = find(&obs, "", "live_nodes");
    assert_eq!(
        (live.status, live.value),
        (Status::Warn, Some(2.0)),
        "{live:?}"
    );
    assert_eq!(live.message, "2 of 3 nodes live");
    assert_eq!(health_of(&obs), dbmon_proto::Health::Degraded);
}

#[tokio::test]
async fn unavailable_and_underreplicated_ranges_and_a_full_store() {
    // Variants of node 1's payload: ranges_unavailable 0.0 -> 7.0,
    // ranges_underreplicated 0.0 -> 3.0, capacity_available lowered to 5 %
    // of the store's real capacity (6.4202351837184e13).
    let v = edit(
        STATUS_VARS,
        "ranges_unavailable{store=\"1\"}",
        "ranges_unavailable{store=\"1\"} 7.0",
    );
    let v = edit(
        &v,
        "ranges_underreplicated{store=\"1\"}",
        "ranges_underreplicated{store=\"1\"} 3.0",
    );
    let v = edit(
        &v,
        "capacity_available{store=\"1\"}",
        "capacity_available{store=\"1\"} 3.2101175918592e+12",
    );
    let (_nodes, urls, _t) = three_nodes([v, STATUS_VARS.into(), STATUS_VARS.into()]).await;
    let obs = poll(&cluster_yaml(&urls, "")).await;
    let unavailable = find(&obs, "", "ranges_unavailable");
    assert_eq!(
        (unavailable.status, unavailable.value),
        (Status::Crit, Some(7.0)),
        "{unavailable:?}"
    );
    let under = find(&obs, "", "ranges_underreplicated");
    assert_eq!((under.status, under.value), (Status::Warn, Some(3.0)));
    let cap = find(&obs, &label(&urls[0]), "capacity_available");
    assert_eq!(cap.status, Status::Crit);
    assert!((cap.value.unwrap() - 5.0).abs() < 1e-6, "{cap:?}");
    assert!(cap.message.contains("(crit: < 15%)"), "{cap:?}");
    assert_eq!(
        find(&obs, &label(&urls[1]), "capacity_available").status,
        Status::Ok
    );
    assert_eq!(health_of(&obs), dbmon_proto::Health::Degraded);
}

#[tokio::test]
async fn version_skew_between_nodes() {
    // Variant: node 2's build tag edited from v19.2.2 to v19.2.1.
    let older = edit(
        STATUS_VARS,
        "build_timestamp{",
        "build_timestamp{tag=\"v19.2.1\",go_version=\"go1.12.12\"} 1.576028023e+09",
    );
    let (_nodes, urls, _t) = three_nodes([STATUS_VARS.into(), older, STATUS_VARS.into()]).await;
    let obs = poll(&cluster_yaml(&urls, "")).await;
    let skew = find(&obs, "", "version_skew");
    assert_eq!(
        (skew.status, skew.value),
        (Status::Warn, Some(2.0)),
        "{skew:?}"
    );
    assert!(
        skew.message.contains("v19.2.1 on 1 node") && skew.message.contains("v19.2.2 on 2 nodes"),
        "{skew:?}"
    );
}

#[tokio::test]
async fn wrong_endpoint_garbage_and_errors_become_unknown_with_a_reason() {
    let (nodes, urls, _t) = three_nodes([
        NOT_COCKROACHDB.into(),
        "<html><body>502 Bad Gateway</body></html>".into(),
        STATUS_VARS.into(),
    ])
    .await;
    nodes[2].vars_status.store(500, Ordering::SeqCst);
    let obs = poll(&cluster_yaml(&urls, "")).await;
    let wrong = find(&obs, &label(&urls[0]), "vars");
    assert_eq!(wrong.status, Status::Unknown);
    assert!(
        wrong.message.contains("is this a CockroachDB node"),
        "{wrong:?}"
    );
    let garbage = find(&obs, &label(&urls[1]), "vars");
    assert_eq!(garbage.status, Status::Unknown);
    assert!(
        garbage.message.contains("not Prometheus text"),
        "{garbage:?}"
    );
    let error = find(&obs, &label(&urls[2]), "vars");
    assert!(error.message.contains("HTTP 500"), "{error:?}");
    // Nodes still answered /health: up, and the agent has its reasons.
    for u in &urls {
        assert_eq!(find(&obs, &label(u), "up").status, Status::Ok);
    }
    assert_eq!(find(&obs, "", "ranges_unavailable").status, Status::Unknown);
}

#[tokio::test]
async fn a_node_that_is_not_ready() {
    let (nodes, urls, _t) =
        three_nodes([STATUS_VARS.into(), STATUS_VARS.into(), STATUS_VARS.into()]).await;
    nodes[1].health_status.store(503, Ordering::SeqCst);
    let obs = poll(&cluster_yaml(&urls, "")).await;
    let up = find(&obs, &label(&urls[1]), "up");
    assert_eq!(up.status, Status::Crit);
    assert!(up.message.starts_with("not ready (HTTP 503"), "{up:?}");
}

/// A node that accepts connections and never answers, and one that closes
/// the connection in the middle of the body.
#[tokio::test]
async fn hanging_and_truncating_nodes_do_not_stall_the_poll() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let cut = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cut_addr = cut.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = cut.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&STATUS_VARS.as_bytes()[..1000]).await;
                // Dropped here: closed mid-body.
            });
        }
    });
    let urls = vec![format!("http://{hang_addr}"), format!("http://{cut_addr}")];
    let started = Instant::now();
    let obs = poll(&cluster_yaml(&urls, "")).await;
    // Each request is bounded by the 300 ms timeout, and they run side by side.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "poll took {:?}",
        started.elapsed()
    );
    let hung = find(&obs, &hang_addr.to_string(), "up");
    assert_eq!(hung.status, Status::Crit);
    assert_eq!(hung.message, "no answer within 300ms");
    // Every answer of this node is cut short, /health's too.
    let truncated = find(&obs, &cut_addr.to_string(), "up");
    assert_eq!(truncated.status, Status::Crit);
    assert!(
        truncated.message.contains("answer cut short"),
        "{truncated:?}"
    );
}

fn password_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("crdb-password");
    std::fs::write(&p, "s3cret!\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[tokio::test]
async fn logs_in_and_logs_in_again_when_the_session_expires() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), 0o600);
    let node = Node::new(STATUS_VARS.into());
    *node.session.lock().unwrap() = Some("not-yet-logged-in".into());
    let (url, _t) = serve(node.clone()).await;
    let yaml = cluster_yaml(
        std::slice::from_ref(&url),
        &format!(
            "    auth:\n      username: dbmon\n      password: {{file: {}}}\n",
            pw.display()
        ),
    );
    let cfg = Config::parse(&yaml, std::path::Path::new("t.yaml"), &Registry).expect("config");
    let connector =
        (registry::find("cockroachdb").unwrap().build)(&cfg.clusters[0]).expect("builds");

    let obs = connector.poll().await;
    assert_eq!(node.logins.load(Ordering::SeqCst), 1, "logged in once");
    assert_eq!(
        node.nodes_requests_with_session.load(Ordering::SeqCst),
        1,
        "sent the session"
    );
    let members = find(&obs, "", "membership");
    assert!(
        members.message.contains("HTTP 404"),
        "past the login: {members:?}"
    );

    // Same session reused on the next poll.
    connector.poll().await;
    assert_eq!(node.logins.load(Ordering::SeqCst), 1);
    assert_eq!(node.nodes_requests_with_session.load(Ordering::SeqCst), 2);

    // The session expires on the cluster: one fresh login, then on.
    *node.session.lock().unwrap() = Some("expired".into());
    connector.poll().await;
    assert_eq!(node.logins.load(Ordering::SeqCst), 2, "logged in again");
    assert_eq!(node.nodes_requests_with_session.load(Ordering::SeqCst), 3);
    for o in &obs {
        assert!(
            !o.message.contains("s3cret"),
            "the password never shows: {o:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_exposed_password_file_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(STATUS_VARS.into());
    *node.session.lock().unwrap() = Some("x".into());
    let (url, _t) = serve(node.clone()).await;

    // SAFETY: only this test reads this variable.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("DBMON_TEST_WRONG_PASSWORD", "nope")
    };
    let yaml = cluster_yaml(
        std::slice::from_ref(&url),
        "    auth:\n      username: dbmon\n      password: {env: DBMON_TEST_WRONG_PASSWORD}\n",
    );
    let obs = poll(&yaml).await;
    let members = find(&obs, "", "membership");
    assert_eq!(members.status, Status::Unknown);
    assert!(
        members
            .message
            .contains("login as \"dbmon\" refused (HTTP 401)"),
        "{members:?}"
    );

    let pw = password_file(dir.path(), 0o644);
    let yaml = cluster_yaml(
        std::slice::from_ref(&url),
        &format!(
            "    auth:\n      username: dbmon\n      password: {{file: {}}}\n",
            pw.display()
        ),
    );
    let cfg = Config::parse(&yaml, std::path::Path::new("t.yaml"), &Registry).expect("config");
    let err = match (registry::find("cockroachdb").unwrap().build)(&cfg.clusters[0]) {
        Ok(_) => panic!("a world-readable password file must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Serves `node` over HTTPS with `cert`/`key` (PEM files).
async fn serve_tls(node: Arc<Node>, cert: &std::path::Path, key: &std::path::Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_file_iter(cert)
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
    let app = axum::Router::new()
        .route("/health", get(health))
        .route("/_status/vars", get(vars))
        .route("/_status/nodes", get(nodes))
        .with_state(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

#[tokio::test]
async fn the_clusters_certificate_is_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = dbmon_pki::Ca::init(&dir.path().join("crdb"), "crdb.test", false).unwrap();
    let cert = cluster_ca
        .issue(
            dbmon_pki::Role::Server,
            "node",
            None,
            &["127.0.0.1".into()],
            Duration::from_secs(3600),
            false,
        )
        .unwrap();
    dbmon_pki::Ca::init(&dir.path().join("other"), "other.test", false).unwrap();
    let url = serve_tls(
        Node::new(STATUS_VARS.into()),
        &cert.cert_path,
        &cert.key_path,
    )
    .await;
    let node = label(&url);
    let with_ca = |ca: &std::path::Path| format!("    tls:\n      ca_file: {}\n", ca.display());

    // The right CA: verified, and the real payload read through it.
    let obs = poll(&cluster_yaml(
        std::slice::from_ref(&url),
        &with_ca(&dir.path().join("crdb/ca.crt")),
    ))
    .await;
    assert_eq!(find(&obs, &node, "up").status, Status::Ok, "{obs:#?}");
    assert_eq!(find(&obs, "", "live_nodes").value, Some(3.0));

    // Another CA: refused, with the reason and what to do.
    let obs = poll(&cluster_yaml(
        std::slice::from_ref(&url),
        &with_ca(&dir.path().join("other/ca.crt")),
    ))
    .await;
    let up = find(&obs, &node, "up");
    assert_eq!(up.status, Status::Crit);
    assert!(
        up.message.contains("UnknownIssuer") && up.message.contains("tls.ca_file"),
        "{up:?}"
    );

    // No CA configured: the system's roots do not know it either.
    let obs = poll(&cluster_yaml(std::slice::from_ref(&url), "")).await;
    assert_eq!(find(&obs, &node, "up").status, Status::Crit);

    // Verification off, explicitly: accepted.
    let obs = poll(&cluster_yaml(
        std::slice::from_ref(&url),
        "    tls:\n      insecure_skip_verify: true\n",
    ))
    .await;
    assert_eq!(find(&obs, &node, "up").status, Status::Ok);
}

/// Serves `node`, counting the connections accepted and those still open.
async fn serve_counted(node: Arc<Node>) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(node);
    let (a, o) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let (app, o) = (app.clone(), o.clone());
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (format!("http://{addr}"), accepted, open)
}

/// A poll asks a node its two questions on one connection and closes it:
/// one connect per node and poll, nothing held between polls. A node that
/// closes the connection after `/health` is asked `/_status/vars` on a
/// new one.
#[tokio::test]
async fn one_connection_per_node_and_poll_closed_after_it() {
    let node = Node::new(STATUS_VARS.into());
    let (url, accepted, open) = serve_counted(node.clone()).await;
    let cfg = Config::parse(
        &cluster_yaml(std::slice::from_ref(&url), ""),
        std::path::Path::new("test.yaml"),
        &Registry,
    )
    .unwrap();
    let connector = (registry::find("cockroachdb").unwrap().build)(&cfg.clusters[0]).unwrap();
    let closed = |polls: usize| {
        let open = open.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while open.load(Ordering::SeqCst) != 0 {
                assert!(
                    Instant::now() < deadline,
                    "poll {polls}: the connection is still open"
                );
                tokio::task::yield_now().await;
            }
        }
    };
    for polls in 1..=3 {
        let obs = connector.poll().await;
        assert_eq!(find(&obs, &label(&url), "up").status, Status::Ok);
        assert_eq!(find(&obs, "", "live_nodes").value, Some(3.0));
        closed(polls).await;
        assert_eq!(accepted.load(Ordering::SeqCst), polls, "connections");
        assert_eq!(node.requests.load(Ordering::SeqCst), 2 * polls, "requests");
    }
    node.close_after_health.store(true, Ordering::SeqCst);
    let obs = connector.poll().await;
    assert_eq!(find(&obs, &label(&url), "up").status, Status::Ok);
    assert_eq!(find(&obs, "", "live_nodes").value, Some(3.0), "{obs:#?}");
    closed(4).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3 + 2, "connections");
}
