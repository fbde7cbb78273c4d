//! The embedded store (redb): every ingested report is written, in position
//! order, by one writer thread in group commits; a restarted server restores
//! its cache from it. Acks to collectors wait until a report is durable, so
//! a report is always either on disk here or still in its collector's
//! buffer.
//!
//! When the store cannot be written (disk full, read-only), the server says
//! so (log, `/healthz`, `/metrics`) and goes on from memory: acks then mean
//! "in memory" until the store writes again.

use crate::cache::{Cache, Entry};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// position → epoch (8 bytes, little endian) and the report (prost).
const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("reports_v1");
/// "state" → the alerting state (JSON): alerts, groups, the outbox and
/// silences, written whole after each change.
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts_v1");
/// "schema" → version, for migrations.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA: u64 = 1;

/// The store failed to open or read.
#[derive(Debug, thiserror::Error)]
#[error("store {path}: {why}; fix it or move it away (the server then starts empty)")]
pub struct StoreError {
    pub path: PathBuf,
    pub why: String,
    /// The file is there but cannot be understood: starting without it
    /// would lose it at the next write, so the server does not start.
    pub fatal: bool,
}

pub use crate::cache::Record;

/// The writer's side, shared with the cache.
pub struct Persist {
    path: PathBuf,
    db: Database,
    pending: Mutex<Vec<(Arc<Entry>, u64)>>,
    wake: Condvar,
    durable_tx: watch::Sender<u64>,
    pub durable: watch::Receiver<u64>,
    /// The last write error, None while writes succeed.
    pub error: Mutex<Option<String>>,
    pub write_errors: AtomicU64,
    pub written: AtomicU64,
}

fn err(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        why: why.to_string(),
        fatal: true,
    }
}

/// Cannot open or create the file (read-only, no space, no permission).
fn unavailable(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError {
        fatal: false,
        ..err(path, why)
    }
}

