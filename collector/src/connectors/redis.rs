//! Redis (6 and later), standalone with replicas or in cluster mode, over
//! RESP on TCP or TLS, as an ACL user allowed `PING`, `INFO` and
//! `CLUSTER INFO` (docs/redis.md gives the ACL line).
//!
//! Each node keeps one connection, made again after any failure. A poll
//! sends `PING` and `INFO` in one round trip (and `CLUSTER INFO` in cluster
//! mode), within the cluster's timeout: a node that does not answer in time
//! (a `DEBUG SLEEP`, a long `KEYS *`) is `unknown` "no answer within …"
//! while the others go on.

use crate::connector::{
    Connector, ConnectorError, NodeAnswer, NodeFailure, Observation, bytes, certificate_hint,
    check, failed_node, fmt_num, node_label, silent, within,
};
use crate::window::CounterWindow;
use dbmon_config::{CheckSpec, ClusterConfig, Direction, Section};
use dbmon_proto::Status;
use dbmon_proto::health::{QUORUM_CHECK, UP_CHECK};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::Mutex;

/// TLS (verified against `tls.ca_file`), client certificates, and an ACL
/// user's password (`username: default` for `requirepass`).
pub static SECTIONS: &[Section] = &[Section::Tls, Section::ClientCert, Section::Auth];

/// Which node takes writes (replication), or whether the cluster serves
/// all its slots (cluster mode).
pub static ESSENTIAL: &[&str] = &[QUORUM_CHECK];

/// Window for counter increases (evictions, rejected connections).
const WINDOW: Duration = Duration::from_secs(15 * 60);

pub static CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: UP_CHECK,
        about: "the node answers PING",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: QUORUM_CHECK,
        about: "exactly one master answers (replication), or every answering node says cluster_state:ok with all 16384 slots served (cluster mode)",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "master_link",
        about: "a replica's link to its master is up (crit when down); seconds since it last heard from it",
        unit: "s",
        direction: Direction::Above,
        warn: Some(30.0),
        crit: Some(60.0),
    },
    CheckSpec {
        name: "replicas",
        about: "replicas connected to a master, against the other configured nodes (or warn/crit: fewer than)",
        unit: "replicas",
        direction: Direction::Below,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "replication_lag",
        about: "bytes a replica is behind its master's replication offset",
        unit: "B",
        direction: Direction::Above,
        warn: Some(1024.0 * 1024.0),
        crit: Some(16.0 * 1024.0 * 1024.0),
    },
    CheckSpec {
        name: "memory",
        about: "used_memory as % of maxmemory (of the machine's memory when maxmemory is 0)",
        unit: "%",
        direction: Direction::Above,
        warn: Some(80.0),
        crit: Some(90.0),
    },
    CheckSpec {
        name: "evictions",
        about: "keys evicted for lack of memory in the last 15 minutes (no default threshold: a cache evicts by design)",
        unit: "keys",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "persistence",
        about: "the last RDB save and AOF write succeeded (crit otherwise); seconds since the last save",
        unit: "s",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "rejected_connections",
        about: "connections refused at maxclients in the last 15 minutes",
        unit: "count",
        direction: Direction::Above,
        warn: Some(0.0),
        crit: None,
    },
];

const NODE_CHECKS: &[&str] = &[
    "master_link",
    "replicas",
    "replication_lag",
    "memory",
    "evictions",
    "persistence",
    "rejected_connections",
];

/// One node's answers: `INFO` (and `CLUSTER INFO`) as key → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub info: BTreeMap<String, String>,
    pub cluster: Option<BTreeMap<String, String>>,
}

impl Facts {
    fn get(&self, key: &str) -> Option<&str> {
        self.info.get(key).map(String::as_str)
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.trim().parse().ok()
    }

    fn is_master(&self) -> bool {
        self.get("role") == Some("master")
    }

    fn cluster_mode(&self) -> bool {
        self.get("cluster_enabled") == Some("1")
    }
}

