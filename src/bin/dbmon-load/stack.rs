//! What a run measures: simulated nodes, a CA, the real `dbmon server` and
//! `dbmon collector` processes, a signed-in viewer, channels and publish
//! streams, and Prometheus on the same targets.

use anyhow::{Result, bail};
use axum::routing::get;
use dbmon_pki::{Ca, Role};
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::{Hello, PublishRequest, publish_request};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STATUS_VARS: &str =
    include_str!("../../../collector/tests/fixtures/cockroachdb/status-vars.txt");

#[path = "../../../tests/support/softlogin.rs"]
mod softlogin;

/// A child process, killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on loopback, below the ephemeral range: the collector's
/// outgoing connections (one per poll) take ephemeral ports all the time.
pub fn free_port() -> u16 {
    dbmon::local::free_port()
}

/// Simulated nodes: each serves /health and the real /_status/vars on its
/// own port; `stop` closes one.
pub struct Nodes {
    pub ports: Vec<u16>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn start_nodes(n: usize) -> Result<Nodes> {
    let app = axum::Router::new()
        .route("/health", get(|| async { "{}" }))
        .route("/_status/vars", get(|| async { STATUS_VARS }));
    let mut ports = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ports.push(l.local_addr()?.port());
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        }));
    }
    Ok(Nodes { ports, tasks })
}

/// The `dbmon` binary next to this one.
pub fn dbmon_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("dbmon");
    if !bin.exists() {
        bail!(
            "{} not found: build it with cargo build --release --bin dbmon",
            bin.display()
        );
    }
    Ok(bin)
}

/// A CA with the server's and two collectors' certificates: `load` polls,
/// `state` publishes directly.
pub fn make_pki(dir: &Path) -> Result<PathBuf> {
    let pki = dir.join("pki");
    let ca = Ca::init(&pki, "load.local", true)?;
    ca.issue(
        Role::Server,
        "server",
        None,
        &["localhost".into(), "127.0.0.1".into()],
        Duration::from_secs(86_400),
        true,
    )?;
    for name in ["load", "state"] {
        ca.issue(
            Role::Collector,
            name,
            Some(name),
            &[],
            Duration::from_secs(86_400),
            true,
        )?;
    }
    Ok(pki)
}

/// The server's three ports.
pub struct Ports {
    pub people: u16,
    pub collectors: u16,
    pub http: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            people: free_port(),
            collectors: free_port(),
            http: free_port(),
        }
    }
}

/// How a run's server is set up: its store (None: the embedded store),
/// how far a subscriber may lag before a resync (None: the default), and
/// the configuration file's name.
pub struct Setup<'a> {
    pub store: Option<&'a str>,
    pub queue: Option<usize>,
    pub file: &'a str,
}

/// The polling run's server: the embedded store, a queue deep enough that
/// the run measures delivery rather than resyncs.
pub const RUN: Setup<'static> = Setup {
    store: None,
    queue: Some(65_536),
    file: "dbmon.yaml",
};

/// A fresh, empty server (memory store) with the run's deep queue.
pub const FRESH: Setup<'static> = Setup {
    store: Some("memory"),
    queue: Some(65_536),
    file: "dbmon-memory.yaml",
};

/// A fresh, empty server as configured by default (a resync after 1,024
/// reports of lag).
pub const DEFAULTS: Setup<'static> = Setup {
    store: Some("memory"),
    queue: None,
    file: "dbmon-defaults.yaml",
};

/// The configuration: the server, the collector `load`, and one
/// CockroachDB cluster per three simulated nodes. Returns its path and the
/// number of clusters.
pub fn write_config(
    dir: &Path,
    pki: &Path,
    ports: &Ports,
    nodes: &Nodes,
    interval: &str,
    timeout: &str,
    setup: &Setup,
) -> Result<(PathBuf, usize)> {
    let clusters: Vec<&[u16]> = nodes.ports.chunks(3).collect();
    let store_line = setup
        .store
        .map(|s| format!("  store: {s}\n"))
        .unwrap_or_default();
    let queue_line = setup
        .queue
        .map(|q| format!("  subscriber_queue: {q}\n"))
        .unwrap_or_default();
    let mut yaml = format!(
        "server:\n  listen: 127.0.0.1:{people}\n  collector_listen: 127.0.0.1:{collectors}\n  http_listen: 127.0.0.1:{http}\n  pki_dir: {p}\n{queue_line}{store_line}\
         collector:\n  id: load\n  server: https://127.0.0.1:{collectors}\n  pki_dir: {p}\nclusters:\n",
        people = ports.people,
        collectors = ports.collectors,
        http = ports.http,
        p = pki.display()
    );
    for (i, c) in clusters.iter().enumerate() {
        let list: Vec<String> = c.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        yaml.push_str(&format!(
            "  - name: crdb-{i}\n    kind: cockroachdb\n    interval: {interval}\n    timeout: {timeout}\n    nodes: [{}]\n",
            list.join(", ")
        ));
    }
    let config = dir.join(setup.file);
    std::fs::write(&config, yaml)?;
    Ok((config, clusters.len()))
}

/// Starts `dbmon ROLE --config CONFIG`, its stderr in `log`.
pub fn spawn(dbmon: &Path, role: &str, config: &Path, log: &Path) -> Result<Guard> {
    spawn_pinned(dbmon, role, config, log, false)
}

