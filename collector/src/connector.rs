//! What a connector is: something that polls every node of one cluster and
//! turns the answers into [`Observation`]s.

use dbmon_config::{CheckConfig, ClusterConfig, Level};
use dbmon_proto::Status;
use std::time::Duration;

/// Polls one cluster. Built once per cluster from its configuration by the
/// kind's [`crate::registry::Registration`]; `poll` is called at every
/// interval and must return within the cluster's timeout (each request is
/// bounded by it), never panic, and turn every failure into an observation.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    async fn poll(&self) -> Vec<Observation>;
}

/// A connector could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Pki(#[from] dbmon_pki::PkiError),
    #[error(transparent)]
    Secret(#[from] dbmon_config::SecretError),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// One result of one check, before the agent stamps it into a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Node label (host:port as configured); empty for cluster-wide checks.
    pub node: String,
    pub check: String,
    pub status: Status,
    pub value: Option<f64>,
    pub unit: String,
    pub message: String,
    pub latency: Duration,
}

impl Observation {
    pub fn new(node: &str, check: &str, status: Status, message: impl Into<String>) -> Self {
        Observation {
            node: node.to_string(),
            check: check.to_string(),
            status,
            value: None,
            unit: String::new(),
            message: message.into(),
            latency: Duration::ZERO,
        }
    }

    /// An observation of `value` judged against the check's thresholds.
    pub fn measured(
        node: &str,
        check: &str,
        cfg: &CheckConfig,
        value: f64,
        unit: &str,
        message: impl Into<String>,
    ) -> Self {
        let status = match cfg.level(value) {
            Level::Ok => Status::Ok,
            Level::Warn => Status::Warn,
            Level::Crit => Status::Crit,
        };
        let mut message = message.into();
        if status != Status::Ok {
            let (t, word) = match status {
                Status::Crit => (cfg.crit, "crit"),
                _ => (cfg.warn, "warn"),
            };
            if let Some(t) = t {
                let cmp = match cfg.direction {
                    dbmon_config::Direction::Above => ">",
                    dbmon_config::Direction::Below => "<",
                };
                message.push_str(&format!(" ({word}: {cmp} {}{unit})", fmt_num(t)));
            }
        }
        Observation {
            value: Some(value),
            unit: unit.to_string(),
            ..Observation::new(node, check, status, message)
        }
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// A number without trailing zeros: 15, 0.5, 62.93.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Bytes in a readable unit.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", fmt_num(v), UNITS[i])
}

/// The node label used in reports: `host:port` of the node's base URL.
pub fn node_label(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => url.to_string(),
    }
}

/// Looks up an enabled check of the cluster.
pub fn check<'a>(cluster: &'a ClusterConfig, name: &str) -> Option<&'a CheckConfig> {
    cluster.checks.get(name)
}
