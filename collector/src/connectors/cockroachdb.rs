//! CockroachDB, over each node's HTTP API:
//!
//! - `GET /health?ready=1`: 200 when the node is live and accepts clients,
//!   503 while it drains or is not live;
//! - `GET /_status/vars`: Prometheus text (liveness, ranges, clock offset,
//!   capacity per store, uptime, build tag, certificate expirations);
//! - `GET /_status/nodes`: membership and liveness as the cluster sees it.
//!
//! Secure clusters take no client certificates on HTTP: when `auth` is set,
//! the connector logs in through `POST /api/v2/login/` and sends the session
//! in `X-Cockroach-API-Session`, logging in again when it expires. The
//! cluster's certificate is verified against `tls.ca_file`.
//!
//! Default thresholds follow CockroachDB's own alerting rules.

use crate::connector::{Connector, ConnectorError, Observation, bytes, check, fmt_num, node_label};
use crate::http::conn::Conn;
use crate::http::{excerpt, fetch, join};
use crate::prom::{LineFilter, Metrics};
use crate::window::CounterWindow;
use dbmon_config::{CheckSpec, ClusterConfig, Direction};
use dbmon_proto::Status;
use dbmon_proto::health::UP_CHECK;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::Mutex;

/// The metric families the checks read from `/_status/vars`.
pub const VARS: &[&str] = &[
    "sys_uptime",
    "liveness_livenodes",
    "clock_offset_meannanos",
    "capacity",
    "capacity_available",
    "ranges_unavailable",
    "ranges_underreplicated",
    "build_timestamp",
    "security_certificate_expiration_*",
];

/// Header carrying the session cookie of `/api/v2/login/`.
pub const SESSION_HEADER: &str = "X-Cockroach-API-Session";

/// CockroachDB: TLS verified against `tls.ca_file`, and a SQL user's login
/// (`auth:`) for `/api/v2`. Its HTTP API does not take client certificates.
pub static SECTIONS: &[dbmon_config::Section] =
    &[dbmon_config::Section::Tls, dbmon_config::Section::Auth];

/// Without live nodes and unavailable ranges known, CockroachDB's health
/// is not known.
pub static ESSENTIAL: &[&str] = &["live_nodes", "ranges_unavailable"];

pub static CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: UP_CHECK,
        about: "/health?ready=1 answers 200 (not draining, live)",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "live_nodes",
        about: "liveness_livenodes against the member count (crit without a majority, warn if any is not live)",
        unit: "nodes",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "ranges_unavailable",
        about: "ranges without a quorum of replicas, summed over the nodes (UnavailableRanges: > 0)",
        unit: "ranges",
        direction: Direction::Above,
        warn: None,
        crit: Some(0.0),
    },
    CheckSpec {
        name: "ranges_underreplicated",
        about: "ranges with fewer replicas than configured, summed over the nodes (UnderreplicatedRanges: > 0)",
        unit: "ranges",
        direction: Direction::Above,
        warn: Some(0.0),
        crit: None,
    },
    CheckSpec {
        name: "clock_offset",
        about: "mean clock offset from the other nodes (ClockOffsetNearMax: > 300 ms)",
        unit: "ms",
        direction: Direction::Above,
        warn: Some(200.0),
        crit: Some(300.0),
    },
    CheckSpec {
        name: "capacity_available",
        about: "available capacity of the fullest store, % of its capacity (StoreDiskLow: < 15 %)",
        unit: "%",
        direction: Direction::Below,
        warn: Some(25.0),
        crit: Some(15.0),
    },
    CheckSpec {
        name: "restarts",
        about: "process restarts in the last 10 minutes, from sys_uptime resets (InstanceFlapping: > 5)",
        unit: "count",
        direction: Direction::Above,
        warn: Some(5.0),
        crit: None,
    },
    CheckSpec {
        name: "version_skew",
        about: "distinct build tags among the answering nodes (warn above 1)",
        unit: "versions",
        direction: Direction::Above,
        warn: Some(1.0),
        crit: None,
    },
    CheckSpec {
        name: "cert_expiry",
        about: "days until the earliest certificate of the node expires (NodeCertificateExpiresSoon: < 183 days)",
        unit: "days",
        direction: Direction::Below,
        warn: Some(183.0),
        crit: Some(7.0),
    },
    CheckSpec {
        name: "membership",
        about: "liveness of every member from /_status/nodes (crit if one is dead, warn if unavailable)",
        unit: "nodes",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
];

