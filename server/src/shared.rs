//! The shared store (PostgreSQL, or anything speaking its protocol): several
//! servers write the reports their collectors send into one table, and each
//! server's cache is fed only by reading that table back in position order.
//! So every replica holds the same reports under the same positions, and a
//! Watch on any replica sees what any other ingested, and can resume on
//! another with the position it had.
//!
//! Positions are the table's sequence. Writers take one advisory lock per
//! transaction before taking numbers, so transactions commit in position
//! order and a reader that has seen position P never later finds a new row
//! below P. A collector's report is acknowledged once its transaction
//! committed; a retried write cannot store a report twice (one row per
//! collector, epoch and seq).

use crate::cache::Cache;
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// Every writer takes this advisory lock ("dbmon" in ASCII) per transaction.
const WRITE_LOCK: i64 = 0x0064_626d_6f6e;
/// Rows read per query while catching up.
const PAGE: i64 = 5000;
/// Rows written per transaction at most.
const BATCH: usize = 2000;
/// Longest a batch may take to commit before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS settings for the database: its CA certificate(s), from PEM.
pub fn tls_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it; expected the CA certificate of the database's certificate",
            ca_file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Schema migrations, in order; version N is `MIGRATIONS[N - 1]`. Each runs
/// once, in a transaction, under the write lock.
const MIGRATIONS: &[&str] = &[
    // 1: reports, one row per collector report.
    "CREATE TABLE dbmon_reports (
        position BIGSERIAL PRIMARY KEY,
        collector TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        cluster TEXT NOT NULL,
        node TEXT NOT NULL,
        check_name TEXT NOT NULL,
        observed_at_ms BIGINT NOT NULL,
        report BYTEA NOT NULL,
        UNIQUE (collector, epoch, seq)
    );
    CREATE INDEX dbmon_reports_cluster ON dbmon_reports (cluster, position);",
    // 2: when a row was stored, for retention by age.
    "ALTER TABLE dbmon_reports ADD COLUMN stored_at TIMESTAMPTZ NOT NULL DEFAULT now();
    CREATE INDEX dbmon_reports_stored_at ON dbmon_reports (stored_at);",
    // 3: users, passkeys, invites and logins (with their macaroon root
    // keys): one JSON document, versioned, changed under its row lock.
    "CREATE TABLE dbmon_auth (
        id INT PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL,
        doc BYTEA NOT NULL
    );",
    // 4: alerting: the sending server's state (alerts, groups, outbox) as
    // one JSON document, and people's silences, one row each, which any
    // server may add or expire.
    "CREATE TABLE dbmon_alerting (
        id INT PRIMARY KEY CHECK (id = 1),
        doc BYTEA NOT NULL,
        saved_by TEXT NOT NULL,
        saved_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE dbmon_silences (
        id TEXT PRIMARY KEY,
        cluster TEXT NOT NULL,
        doc BYTEA NOT NULL
    );",
];

/// Why the shared store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("shared store {target}: {why}")]
pub struct SharedError {
    /// Host, port and database, never the password.
    pub target: String,
    pub why: String,
}

/// Where to connect and how long history is kept.
#[derive(Clone)]
pub struct SharedConfig {
    pub pg: tokio_postgres::Config,
    /// TLS to the database, verified against `server.store_ca_file`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub target: String,
    /// Reports kept per cluster beyond the latest of each (node, check).
    pub history_per_cluster: usize,
    /// Older reports go, except the latest of each (node, check).
    pub max_age: Duration,
}

/// A report waiting to be written: its ticket, its collector's epoch, the report.
type Pending = (u64, u64, dbmon_proto::Report);

/// This server's handle on the shared store.
pub struct Shared {
    cfg: SharedConfig,
    /// Ticket of the last submitted report; held while sending, so that
    /// tickets reach the writer in order.
    submit: Mutex<(u64, mpsc::UnboundedSender<Pending>)>,
    durable_tx: watch::Sender<u64>,
    /// Highest ticket whose report is committed.
    pub durable: watch::Receiver<u64>,
    /// The last error talking to the store, None while it works.
    pub error: Mutex<Option<String>>,
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Rows deleted by retention since start.
    pub pruned: AtomicU64,
    wrote: Notify,
}

impl Shared {
    pub fn target(&self) -> &str {
        &self.cfg.target
    }

    /// Queues a collector's report; its ticket is durable once
    /// `durable >= ticket`.
    pub fn submit(&self, epoch: u64, report: dbmon_proto::Report) -> u64 {
        let mut s = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        let ticket = s.0;
        // The writer lives as long as the server.
        let _ = s.1.send((ticket, epoch, report));
        ticket
    }

    fn set_error(&self, e: Option<String>) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match (&*slot, &e) {
            (None, Some(e)) => {
                tracing::error!(store = %self.cfg.target, error = %e, "the shared store cannot be reached; collectors keep their reports until it can")
            }
            (Some(was), None) => {
                tracing::info!(store = %self.cfg.target, previous_error = %was, "the shared store works again")
            }
            _ => {}
        }
        *slot = e;
    }
}

