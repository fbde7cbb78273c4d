//! Where reports are kept, as the services see it: one trait, three kinds.
//!
//! - [`MemoryOnly`]: the cache alone (`server.store: memory`, or a store
//!   that could not be opened); a report is safe as soon as it is cached.
//! - [`crate::store::Persist`], the embedded store: the cache numbers a
//!   report and a writer thread commits it behind; it is safe once its
//!   position is durable.
//! - [`crate::shared::Shared`], the shared store: the report goes to the
//!   database first and reaches every server's cache from there; it is safe
//!   once its transaction committed.
//!
//! A collector is acknowledged only for reports that are safe, so each
//! report is always either kept here or still in its collector's buffer.

use crate::cache::{Cache, Ingested};
use dbmon_proto::Report;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// Counts for `/metrics`.
pub struct StoreCounters {
    pub written: u64,
    pub write_errors: u64,
    /// Reports deleted by retention, where the store counts them.
    pub pruned: Option<u64>,
}

/// The error a store's writer left, None while it writes.
fn last_error(slot: &std::sync::Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Where reports are kept.
pub trait ReportStore: Send + Sync {
    /// Takes a collector's report; returns the ticket it is safe at: once
    /// [`ReportStore::durable`] reaches it.
    fn accept(&self, cache: &Cache, epoch: u64, report: Report) -> u64;
    /// The highest ticket that is safe.
    fn durable(&self) -> watch::Receiver<u64>;
    /// What is wrong, for `/healthz` ("the store X cannot be written (why):
    /// ..."); None while it works.
    fn problem(&self) -> Option<String>;
    fn counters(&self) -> Option<StoreCounters>;
    /// Whether other servers number reports the same way (a position from
    /// one is valid on another).
    fn shared(&self) -> bool {
        false
    }
}

/// No store: reports live in the cache only.
pub struct MemoryOnly {
    /// Why, when a store was configured but could not be opened.
    pub unavailable: Option<String>,
    always: watch::Receiver<u64>,
}

impl MemoryOnly {
    pub fn new(unavailable: Option<String>) -> MemoryOnly {
        // Every ticket is safe at once; the sender may go.
        let (_, always) = watch::channel(u64::MAX);
        MemoryOnly {
            unavailable,
            always,
        }
    }
}

impl ReportStore for MemoryOnly {
    fn accept(&self, cache: &Cache, epoch: u64, report: Report) -> u64 {
        cache.ingest(epoch, report);
        0
    }

    fn durable(&self) -> watch::Receiver<u64> {
        self.always.clone()
    }

    fn problem(&self) -> Option<String> {
        self.unavailable
            .as_ref()
            .map(|e| format!("without a store ({e}): serving from memory"))
    }

    fn counters(&self) -> Option<StoreCounters> {
        None
    }
}

impl ReportStore for crate::store::Persist {
    fn accept(&self, cache: &Cache, epoch: u64, report: Report) -> u64 {
        match cache.ingest(epoch, report) {
            Ingested::Stored(position) => position,
            // Safe once everything stored so far is.
            Ingested::Duplicate => cache.position(),
        }
    }

    fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    fn problem(&self) -> Option<String> {
        let e = last_error(&self.error)?;
        Some(format!(
            "the store {} cannot be written ({e}): serving from memory",
            self.path().display()
        ))
    }

    fn counters(&self) -> Option<StoreCounters> {
        Some(StoreCounters {
            written: self.written.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            pruned: None,
        })
    }
}

impl ReportStore for crate::shared::Shared {
    fn accept(&self, _cache: &Cache, epoch: u64, report: Report) -> u64 {
        self.submit(epoch, report)
    }

    fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    fn problem(&self) -> Option<String> {
        let e = last_error(&self.error)?;
        Some(format!(
            "the shared store {} cannot be written ({e}): collectors keep their reports until it can",
            self.target()
        ))
    }

    fn counters(&self) -> Option<StoreCounters> {
        Some(StoreCounters {
            written: self.written.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            pruned: Some(self.pruned.load(Ordering::Relaxed)),
        })
    }

    fn shared(&self) -> bool {
        true
    }
}