pub fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError> {
    let login = match &cluster.auth {
        Some(a) => Some(Login {
            user: a.username.clone(),
            password: a.resolve_password()?,
            // Direct, as the nodes' connections are: no proxy from the
            // environment for the login either.
            client: crate::http::builder_for(cluster)?
                .no_proxy()
                .build()
                .map_err(|e| ConnectorError::Http(format!("{e}")))?,
        }),
        None => None,
    };
    // The login's client says it at its building; without one, say it here.
    if login.is_none() && cluster.tls.insecure_skip_verify {
        tracing::warn!(
            cluster = %cluster.name,
            "tls.insecure_skip_verify is set: the cluster's certificates are NOT verified"
        );
    }
    Ok(Box::new(CockroachDb {
        nodes: crate::http::conn::Dialer::for_cluster(cluster)?,
        cluster: cluster.clone(),
        login,
        session: Mutex::new(None),
        uptime: CounterWindow::new(Duration::from_secs(600)),
    }))
}

struct CockroachDb {
    /// For a node's `/health`, `/_status/vars` and `/_status/nodes`, on one
    /// connection per node and poll.
    nodes: crate::http::conn::Dialer,
    cluster: ClusterConfig,
    /// How to log in, when the cluster needs it.
    login: Option<Login>,
    session: Mutex<Option<String>>,
    uptime: CounterWindow,
}

/// A SQL user's login to the HTTP API (`auth:`): a form POST, made with a
/// client of its own, built only for a cluster that has one.
struct Login {
    user: String,
    /// Never logged.
    password: String,
    client: reqwest::Client,
}

/// What one node's `/_status/vars` says, for the cluster-wide checks.
#[derive(Default)]
struct NodeVars {
    live_nodes: Option<f64>,
    ranges_unavailable: Option<f64>,
    ranges_underreplicated: Option<f64>,
    build_tag: Option<String>,
}

#[async_trait::async_trait]
impl Connector for CockroachDb {
    async fn poll(&self) -> Vec<Observation> {
        let polls = self.cluster.nodes.iter().map(|u| self.poll_node(u));
        let per_node = futures::future::join_all(polls).await;
        let mut out = Vec::new();
        let mut vars = Vec::new();
        let mut conns = Vec::new();
        for (node, obs, v, conn) in per_node {
            out.extend(obs);
            if let Some(v) = v {
                vars.push((node, v));
            }
            conns.push(conn);
        }
        // Asked on the nodes' connections of this poll, then all closed;
        // within one timeout, so that the whole poll (a node's two
        // requests, then this) ends within the agent's bound of three.
        let timeout = self.cluster.timeout;
        let membership = tokio::time::timeout(timeout, self.membership(&mut conns))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "/_status/nodes: no answer within {}",
                    humantime::format_duration(timeout)
                ))
            });
        drop(conns);
        let members = membership.as_ref().ok().map(|m| m.members);
        out.extend(self.cluster_checks(&vars, members));
        if check(&self.cluster, "membership").is_some() {
            out.push(match membership {
                Ok(m) => m.observation,
                Err(e) => Observation::new("", "membership", Status::Unknown, e),
            });
        }
        out
    }
}

struct Membership {
    members: usize,
    observation: Observation,
}

