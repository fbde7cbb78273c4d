//! The dbmon server: an in-memory cache of reports (latest state and
//! bounded history per cluster), the gRPC services collectors publish to and
//! clients read from, and an HTTP endpoint with `/healthz` and `/metrics`.
//!
//! Two gRPC endpoints: `listen` for people and enrollment (TLS, the server's
//! certificate) and `collector_listen` for collectors (mutual TLS: a
//! collector certificate of the deployment's CA is required at the
//! handshake). Certificates, the trust bundle and the revocation list are
//! reloaded when their files change or on SIGHUP, without dropping streams.

pub mod alerting;
pub mod alerts_service;
pub mod auth;
pub mod badge;
pub mod cache;
pub mod dashboard;
pub mod enroll;
pub mod http;
pub mod peer;
pub mod reload;
pub mod report_store;
pub mod service;
pub mod shared;
pub mod shared_auth;
pub mod store;
pub mod subscribers;
pub mod uptime;
pub mod web;
pub mod webauth;
pub mod wire;

use dbmon_config::{Config, ServerConfig};
use dbmon_pki::tls::{ReloadingIdentity, Trust};
use dbmon_pki::tokens::TokenStore;
use dbmon_pki::{Ca, Role};
use dbmon_proto::v1::auth_server::AuthServer;
use dbmon_proto::v1::enroll_server::EnrollServer;
use dbmon_proto::v1::ingest_server::IngestServer;
use dbmon_proto::v1::sessions_server::SessionsServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The server failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({what}): {error}; is another process using it?")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error(transparent)]
    Pki(#[from] dbmon_pki::PkiError),
    #[error(transparent)]
    Auth(#[from] dbmon_auth::store::StoreError),
    #[error(transparent)]
    Store(store::StoreError),
    #[error("{0}; check server.store and server.store_password, and that the database is up")]
    Shared(shared::SharedError),
    #[error(transparent)]
    Passkeys(#[from] dbmon_auth::passkey::AuthError),
    #[error("alerting: {0}")]
    Alerting(#[from] alerting::AlertingError),
    #[error(
        "the server has no certificates: set server.pki_dir to a directory made by `dbmon pki init` \
         (or server.tls), or server.insecure_plaintext: true for development on loopback"
    )]
    NoTls,
}

/// People's users and logins: in the shared store when servers share one
/// (imported from `server.auth.dir` the first time, if it holds any), else
/// in `server.auth.dir`.
pub fn open_auth_store(cfg: &ServerConfig) -> Result<dbmon_auth::store::AuthStore, ServerError> {
    use dbmon_auth::store::{AuthStore, Backend, FileBackend};
    let Some(sh) = &cfg.shared_store else {
        return Ok(AuthStore::open(&cfg.auth.dir)?);
    };
    let backend = shared_auth::PgAuthBackend::open(shared_config(cfg, sh)?)?;
    let file = cfg.auth.dir.join(dbmon_auth::store::STATE_FILE);
    if backend.version()?.is_none() && file.exists() {
        let local = FileBackend::open(&cfg.auth.dir)?;
        if let Some((bytes, _)) = local.load()? {
            backend.replace(&mut |current| match current {
                // Another server imported first.
                Some(doc) => Ok(doc.to_vec()),
                None => Ok(bytes.clone()),
            })?;
            tracing::info!(from = %file.display(), to = %backend.place(), "users and logins imported into the shared store");
        }
    }
    Ok(AuthStore::with_backend(std::sync::Arc::new(backend))?)
}

/// Every minute, history past `server.history_max_age` leaves the cache
/// (and then the store).
async fn expire_history(cache: std::sync::Weak<cache::Cache>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let Some(c) = cache.upgrade() else {
            return;
        };
        let dropped = c.expire(dbmon_proto::now_ms());
        if dropped > 0 {
            tracing::debug!(dropped, "history past server.history_max_age dropped");
        }
    }
}

