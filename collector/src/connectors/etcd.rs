//! etcd (v3.4 and later), over each member's client URL:
//! `/health`, `/metrics`, and the member list
//! (`POST /v3/cluster/member/list`, the gRPC gateway).
//!
//! Quorum is judged from how many members answer, not from one member's
//! `/health`: a member cut off from the others may still say healthy for a
//! while.

use crate::connector::{Connector, ConnectorError, Observation, bytes, check, fmt_num, node_label};
use crate::http::{excerpt, fetch, fetch_with, join};
use crate::prom::{LineFilter, Metrics};
use crate::window::CounterWindow;
use dbmon_config::{CheckSpec, ClusterConfig, Direction};
use dbmon_proto::Status;
use dbmon_proto::health::{QUORUM_CHECK, UP_CHECK};
use std::time::Duration;

/// The metric families the checks read from `/metrics`.
pub const METRICS: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_server_quota_backend_bytes",
    "etcd_server_proposals_failed_total",
];

/// Window for counter increases, as in etcd's own alerting rules.
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The checks of this kind, with defaults from etcd's alerting rules.
/// etcd: TLS verified against `tls.ca_file`, and client certificates
/// (`--client-cert-auth`). etcd's HTTP endpoints take no password login.
pub static SECTIONS: &[dbmon_config::Section] = &[
    dbmon_config::Section::Tls,
    dbmon_config::Section::ClientCert,
];

/// Without a quorum and a leader known, etcd's health is not known.
pub static ESSENTIAL: &[&str] = &[QUORUM_CHECK, "has_leader"];

pub static CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: UP_CHECK,
        about: "the member answers /health and says it is healthy",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: QUORUM_CHECK,
        about: "more than half of the members answer (crit otherwise; warn if any is missing)",
        unit: "members",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "has_leader",
        about: "etcd_server_has_leader: the member sees a leader",
        unit: "",
        direction: Direction::Below,
        warn: None,
        crit: Some(1.0),
    },
    CheckSpec {
        name: "leader_changes",
        about: "leader changes seen in the last 15 minutes (etcdHighNumberOfLeaderChanges: >= 4)",
        unit: "count",
        direction: Direction::Above,
        warn: Some(3.0),
        crit: None,
    },
    CheckSpec {
        name: "db_size",
        about: "backend database size as % of its quota (etcdBackendQuotaLowSpace: > 95 %)",
        unit: "%",
        direction: Direction::Above,
        warn: Some(80.0),
        crit: Some(95.0),
    },
    CheckSpec {
        name: "proposals_failed",
        about: "failed Raft proposals in the last 15 minutes (etcdHighNumberOfFailedProposals: > 5)",
        unit: "count",
        direction: Direction::Above,
        warn: Some(5.0),
        crit: None,
    },
];

/// Builds the connector for one etcd cluster.
pub fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError> {
    Ok(Box::new(Etcd {
        client: crate::http::client_for(cluster)?,
        cluster: cluster.clone(),
        leader_changes: CounterWindow::new(WINDOW),
        proposals_failed: CounterWindow::new(WINDOW),
    }))
}

struct Etcd {
    client: reqwest::Client,
    cluster: ClusterConfig,
    leader_changes: CounterWindow,
    proposals_failed: CounterWindow,
}

#[async_trait::async_trait]
impl Connector for Etcd {
    async fn poll(&self) -> Vec<Observation> {
        let polls = self.cluster.nodes.iter().map(|u| self.poll_node(u));
        let per_node = futures::future::join_all(polls).await;
        let mut out = Vec::new();
        let mut answering = 0usize;
        let mut members: Option<Vec<String>> = None;
        for (obs, answered, m) in per_node {
            if answered {
                answering += 1;
            }
            if members.is_none() {
                members = m;
            }
            out.extend(obs);
        }
        if check(&self.cluster, QUORUM_CHECK).is_some() {
            let configured = self.cluster.nodes.len();
            let total = members.as_ref().map_or(configured, |m| m.len().max(1));
            let status = if answering * 2 <= total {
                Status::Crit
            } else if answering < total {
                Status::Warn
            } else {
                Status::Ok
            };
            let names = members
                .map(|m| format!(" (members: {})", m.join(", ")))
                .unwrap_or_else(|| " (member list unavailable)".into());
            let mut o = Observation::new(
                "",
                QUORUM_CHECK,
                status,
                format!("{answering} of {total} members answer{names}"),
            );
            o.value = Some(answering as f64);
            o.unit = "members".into();
            out.push(o);
        }
        out
    }
}

