//! The collector's link to the server: mutual TLS with the collector's
//! certificate (reloaded when its files change, renewed at two thirds of its
//! lifetime), enrollment with a join token, or plaintext on loopback for
//! development.

use dbmon_config::CollectorConfig;
use dbmon_pki::tls::{ReloadingIdentity, Trust};
use dbmon_pki::{PkiError, Role};
use dbmon_proto::v1::enroll_client::EnrollClient;
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::{CertificateRequest, CertificateResponse, JoinRequest};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How the collector reaches the server.
#[derive(Clone)]
pub enum Link {
    /// Development only: plaintext to a loopback server.
    Plain { server: String },
    Tls {
        server: String,
        identity: Arc<ReloadingIdentity>,
        trust: Arc<Trust>,
        config: Arc<rustls::ClientConfig>,
    },
}

/// Paths of the collector's PKI files.
pub fn files(dir: &Path, id: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("ca.crt"),
        dir.join(format!("collector.{id}.crt")),
        dir.join(format!("collector.{id}.key")),
    )
}

/// A link failed to come up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Config(String),
    #[error("enrollment failed: {0}")]
    Join(String),
}

impl Link {
    /// Sets up the link from the configuration, checking the certificate
    /// first so that a problem reads as one actionable line.
    pub fn from_config(cfg: &CollectorConfig) -> Result<Link, LinkError> {
        if cfg.server.starts_with("http://") {
            if !cfg.insecure_plaintext {
                return Err(LinkError::Config(format!(
                    "collector.server {} is plaintext; expected https://",
                    cfg.server
                )));
            }
            tracing::warn!(server = %cfg.server, "INSECURE: plaintext link to the server (collector.insecure_plaintext); loopback development only");
            return Ok(Link::Plain {
                server: cfg.server.clone(),
            });
        }
        let dir = cfg.pki_dir.as_ref().ok_or_else(|| {
            LinkError::Config(
                "collector.pki_dir is not set: it holds ca.crt and the collector's certificate; \
                 enroll with `dbmon collector --join` or copy files made by `dbmon pki issue collector`"
                    .into(),
            )
        })?;
        let (ca, cert, key) = files(dir, &cfg.id);
        let identity = ReloadingIdentity::load(&cert, &key, Role::Collector)?;
        let id = identity.identity();
        if id.name != cfg.id {
            return Err(LinkError::Config(format!(
                "certificate {} names collector {:?} but collector.id is {:?}; make them match",
                cert.display(),
                id.name,
                cfg.id
            )));
        }
        let trust_domain = dbmon_pki::trust_domain_of(&ca)?;
        let trust = Trust::load(&ca, None, &trust_domain)?;
        if id.trust_domain != trust_domain {
            return Err(LinkError::Config(format!(
                "certificate {} belongs to trust domain {:?} but {} is the CA of {:?}",
                cert.display(),
                id.trust_domain,
                ca.display(),
                trust_domain
            )));
        }
        let config = Arc::new(dbmon_pki::tls::collector_client(
            identity.clone(),
            trust.clone(),
        )?);
        Ok(Link::Tls {
            server: cfg.server.clone(),
            identity,
            trust,
            config,
        })
    }

    /// The server's address.
    pub fn server(&self) -> &str {
        match self {
            Link::Plain { server } | Link::Tls { server, .. } => server,
        }
    }

