//! PostgreSQL (11 and later) with streaming standbys, over the PostgreSQL
//! protocol, as a role granted `pg_monitor` (docs/postgresql.md gives the
//! SQL).
//!
//! Each node keeps one connection, made again after any failure. Every poll
//! runs a few catalog queries in one read-only transaction, under a
//! `statement_timeout` and the cluster's timeout: a node that hangs is
//! `unknown` "no answer within …", never a stuck agent. Cluster-wide
//! judgements (exactly one primary, standby lag against the primary's WAL
//! position, version skew) are made from all nodes' answers of one poll.

use crate::connector::{
    Connector, ConnectorError, NodeAnswer, NodeFailure, Observation, bytes, certificate_hint,
    check, failed_node, fmt_num, node_label, silent, within,
};
use dbmon_config::{CheckSpec, ClusterConfig, Direction, Section};
use dbmon_proto::Status;
use dbmon_proto::health::{QUORUM_CHECK, UP_CHECK};
use std::sync::Arc;
use tokio::sync::Mutex;

/// TLS (verified against `tls.ca_file`, or not verified at all with
/// `tls.insecure_skip_verify`), client certificates, and a role's password.
pub static SECTIONS: &[Section] = &[Section::Tls, Section::ClientCert, Section::Auth];

/// Which node is the primary decides whether the cluster takes writes.
pub static ESSENTIAL: &[&str] = &[QUORUM_CHECK];

const WRAPAROUND: f64 = 2_147_483_648.0;

pub static CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: UP_CHECK,
        about: "the node accepts the monitoring role's connection and answers",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: QUORUM_CHECK,
        about: "exactly one answering node is a primary (none, or two: crit)",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "streaming",
        about: "a standby's WAL receiver is streaming from its primary (pg_stat_wal_receiver)",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
    CheckSpec {
        name: "replication_lag",
        about: "bytes of WAL a standby has yet to replay: the primary's position minus the standby's",
        unit: "B",
        direction: Direction::Above,
        warn: Some(64.0 * 1024.0 * 1024.0),
        crit: Some(1024.0 * 1024.0 * 1024.0),
    },
    CheckSpec {
        name: "replay_lag",
        about: "seconds since a standby replayed its last transaction, 0 while it has replayed all it received",
        unit: "s",
        direction: Direction::Above,
        warn: Some(30.0),
        crit: Some(300.0),
    },
    CheckSpec {
        name: "replication_slots",
        about: "WAL retained by the primary's replication slots; an inactive slot is at least warn",
        unit: "B",
        direction: Direction::Above,
        warn: Some(1024.0 * 1024.0 * 1024.0),
        crit: Some(10.0 * 1024.0 * 1024.0 * 1024.0),
    },
    CheckSpec {
        name: "connections",
        about: "client connections as % of max_connections",
        unit: "%",
        direction: Direction::Above,
        warn: Some(80.0),
        crit: Some(90.0),
    },
    CheckSpec {
        name: "xid_wraparound",
        about: "age of the oldest unfrozen transaction ID (datfrozenxid) as % of the 2^31 at which writes stop",
        unit: "%",
        direction: Direction::Above,
        warn: Some(50.0),
        crit: Some(75.0),
    },
    CheckSpec {
        name: "long_transactions",
        about: "age of the oldest open transaction, in seconds",
        unit: "s",
        direction: Direction::Above,
        warn: Some(300.0),
        crit: Some(3600.0),
    },
    CheckSpec {
        name: "version_skew",
        about: "every answering node runs the same PostgreSQL version (warn otherwise)",
        unit: "",
        direction: Direction::Above,
        warn: None,
        crit: None,
    },
];

/// Checks judged on one node (the rest are cluster-wide).
const NODE_CHECKS: &[&str] = &[
    "streaming",
    "replication_lag",
    "replay_lag",
    "replication_slots",
    "connections",
    "xid_wraparound",
    "long_transactions",
];