impl Persist {
    /// Opens (or creates) the store at `path` and reads it back: the
    /// records in position order.
    pub fn open(path: &Path) -> Result<(Arc<Persist>, Vec<Record>), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(dir, e))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => unavailable(path, io),
            redb::DatabaseError::DatabaseAlreadyOpen => err(
                path,
                "another process has it open; is a second dbmon server using the same server.store?",
            ),
            e => err(path, e),
        })?;
        // Schema version: a newer store is refused rather than misread.
        let tx = db.begin_write().map_err(|e| unavailable(path, e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| err(path, e))?;
            let version = meta
                .get("schema")
                .map_err(|e| err(path, e))?
                .map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema", SCHEMA).map_err(|e| err(path, e))?;
                }
                Some(SCHEMA) => {}
                Some(v) => {
                    return Err(err(
                        path,
                        format!(
                            "schema version {v}, newer than this server's {SCHEMA}; run a newer dbmon"
                        ),
                    ));
                }
            }
            tx.open_table(REPORTS).map_err(|e| err(path, e))?;
        }
        tx.commit().map_err(|e| err(path, e))?;
        let mut records = Vec::new();
        {
            let rx = db.begin_read().map_err(|e| err(path, e))?;
            let table = rx.open_table(REPORTS).map_err(|e| err(path, e))?;
            for row in table.iter().map_err(|e| err(path, e))? {
                let (k, v) = row.map_err(|e| err(path, e))?;
                let bytes = v.value();
                if bytes.len() < 8 {
                    return Err(err(path, format!("record {} is truncated", k.value())));
                }
                let epoch = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
                let report = dbmon_proto::Report::decode(&bytes[8..])
                    .map_err(|e| err(path, format!("record {}: {e}", k.value())))?;
                records.push(Record {
                    position: k.value(),
                    epoch,
                    report,
                });
            }
        }
        let last = records.last().map_or(0, |r| r.position);
        let (durable_tx, durable) = watch::channel(last);
        Ok((
            Arc::new(Persist {
                path: path.to_path_buf(),
                db,
                pending: Mutex::new(Vec::new()),
                wake: Condvar::new(),
                durable_tx,
                durable,
                error: Mutex::new(None),
                write_errors: AtomicU64::new(0),
                written: AtomicU64::new(0),
            }),
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The alerting state saved last, if any.
    pub fn load_alerts(&self) -> Result<Option<Vec<u8>>, String> {
        let rx = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = match rx.open_table(ALERTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        Ok(table
            .get("state")
            .map_err(|e| e.to_string())?
            .map(|v| v.value().to_vec()))
    }

    /// Replaces the alerting state, durably (its own transaction beside the
    /// reports' writer).
    pub fn save_alerts(&self, doc: &[u8]) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = tx.open_table(ALERTS).map_err(|e| e.to_string())?;
            t.insert("state", doc).map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

impl crate::cache::EntrySink for Persist {
    /// Queues an entry (called under the cache's write lock, so in position
    /// order).
    fn push(&self, entry: Arc<Entry>, epoch: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((entry, epoch));
        self.wake.notify_one();
    }
}

impl Persist {
    fn write(&self, batch: &[(Arc<Entry>, u64)], prune: Option<&[u64]>) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = tx.open_table(REPORTS).map_err(|e| e.to_string())?;
            let mut buf = Vec::with_capacity(256);
            for (e, epoch) in batch {
                buf.clear();
                buf.extend_from_slice(&epoch.to_le_bytes());
                e.report
                    .to_report()
                    .encode(&mut buf)
                    .map_err(|e| e.to_string())?;
                t.insert(e.position, buf.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            if let Some(drop) = prune {
                for p in drop {
                    t.remove(*p).map_err(|e| e.to_string())?;
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Positions in the store that `keep` does not hold.
    fn stale(&self, keep: &std::collections::HashSet<u64>) -> Vec<u64> {
        let Ok(rx) = self.db.begin_read() else {
            return Vec::new();
        };
        let Ok(t) = rx.open_table(REPORTS) else {
            return Vec::new();
        };
        let Ok(iter) = t.iter() else {
            return Vec::new();
        };
        iter.filter_map(|r| r.ok())
            .map(|(k, _)| k.value())
            .filter(|p| !keep.contains(p))
            .collect()
    }
}

/// The writer thread: group commits of what is pending, then the durable
/// position moves on; every minute, records the cache no longer holds are
/// removed. Ends when the last other reference to `persist` is gone.
pub fn spawn_writer(persist: Arc<Persist>, cache: std::sync::Weak<Cache>) {
    std::thread::Builder::new()
        .name("dbmon-store".into())
        .spawn(move || {
            let mut last_prune = Instant::now();
            let mut last_error_log: Option<Instant> = None;
            loop {
                let batch = {
                    let mut p = persist.pending.lock().unwrap_or_else(|e| e.into_inner());
                    while p.is_empty() {
                        let (g, _) = persist
                            .wake
                            .wait_timeout(p, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        p = g;
                        if Arc::strong_count(&persist) == 1 {
                            return;
                        }
                        if p.is_empty() && last_prune.elapsed() > Duration::from_secs(60) {
                            break;
                        }
                    }
                    std::mem::take(&mut *p)
                };
                let prune = if last_prune.elapsed() > Duration::from_secs(60) {
                    last_prune = Instant::now();
                    cache.upgrade().map(|c| persist.stale(&c.retained_positions()))
                } else {
                    None
                };
                let top = batch.last().map(|(e, _)| e.position);
                match persist.write(&batch, prune.as_deref()) {
                    Ok(()) => {
                        persist.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let was = persist.error.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(was) = was {
                            tracing::info!(store = %persist.path.display(), previous_error = %was, "the store writes again");
                        }
                    }
                    Err(e) => {
                        persist.write_errors.fetch_add(1, Ordering::Relaxed);
                        if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::error!(store = %persist.path.display(), error = %e, lost_on_restart = batch.len(),
                                "cannot write the store (disk full? read-only?); serving from memory, these reports would not survive a restart");
                            last_error_log = Some(Instant::now());
                        }
                        *persist.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    }
                }
                if let Some(top) = top {
                    persist.durable_tx.send_replace(top);
                }
            }
        })
        .expect("spawn the store writer thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn report(seq: u64) -> dbmon_proto::Report {
        dbmon_proto::Report {
            cluster: "c".into(),
            node: format!("n{}", seq % 3),
            check: "up".into(),
            status: 1,
            collector_id: "col".into(),
            seq,
            message: "answered".into(),
            ..Default::default()
        }
    }

    fn wait_durable(p: &Persist, position: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while *p.durable.borrow() < position {
            assert!(
                Instant::now() < deadline,
                "not durable: {:?}",
                p.error.lock().unwrap()
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    #[test]
    fn what_is_written_comes_back_in_order_with_the_collectors_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/reports.redb");
        {
            let (p, records) = Persist::open(&path).unwrap();
            assert!(records.is_empty());
            let cache = Arc::new(Cache::restored(100, 16, p.clone(), records));
            spawn_writer(p.clone(), Arc::downgrade(&cache));
            for seq in 1..=50 {
                cache.ingest(7, report(seq));
            }
            wait_durable(&p, 50);
        }
        // The writer lets go of the file once the cache is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (p, records) = loop {
            match Persist::open(&path) {
                Ok(v) => break v,
                Err(e)
                    if e.to_string().contains("another process") && Instant::now() < deadline =>
                {
                    std::thread::park_timeout(Duration::from_millis(50))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(records.len(), 50);
        assert!(
            records
                .windows(2)
                .all(|w| w[0].position + 1 == w[1].position)
        );
        let cache = Cache::restored(100, 16, p, records);
        assert_eq!(cache.position(), 50);
        assert_eq!(
            cache.last_seq("col", 7),
            50,
            "replays of stored reports are dropped"
        );
        assert_eq!(cache.latest(&[]).len(), 3);
        assert_eq!(cache.history(&[]).len(), 50);
    }

    #[test]
    fn a_store_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("schema", 99).unwrap();
            tx.commit().unwrap();
        }
        let e = Persist::open(&path).err().expect("refused");
        assert!(e.fatal);
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    #[test]
    fn an_unwritable_place_is_not_fatal() {
        // A path below a regular file cannot be created, whoever runs this.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = Persist::open(&file.join("reports.redb"))
            .err()
            .expect("refused");
        assert!(!e.fatal, "{e}");
    }
}