impl CockroachDb {
    /// The node's own checks, and its connection for the cluster's
    /// questions of this poll (None: the node did not answer).
    async fn poll_node(
        &self,
        base: &url::Url,
    ) -> (String, Vec<Observation>, Option<NodeVars>, Option<Conn<'_>>) {
        let node = node_label(base);
        // Both requests on one connection, closed after the poll; the
        // metrics page goes through a line filter as it arrives: a node's
        // 175 KB are never held, only the families the checks read.
        let mut conn = self.nodes.node(base);
        let health = conn.get("health?ready=1", &[]).await;
        let mut filter = LineFilter::new(VARS);
        let vars = match &health {
            // A node that did not answer is not asked again in this poll.
            Err(_) => Err(String::new()),
            Ok(_) => {
                conn.get_with("_status/vars", &[], |chunk| filter.push(chunk))
                    .await
            }
        };
        let mut out = Vec::new();
        let up = match &health {
            Err(e) => Observation::new(&node, UP_CHECK, Status::Crit, e.clone()),
            Ok(a) if a.status == 200 => {
                Observation::new(&node, UP_CHECK, Status::Ok, "ready").with_latency(a.latency)
            }
            Ok(a) if a.status == 503 => Observation::new(
                &node,
                UP_CHECK,
                Status::Crit,
                format!(
                    "not ready (HTTP 503: draining or not live): {}",
                    excerpt(&a.body)
                ),
            )
            .with_latency(a.latency),
            Ok(a) => Observation::new(
                &node,
                UP_CHECK,
                Status::Crit,
                format!(
                    "/health?ready=1 answered HTTP {}: {}",
                    a.status,
                    excerpt(&a.body)
                ),
            )
            .with_latency(a.latency),
        };
        let answered = health.is_ok();
        out.push(up);
        let parsed = match vars {
            Err(e) if answered => Err(format!("/_status/vars: {e}")),
            Err(_) => return (node, out, None, None),
            Ok((status, _)) if status != 200 => Err(format!(
                "/_status/vars answered HTTP {status}: {}",
                filter.excerpt()
            )),
            Ok((_, latency)) => filter
                .finish()
                .map_err(|e| format!("/_status/vars: {e}"))
                .and_then(|m| {
                    if m.has("sys_uptime") && m.has("liveness_livenodes") {
                        Ok((m, latency))
                    } else {
                        Err("/_status/vars has no sys_uptime or liveness_livenodes: \
                             is this a CockroachDB node's HTTP address?"
                            .to_string())
                    }
                }),
        };
        match parsed {
            Err(e) => {
                out.push(Observation::new(&node, "vars", Status::Unknown, e));
                (node, out, None, Some(conn))
            }
            Ok((m, latency)) => {
                let (obs, vars) = self.judge_vars(&node, &m, latency);
                out.extend(obs);
                (node, out, Some(vars), Some(conn))
            }
        }
    }

    fn judge_vars(
        &self,
        node: &str,
        m: &Metrics,
        latency: Duration,
    ) -> (Vec<Observation>, NodeVars) {
        let c = &self.cluster;
        let mut out = Vec::new();
        let missing = |check: &str, metric: &str| {
            Observation::new(
                node,
                check,
                Status::Unknown,
                format!("metric {metric} missing from /_status/vars"),
            )
        };
        if let Some(cfg) = check(c, "clock_offset") {
            out.push(match m.first("clock_offset_meannanos") {
                Some(ns) => {
                    let ms = ns.abs() / 1e6;
                    Observation::measured(
                        node,
                        "clock_offset",
                        cfg,
                        ms,
                        "ms",
                        format!("mean clock offset {} ms", fmt_num(ms)),
                    )
                }
                None => missing("clock_offset", "clock_offset_meannanos"),
            });
        }
        if let Some(cfg) = check(c, "capacity_available") {
            let capacity: BTreeMap<String, f64> = m
                .all("capacity")
                .map(|(l, v)| (l.get("store").cloned().unwrap_or_default(), v))
                .collect();
            let mut worst: Option<(String, f64, f64, f64)> = None;
            for (labels, avail) in m.all("capacity_available") {
                let store = labels.get("store").cloned().unwrap_or_default();
                if let Some(&cap) = capacity.get(&store).filter(|c| **c > 0.0) {
                    let pct = avail / cap * 100.0;
                    if worst.as_ref().is_none_or(|w| pct < w.1) {
                        worst = Some((store, pct, avail, cap));
                    }
                }
            }
            out.push(match worst {
                Some((store, pct, avail, cap)) => Observation::measured(
                    node,
                    "capacity_available",
                    cfg,
                    pct,
                    "%",
                    format!(
                        "store {store}: {} available of {} ({}%)",
                        bytes(avail),
                        bytes(cap),
                        fmt_num(pct)
                    ),
                ),
                None => missing("capacity_available", "capacity or capacity_available"),
            });
        }
        if let Some(cfg) = check(c, "restarts") {
            out.push(match m.first("sys_uptime") {
                Some(up) => {
                    let (_, resets) = self.uptime.observe(node, up);
                    Observation::measured(
                        node,
                        "restarts",
                        cfg,
                        resets as f64,
                        "count",
                        format!(
                            "{resets} restarts in 10m (up {})",
                            humantime::format_duration(Duration::from_secs(up.max(0.0) as u64))
                        ),
                    )
                }
                None => missing("restarts", "sys_uptime"),
            });
        }
        if let Some(cfg) = check(c, "cert_expiry") {
            let now = dbmon_proto::now_ms() as f64 / 1000.0;
            let earliest = earliest_expiry(m);
            let any = m.with_prefix(CERT_PREFIX).next().is_some();
            out.push(match earliest {
                Some((name, at)) => {
                    let days = (at - now) / 86_400.0;
                    let which = name.trim_start_matches(CERT_PREFIX);
                    let msg = if days < 0.0 {
                        format!(
                            "{which} certificate expired {} days ago",
                            fmt_num(-days.ceil())
                        )
                    } else {
                        format!(
                            "{which} certificate expires in {} days",
                            fmt_num(days.floor())
                        )
                    };
                    Observation::measured(node, "cert_expiry", cfg, days.floor(), "days", msg)
                }
                None if any => Observation::new(
                    node,
                    "cert_expiry",
                    Status::Ok,
                    "no certificates in use (insecure cluster)",
                ),
                None => match m
                    .all("build_timestamp")
                    .find_map(|(l, _)| l.get("tag").cloned())
                {
                    // The metrics exist from v20.2 on: before, the check
                    // does not apply, rather than being unknown forever.
                    Some(tag) if version_before(&tag, (20, 2)) => Observation::new(
                        node,
                        "cert_expiry",
                        Status::NotApplicable,
                        format!(
                            "not applicable: CockroachDB {tag} has no security_certificate_expiration_* metrics (they exist from v20.2)"
                        ),
                    ),
                    tag => Observation::new(
                        node,
                        "cert_expiry",
                        Status::Unknown,
                        format!(
                            "no security_certificate_expiration_* metrics in the answer of CockroachDB {}",
                            tag.as_deref().unwrap_or("of unknown version")
                        ),
                    ),
                },
            });
        }
        let vars = NodeVars {
            live_nodes: m.first("liveness_livenodes"),
            ranges_unavailable: m.sum("ranges_unavailable"),
            ranges_underreplicated: m.sum("ranges_underreplicated"),
            build_tag: m
                .all("build_timestamp")
                .find_map(|(l, _)| l.get("tag").cloned()),
        };
        (
            out.into_iter().map(|o| o.with_latency(latency)).collect(),
            vars,
        )
    }

