//! The dbmon server: an in-memory cache of reports (latest state and
//! bounded history per cluster), the gRPC services collectors publish to and
//! clients read from, and an HTTP endpoint with `/healthz` and `/metrics`.

pub mod cache;
pub mod http;
pub mod service;

use dbmon_config::ServerConfig;
use dbmon_proto::v1::ingest_server::IngestServer;
use dbmon_proto::v1::monitor_server::MonitorServer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// The server failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({what}): {source}; is another process using it?")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let services = service::Services {
        cache: Arc::new(cache::Cache::new(
            cfg.history_per_cluster,
            cfg.subscriber_queue,
        )),
        collectors: Default::default(),
    };
    let grpc = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            what: "gRPC",
            source,
        })?;
    let web = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.http_listen,
            what: "HTTP",
            source,
        })?;
    if !cfg.listen.ip().is_loopback() {
        tracing::warn!(addr = %cfg.listen, "gRPC is plaintext and bound beyond loopback: anyone who can reach it can publish and read reports");
    }
    tracing::info!(grpc = %grpc.local_addr().unwrap_or(cfg.listen), http = %web.local_addr().unwrap_or(cfg.http_listen), "dbmon server listening");
    let mut web_shutdown = shutdown.clone();
    let web_services = services.clone();
    let web_task = tokio::spawn(async move {
        axum::serve(web, http::router(web_services))
            .with_graceful_shutdown(async move {
                let _ = web_shutdown.wait_for(|s| *s).await;
            })
            .await
    });
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .add_service(IngestServer::new(services.clone()))
        .add_service(MonitorServer::new(services))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    if let Ok(Err(e)) = web_task.await {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
    Ok(())
}