/// Reads `INFO` (or `CLUSTER INFO`) text: `key:value` lines, `#` section
/// headers, CRLF or LF.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fields of a `slaveN:ip=…,port=…,state=…,offset=…,lag=…` line.
fn replica_fields(line: &str) -> BTreeMap<&str, &str> {
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

pub fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError> {
    let redis = match &cluster.auth {
        Some(a) => redis::RedisConnectionInfo::default()
            .set_username(&a.username)
            .set_password(a.resolve_password()?),
        None => redis::RedisConnectionInfo::default(),
    };
    let t = &cluster.tls;
    // The configuration asks for ca_file (or insecure_skip_verify) with tls:.
    let tls = if t.ca_file.is_some() || t.insecure_skip_verify {
        if t.insecure_skip_verify {
            tracing::warn!(
                cluster = %cluster.name,
                "tls.insecure_skip_verify is set: the nodes' certificates are NOT verified"
            );
        }
        let root_cert = t
            .ca_file
            .as_ref()
            .map(|ca| dbmon_pki::read_certificates(ca))
            .transpose()?;
        let client_tls = match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                dbmon_pki::check_key_permissions(key)?;
                Some(redis::ClientTlsConfig {
                    client_cert: dbmon_pki::read_certificates(cert)?,
                    client_key: dbmon_pki::files::read(key)?,
                })
            }
            _ => None,
        };
        Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    } else {
        None
    };
    let mut nodes = Vec::new();
    for u in &cluster.nodes {
        let host = u.host_str().unwrap_or("localhost").to_string();
        let port = u.port().unwrap_or(6379);
        let addr = match &tls {
            Some(_) => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: t.insecure_skip_verify,
                tls_params: None,
            },
            None => redis::ConnectionAddr::Tcp(host, port),
        };
        let info = redis::IntoConnectionInfo::into_connection_info(addr)
            .map_err(|e| ConnectorError::Tls(format!("node {}: {e}", node_label(u))))?
            .set_redis_settings(redis.clone());
        let client = match &tls {
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
            None => redis::Client::open(info),
        }
        .map_err(|e| ConnectorError::Tls(format!("node {}: {e}", node_label(u))))?;
        nodes.push(Node {
            label: node_label(u),
            client,
            conn: Mutex::new(None),
        });
    }
    Ok(Box::new(Redis {
        cluster: cluster.clone(),
        nodes,
        evictions: CounterWindow::new(WINDOW),
        rejected: CounterWindow::new(WINDOW),
    }))
}

struct Node {
    label: String,
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

struct Redis {
    cluster: ClusterConfig,
    nodes: Vec<Node>,
    evictions: CounterWindow,
    rejected: CounterWindow,
}

#[async_trait::async_trait]
impl Connector for Redis {
    async fn poll(&self) -> Vec<Observation> {
        let answers = futures::future::join_all(self.nodes.iter().map(|n| self.poll_node(n))).await;
        let mut out = judge(&self.cluster, &answers);
        // Counters become increases over the window, per node.
        for o in &mut out {
            let (window, key) = match o.check.as_str() {
                "evictions" => (&self.evictions, "evicted_keys"),
                "rejected_connections" => (&self.rejected, "rejected_connections"),
                _ => continue,
            };
            let (Some(v), Some(cfg)) = (o.value, check(&self.cluster, &o.check)) else {
                continue;
            };
            let (increase, resets) = window.observe(&o.node, v);
            let restarted = if resets > 0 {
                " (the node restarted)"
            } else {
                ""
            };
            *o = Observation::measured(
                &o.node,
                &o.check,
                cfg,
                increase,
                &o.unit,
                format!(
                    "{} in the last 15 minutes ({key} {}){restarted}",
                    fmt_num(increase),
                    fmt_num(v)
                ),
            );
        }
        out
    }
}

impl Redis {
    async fn poll_node(&self, node: &Node) -> NodeAnswer<Facts> {
        let (result, took) = within(self.cluster.timeout, self.ask(node)).await;
        if result.is_err() {
            node.conn.lock().await.take();
        }
        (node.label.clone(), result, took)
    }

    async fn ask(&self, node: &Node) -> Result<Facts, NodeFailure> {
        let kept = node.conn.lock().await.clone();
        if let Some(conn) = kept {
            match self.ask_on(conn).await {
                // The kept connection died with the node (or a restart):
                // say what a new one finds, in this same poll.
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {}
                other => {
                    return other.map_err(|e| {
                        NodeFailure::Unknown(command_error(&e, self.cluster.timeout))
                    });
                }
            }
        }
        let timeout = Some(self.cluster.timeout);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = node
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| NodeFailure::Down(connect_error(&e, &self.cluster)))?;
        *node.conn.lock().await = Some(conn.clone());
        self.ask_on(conn)
            .await
            .map_err(|e| NodeFailure::Unknown(command_error(&e, self.cluster.timeout)))
    }

    /// `PING` and `INFO` in one round trip, then `CLUSTER INFO` in cluster
    /// mode.
    async fn ask_on(
        &self,
        mut conn: redis::aio::MultiplexedConnection,
    ) -> Result<Facts, redis::RedisError> {
        let (pong, info): (String, String) = redis::pipe()
            .cmd("PING")
            .cmd("INFO")
            .query_async(&mut conn)
            .await?;
        if pong != "PONG" {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "PING answered something else than PONG",
                pong,
            )));
        }
        let mut facts = Facts {
            info: parse_info(&info),
            cluster: None,
        };
        if facts.cluster_mode() {
            let text: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await?;
            facts.cluster = Some(parse_info(&text));
        }
        Ok(facts)
    }
}

