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

/// Why a node of a kind that keeps a connection per node (PostgreSQL,
/// Redis) gave no answer in a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeFailure {
    /// Refused, TLS or login failed: the node is down for its users too.
    Down(String),
    /// No answer in time, or an answer that could not be used: its state
    /// is not known.
    Unknown(String),
}

/// One node's part of a poll: its label, what it said (or why not), and
/// how long that took.
pub type NodeAnswer<F> = (String, Result<F, NodeFailure>, Duration);

/// Runs `ask` within `timeout` (a node that does not answer in time is
/// `Unknown` "no answer within …"), timed.
pub async fn within<F>(
    timeout: Duration,
    ask: impl std::future::Future<Output = Result<F, NodeFailure>>,
) -> (Result<F, NodeFailure>, Duration) {
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(timeout, ask).await {
        Ok(r) => r,
        Err(_) => Err(NodeFailure::Unknown(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))),
    };
    (result, started.elapsed())
}

/// The observations of a node that gave no answer: `up` crit (down) or
/// unknown, and each of `checks` unknown, all with the same reason.
pub fn failed_node(
    cluster: &ClusterConfig,
    node: &str,
    failure: &NodeFailure,
    checks: &[&str],
) -> Vec<Observation> {
    let (status, why) = match failure {
        NodeFailure::Down(w) => (Status::Crit, w),
        NodeFailure::Unknown(w) => (Status::Unknown, w),
    };
    let mut out = Vec::new();
    if check(cluster, dbmon_proto::health::UP_CHECK).is_some() {
        out.push(Observation::new(
            node,
            dbmon_proto::health::UP_CHECK,
            status,
            why.clone(),
        ));
    }
    for name in checks {
        if check(cluster, name).is_some() {
            out.push(Observation::new(node, name, Status::Unknown, why.clone()));
        }
    }
    out
}

/// What to do about a TLS failure described by `what`, if it is one: the
/// CA in `tls.ca_file` did not sign the node's certificate (or it names
/// another host), or no CA is given.
pub fn certificate_hint(what: &str, cluster: &ClusterConfig) -> Option<String> {
    if !(what.contains("certificate") || what.contains("UnknownIssuer")) {
        return None;
    }
    Some(match &cluster.tls.ca_file {
        Some(ca) => format!(
            "; the node's certificate is not signed by the CA in tls.ca_file ({}), or does not name the host",
            ca.display()
        ),
        None => "; set tls.ca_file to the CA that signs the node's certificate".to_string(),
    })
}

/// How many nodes did not answer in time: one of them may be the primary
/// (or master) a cluster-wide check looks for.
pub fn silent<F>(answers: &[NodeAnswer<F>]) -> usize {
    answers
        .iter()
        .filter(|(_, r, _)| matches!(r, Err(NodeFailure::Unknown(_))))
        .count()
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