/// Connection settings of the shared store, with its password read now.
fn shared_config(
    cfg: &ServerConfig,
    sh: &dbmon_config::SharedStore,
) -> Result<shared::SharedConfig, ServerError> {
    let bad = |why: String| {
        ServerError::Shared(shared::SharedError {
            target: "server.store".into(),
            why,
        })
    };
    let mut pg: tokio_postgres::Config = sh.url.parse().map_err(|e| {
        bad(format!(
            "{e}; expected postgresql://USER@HOST:PORT/DATABASE"
        ))
    })?;
    if let Some(p) = &sh.password {
        let password = p
            .resolve()
            .map_err(|e| bad(format!("server.store_password: {e}")))?;
        pg.password(password);
    }
    let tls = match &sh.ca_file {
        Some(ca) => {
            // Always TLS, verified against the CA, when one is given.
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(Arc::new(
                shared::tls_config(ca).map_err(|e| bad(format!("server.store_ca_file: {e}")))?,
            ))
        }
        None => None,
    };
    pg.application_name("dbmon-server");
    pg.connect_timeout(std::time::Duration::from_secs(10));
    // A database that vanishes without closing the connection (a cut
    // network) is noticed, not waited for forever.
    pg.keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .tcp_user_timeout(std::time::Duration::from_secs(30));
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let target = format!(
        "postgresql://{}@{}:{}/{}",
        pg.get_user().unwrap_or(""),
        hosts.join(","),
        pg.get_ports().first().copied().unwrap_or(5432),
        pg.get_dbname().unwrap_or("")
    );
    Ok(shared::SharedConfig {
        pg,
        tls,
        target,
        history_per_cluster: cfg.history_per_cluster,
        max_age: cfg.history_max_age,
    })
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServerError::Bind { addr, what, error })
}

/// The store the configuration names, opened.
enum Opened {
    Shared(Arc<shared::Shared>, Box<shared::SharedConfig>),
    Embedded(Arc<store::Persist>),
    /// Memory only; why, when a store was configured but cannot be used.
    Memory(Option<String>),
}

/// Opens the configured store and builds the cache from what it holds.
async fn open_store(cfg: &ServerConfig) -> Result<(cache::Cache, Opened), ServerError> {
    let (history, queue) = (cfg.history_per_cluster, cfg.subscriber_queue);
    match (&cfg.shared_store, &cfg.store) {
        (Some(sh), _) => {
            let shared_cfg = shared_config(cfg, sh)?;
            let target = shared_cfg.target.clone();
            let (shared, records) = shared::open(shared_cfg.clone())
                .await
                .map_err(ServerError::Shared)?;
            let restored = records.len();
            let c = cache::Cache::from_records(history, queue, records);
            tracing::info!(store = %target, restored, position = c.position(), "reports restored from the shared store");
            Ok((c, Opened::Shared(shared, Box::new(shared_cfg))))
        }
        (None, None) => Ok((cache::Cache::new(history, queue), Opened::Memory(None))),
        (None, Some(path)) => match store::Persist::open(path) {
            Ok((persist, records)) => {
                let restored = records.len();
                let c = cache::Cache::restored(history, queue, persist.clone(), records);
                tracing::info!(store = %path.display(), restored, position = c.position(), "reports restored from the store");
                Ok((c, Opened::Embedded(persist)))
            }
            Err(e) if e.fatal => Err(ServerError::Store(e)),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the store; serving from memory only: reports will not survive a restart");
                Ok((
                    cache::Cache::new(history, queue),
                    Opened::Memory(Some(e.to_string())),
                ))
            }
        },
    }
}

/// Serves until `shutdown` turns true, with no alert rules.
pub async fn serve(cfg: ServerConfig, shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
    serve_deployment(
        Config {
            server: cfg,
            ..Config::embedded_default()
        },
        shutdown,
    )
    .await
}

/// The clusters whose badge needs no token.
pub fn public_clusters(
    clusters: &[dbmon_config::ClusterConfig],
) -> std::collections::BTreeSet<String> {
    clusters
        .iter()
        .filter(|c| c.public)
        .map(|c| c.name.clone())
        .collect()
}

/// Serves the whole deployment's server side (the `server:` section, and
/// the alerting sections with the clusters' labels) until `shutdown` turns
/// true.
pub async fn serve_deployment(
    deployment: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    serve_reloading(deployment, None, shutdown).await
}