/// What every node answers.
const NODE_SQL: &str = "SELECT pg_is_in_recovery(), \
    current_setting('server_version'), \
    current_setting('max_connections')::int8, \
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8, \
    (SELECT max(age(datfrozenxid)) FROM pg_database)::int8, \
    (SELECT extract(epoch FROM max(clock_timestamp() - xact_start)) FROM pg_stat_activity \
       WHERE backend_type = 'client backend' AND xact_start IS NOT NULL \
       AND pid <> pg_backend_pid())::float8";

/// A primary's WAL position (bytes since 0/0) and its standbys.
const PRIMARY_SQL: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8";
const STANDBYS_SQL: &str = "SELECT coalesce(application_name, ''), \
    coalesce(host(client_addr), 'local'), coalesce(state, '') FROM pg_stat_replication";
const SLOTS_SQL: &str = "SELECT slot_name::text, active, \
    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 FROM pg_replication_slots";

/// A standby's replay position, whether it has replayed all it received,
/// how long ago it replayed a transaction, and its WAL receiver.
const STANDBY_SQL: &str = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8, \
    pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(), \
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, \
    pg_is_wal_replay_paused(), \
    (SELECT status FROM pg_stat_wal_receiver LIMIT 1)";

/// What one node said in one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub standby: bool,
    /// `server_version`, e.g. "15.18" or "14.4 (Debian 14.4-1)".
    pub version: String,
    pub max_connections: i64,
    pub connections: i64,
    /// `age(datfrozenxid)` of the oldest database.
    pub xid_age: i64,
    /// Seconds since the oldest open transaction began, if any is open.
    pub oldest_transaction: Option<f64>,
    pub primary: Option<PrimaryFacts>,
    pub standby_facts: Option<StandbyFacts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrimaryFacts {
    /// `pg_current_wal_lsn()` in bytes.
    pub wal_position: f64,
    /// (application_name, client address, state) of each connected standby.
    pub standbys: Vec<(String, String, String)>,
    /// (slot name, active, bytes of WAL it retains).
    pub slots: Vec<(String, bool, Option<f64>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandbyFacts {
    /// `pg_last_wal_replay_lsn()` in bytes; None before any replay.
    pub replay_position: Option<f64>,
    /// Everything received has been replayed.
    pub caught_up: bool,
    /// Seconds since the last replayed transaction's commit.
    pub replay_age: Option<f64>,
    pub paused: bool,
    /// `pg_stat_wal_receiver.status`, None when no receiver runs.
    pub receiver: Option<String>,
}

pub fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError> {
    let tls = tls_config(cluster)?;
    let (user, password) = match &cluster.auth {
        Some(a) => (a.username.clone(), a.resolve_password()?),
        None => ("postgres".to_string(), String::new()),
    };
    let statement_ms = cluster.timeout.as_millis().max(1);
    let nodes = cluster
        .nodes
        .iter()
        .map(|u| {
            let mut pg = tokio_postgres::Config::new();
            pg.host(u.host_str().unwrap_or("localhost"))
                .port(u.port().unwrap_or(5432))
                .dbname(u.path().trim_start_matches('/'))
                .user(&user)
                .application_name("dbmon")
                .connect_timeout(cluster.timeout)
                .options(format!(
                    "-c statement_timeout={statement_ms} -c lock_timeout={statement_ms} -c default_transaction_read_only=on"
                ))
                .ssl_mode(if tls.is_some() {
                    tokio_postgres::config::SslMode::Require
                } else {
                    tokio_postgres::config::SslMode::Disable
                });
            if !password.is_empty() {
                pg.password(password.as_bytes());
            }
            Node {
                label: node_label(u),
                pg,
                client: Mutex::new(None),
            }
        })
        .collect();
    Ok(Box::new(Postgres {
        cluster: cluster.clone(),
        tls,
        nodes,
    }))
}

struct Node {
    label: String,
    pg: tokio_postgres::Config,
    client: Mutex<Option<tokio_postgres::Client>>,
}

struct Postgres {
    cluster: ClusterConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    nodes: Vec<Node>,
}

#[async_trait::async_trait]
impl Connector for Postgres {
    async fn poll(&self) -> Vec<Observation> {
        let answers = futures::future::join_all(self.nodes.iter().map(|n| self.poll_node(n))).await;
        judge(&self.cluster, &answers)
    }
}

impl Postgres {
    async fn poll_node(&self, node: &Node) -> NodeAnswer<Facts> {
        let (result, took) = within(self.cluster.timeout, self.ask(node)).await;
        if result.is_err() {
            // A connection that failed or hung mid-query is not used again.
            node.client.lock().await.take();
        }
        (node.label.clone(), result, took)
    }

    async fn ask(&self, node: &Node) -> Result<Facts, NodeFailure> {
        let mut slot = node.client.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.connect(node).await?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(NodeFailure::Unknown("no connection".into()));
        };
        let failed = |e: tokio_postgres::Error| NodeFailure::Unknown(query_error(&e));
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(failed)?;
        let row = tx.query_one(NODE_SQL, &[]).await.map_err(failed)?;
        let mut facts = Facts {
            standby: row.try_get(0).map_err(failed)?,
            version: row.try_get(1).map_err(failed)?,
            max_connections: row.try_get(2).map_err(failed)?,
            connections: row.try_get(3).map_err(failed)?,
            xid_age: row
                .try_get::<_, Option<i64>>(4)
                .map_err(failed)?
                .unwrap_or(0),
            oldest_transaction: row.try_get(5).map_err(failed)?,
            ..Facts::default()
        };
        if facts.standby {
            let r = tx.query_one(STANDBY_SQL, &[]).await.map_err(failed)?;
            facts.standby_facts = Some(StandbyFacts {
                replay_position: r.try_get(0).map_err(failed)?,
                caught_up: r
                    .try_get::<_, Option<bool>>(1)
                    .map_err(failed)?
                    .unwrap_or(false),
                replay_age: r.try_get(2).map_err(failed)?,
                paused: r.try_get(3).map_err(failed)?,
                receiver: r.try_get(4).map_err(failed)?,
            });
        } else {
            let wal_position: f64 = tx
                .query_one(PRIMARY_SQL, &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(failed)?;
            let mut standbys = Vec::new();
            for r in tx.query(STANDBYS_SQL, &[]).await.map_err(failed)? {
                standbys.push((
                    r.try_get(0).map_err(failed)?,
                    r.try_get(1).map_err(failed)?,
                    r.try_get(2).map_err(failed)?,
                ));
            }
            let mut slots = Vec::new();
            for r in tx.query(SLOTS_SQL, &[]).await.map_err(failed)? {
                slots.push((
                    r.try_get(0).map_err(failed)?,
                    r.try_get(1).map_err(failed)?,
                    r.try_get(2).map_err(failed)?,
                ));
            }
            facts.primary = Some(PrimaryFacts {
                wal_position,
                standbys,
                slots,
            });
        }
        tx.commit().await.map_err(failed)?;
        Ok(facts)
    }

    async fn connect(&self, node: &Node) -> Result<tokio_postgres::Client, NodeFailure> {
        let down = |e: tokio_postgres::Error| NodeFailure::Down(connect_error(&e, &self.cluster));
        let client = match &self.tls {
            Some(tls) => {
                let make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) = node.pg.connect(make).await.map_err(down)?;
                tokio::spawn(drive(connection));
                client
            }
            None => {
                let (client, connection) =
                    node.pg.connect(tokio_postgres::NoTls).await.map_err(down)?;
                tokio::spawn(drive(connection));
                client
            }
        };
        Ok(client)
    }
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "postgresql connection ended");
    }
}