impl Etcd {
    /// Polls one member: its observations, whether it answered, and the
    /// member names it reports.
    async fn poll_node(&self, base: &url::Url) -> (Vec<Observation>, bool, Option<Vec<String>>) {
        let node = node_label(base);
        let timeout = self.cluster.timeout;
        let health = fetch(self.client.get(join(base, "health")), timeout);
        // /metrics through a line filter as it arrives: only the families
        // the checks read are kept, never the whole page.
        let mut filter = LineFilter::new(METRICS);
        let metrics = fetch_with(self.client.get(join(base, "metrics")), timeout, |chunk| {
            filter.push(chunk)
        });
        let members = fetch(
            self.client
                .post(join(base, "v3/cluster/member/list"))
                .header("content-type", "application/json")
                .body("{}"),
            timeout,
        );
        let (health, metrics, members) = tokio::join!(health, metrics, members);
        let mut out = Vec::new();

        let (up_status, up_msg, latency) = match &health {
            Err(e) => (Status::Crit, e.clone(), Duration::ZERO),
            Ok(a) => {
                let said = serde_json::from_str::<serde_json::Value>(&a.body)
                    .ok()
                    .and_then(|v| v.get("health").cloned());
                match (a.status, said.as_ref().and_then(|h| h.as_str())) {
                    (200, Some("true")) => (Status::Ok, "healthy".to_string(), a.latency),
                    (_, Some(h)) => (
                        Status::Crit,
                        format!("answers /health with health={h} (HTTP {})", a.status),
                        a.latency,
                    ),
                    (s, None) => (
                        Status::Unknown,
                        format!(
                            "/health answered HTTP {s} without a health field: {}",
                            excerpt(&a.body)
                        ),
                        a.latency,
                    ),
                }
            }
        };
        // Quorum counts members that answer at all. An isolated member may
        // say unhealthy, or not answer /health in time (it reads through
        // Raft) while its /metrics still answers.
        let answered = health.is_ok() || metrics.is_ok();
        let (up_status, up_msg) = match (&health, &metrics) {
            (Err(e), Ok(_)) => (
                Status::Crit,
                format!(
                    "/health: {e}, but /metrics answers: the member is running without a working cluster"
                ),
            ),
            _ => (up_status, up_msg),
        };
        out.push(Observation::new(&node, UP_CHECK, up_status, up_msg).with_latency(latency));

        match metrics {
            Err(e) if answered => out.push(Observation::new(
                &node,
                "metrics",
                Status::Unknown,
                format!("/metrics: {e}"),
            )),
            Err(_) => {}
            Ok((status, _)) if status != 200 => out.push(Observation::new(
                &node,
                "metrics",
                Status::Unknown,
                format!("/metrics answered HTTP {status}: {}", filter.excerpt()),
            )),
            Ok((_, metrics_latency)) => match filter.finish() {
                Err(e) => out.push(Observation::new(
                    &node,
                    "metrics",
                    Status::Unknown,
                    format!("/metrics: {e}"),
                )),
                Ok(m) if !m.has("etcd_server_has_leader") => out.push(Observation::new(
                    &node,
                    "metrics",
                    Status::Unknown,
                    "/metrics has no etcd_server_has_leader: is this an etcd member's client URL?",
                )),
                Ok(m) => out.extend(self.judge_metrics(&node, &m, metrics_latency)),
            },
        }

        let names = members.ok().filter(|a| a.status == 200).and_then(|a| {
            let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
            let list = v.get("members")?.as_array()?;
            Some(
                list.iter()
                    .map(|m| {
                        m.get("name")
                            .and_then(|n| n.as_str())
                            .filter(|n| !n.is_empty())
                            .unwrap_or("(unstarted)")
                            .to_string()
                    })
                    .collect::<Vec<_>>(),
            )
        });
        (out, answered, names)
    }

    fn judge_metrics(&self, node: &str, m: &Metrics, latency: Duration) -> Vec<Observation> {
        let mut out = Vec::new();
        let c = &self.cluster;
        let missing = |check: &str, metric: &str| {
            Observation::new(
                node,
                check,
                Status::Unknown,
                format!("metric {metric} missing from /metrics"),
            )
        };
        if let Some(cfg) = check(c, "has_leader") {
            out.push(match m.first("etcd_server_has_leader") {
                Some(v) => Observation::measured(
                    node,
                    "has_leader",
                    cfg,
                    v,
                    "",
                    if v >= 1.0 {
                        "sees a leader"
                    } else {
                        "sees no leader"
                    },
                ),
                None => missing("has_leader", "etcd_server_has_leader"),
            });
        }
        if let Some(cfg) = check(c, "leader_changes") {
            out.push(match m.first("etcd_server_leader_changes_seen_total") {
                Some(v) => {
                    let (inc, _) = self.leader_changes.observe(node, v);
                    Observation::measured(
                        node,
                        "leader_changes",
                        cfg,
                        inc,
                        "count",
                        format!("{} leader changes in 15m", fmt_num(inc)),
                    )
                }
                None => missing("leader_changes", "etcd_server_leader_changes_seen_total"),
            });
        }
        if let Some(cfg) = check(c, "db_size") {
            let size = m.first("etcd_mvcc_db_total_size_in_bytes");
            let quota = m.first("etcd_server_quota_backend_bytes");
            out.push(match (size, quota) {
                (Some(s), Some(q)) if q > 0.0 => {
                    let pct = s / q * 100.0;
                    Observation::measured(
                        node,
                        "db_size",
                        cfg,
                        pct,
                        "%",
                        format!(
                            "database {} of quota {} ({}%)",
                            bytes(s),
                            bytes(q),
                            fmt_num(pct)
                        ),
                    )
                }
                _ => missing(
                    "db_size",
                    "etcd_mvcc_db_total_size_in_bytes or etcd_server_quota_backend_bytes",
                ),
            });
        }
        if let Some(cfg) = check(c, "proposals_failed") {
            out.push(match m.first("etcd_server_proposals_failed_total") {
                Some(v) => {
                    let (inc, _) = self.proposals_failed.observe(node, v);
                    Observation::measured(
                        node,
                        "proposals_failed",
                        cfg,
                        inc,
                        "count",
                        format!("{} failed proposals in 15m", fmt_num(inc)),
                    )
                }
                None => missing("proposals_failed", "etcd_server_proposals_failed_total"),
            });
        }
        out.into_iter().map(|o| o.with_latency(latency)).collect()
    }
}