/// [`spawn`], on CPU 0 alone when `pinned` (through `taskset`, which
/// becomes `dbmon`: the child's pid is the server's).
pub fn spawn_pinned(
    dbmon: &Path,
    role: &str,
    config: &Path,
    log: &Path,
    pinned: bool,
) -> Result<Guard> {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(dbmon);
        c
    } else {
        Command::new(dbmon)
    };
    Ok(Guard(
        cmd.args([role, "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?,
    ))
}

/// Waits until something listens on `port`; `what` and `log` for the error.
pub async fn wait_listening(port: u16, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits (up to 10 s) until nothing listens on `port` any more.
pub async fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prometheus scraping the same targets at the same interval, with an
/// alert on `up == 0`, and the dbmon server's own `/metrics` (on
/// `dbmon_http`), when it is installed.
pub fn start_prometheus(
    dir: &Path,
    nodes: &Nodes,
    interval: &str,
    timeout: &str,
    port: u16,
    dbmon_http: u16,
) -> Result<Option<Guard>> {
    let Some(bin) = dbmon::local::which("prometheus") else {
        return Ok(None);
    };
    let targets: Vec<String> = nodes
        .ports
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: dbmon-load\n    rules:\n      - alert: NodeDown\n        expr: up == 0\n",
    )?;
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {timeout}\nrule_files: [{}]\nscrape_configs:\n  - job_name: crdb\n    metrics_path: /_status/vars\n    static_configs:\n      - targets: [{}]\n  - job_name: dbmon\n    static_configs:\n      - targets: ['127.0.0.1:{dbmon_http}']\n",
            dir.join("rules.yml").display(),
            targets.join(", ")
        ),
    )?;
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
        .spawn()?;
    Ok(Some(Guard(child)))
}

/// Invites a viewer in the server's auth directory, registers a software
/// passkey on the sign-in API and completes a login with it: the token.
pub async fn sign_in(url: &str, auth_dir: &Path, pki: &Path) -> Result<String> {
    use dbmon_proto::v1::auth_client::AuthClient;
    use dbmon_proto::v1::{PollLoginRequest, StartLoginRequest};
    let store = dbmon_auth::store::AuthStore::open(auth_dir)?;
    let secret = store.add_user("load", dbmon_auth::Role::Viewer, vec![], 600_000)?;
    let origin = url.replace("127.0.0.1", "localhost");
    let http = softlogin::http_client(Some(&std::fs::read(pki.join("ca.crt"))?));
    let mut key = softlogin::register(&http, &format!("{origin}/invite#{secret}"))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut auth = AuthClient::new(channel(url, pki, None).await?);
    let started = auth.start_login(StartLoginRequest {}).await?.into_inner();
    softlogin::approve(&http, &started.url, "load", &mut key)
        .await
        .map_err(anyhow::Error::msg)?;
    let poll = auth
        .poll_login(PollLoginRequest {
            device_code: started.device_code,
        })
        .await?
        .into_inner();
    if poll.macaroon.is_empty() {
        bail!("the login was approved but no token came back");
    }
    Ok(poll.macaroon)
}

/// An HTTPS client trusting the deployment's CA (PEM).
pub fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    softlogin::http_client(Some(ca_pem))
}

/// An HTTPS client for a long-lived stream (the dashboard's live
/// channel): a deadline to connect, none on the whole response.
pub fn streaming_client(ca_pem: &[u8]) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
        .build()?)
}

/// `msg` with the token in its metadata.
pub fn authed<T>(msg: T, token: &str) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(dbmon_auth::METADATA_KEY, token.parse()?);
    Ok(r)
}

/// A channel to the server: as a person, or as collector `collector`.
pub async fn channel(
    url: &str,
    pki: &Path,
    collector: Option<&str>,
) -> Result<tonic::transport::Channel> {
    let td = dbmon_pki::trust_domain_of(&pki.join("ca.crt"))?;
    let trust = dbmon_pki::tls::Trust::load(&pki.join("ca.crt"), None, &td)?;
    let cfg = match collector {
        Some(name) => {
            let id = dbmon_pki::tls::ReloadingIdentity::load(
                &pki.join(format!("collector.{name}.crt")),
                &pki.join(format!("collector.{name}.key")),
                Role::Collector,
            )?;
            dbmon_pki::tls::collector_client(id, trust)?
        }
        None => dbmon_pki::tls::people_client(trust)?,
    };
    dbmon_pki::transport::channel(url, Arc::new(cfg), Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

/// A publish stream as collector `state` (its Hello sent: the server
/// answers only after it), and the stream of acknowledgements.
pub async fn open_publisher(
    url: &str,
    pki: &Path,
) -> Result<(
    tokio::sync::mpsc::Sender<PublishRequest>,
    tonic::Streaming<dbmon_proto::v1::PublishAck>,
)> {
    let ch = channel(url, pki, Some("state")).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tx.send(PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: "state".into(),
            // A new epoch per stream: each numbers its reports from 1.
            epoch: dbmon_proto::now_ms() as u64,
            clusters: vec![],
        })),
    })
    .await?;
    let acks = IngestClient::new(ch)
        .publish(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, acks))
}