fn connect_error(e: &redis::RedisError, cluster: &ClusterConfig) -> String {
    let what = e.to_string();
    if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed) || what.contains("WRONGPASS") {
        let user = cluster
            .auth
            .as_ref()
            .map_or("default", |a| a.username.as_str());
        return format!(
            "cannot connect: the node refused the login of user {user:?} (wrong password, or the user is off); check auth.username (default for requirepass) and the password its file or variable holds"
        );
    }
    let hint = if let Some(hint) = certificate_hint(&what, cluster) {
        hint
    } else if e.is_timeout() {
        format!(
            " (no answer within {})",
            humantime::format_duration(cluster.timeout)
        )
    } else {
        String::new()
    };
    format!("cannot connect: {what}{hint}")
}

fn command_error(e: &redis::RedisError, timeout: Duration) -> String {
    let what = e.to_string();
    if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else if what.contains("NOPERM") {
        format!(
            "the monitoring commands were refused: {what}; allow the ACL user +ping +info +cluster|info"
        )
    } else if what.contains("NOAUTH") || what.contains("WRONGPASS") {
        format!("not logged in: {what}; set auth.username and auth.password")
    } else {
        format!("the monitoring commands failed: {what}")
    }
}

/// Turns one poll's answers into observations (counters as raw values;
/// the connector turns those into increases). Pure, so the tests can feed
/// it real `INFO` answers.
pub fn judge(cluster: &ClusterConfig, answers: &[NodeAnswer<Facts>]) -> Vec<Observation> {
    let mut out = Vec::new();
    let answered: Vec<(&str, &Facts)> = answers
        .iter()
        .filter_map(|(n, r, _)| r.as_ref().ok().map(|f| (n.as_str(), f)))
        .collect();
    for (node, result, latency) in answers {
        let facts = match result {
            Ok(f) => f,
            Err(failure) => {
                out.extend(failed_node(cluster, node, failure, NODE_CHECKS));
                continue;
            }
        };
        if check(cluster, UP_CHECK).is_some() {
            let role = if facts.is_master() {
                "master"
            } else {
                "replica"
            };
            let mode = if facts.cluster_mode() {
                " (cluster mode)"
            } else {
                ""
            };
            out.push(
                Observation::new(
                    node,
                    UP_CHECK,
                    Status::Ok,
                    format!(
                        "{role}{mode}, Redis {}",
                        facts.get("redis_version").unwrap_or("?")
                    ),
                )
                .with_latency(*latency),
            );
        }
        out.extend(judge_node(cluster, node, facts, &answered));
    }
    if check(cluster, QUORUM_CHECK).is_some() {
        out.push(quorum(answers, &answered));
    }
    out
}

fn missing(node: &str, name: &str, key: &str) -> Observation {
    Observation::new(node, name, Status::Unknown, format!("INFO has no {key}"))
}

