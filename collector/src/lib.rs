//! The collector: one agent task per configured cluster, each polling its
//! cluster through the connector of its kind, and one publisher streaming
//! the resulting reports to the server.

pub mod agent;
pub mod connector;
pub mod connectors;
pub mod http;
pub mod link;
pub mod prom;
pub mod publisher;
pub mod registry;
pub mod reload;
pub mod spill;
pub mod tls;
pub mod window;

pub use connector::{Connector, ConnectorError, Observation};
pub use registry::Registry;

use dbmon_config::Config;
use tokio::sync::{mpsc, watch};

/// Runs agents, the publisher and certificate upkeep until `shutdown`
/// turns true. Fails at once when the link to the server cannot be set up
/// (a missing, expired or mismatched certificate).
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), link::LinkError> {
    run_watching(config, None, shutdown).await
}

/// [`run`], reloading the clusters from `file` on SIGHUP or when it
/// changes (see [`reload`]).
pub async fn run_watching(
    config: Config,
    file: Option<std::path::PathBuf>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), link::LinkError> {
    let link = link::Link::from_config(&config.collector)?;
    if let link::Link::Tls { identity, .. } = &link {
        tracing::info!(identity = %identity.identity(), server = %config.collector.server, "collector identity");
    }
    let (tx, rx) = mpsc::channel(4096);
    let mut tasks = tokio::task::JoinSet::new();
    let state = std::sync::Arc::new(publisher::StreamState::default());
    let mut agents = reload::Agents::new(config.collector.id.clone(), tx, shutdown.clone());
    agents.start_all(config.clusters.clone());
    match file {
        Some(path) => {
            tasks.spawn(reload::watch_file(
                path,
                config.clone(),
                agents,
                state.clone(),
                shutdown.clone(),
            ));
        }
        None => {
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                let _agents = agents;
                let _ = stop.wait_for(|s| *s).await;
            });
        }
    }
    if let Some(dir) = &config.collector.pki_dir {
        tasks.spawn(link::maintain(
            link.clone(),
            dir.clone(),
            config.collector.id.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(addr) = config.collector.http_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            link::LinkError::Config(format!(
                "cannot listen on collector.http_listen {addr}: {e}"
            ))
        })?;
        tasks.spawn(health_endpoint(listener, state.clone(), shutdown.clone()));
    }
    let publisher = publisher::PublisherConfig {
        collector_id: config.collector.id.clone(),
        link,
        clusters: config.clusters.iter().map(|c| c.name.clone()).collect(),
        buffer_reports: config.collector.buffer_reports,
        spill: config
            .collector
            .spill_dir
            .clone()
            .map(|d| (d, config.collector.spill_max_bytes)),
        state,
    };
    tasks.spawn(publisher::run(publisher, rx, shutdown));
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a collector task failed");
        }
    }
    Ok(())
}

/// `/healthz` of the collector: 200 while its stream to the server is up,
/// 503 with the last error otherwise.
async fn health_endpoint(
    listener: tokio::net::TcpListener,
    state: std::sync::Arc<publisher::StreamState>,
    mut shutdown: watch::Receiver<bool>,
) {
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let state = state.clone();
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                let buffer = format!(
                    "{} reports unacknowledged ({} on disk), {} dropped since start",
                    state.buffered.load(Relaxed),
                    state.on_disk.load(Relaxed),
                    state.lost.load(Relaxed)
                );
                let reload = state
                    .reload
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .line()
                    .map(|l| format!("{l}\n"))
                    .unwrap_or_default();
                if state.connected.load(Relaxed) {
                    (
                        StatusCode::OK,
                        format!("ok: streaming to the server; {buffer}\n{reload}"),
                    )
                } else {
                    let e = state
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not connected to the server: {e}; {buffer}\n{reload}"),
                    )
                }
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
}
