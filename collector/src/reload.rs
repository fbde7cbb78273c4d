//! Reloading the clusters without a restart: on SIGHUP, or when the
//! configuration file changes (checked every second), the file is read
//! again. A file with errors is refused, every error logged with its
//! file:line:column, and the running clusters stay. A good one is applied
//! cluster by cluster: agents of removed clusters stop, new ones start,
//! changed ones restart with their new settings. The stream to the server
//! and its buffer (memory and spill) are not touched, so no report is lost
//! and the sequence goes on without a gap. Settings of the collector itself
//! (server address, buffer, spill) need a restart; a change to them is
//! logged as such.

use crate::agent::{self, ReportSender};
use dbmon_config::{ClusterConfig, Config};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::watch;

pub use dbmon_pki::reload::ReloadStatus;

/// One running agent.
struct Running {
    cluster: ClusterConfig,
    stop: watch::Sender<bool>,
}

/// The agents, keyed by cluster name.
pub struct Agents {
    collector_id: String,
    out: ReportSender,
    shutdown: watch::Receiver<bool>,
    running: BTreeMap<String, Running>,
    /// Share of its interval over which a starting agent's first poll falls.
    spread: f64,
}

/// The share of an interval over which agents spread their first polls: a
/// tenth for a few clusters (the first reports come soon), growing with
/// their number to the whole interval from 100 clusters on. Polls that start
/// together keep their phase, so a collector of 3,000 clusters whose first
/// polls fell within a tenth of the interval polled in bursts of ten times
/// its mean rate, each holding its answer's buffers at once.
pub fn first_poll_spread(clusters: usize) -> f64 {
    (clusters as f64 / 100.0).clamp(0.1, 1.0)
}

impl Agents {
    pub fn new(collector_id: String, out: ReportSender, shutdown: watch::Receiver<bool>) -> Agents {
        Agents {
            collector_id,
            out,
            shutdown,
            running: BTreeMap::new(),
            spread: 0.1,
        }
    }

    fn start(&mut self, cluster: ClusterConfig) {
        tracing::info!(cluster = %cluster.name, kind = %cluster.kind, nodes = cluster.nodes.len(), interval = %humantime::format_duration(cluster.interval), "watching cluster");
        // The agent stops when its sender says so, or is dropped with
        // these agents at the collector's shutdown.
        let (stop, stopped) = watch::channel(*self.shutdown.borrow());
        tokio::spawn(agent::run(
            cluster.clone(),
            self.collector_id.clone(),
            self.out.clone(),
            cluster.interval.mul_f64(self.spread),
            stopped,
        ));
        self.running
            .insert(cluster.name.clone(), Running { cluster, stop });
    }

    fn stop(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            let _ = r.stop.send(true);
        }
    }

    /// Starts an agent per cluster.
    pub fn start_all(&mut self, clusters: Vec<ClusterConfig>) {
        self.spread = first_poll_spread(clusters.len());
        for c in clusters {
            self.start(c);
        }
    }

    /// Brings the agents to `clusters`; what changed, in words.
    pub fn apply(&mut self, clusters: Vec<ClusterConfig>) -> String {
        let wanted: BTreeMap<String, ClusterConfig> =
            clusters.into_iter().map(|c| (c.name.clone(), c)).collect();
        self.spread = first_poll_spread(wanted.len());
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for name in &gone {
            tracing::info!(cluster = %name, "no longer in the configuration: stopped watching it");
            self.stop(name);
        }
        for (name, c) in wanted {
            match self.running.get(&name) {
                // Debug holds every setting (secrets only as references).
                Some(r) if format!("{:?}", r.cluster) == format!("{c:?}") => {}
                Some(_) => {
                    tracing::info!(cluster = %name, "its settings changed: restarting its agent");
                    self.stop(&name);
                    self.start(c);
                    changed.push(name);
                }
                None => {
                    self.start(c);
                    added.push(name);
                }
            }
        }
        let part =
            |what: &str, v: &[String]| (!v.is_empty()).then(|| format!("{what} {}", v.join(", ")));
        let parts: Vec<String> = [
            part("added", &added),
            part("removed", &gone),
            part("changed", &changed),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "no cluster changed".into()
        } else {
            parts.join("; ")
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }
}

/// Watches `path` and SIGHUP until `shutdown`, applying each good new
/// configuration to `agents` and publishing the outcome in `status`.
pub async fn watch_file(
    path: PathBuf,
    started_with: Config,
    mut agents: Agents,
    state: std::sync::Arc<crate::publisher::StreamState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut trigger = dbmon_pki::reload::Trigger::new(path.clone());
    let mut collector_settings = format!("{:?}", started_with.collector);
    while let Some(cause) = trigger.next(&mut shutdown).await {
        let why = cause.describe();
        let outcome = match Config::load(&path, &crate::Registry) {
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("{e}");
                }
                tracing::error!(file = %path.display(), errors = errors.0.len(), "configuration not reloaded ({why}): the running one stays");
                let problems: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                ReloadStatus::refused(&problems, 3)
            }
            Ok(cfg) => {
                let collector_now = format!("{:?}", cfg.collector);
                if collector_now != collector_settings {
                    tracing::warn!(file = %path.display(), "the collector: section changed; restart the collector to apply it (clusters are reloaded now)");
                    collector_settings = collector_now;
                }
                let detail = agents.apply(cfg.clusters);
                tracing::info!(file = %path.display(), clusters = ?agents.names(), "configuration reloaded ({why}): {detail}");
                ReloadStatus::applied(detail)
            }
        };
        state
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(outcome, dbmon_proto::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::first_poll_spread;

    #[test]
    fn first_polls_spread_wider_the_more_clusters_a_collector_watches() {
        assert_eq!(first_poll_spread(1), 0.1);
        assert_eq!(first_poll_spread(10), 0.1);
        assert_eq!(first_poll_spread(50), 0.5);
        assert_eq!(first_poll_spread(100), 1.0);
        assert_eq!(first_poll_spread(3334), 1.0);
    }
}