fn judge_node(
    cluster: &ClusterConfig,
    node: &str,
    f: &Facts,
    answered: &[(&str, &Facts)],
) -> Vec<Observation> {
    let mut out = Vec::new();
    let na = |name: &str, why: &str| Observation::new(node, name, Status::NotApplicable, why);
    if let Some(cfg) = check(cluster, "master_link") {
        out.push(if f.is_master() {
            na("master_link", "a master: judged on replicas")
        } else {
            let master = format!(
                "{}:{}",
                f.get("master_host").unwrap_or("?"),
                f.get("master_port").unwrap_or("?")
            );
            match f.get("master_link_status") {
                Some("up") => match f.num("master_last_io_seconds_ago") {
                    Some(s) => Observation::measured(
                        node,
                        "master_link",
                        cfg,
                        s,
                        "s",
                        format!(
                            "linked to master {master}, heard from it {} s ago",
                            fmt_num(s)
                        ),
                    ),
                    None => missing(node, "master_link", "master_last_io_seconds_ago"),
                },
                Some(state) => {
                    let since = f
                        .num("master_link_down_since_seconds")
                        .map(|s| format!(" for {} s", fmt_num(s)))
                        .unwrap_or_default();
                    Observation::new(
                        node,
                        "master_link",
                        Status::Crit,
                        format!("the link to master {master} is {state}{since}"),
                    )
                }
                None => missing(node, "master_link", "master_link_status"),
            }
        });
    }
    if let Some(cfg) = check(cluster, "replicas") {
        out.push(if !f.is_master() {
            na("replicas", "a replica: judged on its master")
        } else {
            replicas(cluster, node, cfg, f)
        });
    }
    if let Some(cfg) = check(cluster, "replication_lag") {
        out.push(if f.is_master() {
            na("replication_lag", "a master: judged on replicas")
        } else {
            // A replica shares its master's replication ID.
            let id = f.get("master_replid");
            let master = answered
                .iter()
                .find(|(_, m)| m.is_master() && id.is_some() && m.get("master_replid") == id);
            match (master, f.num("slave_repl_offset")) {
                (Some((name, m)), Some(offset)) => match m.num("master_repl_offset") {
                    Some(head) => {
                        let behind = (head - offset).max(0.0);
                        Observation::measured(
                            node,
                            "replication_lag",
                            cfg,
                            behind,
                            "B",
                            format!("{} behind master {name}", bytes(behind)),
                        )
                    }
                    None => missing(node, "replication_lag", "master_repl_offset on the master"),
                },
                (_, None) => missing(node, "replication_lag", "slave_repl_offset"),
                (None, _) => Observation::new(
                    node,
                    "replication_lag",
                    Status::Unknown,
                    "its master is not among the answering nodes, so there is no offset to compare with",
                ),
            }
        });
    }
    if let Some(cfg) = check(cluster, "memory") {
        out.push(match (f.num("used_memory"), f.num("maxmemory")) {
            (Some(used), Some(max)) if max > 0.0 => Observation::measured(
                node,
                "memory",
                cfg,
                round2(used * 100.0 / max),
                "%",
                format!("{} of maxmemory {}", bytes(used), bytes(max)),
            ),
            (Some(used), _) => match f.num("total_system_memory").filter(|t| *t > 0.0) {
                Some(total) => Observation::measured(
                    node,
                    "memory",
                    cfg,
                    round2(used * 100.0 / total),
                    "%",
                    format!(
                        "{} of the machine's {} (no maxmemory set)",
                        bytes(used),
                        bytes(total)
                    ),
                ),
                None => missing(node, "memory", "maxmemory or total_system_memory"),
            },
            (None, _) => missing(node, "memory", "used_memory"),
        });
    }
    for (name, key, unit) in [
        ("evictions", "evicted_keys", "keys"),
        ("rejected_connections", "rejected_connections", "count"),
    ] {
        if check(cluster, name).is_some() {
            out.push(match f.num(key) {
                Some(v) => {
                    let mut o = Observation::new(node, name, Status::Ok, format!("{key} {v}"));
                    o.value = Some(v);
                    o.unit = unit.into();
                    o
                }
                None => missing(node, name, key),
            });
        }
    }
    if let Some(cfg) = check(cluster, "persistence") {
        out.push(persistence(node, cfg, f));
    }
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn replicas(
    cluster: &ClusterConfig,
    node: &str,
    cfg: &dbmon_config::CheckConfig,
    f: &Facts,
) -> Observation {
    let connected = f.num("connected_slaves").unwrap_or(0.0);
    let listed: Vec<String> = (0..connected as usize)
        .filter_map(|i| f.get(&format!("slave{i}")))
        .map(|l| {
            let r = replica_fields(l);
            format!(
                "{}:{} {}",
                r.get("ip").unwrap_or(&"?"),
                r.get("port").unwrap_or(&"?"),
                r.get("state").unwrap_or(&"?")
            )
        })
        .collect();
    let names = if listed.is_empty() {
        String::new()
    } else {
        format!(" ({})", listed.join(", "))
    };
    if cfg.warn.is_some() || cfg.crit.is_some() || f.cluster_mode() {
        return Observation::measured(
            node,
            "replicas",
            cfg,
            connected,
            "replicas",
            format!("{} replica(s) connected{names}", fmt_num(connected)),
        );
    }
    // Replication: every other configured node should replicate from it.
    let expected = cluster.nodes.len().saturating_sub(1) as f64;
    let status = if connected < expected {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut o = Observation::new(
        node,
        "replicas",
        status,
        format!(
            "{} of {} replica(s) connected{names}",
            fmt_num(connected),
            fmt_num(expected)
        ),
    );
    o.value = Some(connected);
    o.unit = "replicas".into();
    o
}

fn persistence(node: &str, cfg: &dbmon_config::CheckConfig, f: &Facts) -> Observation {
    let age = match (f.num("rdb_last_save_time"), now_secs()) {
        (Some(t), Some(now)) if t > 0.0 => Some((now - t).max(0.0)),
        _ => None,
    };
    let mut failures = Vec::new();
    if let Some(s) = f.get("rdb_last_bgsave_status").filter(|s| *s != "ok") {
        failures.push(format!(
            "the last RDB save failed (rdb_last_bgsave_status:{s})"
        ));
    }
    if f.get("aof_enabled") == Some("1")
        && let Some(s) = f.get("aof_last_write_status").filter(|s| *s != "ok")
    {
        failures.push(format!(
            "the last AOF write failed (aof_last_write_status:{s})"
        ));
    }
    let changes = f
        .get("rdb_changes_since_last_save")
        .map(|c| format!(", {c} change(s) since"))
        .unwrap_or_default();
    let saved = match age {
        Some(a) => format!("last RDB save {} s ago{changes}", fmt_num(a.round())),
        None => "no RDB save time".to_string(),
    };
    let mut o = match age {
        Some(a) => Observation::measured(node, "persistence", cfg, a.round(), "s", saved.clone()),
        None => Observation::new(node, "persistence", Status::Ok, saved.clone()),
    };
    if !failures.is_empty() {
        o.status = Status::Crit;
        o.message = format!("{}; {saved}", failures.join("; "));
    }
    o
}

fn now_secs() -> Option<f64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

fn quorum(answers: &[NodeAnswer<Facts>], answered: &[(&str, &Facts)]) -> Observation {
    let silent = silent(answers);
    let cluster_mode = answered.iter().any(|(_, f)| f.cluster_mode());
    let (status, message, value, unit) = if cluster_mode {
        cluster_quorum(answered)
    } else {
        let masters: Vec<&str> = answered
            .iter()
            .filter(|(_, f)| f.is_master())
            .map(|(n, _)| *n)
            .collect();
        let (status, message) = match masters.as_slice() {
            [] if silent > 0 => (
                Status::Unknown,
                format!(
                    "no master among the answering nodes, and {silent} node(s) did not answer in time"
                ),
            ),
            [] if answered.is_empty() => (Status::Crit, "no node answers".to_string()),
            [] => (
                Status::Crit,
                format!(
                    "no master: the {} answering node(s) are all replicas",
                    answered.len()
                ),
            ),
            [m] => (Status::Ok, format!("one master, {m}")),
            many => (
                Status::Crit,
                format!(
                    "{} masters ({}): writes may go to either",
                    many.len(),
                    many.join(", ")
                ),
            ),
        };
        (status, message, masters.len() as f64, "")
    };
    let mut o = Observation::new("", QUORUM_CHECK, status, message);
    o.value = Some(value);
    o.unit = unit.into();
    o
}

/// Cluster mode: what the answering nodes say of the whole cluster.
fn cluster_quorum(answered: &[(&str, &Facts)]) -> (Status, String, f64, &'static str) {
    let mut failing = Vec::new();
    let mut notes = Vec::new();
    let mut ok = 0usize;
    let mut detail = String::new();
    for (node, f) in answered {
        let Some(c) = &f.cluster else {
            notes.push(format!("{node} gave no CLUSTER INFO"));
            continue;
        };
        let num = |k: &str| {
            c.get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if c.get("cluster_state").map(String::as_str) == Some("ok") {
            ok += 1;
        } else {
            failing.push(format!(
                "{node} says cluster_state:{}",
                c.get("cluster_state").map_or("?", |s| s.as_str())
            ));
        }
        let (assigned, served, pfail, fail) = (
            num("cluster_slots_assigned"),
            num("cluster_slots_ok"),
            num("cluster_slots_pfail"),
            num("cluster_slots_fail"),
        );
        if assigned < 16384 {
            notes.push(format!("{node}: only {assigned} of 16384 slots assigned"));
        }
        if pfail + fail > 0 {
            notes.push(format!(
                "{node}: {pfail} slot(s) possibly failing, {fail} failing"
            ));
        }
        if detail.is_empty() {
            detail = format!(
                "{served} of 16384 slots ok, {} master(s), {} known node(s)",
                num("cluster_size"),
                num("cluster_known_nodes")
            );
        }
    }
    let status = if !failing.is_empty() || answered.is_empty() {
        Status::Crit
    } else if !notes.is_empty() {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut message = if answered.is_empty() {
        "no node answers".to_string()
    } else if failing.is_empty() {
        format!("cluster_state:ok on {ok} answering node(s); {detail}")
    } else {
        format!("{}; {detail}", failing.join("; "))
    };
    if !notes.is_empty() {
        message.push_str(&format!("; {}", notes.join("; ")));
    }
    (status, message, ok as f64, "")
}