/// [`serve_deployment`], reloading what it can from a file on SIGHUP or
/// when the file changes (see [`reload`]).
pub async fn serve_reloading(
    deployment: Config,
    reload: Option<reload::Reloader>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let cfg = deployment.server;
    let tls = match (&cfg.tls, cfg.insecure_plaintext) {
        (Some(t), false) => {
            let identity = ReloadingIdentity::load(&t.cert_file, &t.key_file, Role::Server)?;
            let trust_domain = dbmon_pki::trust_domain_of(&t.ca_file)?;
            let trust = Trust::load(&t.ca_file, t.crl_file.as_deref(), &trust_domain)?;
            Some((identity, trust, t.ca_file.clone()))
        }
        (_, true) => {
            tracing::warn!(
                "INSECURE: plaintext gRPC without certificates (server.insecure_plaintext); loopback development only"
            );
            None
        }
        (None, false) => return Err(ServerError::NoTls),
    };
    let signer = match (&cfg.pki_dir, &tls) {
        (Some(dir), Some((_, _, bundle))) if dir.join("ca.key").exists() => {
            let ca = Ca::load(dir)?;
            let bundle_pem = String::from_utf8_lossy(&std::fs::read(bundle).map_err(|source| {
                dbmon_pki::PkiError::Read {
                    path: bundle.clone(),
                    source,
                }
            })?)
            .into_owned();
            Some(Arc::new(enroll::Signer {
                ca,
                tokens: TokenStore::new(dir),
                ttl: cfg.collector_cert_ttl,
                bundle_pem,
            }))
        }
        _ => None,
    };
    dbmon_auth::init();
    let store = open_auth_store(&cfg)?;
    let verifier = dbmon_auth::Verifier::new(store);
    let origin = cfg.origin();
    let origin_url = dbmon_auth::webauthn::Url::parse(&origin).map_err(|e| {
        dbmon_auth::passkey::AuthError::Config(format!("server.auth.origin {origin:?}: {e}"))
    })?;
    let passkeys = Arc::new(dbmon_auth::passkey::Passkeys::new(
        verifier.clone(),
        &origin_url,
        cfg.auth.session_ttl.as_millis() as i64,
        // Per address: 30 attempts a minute, in bursts of 20.
        dbmon_auth::limit::Limiter::new(30, 20),
    )?);
    let people_auth = auth::PeopleAuth {
        verifier: verifier.clone(),
        passkeys: passkeys.clone(),
        revocations: watch::channel(0).0,
    };
    tokio::spawn(auth::watch_store(people_auth.clone(), shutdown.clone()));
    let (cache, opened) = open_store(&cfg).await?;
    let cache = Arc::new(cache.with_max_age(cfg.history_max_age));
    let health_log = Arc::new(uptime::HealthLog::new(cfg.history_max_age));
    uptime::spawn(health_log.clone(), cache.clone(), shutdown.clone());
    tokio::spawn(expire_history(Arc::downgrade(&cache)));
    // One choice: the store keeps the reports and the alerting state.
    let (store, alert_state): (Arc<dyn report_store::ReportStore>, alerting::StateStore) =
        match opened {
            Opened::Shared(sh, shared_cfg) => {
                shared::start_tail(&sh, &cache);
                let alerts = alerting::shared::SharedAlerting::new(*shared_cfg, origin.clone());
                (sh, alerting::StateStore::Shared(alerts))
            }
            Opened::Embedded(p) => {
                store::spawn_writer(p.clone(), Arc::downgrade(&cache));
                (p.clone(), alerting::StateStore::Embedded(p))
            }
            Opened::Memory(unavailable) => (
                Arc::new(report_store::MemoryOnly::new(unavailable)),
                alerting::StateStore::Memory,
            ),
        };
    let external_url = cfg.external_url.clone().unwrap_or_else(|| origin.clone());
    let alerting = alerting::Alerting::new(
        &deployment.alerting,
        &deployment.clusters,
        external_url,
        cfg.max_silence,
        alert_state,
    )?;
    if !deployment.alerting.rules.is_empty() {
        alerting.spawn(cache.clone(), shutdown.clone());
        tracing::info!(
            rules = deployment.alerting.rules.len(),
            receivers = deployment.alerting.receivers.len(),
            maintenance = deployment.alerting.maintenance.len(),
            "alerting on"
        );
    }
    let services = service::Services {
        alerting: alerting.clone(),
        cache,
        store,
        collectors: Default::default(),
        assignments: Arc::new(std::sync::RwLock::new(cfg.assignments.clone())),
        signer: signer.clone(),
        auth: people_auth.clone(),
        reload: Default::default(),
        public: Arc::new(std::sync::RwLock::new(public_clusters(
            &deployment.clusters,
        ))),
    };
    if let Some(r) = reload {
        tokio::spawn(reload::watch_file(
            r,
            cfg.clone(),
            services.clone(),
            passkeys.clone(),
            shutdown.clone(),
        ));
    }
    let people = bind(cfg.listen, "gRPC for people").await?;
    let collectors = bind(cfg.collector_listen, "gRPC for collectors").await?;
    let web = bind(cfg.http_listen, "HTTP").await?;
    tracing::info!(
        people = %people.local_addr().unwrap_or(cfg.listen),
        collectors = %collectors.local_addr().unwrap_or(cfg.collector_listen),
        http = %web.local_addr().unwrap_or(cfg.http_listen),
        tls = tls.is_some(),
        enrollment = signer.is_some(),
        origin = %origin,
        auth_dir = %cfg.auth.dir.display(),
        "dbmon server listening"
    );

    let mut web_shutdown = shutdown.clone();
    let web_services = services.clone();
    let web_task = tokio::spawn(async move {
        axum::serve(web, http::router(web_services))
            .with_graceful_shutdown(async move {
                let _ = web_shutdown.wait_for(|s| *s).await;
            })
            .await
    });

    // Every web route (sign-in pages, dashboard, badges) behind one guard.
    let web_guard = Arc::new(webauth::WebAuth {
        verifier: verifier.clone(),
        origin: passkeys.origin().origin().ascii_serialization(),
    });
    let web_side = web::router(passkeys)
        .merge(badge::router(Arc::new(badge::Badges {
            cache: services.cache.clone(),
            uptime: health_log,
            verifier: verifier.clone(),
            public: services.public.clone(),
        })))
        .merge(dashboard::router(Arc::new(dashboard::Dashboard::new(
            services.cache.clone(),
            people_auth.clone(),
            alerting.clone(),
        ))))
        .route_layer(axum::middleware::from_fn_with_state(
            web_guard,
            webauth::guard,
        ));
    let people_routes = tonic::service::Routes::new(wire::Monitor::new(services.clone()))
        .add_service(EnrollServer::new(enroll::Enrollment { signer }))
        .add_service(AuthServer::new(people_auth.clone()))
        .add_service(SessionsServer::new(people_auth.clone()))
        .add_service(dbmon_proto::v1::alerts_server::AlertsServer::new(
            alerts_service::AlertServices {
                alerting: alerting.clone(),
            },
        ))
        .add_service(dbmon_proto::v1::silences_server::SilencesServer::new(
            alerts_service::AlertServices { alerting },
        ))
        .into_axum_router()
        .merge(web_side);
    let people_router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .accept_http1(true)
        .layer(auth::AuthLayer {
            verifier,
            changes: people_auth.revocations.subscribe(),
        })
        .add_routes(people_routes.into());
    let collector_router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(IngestServer::new(services));
    let until = |mut s: watch::Receiver<bool>| async move {
        let _ = s.wait_for(|v| *v).await;
    };
    let (a, b) = match tls {
        Some((identity, trust, _)) => {
            dbmon_pki::reload::CertificateReloader::new(identity.clone(), trust.clone(), "server")
                .spawn(shutdown.clone());
            let people_cfg = Arc::new(dbmon_pki::tls::client_facing(identity.clone())?);
            let collector_cfg = Arc::new(dbmon_pki::tls::collector_facing(identity, trust)?);
            let people_in = dbmon_pki::transport::incoming(people, people_cfg, "people");
            let collector_in =
                dbmon_pki::transport::incoming(collectors, collector_cfg, "collectors");
            tokio::join!(
                people_router.serve_with_incoming_shutdown(people_in, until(shutdown.clone())),
                collector_router
                    .serve_with_incoming_shutdown(collector_in, until(shutdown.clone()))
            )
        }
        None => {
            let people_in = tokio_stream::wrappers::TcpListenerStream::new(people);
            let collector_in = tokio_stream::wrappers::TcpListenerStream::new(collectors);
            tokio::join!(
                people_router.serve_with_incoming_shutdown(people_in, until(shutdown.clone())),
                collector_router
                    .serve_with_incoming_shutdown(collector_in, until(shutdown.clone()))
            )
        }
    };
    a?;
    b?;
    if let Ok(Err(e)) = web_task.await {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
    Ok(())
}