/// The server's own words when it gave some, else the chain of causes.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Why a connection failed, and what to do about it.
fn connect_error(e: &tokio_postgres::Error, cluster: &ClusterConfig) -> String {
    let what = describe(e);
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    let hint = match code.as_deref() {
        Some("28000") if what.contains("no encryption") => {
            "; the node takes this role over TLS only: set tls.ca_file".to_string()
        }
        Some("28000") if what.contains("client certificate") => {
            "; this role logs in by certificate: set tls.cert_file and tls.key_file to one the node's ssl_ca_file signed, naming the role".to_string()
        }
        Some("28000") if what.contains("no pg_hba.conf entry") => {
            "; add a line for this role and address to the node's pg_hba.conf".to_string()
        }
        // invalid_password, invalid_authorization_specification
        Some("28P01") | Some("28000") => {
            "; check auth.username and the password its file or variable holds (and pg_hba.conf)"
                .to_string()
        }
        _ if what.contains("server does not support TLS") => {
            "; the node does not speak TLS: set ssl = on in its postgresql.conf".to_string()
        }
        _ => certificate_hint(&what, cluster).unwrap_or_default(),
    };
    format!("cannot connect: {what}{hint}")
}

fn query_error(e: &tokio_postgres::Error) -> String {
    let what = describe(e);
    if e.as_db_error().is_some_and(|d| d.code().code() == "42501") {
        format!(
            "the monitoring queries were refused: {what}; GRANT pg_monitor TO the monitoring role"
        )
    } else {
        format!("the monitoring queries failed: {what}")
    }
}