fn failed(cfg: &SharedConfig, why: impl std::fmt::Display) -> SharedError {
    SharedError {
        target: cfg.target.clone(),
        why: why.to_string(),
    }
}

/// Describes a driver error with the server's own message when there is one.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

pub(crate) async fn connect(cfg: &SharedConfig) -> Result<tokio_postgres::Client, String> {
    let client = match &cfg.tls {
        Some(tls) => {
            let make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            let (client, connection) = cfg.pg.connect(make).await.map_err(|e| describe(&e))?;
            tokio::spawn(drive(connection));
            client
        }
        None => {
            let (client, connection) = cfg
                .pg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| describe(&e))?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "shared store connection ended");
    }
}

/// Brings the schema to this server's version; refuses a newer one.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .map_err(|e| describe(&e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS dbmon_schema (version INT NOT NULL)")
        .await
        .map_err(|e| describe(&e))?;
    let row = tx
        .query_opt("SELECT max(version) FROM dbmon_schema", &[])
        .await
        .map_err(|e| describe(&e))?;
    let have: i32 = row.and_then(|r| r.get::<_, Option<i32>>(0)).unwrap_or(0);
    let want = MIGRATIONS.len() as i32;
    if have > want {
        return Err(format!(
            "schema version {have}, newer than this server's {want}; run a newer dbmon"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| format!("migration {version}: {}", describe(&e)))?;
        tx.execute(
            "INSERT INTO dbmon_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| describe(&e))?;
        tracing::info!(version, "shared store schema migrated");
    }
    tx.commit().await.map_err(|e| describe(&e))
}

/// Rows after `after`, at most one page, in position order, and the
/// position of the last row read. A row that is not a report is logged and
/// skipped (it stays in the table to be looked at), never read as one.
async fn read_after(
    client: &tokio_postgres::Client,
    after: u64,
) -> Result<(Vec<crate::store::Record>, u64), String> {
    let rows = client
        .query(
            "SELECT position, epoch, report FROM dbmon_reports WHERE position > $1 ORDER BY position LIMIT $2",
            &[&(after as i64), &PAGE],
        )
        .await
        .map_err(|e| describe(&e))?;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = after;
    for row in &rows {
        let position: i64 = row.get(0);
        let epoch: i64 = row.get(1);
        let bytes: &[u8] = row.get(2);
        last = position as u64;
        match dbmon_proto::Report::decode(bytes) {
            Ok(report) => out.push(crate::store::Record {
                position: position as u64,
                epoch: epoch as u64,
                report,
            }),
            Err(e) => {
                tracing::error!(position, error = %e, "a row of dbmon_reports is not a report; skipped")
            }
        }
    }
    Ok((out, last))
}

/// Connects, migrates and reads every stored report, in position order.
/// Fails when the store cannot be reached or its schema is newer: several
/// servers that do not share state would be worse than one that says why
/// it does not start.
pub async fn open(
    cfg: SharedConfig,
) -> Result<(Arc<Shared>, Vec<crate::store::Record>), SharedError> {
    let mut client = connect(&cfg).await.map_err(|e| failed(&cfg, e))?;
    migrate(&mut client).await.map_err(|e| failed(&cfg, e))?;
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let (page, last) = read_after(&client, after)
            .await
            .map_err(|e| failed(&cfg, e))?;
        let done = last == after;
        after = last;
        records.extend(page);
        if done {
            break;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (durable_tx, durable) = watch::channel(0);
    let shared = Arc::new(Shared {
        cfg,
        submit: Mutex::new((0, tx)),
        durable_tx,
        durable,
        error: Mutex::new(None),
        written: AtomicU64::new(0),
        write_errors: AtomicU64::new(0),
        pruned: AtomicU64::new(0),
        wrote: Notify::new(),
    });
    tokio::spawn(write_loop(shared.clone(), rx));
    Ok((shared, records))
}

/// Starts reading what any server writes into `cache`, and retention.
pub fn start_tail(shared: &Arc<Shared>, cache: &Arc<Cache>) {
    tokio::spawn(tail_loop(Arc::downgrade(shared), Arc::downgrade(cache)));
    tokio::spawn(prune_loop(Arc::downgrade(shared)));
}

async fn write_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut batch: Vec<Pending> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let attempt = async {
            match client.as_mut() {
                Some(c) => write(c, &batch).await,
                None => match connect(&shared.cfg).await {
                    Ok(c) => {
                        let c = client.insert(c);
                        write(c, &batch).await
                    }
                    Err(e) => Err(e),
                },
            }
        };
        // A write that hangs is an error too: the server says so, and the
        // connection is made anew.
        let result = match tokio::time::timeout(WRITE_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => {
                client = None;
                Err(format!(
                    "no answer to a write within {}s",
                    WRITE_TIMEOUT.as_secs()
                ))
            }
        };
        match result {
            Ok(()) => {
                shared
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let top = batch.last().map_or(0, |p| p.0);
                shared.durable_tx.send_replace(top);
                batch.clear();
                shared.set_error(None);
                shared.wrote.notify_one();
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                // The batch is kept and written again: a row already
                // committed is skipped by its (collector, epoch, seq).
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
                shared.set_error(Some(e));
                if client.as_ref().is_some_and(|c| c.is_closed()) {
                    client = None;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A name as a TEXT column takes it: PostgreSQL refuses NUL in text, and one
/// refused row would stop every batch behind it. The report itself is kept
/// whole in the BYTEA column; these columns only serve retention.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

async fn write(client: &mut tokio_postgres::Client, batch: &[Pending]) -> Result<(), String> {
    let mut collectors = Vec::with_capacity(batch.len());
    let mut epochs = Vec::with_capacity(batch.len());
    let mut seqs = Vec::with_capacity(batch.len());
    let mut clusters = Vec::with_capacity(batch.len());
    let mut nodes = Vec::with_capacity(batch.len());
    let mut checks = Vec::with_capacity(batch.len());
    let mut observed = Vec::with_capacity(batch.len());
    let mut payloads = Vec::with_capacity(batch.len());
    for (_, epoch, r) in batch {
        collectors.push(text(&r.collector_id));
        epochs.push(*epoch as i64);
        seqs.push(r.seq as i64);
        clusters.push(text(&r.cluster));
        nodes.push(text(&r.node));
        checks.push(text(&r.check));
        observed.push(r.observed_at_ms);
        payloads.push(r.encode_to_vec());
    }
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .map_err(|e| describe(&e))?;
    tx.execute(
        "INSERT INTO dbmon_reports (collector, epoch, seq, cluster, node, check_name, observed_at_ms, report)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::bytea[])
         ON CONFLICT (collector, epoch, seq) DO NOTHING",
        &[&collectors, &epochs, &seqs, &clusters, &nodes, &checks, &observed, &payloads],
    )
    .await
    .map_err(|e| describe(&e))?;
    tx.commit().await.map_err(|e| describe(&e))
}

/// Feeds the cache with every row after the last one it holds: at once
/// after this server wrote, and every 100 ms for what others wrote.
async fn tail_loop(shared: Weak<Shared>, cache: Weak<Cache>) {
    let mut client: Option<tokio_postgres::Client> = None;
    // Past rows that were skipped, too.
    let mut read_up_to = 0;
    loop {
        let (Some(s), Some(c)) = (shared.upgrade(), cache.upgrade()) else {
            return;
        };
        let after = c.position().max(read_up_to);
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect(&s.cfg).await.ok();
        }
        let mut full = false;
        if let Some(db) = client.as_ref() {
            match read_after(db, after).await {
                Ok((page, last)) => {
                    full = last > after;
                    read_up_to = last;
                    for r in page {
                        c.ingest_at(r.epoch, r.report, r.position);
                    }
                }
                Err(e) => {
                    tracing::warn!(store = %s.cfg.target, error = %e, "cannot read the shared store; retrying");
                    client = None;
                }
            }
        }
        if full {
            continue;
        }
        drop(c);
        tokio::select! {
            _ = s.wrote.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// At start and then every minute: reports past the history bound of their
/// cluster, or older than the age bound, are deleted; the latest of each
/// (node, check) stays.
async fn prune_loop(shared: Weak<Shared>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        first = false;
        let Some(s) = shared.upgrade() else {
            return;
        };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect(&s.cfg).await.ok();
        }
        let Some(db) = client.as_ref() else {
            continue;
        };
        match prune(db, &s.cfg).await {
            Ok(n) => {
                s.pruned.fetch_add(n, Ordering::Relaxed);
                if n > 0 {
                    tracing::debug!(store = %s.cfg.target, deleted = n, "shared store pruned");
                }
            }
            Err(e) => {
                tracing::warn!(store = %s.cfg.target, error = %e, "cannot prune the shared store")
            }
        }
    }
}

/// Deletes what retention no longer keeps; returns how many rows.
pub async fn prune(db: &tokio_postgres::Client, cfg: &SharedConfig) -> Result<u64, String> {
    let keep = cfg.history_per_cluster as i64;
    let age = cfg.max_age.as_secs_f64();
    db.execute(
        "DELETE FROM dbmon_reports WHERE position IN (
            SELECT position FROM (
                SELECT position, stored_at,
                    row_number() OVER (PARTITION BY cluster ORDER BY position DESC) AS n,
                    row_number() OVER (PARTITION BY cluster, node, check_name ORDER BY position DESC) AS k
                FROM dbmon_reports) x
            WHERE k > 1 AND (n > $1 OR stored_at < now() - make_interval(secs => $2)))",
        &[&keep, &age],
    )
    .await
    .map_err(|e| describe(&e))
}