    fn cluster_checks(
        &self,
        vars: &[(String, NodeVars)],
        members: Option<usize>,
    ) -> Vec<Observation> {
        let c = &self.cluster;
        let mut out = Vec::new();
        let none = |check: &str| {
            Observation::new("", check, Status::Unknown, "no node answered /_status/vars")
        };
        if let Some(_cfg) = check(c, "live_nodes") {
            let total = members.unwrap_or(c.nodes.len());
            // The most optimistic view: a node cut off sees fewer live nodes.
            out.push(
                match vars
                    .iter()
                    .filter_map(|(_, v)| v.live_nodes)
                    .reduce(f64::max)
                {
                    Some(live) => {
                        let live_n = live as usize;
                        let status = if live_n * 2 <= total {
                            Status::Crit
                        } else if live_n < total {
                            Status::Warn
                        } else {
                            Status::Ok
                        };
                        let mut o = Observation::new(
                            "",
                            "live_nodes",
                            status,
                            format!("{live_n} of {total} nodes live"),
                        );
                        o.value = Some(live);
                        o.unit = "nodes".into();
                        o
                    }
                    None => none("live_nodes"),
                },
            );
        }
        for (name, pick) in [
            (
                "ranges_unavailable",
                (|v: &NodeVars| v.ranges_unavailable) as fn(&NodeVars) -> Option<f64>,
            ),
            ("ranges_underreplicated", |v: &NodeVars| {
                v.ranges_underreplicated
            }),
        ] {
            if let Some(cfg) = check(c, name) {
                let vals: Vec<f64> = vars.iter().filter_map(|(_, v)| pick(v)).collect();
                out.push(if vals.is_empty() {
                    none(name)
                } else {
                    let sum: f64 = vals.iter().sum();
                    let what = name.trim_start_matches("ranges_");
                    Observation::measured(
                        "",
                        name,
                        cfg,
                        sum,
                        "ranges",
                        format!(
                            "{} {what} ranges (reported by {} nodes)",
                            fmt_num(sum),
                            vals.len()
                        ),
                    )
                });
            }
        }
        if let Some(cfg) = check(c, "version_skew") {
            let mut tags: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (node, v) in vars {
                if let Some(t) = &v.build_tag {
                    tags.entry(t).or_default().push(node);
                }
            }
            out.push(if tags.is_empty() {
                Observation::new(
                    "",
                    "version_skew",
                    Status::Unknown,
                    "no node reported build_timestamp{tag}",
                )
            } else {
                let desc: Vec<String> = tags
                    .iter()
                    .map(|(t, ns)| {
                        format!(
                            "{t} on {} node{}",
                            ns.len(),
                            if ns.len() == 1 { "" } else { "s" }
                        )
                    })
                    .collect();
                Observation::measured(
                    "",
                    "version_skew",
                    cfg,
                    tags.len() as f64,
                    "versions",
                    desc.join(", "),
                )
            });
        }
        out
    }