    /// A fresh channel to the server's collector endpoint.
    pub async fn channel(&self) -> Result<Channel, String> {
        match self {
            Link::Plain { server } => {
                let endpoint = tonic::transport::Endpoint::from_shared(server.clone())
                    .map_err(|e| format!("bad server address {server:?}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(10));
                endpoint
                    .connect()
                    .await
                    .map_err(|e| dbmon_pki::transport::describe_chain(&e))
            }
            Link::Tls { server, config, .. } => {
                dbmon_pki::transport::channel(server, config.clone(), Duration::from_secs(5)).await
            }
        }
    }
}

/// Enrolls with a join token: makes a key here, sends only a certificate
/// request, and writes key (0600), certificate and trust bundle into
/// `collector.pki_dir`. The server is trusted only if its CA matches
/// `ca_pin`, checked before the token is sent.
pub async fn join(cfg: &CollectorConfig, token: &str, ca_pin: &str) -> Result<String, LinkError> {
    let dir = cfg.pki_dir.as_ref().ok_or_else(|| {
        LinkError::Config(
            "collector.pki_dir is not set: the certificate it receives goes there".into(),
        )
    })?;
    let tls = Arc::new(dbmon_pki::tls::pinned_client(ca_pin)?);
    let channel = dbmon_pki::transport::channel(&cfg.enroll_server, tls, Duration::from_secs(10))
        .await
        .map_err(|e| LinkError::Join(format!("cannot reach {}: {e}", cfg.enroll_server)))?;
    let (key_pem, csr_pem) = dbmon_pki::ca::new_key_and_request()?;
    let resp = EnrollClient::new(channel)
        .join(JoinRequest {
            token: token.trim().to_string(),
            csr_pem,
        })
        .await
        .map_err(|s| LinkError::Join(s.message().to_string()))?
        .into_inner();
    if resp.collector != cfg.id {
        return Err(LinkError::Config(format!(
            "the token was made for collector {:?} but collector.id is {:?}; set collector.id: {}",
            resp.collector, cfg.id, resp.collector
        )));
    }
    store(dir, &cfg.id, &key_pem, &resp)?;
    Ok(resp.collector)
}

fn store(dir: &Path, id: &str, key_pem: &str, resp: &CertificateResponse) -> Result<(), PkiError> {
    let (ca, cert, key) = files(dir, id);
    dbmon_pki::files::write_atomic(&key, key_pem.as_bytes(), true, true)?;
    dbmon_pki::files::write_atomic(&cert, resp.certificate_pem.as_bytes(), false, true)?;
    dbmon_pki::files::write_atomic(&ca, resp.ca_pem.as_bytes(), false, true)
}

/// When a certificate valid over `validity` should be renewed: at two
/// thirds of its lifetime.
pub fn renew_at(validity: (i64, i64)) -> i64 {
    let (from, to) = validity;
    from + (to - from) * 2 / 3
}

/// Keeps the collector's certificate fresh until shutdown: the shared
/// reloader picks up changed files (or SIGHUP), and this task sleeps until
/// two thirds of the certificate's lifetime, then renews it over the mutual
/// TLS link (every 5 seconds until that works).
pub async fn maintain(link: Link, dir: PathBuf, id: String, mut shutdown: watch::Receiver<bool>) {
    let Link::Tls {
        identity, trust, ..
    } = &link
    else {
        return;
    };
    let mut reloads =
        dbmon_pki::reload::CertificateReloader::new(identity.clone(), trust.clone(), "collector")
            .spawn(shutdown.clone());
    let mut retry_after = 0i64;
    loop {
        let now = dbmon_proto::now_ms() / 1000;
        let due = renew_at(identity.validity()).max(retry_after);
        let wait = Duration::from_secs(due.saturating_sub(now).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A new certificate on disk moves the renewal time.
            r = reloads.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
            _ = shutdown.changed() => return,
        }
        let now = dbmon_proto::now_ms() / 1000;
        if now < renew_at(identity.validity()) || now < retry_after {
            continue;
        }
        match renew(&link, &dir, &id).await {
            Ok(()) => {
                let (_, to) = identity.validity();
                tracing::info!(not_after = to, "collector certificate renewed");
            }
            Err(e) => {
                retry_after = now + 5;
                let (_, to) = identity.validity();
                tracing::warn!(error = %e, expires_in_s = to - now, "certificate renewal failed; retrying in 5s");
            }
        }
    }
}

async fn renew(link: &Link, dir: &Path, id: &str) -> Result<(), String> {
    let Link::Tls { identity, .. } = link else {
        return Ok(());
    };
    let channel = link.channel().await?;
    let (key_pem, csr_pem) = dbmon_pki::ca::new_key_and_request().map_err(|e| e.to_string())?;
    let resp = IngestClient::new(channel)
        .renew(CertificateRequest { csr_pem })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    store(dir, id, &key_pem, &resp)
        .map_err(|e| format!("cannot store the renewed certificate: {e}"))?;
    identity.reload().map_err(|e| e.to_string())
}
