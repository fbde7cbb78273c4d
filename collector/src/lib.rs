//! The collector: one agent task per configured cluster, each polling its
//! cluster through the connector of its kind, and one publisher streaming
//! the resulting reports to the server.

pub mod agent;
pub mod connector;
pub mod connectors;
pub mod http;
pub mod prom;
pub mod publisher;
pub mod registry;
pub mod window;

pub use connector::{Connector, ConnectorError, Observation};
pub use registry::Registry;

use dbmon_config::Config;
use tokio::sync::{mpsc, watch};

/// Runs agents and the publisher until `shutdown` turns true.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel(4096);
    let mut tasks = tokio::task::JoinSet::new();
    for cluster in config.clusters.clone() {
        tracing::info!(cluster = %cluster.name, kind = %cluster.kind, nodes = cluster.nodes.len(), interval = %humantime::format_duration(cluster.interval), "watching cluster");
        tasks.spawn(agent::run(
            cluster,
            config.collector.id.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    let publisher = publisher::PublisherConfig {
        collector_id: config.collector.id.clone(),
        server: config.collector.server.clone(),
        clusters: config.clusters.iter().map(|c| c.name.clone()).collect(),
        buffer_reports: config.collector.buffer_reports,
    };
    tasks.spawn(publisher::run(publisher, rx, shutdown));
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a collector task failed");
        }
    }
}