    /// Membership and liveness from `/_status/nodes`, asked of the first
    /// node that answers, on its connection of this poll (`conns`, in the
    /// order of the nodes, None for a node that did not answer this poll);
    /// logs in first when the cluster needs it.
    async fn membership(&self, conns: &mut [Option<Conn<'_>>]) -> Result<Membership, String> {
        if check(&self.cluster, "membership").is_none()
            && check(&self.cluster, "live_nodes").is_none()
        {
            return Err("membership not checked".into());
        }
        let mut last = String::from("no node answered");
        let answered = self
            .cluster
            .nodes
            .iter()
            .zip(conns)
            .filter_map(|(b, c)| Some((b, c.as_mut()?)));
        for (base, conn) in answered {
            match self.nodes_of(base, conn).await {
                Ok(m) => return Ok(m),
                Err(e) => last = format!("{}: {e}", node_label(base)),
            }
        }
        Err(format!("/_status/nodes: {last}"))
    }

    async fn nodes_of(&self, base: &url::Url, conn: &mut Conn<'_>) -> Result<Membership, String> {
        let mut relogged = false;
        loop {
            let session = self.session.lock().await.clone();
            let headers: &[(&str, &str)] = match &session {
                Some(s) => &[(SESSION_HEADER, s.as_str())],
                None => &[],
            };
            let a = conn.get("_status/nodes", headers).await?;
            match a.status {
                200 => return parse_nodes(&a.body),
                401 | 403 if self.login.is_some() && !relogged => {
                    relogged = true;
                    self.log_in(base).await?;
                }
                401 | 403 => {
                    return Err(if self.login.is_some() {
                        format!(
                            "HTTP {} even after a fresh login: does the user have the admin or VIEWACTIVITY privilege?",
                            a.status
                        )
                    } else {
                        format!(
                            "HTTP {}: this cluster needs a login; set auth.username and auth.password",
                            a.status
                        )
                    });
                }
                s => return Err(format!("HTTP {s}: {}", excerpt(&a.body))),
            }
        }
    }

    async fn log_in(&self, base: &url::Url) -> Result<(), String> {
        let Some(Login {
            user,
            password,
            client,
        }) = &self.login
        else {
            return Err("no credentials configured".into());
        };
        let req = client
            .post(join(base, "api/v2/login/"))
            .form(&[("username", user.as_str()), ("password", password.as_str())]);
        let a = fetch(req, self.cluster.timeout).await?;
        if a.status != 200 {
            *self.session.lock().await = None;
            return Err(format!(
                "login as {user:?} refused (HTTP {}): check the username and the password's file or variable",
                a.status
            ));
        }
        let session = serde_json::from_str::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v.get("session")?.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("login answer has no session: {}", excerpt(&a.body)))?;
        tracing::info!(cluster = %self.cluster.name, user = %user, "logged in to the cluster's HTTP API");
        *self.session.lock().await = Some(session);
        Ok(())
    }
}

const CERT_PREFIX: &str = "security_certificate_expiration_";