/// The rustls settings for the cluster's nodes, or None for plaintext
/// (which the configuration allows on loopback only).
fn tls_config(
    cluster: &ClusterConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, ConnectorError> {
    let t = &cluster.tls;
    if t.ca_file.is_none() && !t.insecure_skip_verify && t.cert_file.is_none() {
        return Ok(None);
    }
    if t.insecure_skip_verify {
        tracing::warn!(
            cluster = %cluster.name,
            "tls.insecure_skip_verify is set: the nodes' certificates are NOT verified"
        );
    }
    crate::tls::client_config(cluster, crate::tls::Roots::OnlyConfigured, &[]).map(Some)
}

/// Turns one poll's answers into observations: the per-node checks, then
/// the cluster-wide ones. Pure, so the tests can feed it real answers.
pub fn judge(cluster: &ClusterConfig, answers: &[NodeAnswer<Facts>]) -> Vec<Observation> {
    let mut out = Vec::new();
    let primaries: Vec<(&str, &Facts)> = answers
        .iter()
        .filter_map(|(n, r, _)| r.as_ref().ok().map(|f| (n.as_str(), f)))
        .filter(|(_, f)| !f.standby)
        .collect();
    // Standbys are compared with the primary only when there is exactly one.
    let primary_position = match primaries.as_slice() {
        [(_, f)] => f.primary.as_ref().map(|p| p.wal_position),
        _ => None,
    };
    for (node, result, latency) in answers {
        let facts = match result {
            Ok(f) => f,
            Err(failure) => {
                out.extend(failed_node(cluster, node, failure, NODE_CHECKS));
                continue;
            }
        };
        let role = if facts.standby { "standby" } else { "primary" };
        if check(cluster, UP_CHECK).is_some() {
            out.push(
                Observation::new(
                    node,
                    UP_CHECK,
                    Status::Ok,
                    format!("{role}, PostgreSQL {}", facts.version),
                )
                .with_latency(*latency),
            );
        }
        out.extend(judge_node(cluster, node, facts, primary_position));
    }
    if check(cluster, QUORUM_CHECK).is_some() {
        out.push(quorum(answers, &primaries));
    }
    if check(cluster, "version_skew").is_some() {
        out.push(version_skew(answers));
    }
    out
}

fn judge_node(
    cluster: &ClusterConfig,
    node: &str,
    f: &Facts,
    primary_position: Option<f64>,
) -> Vec<Observation> {
    let mut out = Vec::new();
    let not_standby = |name: &str| {
        Observation::new(
            node,
            name,
            Status::NotApplicable,
            "a primary: judged on standbys",
        )
    };
    if check(cluster, "streaming").is_some() {
        out.push(match &f.standby_facts {
            None => not_standby("streaming"),
            Some(s) => match s.receiver.as_deref() {
                Some("streaming") => Observation::new(
                    node,
                    "streaming",
                    Status::Ok,
                    "streaming WAL from the primary",
                ),
                Some(other) => Observation::new(
                    node,
                    "streaming",
                    Status::Crit,
                    format!("the WAL receiver is {other}, not streaming"),
                ),
                None => Observation::new(
                    node,
                    "streaming",
                    Status::Crit,
                    "no WAL receiver runs: the standby does not stream from a primary (check primary_conninfo and the primary's pg_hba.conf)",
                ),
            },
        });
    }
    if let Some(cfg) = check(cluster, "replication_lag") {
        out.push(match (&f.standby_facts, primary_position) {
            (None, _) => not_standby("replication_lag"),
            (Some(s), Some(p)) if s.replay_position.is_some() => {
                let behind = (p - s.replay_position.unwrap_or(p)).max(0.0);
                let paused = if s.paused { " (replay is paused)" } else { "" };
                Observation::measured(
                    node,
                    "replication_lag",
                    cfg,
                    behind,
                    "B",
                    format!("{} behind the primary{paused}", bytes(behind)),
                )
            }
            (Some(s), _) if s.replay_position.is_none() => Observation::new(
                node,
                "replication_lag",
                Status::Unknown,
                "the standby has replayed nothing yet",
            ),
            (Some(_), _) => Observation::new(
                node,
                "replication_lag",
                Status::Unknown,
                "not exactly one primary answered, so there is no position to compare with",
            ),
        });
    }
    if let Some(cfg) = check(cluster, "replay_lag") {
        out.push(match &f.standby_facts {
            None => not_standby("replay_lag"),
            Some(s) if s.caught_up => Observation::measured(
                node,
                "replay_lag",
                cfg,
                0.0,
                "s",
                "has replayed all the WAL it received",
            ),
            Some(s) => match s.replay_age {
                Some(age) => Observation::measured(
                    node,
                    "replay_lag",
                    cfg,
                    age.max(0.0),
                    "s",
                    format!(
                        "last replayed a transaction {} s ago, with more received{}",
                        fmt_num(age.max(0.0).round()),
                        if s.paused { "; replay is paused" } else { "" }
                    ),
                ),
                None => Observation::new(
                    node,
                    "replay_lag",
                    Status::Unknown,
                    "no transaction replayed since the standby started",
                ),
            },
        });
    }
    if let Some(cfg) = check(cluster, "replication_slots") {
        out.push(match &f.primary {
            None => Observation::new(
                node,
                "replication_slots",
                Status::NotApplicable,
                "a standby: slots are judged on the primary",
            ),
            Some(p) => slots(node, cfg, &p.slots),
        });
    }
    if let Some(cfg) = check(cluster, "connections") {
        out.push(if f.max_connections > 0 {
            let pct = f.connections as f64 * 100.0 / f.max_connections as f64;
            Observation::measured(
                node,
                "connections",
                cfg,
                (pct * 100.0).round() / 100.0,
                "%",
                format!(
                    "{} of max_connections {} in use",
                    f.connections, f.max_connections
                ),
            )
        } else {
            Observation::new(node, "connections", Status::Unknown, "max_connections is 0")
        });
    }
    if let Some(cfg) = check(cluster, "xid_wraparound") {
        let pct = f.xid_age as f64 * 100.0 / WRAPAROUND;
        out.push(Observation::measured(
            node,
            "xid_wraparound",
            cfg,
            (pct * 100.0).round() / 100.0,
            "%",
            format!(
                "the oldest unfrozen transaction ID is {} transactions old (VACUUM FREEZE brings it down)",
                f.xid_age
            ),
        ));
    }
    if let Some(cfg) = check(cluster, "long_transactions") {
        out.push(match f.oldest_transaction {
            Some(age) => Observation::measured(
                node,
                "long_transactions",
                cfg,
                age.max(0.0).round(),
                "s",
                format!(
                    "the oldest open transaction began {} s ago",
                    fmt_num(age.max(0.0).round())
                ),
            ),
            None => Observation::measured(
                node,
                "long_transactions",
                cfg,
                0.0,
                "s",
                "no transaction open",
            ),
        });
    }
    out
}

fn slots(
    node: &str,
    cfg: &dbmon_config::CheckConfig,
    slots: &[(String, bool, Option<f64>)],
) -> Observation {
    let retained = slots
        .iter()
        .filter_map(|(_, _, r)| *r)
        .fold(0.0_f64, f64::max);
    let inactive: Vec<String> = slots
        .iter()
        .filter(|(_, active, _)| !active)
        .map(|(name, _, r)| match r {
            Some(b) => format!("{name} (retains {})", bytes(*b)),
            None => name.clone(),
        })
        .collect();
    let mut message = match slots.len() {
        0 => "no replication slots".to_string(),
        n => format!(
            "{n} slot(s), the most WAL retained by one is {}",
            bytes(retained)
        ),
    };
    if !inactive.is_empty() {
        message.push_str(&format!(
            "; inactive: {} (WAL piles up until it is used or dropped)",
            inactive.join(", ")
        ));
    }
    let mut o = Observation::measured(node, "replication_slots", cfg, retained, "B", message);
    if !inactive.is_empty() && o.status == Status::Ok {
        o.status = Status::Warn;
    }
    o
}

fn quorum(answers: &[NodeAnswer<Facts>], primaries: &[(&str, &Facts)]) -> Observation {
    let answering = answers.iter().filter(|(_, r, _)| r.is_ok()).count();
    let silent = silent(answers);
    let (status, message) = match primaries {
        // A primary may be among the nodes that did not answer in time.
        [] if silent > 0 => (
            Status::Unknown,
            format!(
                "no primary among the answering nodes, and {silent} node(s) did not answer in time"
            ),
        ),
        [] if answering == 0 => (Status::Crit, "no node answers".to_string()),
        [] => (
            Status::Crit,
            format!("no primary: the {answering} answering node(s) are all standbys"),
        ),
        [(name, f)] => {
            let streaming = f
                .primary
                .as_ref()
                .map(|p| p.standbys.iter().filter(|s| s.2 == "streaming").count())
                .unwrap_or(0);
            (
                Status::Ok,
                format!("one primary, {name}; {streaming} standby(s) stream from it"),
            )
        }
        many => (
            Status::Crit,
            format!(
                "{} primaries ({}): split brain, writes may go to either",
                many.len(),
                many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        ),
    };
    let mut o = Observation::new("", QUORUM_CHECK, status, message);
    o.value = Some(primaries.len() as f64);

    o
}

fn version_skew(answers: &[NodeAnswer<Facts>]) -> Observation {
    let mut versions: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (node, r, _) in answers {
        if let Ok(f) = r {
            versions.entry(f.version.as_str()).or_default().push(node);
        }
    }
    let (status, message) = match versions.len() {
        0 => (Status::Unknown, "no node answers".to_string()),
        1 => (
            Status::Ok,
            format!(
                "every answering node runs {}",
                versions.keys().next().copied().unwrap_or_default()
            ),
        ),
        _ => (
            Status::Warn,
            versions
                .iter()
                .map(|(v, nodes)| format!("{v} on {}", nodes.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let mut o = Observation::new("", "version_skew", status, message);
    o.value = Some(versions.len() as f64);

    o
}