/// The certificate that expires first (name, unix seconds); 0 means "no
/// such certificate" and is skipped.
fn earliest_expiry(m: &Metrics) -> Option<(&str, f64)> {
    m.with_prefix(CERT_PREFIX)
        .filter(|(_, v)| *v > 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Liveness statuses of `/_status/nodes`, as numbers or enum names.
fn liveness_name(v: &serde_json::Value) -> String {
    const NAMES: [&str; 7] = [
        "UNKNOWN",
        "DEAD",
        "UNAVAILABLE",
        "LIVE",
        "DECOMMISSIONING",
        "DECOMMISSIONED",
        "DRAINING",
    ];
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|i| NAMES.get(i as usize))
            .map_or_else(|| n.to_string(), |s| s.to_string()),
        serde_json::Value::String(s) => s.trim_start_matches("NODE_STATUS_").to_string(),
        other => other.to_string(),
    }
}

fn parse_nodes(body: &str) -> Result<Membership, String> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("answer is not JSON ({e}): {}", excerpt(body)))?;
    let nodes = v
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or_else(|| "answer has no nodes list".to_string())?;
    let liveness = v.get("livenessByNodeId").and_then(|l| l.as_object());
    let mut by_status: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut members = 0;
    for n in nodes {
        let id = n
            .pointer("/desc/nodeId")
            .map(|i| i.to_string())
            .unwrap_or_else(|| "?".into());
        let status = liveness
            .and_then(|l| l.get(&id))
            .map(liveness_name)
            .unwrap_or_else(|| "UNKNOWN".into());
        if status != "DECOMMISSIONED" {
            members += 1;
        }
        by_status
            .entry(status)
            .or_default()
            .insert(format!("n{id}"));
    }
    let status = if by_status.contains_key("DEAD") {
        Status::Crit
    } else if by_status
        .keys()
        .any(|k| k == "UNAVAILABLE" || k == "UNKNOWN")
    {
        Status::Warn
    } else {
        Status::Ok
    };
    let desc: Vec<String> = by_status
        .iter()
        .map(|(s, ids)| {
            format!(
                "{}: {}",
                s.to_lowercase(),
                ids.iter().cloned().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let mut o = Observation::new(
        "",
        "membership",
        status,
        format!("{members} members; {}", desc.join("; ")),
    );
    o.value = Some(members as f64);
    o.unit = "nodes".into();
    Ok(Membership {
        members,
        observation: o,
    })
}

/// Whether a build tag such as `v19.2.2` names a version before
/// `(major, minor)`; false when the tag cannot be read.
fn version_before(tag: &str, before: (u32, u32)) -> bool {
    let mut parts = tag.trim_start_matches('v').split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(a), Some(b)) => (a, b) < before,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value, a few levels deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-zA-Z0-9_]{0,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any answer of /_status/nodes: a membership or a reason, never a
        /// panic; the members counted are the nodes listed at most.
        #[test]
        fn any_nodes_answer_is_judged_or_refused(
            nodes in prop::collection::vec((json(), json()), 0..6),
            liveness in prop::collection::btree_map("[0-9]{1,2}|\\PC{0,4}", json(), 0..6),
            junk in "\\PC{0,40}",
        ) {
            let body = serde_json::json!({
                "nodes": nodes.iter().map(|(id, extra)| serde_json::json!({"desc": {"nodeId": id}, "x": extra})).collect::<Vec<_>>(),
                "livenessByNodeId": liveness,
            })
            .to_string();
            match parse_nodes(&body) {
                Ok(m) => prop_assert!(m.members <= nodes.len()),
                Err(e) => prop_assert!(!e.is_empty()),
            }
            prop_assert!(parse_nodes(&junk).is_err() || serde_json::from_str::<serde_json::Value>(&junk).is_ok());
        }
    }

    #[test]
    fn earliest_certificate_of_a_real_v22_node() {
        let text = include_str!("../../tests/fixtures/cockroachdb/security-metrics-v22.2.8.txt");
        let m = Metrics::parse(text).expect("real payload parses");
        let (name, at) = earliest_expiry(&m).expect("certificates present");
        // node expires 1.841077264e9, before the CA (1.999189262e9); zeros are absent certificates.
        assert_eq!(name, "security_certificate_expiration_node");
        assert_eq!(at, 1.841077264e9);
    }

    #[test]
    fn liveness_names_from_numbers_and_strings() {
        assert_eq!(liveness_name(&serde_json::json!(3)), "LIVE");
        assert_eq!(liveness_name(&serde_json::json!(1)), "DEAD");
        assert_eq!(
            liveness_name(&serde_json::json!("NODE_STATUS_DRAINING")),
            "DRAINING"
        );
    }
}
