//! Latest state and bounded history of every cluster, and the fan-out of
//! new reports to subscribers.
//!
//! One lock orders everything: a report is stored, numbered with the next
//! server position and broadcast while the write lock is held, and a new
//! subscriber takes its snapshot and subscribes under the read lock. So a
//! subscriber sees each report exactly once: in its snapshot, or after it.

use dbmon_proto::Report;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// Entries kept for resuming Watch streams, across all clusters.
pub const RESUME_WINDOW: usize = 50_000;

/// Where a resuming subscriber starts.
pub enum Resume {
    /// Everything after the position, still in the window (may be empty).
    From(Vec<Arc<Entry>>),
    /// The position is gone from the window (or unknown to this server):
    /// a snapshot (taken with the subscription) and why.
    Resync(String, Vec<Arc<Entry>>),
}

/// A report as stored and fanned out, with its server position.
#[derive(Debug)]
pub struct Entry {
    pub position: u64,
    pub report: Stored,
}

/// What the broadcast carries: a new entry, and its report encoded for
/// the wire once (by the first Watch stream that sends it) for every
/// stream, so that a report to 1,000 subscribers is built and encoded once,
/// not 1,000 times. Readers that only need the entry reach it through
/// `Deref`. The encoding lives as long as the broadcast ring holds the
/// event, not in the cache's latest state or history.
#[derive(Debug)]
pub struct Published {
    pub entry: Arc<Entry>,
    /// When this server took it in.
    pub arrived: std::time::Instant,
    wire: std::sync::OnceLock<prost::bytes::Bytes>,
}

impl Published {
    pub fn new(entry: Arc<Entry>) -> Self {
        Published {
            entry,
            arrived: std::time::Instant::now(),
            wire: std::sync::OnceLock::new(),
        }
    }

    /// The report's protobuf encoding (a `Report` message).
    pub fn wire(&self) -> &prost::bytes::Bytes {
        self.wire
            .get_or_init(|| prost::Message::encode_to_vec(&self.entry.report.to_report()).into())
    }
}

impl std::ops::Deref for Published {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.entry
    }
}

/// One item of the broadcast.
pub type Event = Arc<Published>;

/// A report as the cache keeps it: names (cluster, node, check) shared
/// with every other report that carries them, kind, collector and unit as
/// one shared [`Origin`], one allocation for the message. A `Report` holds
/// seven strings of its own; at 180,000 latest reports that is most of the
/// server's memory.
#[derive(Debug)]
pub struct Stored {
    cluster: Arc<str>,
    node: Arc<str>,
    check: Arc<str>,
    origin: Arc<Origin>,
    message: Box<str>,
    value: Option<f64>,
    observed_at_ms: i64,
    stale_after_ms: i64,
    latency_us: u64,
    seq: u64,
    status: i32,
    essential: bool,
}

impl Stored {
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn node_name(&self) -> &str {
        &self.node
    }

    pub fn check_name(&self) -> &str {
        &self.check
    }

    pub fn observed_at_ms(&self) -> i64 {
        self.observed_at_ms
    }

    pub fn stale_after_ms(&self) -> i64 {
        self.stale_after_ms
    }

    /// Cluster, node and check, shared with every report that names them.
    pub fn key(&self) -> (Arc<str>, Arc<str>, Arc<str>) {
        (self.cluster.clone(), self.node.clone(), self.check.clone())
    }

    /// The wire status (`dbmon.v1.Status`).
    pub fn status(&self) -> i32 {
        self.status
    }

    /// True when `clusters` is empty (all) or names this report's cluster.
    pub fn in_clusters(&self, clusters: &[String]) -> bool {
        clusters.is_empty() || clusters.iter().any(|c| **c == *self.cluster)
    }

    /// The report as sent on the wire.
    pub fn to_report(&self) -> Report {
        Report {
            cluster: String::from(&*self.cluster),
            node: String::from(&*self.node),
            check: String::from(&*self.check),
            status: self.status,
            value: self.value,
            unit: String::from(&*self.origin.unit),
            message: String::from(&*self.message),
            observed_at_ms: self.observed_at_ms,
            latency_us: self.latency_us,
            collector_id: String::from(&*self.origin.collector_id),
            seq: self.seq,
            kind: String::from(&*self.origin.kind),
            stale_after_ms: self.stale_after_ms,
            essential: self.essential,
        }
    }
}

/// Kind, collector and unit: few combinations, shared by many reports.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    kind: Arc<str>,
    collector_id: Arc<str>,
    unit: Arc<str>,
}

/// One shared copy of each name, and of each [`Origin`].
#[derive(Default)]
struct Names {
    names: std::collections::HashSet<Arc<str>>,
    origins: std::collections::HashSet<Arc<Origin>>,
}

impl Names {
    fn get(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.names.get(s.as_str()) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(a.clone());
        a
    }

    fn origin(&mut self, kind: String, collector_id: String, unit: String) -> Arc<Origin> {
        let o = Origin {
            kind: self.get(kind),
            collector_id: self.get(collector_id),
            unit: self.get(unit),
        };
        if let Some(a) = self.origins.get(&o) {
            return a.clone();
        }
        let a = Arc::new(o);
        self.origins.insert(a.clone());
        a
    }

    fn store(&mut self, r: Report) -> Stored {
        Stored {
            cluster: self.get(r.cluster),
            node: self.get(r.node),
            check: self.get(r.check),
            origin: self.origin(r.kind, r.collector_id, r.unit),
            message: r.message.into_boxed_str(),
            value: r.value,
            observed_at_ms: r.observed_at_ms,
            stale_after_ms: r.stale_after_ms,
            essential: r.essential,
            latency_us: r.latency_us,
            seq: r.seq,
            status: r.status,
        }
    }
}

/// A report as a store gives it back at start: its server position, its
/// collector's epoch, the report.
pub struct Record {
    pub position: u64,
    pub epoch: u64,
    pub report: Report,
}

/// Where ingested entries go to be kept: the embedded store's writer. The
/// cache calls it under its write lock, so entries arrive in position
/// order; it must not block.
pub trait EntrySink: Send + Sync {
    fn push(&self, entry: Arc<Entry>, epoch: u64);
}

/// What happened to an ingested report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Stored(u64),
    /// Already seen (same collector epoch, seq not above the last one).
    Duplicate,
}

/// A cluster's latest entry of one (node, check), ordered by those names:
/// the cluster's sorted vector of them holds one pointer per entry, not a
/// copy of its key nor a tree's nodes (a new (node, check) is rare, a
/// replacement a binary search).
#[derive(Debug, Clone)]
struct Latest(Arc<Entry>);

impl Latest {
    fn key(&self) -> (&str, &str) {
        (&self.0.report.node, &self.0.report.check)
    }
}

impl PartialEq for Latest {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Latest {}

impl PartialOrd for Latest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Latest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

#[derive(Default)]
struct ClusterState {
    latest: Vec<Latest>,
    history: VecDeque<Arc<Entry>>,
    /// The position of the cluster's newest entry: its latest state changes
    /// exactly when this does.
    version: u64,
}

#[derive(Default)]
struct Inner {
    clusters: HashMap<String, ClusterState>,
    /// The most recent entries of every cluster, in position order, so that
    /// a subscriber that reconnects can resume where it left off.
    recent: VecDeque<Arc<Entry>>,
    position: u64,
    /// collector id -> (epoch, last seq stored)
    collectors: HashMap<String, (u64, u64)>,
    names: Names,
}

/// `first` and whatever else is already waiting on `rx`, at most `max` in
/// all: what a reader of the broadcast takes in one round. A lag shows at
/// its next `recv`.
pub fn with_waiting(rx: &mut broadcast::Receiver<Event>, first: Event, max: usize) -> Vec<Event> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
    batch
}

/// Open streams of one kind (Watch streams, dashboards' live channels),
/// counted while their guards live: the broadcast's receivers also count
/// the server's own readers (alerting, the uptime log).
#[derive(Default)]
pub struct Streams(AtomicUsize);

impl Streams {
    /// Counts one more until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One open stream, counted in its [`Streams`] until dropped.
pub struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The server's in-memory state.
pub struct Cache {
    inner: RwLock<Inner>,
    /// Where ingested entries are written, when the server has a store.
    sink: Option<Arc<dyn EntrySink>>,

    events: broadcast::Sender<Event>,
    history_per_cluster: usize,
    /// History observed longer ago than this is dropped by [`Cache::expire`].
    max_age_ms: Option<i64>,
    resume_window: usize,
    pub ingested: AtomicU64,
    pub duplicates: AtomicU64,
    /// Seconds from a report's arrival to its message being written to a
    /// subscriber's stream (encoded into the stream's buffer), once per
    /// message and subscriber (the oldest report of a batch): the server's
    /// own share of delivery latency.
    pub fanout: Latencies,
    /// Seconds from a report's arrival to its subscriber's task handing the
    /// message that carries it to the stream's queue, once per message and
    /// subscriber (the oldest report of a batch): the server's scheduling
    /// alone. [`Cache::fanout`] adds the wait for room on the subscriber's
    /// connection (its HTTP/2 window, its socket), which a subscriber slow
    /// to read makes longer.
    pub dispatch: Latencies,
    /// Open `Watch` streams.
    pub watch_streams: Arc<Streams>,
    /// Open dashboard live channels.
    pub live_pages: Arc<Streams>,
}

/// A histogram of durations kept in atomics: observing takes no lock
/// (every subscriber's task observes once per message).
#[derive(Debug, Default)]
pub struct Latencies {
    /// Count per bucket of [`FANOUT_BUCKETS`], then above the last.
    buckets: [AtomicU64; FANOUT_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Latencies {
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = FANOUT_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(FANOUT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Sum in seconds, count, and (upper bound, count in that bucket).
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = FANOUT_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        (
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count,
            buckets,
        )
    }
}

/// Buckets of [`Cache::fanout`] and [`Cache::dispatch`], in seconds: 0.5 ms to 10 s.
pub const FANOUT_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 5.0, 10.0,
];

impl Cache {
    /// `subscriber_queue` is how far a subscriber may fall behind before it
    /// is told to resync.
    pub fn new(history_per_cluster: usize, subscriber_queue: usize) -> Self {
        let (events, _) = broadcast::channel(subscriber_queue.max(1));
        Cache {
            inner: RwLock::new(Inner::default()),
            sink: None,
            events,
            history_per_cluster: history_per_cluster.max(1),
            max_age_ms: None,
            resume_window: RESUME_WINDOW,
            ingested: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            fanout: Latencies::default(),
            dispatch: Latencies::default(),
            watch_streams: Arc::default(),
            live_pages: Arc::default(),
        }
    }

    /// A cache that writes every ingested report to `sink`, starting
    /// from `records` (what the store held, in position order).
    pub fn restored(
        history_per_cluster: usize,
        subscriber_queue: usize,
        sink: Arc<dyn EntrySink>,
        records: Vec<Record>,
    ) -> Self {
        let mut cache = Cache::new(history_per_cluster, subscriber_queue);
        cache.load(records);
        cache.sink = Some(sink);
        cache
    }

    /// A cache holding `records` (in position order), to be fed further
    /// through [`Cache::ingest_at`] (the shared store).
    pub fn from_records(
        history_per_cluster: usize,
        subscriber_queue: usize,
        records: Vec<Record>,
    ) -> Self {
        let mut cache = Cache::new(history_per_cluster, subscriber_queue);
        cache.load(records);
        cache
    }

    fn load(&mut self, records: Vec<Record>) {
        let (history, window) = (self.history_per_cluster, self.resume_window);
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let last = inner
                .collectors
                .entry(r.report.collector_id.clone())
                .or_insert((r.epoch, 0));
            if last.0 != r.epoch {
                *last = (r.epoch, 0);
            }
            last.1 = last.1.max(r.report.seq);
            inner.position = inner.position.max(r.position);
            let entry = Arc::new(Entry {
                position: r.position,
                report: inner.names.store(r.report),
            });
            Self::keep(inner, &entry, history, window);
        }
    }

    /// Keeps history for at most `age` (the latest report of each node and
    /// check stays whatever its age).
    pub fn with_max_age(mut self, age: std::time::Duration) -> Self {
        self.max_age_ms = Some(age.as_millis().min(i64::MAX as u128) as i64);
        self
    }

    /// Drops history observed before `now_ms - max_age`; returns how many
    /// entries went. The store's pruning then removes them on disk.
    pub fn expire(&self, now_ms: i64) -> usize {
        let Some(age) = self.max_age_ms else {
            return 0;
        };
        let cutoff = now_ms.saturating_sub(age);
        let mut inner = self.write();
        let mut dropped = 0;
        for state in inner.clusters.values_mut() {
            while state
                .history
                .front()
                .is_some_and(|e| e.report.observed_at_ms < cutoff)
            {
                state.history.pop_front();
                dropped += 1;
            }
        }
        while inner
            .recent
            .front()
            .is_some_and(|e| e.report.observed_at_ms < cutoff)
        {
            inner.recent.pop_front();
        }
        dropped
    }

    /// The current (last assigned) position.
    pub fn position(&self) -> u64 {
        self.read().position
    }

    /// Every position the cache still holds (latest, history, resume window).
    pub fn retained_positions(&self) -> std::collections::HashSet<u64> {
        let inner = self.read();
        let mut out = std::collections::HashSet::new();
        for s in inner.clusters.values() {
            out.extend(s.latest.iter().map(|e| e.0.position));
            out.extend(s.history.iter().map(|e| e.position));
        }
        out.extend(inner.recent.iter().map(|e| e.position));
        out
    }

    /// Files `entry` in latest, history and the resume window.
    fn keep(inner: &mut Inner, entry: &Arc<Entry>, history: usize, window: usize) {
        let state = match inner.clusters.get_mut(entry.report.cluster()) {
            Some(s) => s,
            None => inner
                .clusters
                .entry(entry.report.cluster().to_string())
                .or_default(),
        };
        let new = Latest(entry.clone());
        match state.latest.binary_search(&new) {
            Ok(i) => state.latest[i] = new,
            Err(i) => state.latest.insert(i, new),
        }
        state.version = state.version.max(entry.position);
        state.history.push_back(entry.clone());
        while state.history.len() > history {
            state.history.pop_front();
        }
        inner.recent.push_back(entry.clone());
        while inner.recent.len() > window {
            inner.recent.pop_front();
        }
    }

    /// The names of the clusters in `scope` (empty: all) that the cache
    /// holds, sorted.
    pub fn cluster_names(&self, scope: &[String]) -> Vec<String> {
        let inner = self.read();
        let mut names: Vec<String> = inner
            .clusters
            .keys()
            .filter(|c| scope.is_empty() || scope.contains(c))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The position of `cluster`'s newest entry (None: no such cluster):
    /// what was drawn from its latest reports at this version still holds.
    pub fn cluster_version(&self, cluster: &str) -> Option<u64> {
        self.read().clusters.get(cluster).map(|s| s.version)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a collector epoch stands: the last seq stored for it (0 if the
    /// epoch is new).
    pub fn last_seq(&self, collector: &str, epoch: u64) -> u64 {
        match self.read().collectors.get(collector) {
            Some((e, s)) if *e == epoch => *s,
            _ => 0,
        }
    }

    /// Stores a report of `collector`'s `epoch`, dropping duplicates.
    pub fn ingest(&self, epoch: u64, report: Report) -> Ingested {
        self.insert(epoch, report, None)
    }

    /// Ingests a report the shared store numbered: `position` must be past
    /// every position held (it is dropped otherwise).
    pub fn ingest_at(&self, epoch: u64, report: Report, position: u64) -> Ingested {
        self.insert(epoch, report, Some(position))
    }

    fn insert(&self, epoch: u64, report: Report, at: Option<u64>) -> Ingested {
        let mut inner = self.write();
        if at.is_some_and(|p| p <= inner.position) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ingested::Duplicate;
        }
        let last = inner
            .collectors
            .entry(report.collector_id.clone())
            .or_insert((epoch, 0));
        if last.0 != epoch {
            *last = (epoch, 0);
        }
        // The shared store keeps one row per (collector, epoch, seq): what
        // it numbered is new, even when another server stored it late.
        if at.is_none() && report.seq != 0 && report.seq <= last.1 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ingested::Duplicate;
        }
        last.1 = last.1.max(report.seq);
        inner.position = at.unwrap_or(inner.position + 1);
        let entry = Arc::new(Entry {
            position: inner.position,
            report: inner.names.store(report),
        });
        Self::keep(
            &mut inner,
            &entry,
            self.history_per_cluster,
            self.resume_window,
        );
        if let Some(p) = &self.sink {
            p.push(entry.clone(), epoch);
        }
        let position = entry.position;
        let _ = self.events.send(Arc::new(Published::new(entry)));
        self.ingested.fetch_add(1, Ordering::Relaxed);
        Ingested::Stored(position)
    }

    pub fn latest(&self, clusters: &[String]) -> Vec<Report> {
        Self::latest_of(&self.read(), clusters)
    }

    fn latest_of(inner: &Inner, clusters: &[String]) -> Vec<Report> {
        let mut names: Vec<&String> = if clusters.is_empty() {
            inner.clusters.keys().collect()
        } else {
            // Asked by name: look each up rather than scan every cluster.
            clusters
                .iter()
                .filter_map(|c| inner.clusters.get_key_value(c).map(|(k, _)| k))
                .collect()
        };
        names.sort();
        names.dedup();
        names
            .into_iter()
            .flat_map(|c| {
                inner.clusters[c]
                    .latest
                    .iter()
                    .map(|e| e.0.report.to_report())
            })
            .collect()
    }

    /// History of the selected clusters, oldest first.
    pub fn history(&self, clusters: &[String]) -> Vec<Report> {
        let inner = self.read();
        let mut all: Vec<&Arc<Entry>> = inner
            .clusters
            .iter()
            .filter(|(c, _)| clusters.is_empty() || clusters.contains(c))
            .flat_map(|(_, s)| s.history.iter())
            .collect();
        all.sort_by_key(|e| e.position);
        all.into_iter().map(|e| e.report.to_report()).collect()
    }

    /// Subscribes and snapshots atomically: the snapshot holds everything up
    /// to the returned position, the receiver everything after it.
    pub fn subscribe(&self, clusters: &[String]) -> (broadcast::Receiver<Event>, Vec<Report>, u64) {
        let inner = self.read();
        let rx = self.events.subscribe();
        (rx, Self::latest_of(&inner, clusters), inner.position)
    }

    /// Subscribes and snapshots atomically, sharing the stored entries
    /// rather than copying reports (a snapshot of 10,000 clusters is a few
    /// hundred KB of pointers, not tens of MB of reports per subscriber).
    pub fn subscribe_entries(
        &self,
        clusters: &[String],
    ) -> (broadcast::Receiver<Event>, Vec<Arc<Entry>>, u64) {
        let inner = self.read();
        let rx = self.events.subscribe();
        (rx, Self::entries_of(&inner, clusters), inner.position)
    }

    /// Subscribes to continue after `after`: the entries since then (while
    /// still in the resume window) and the live receiver, taken under one
    /// lock so that nothing falls between them.
    pub fn resume(
        &self,
        clusters: &[String],
        after: u64,
    ) -> (broadcast::Receiver<Event>, Resume, u64) {
        let inner = self.read();
        let rx = self.events.subscribe();
        let oldest = inner
            .recent
            .front()
            .map_or(inner.position + 1, |e| e.position);
        let resume = if after > inner.position {
            Resume::Resync(
                format!(
                    "resync: position {after} is unknown to this server (it is at {}; it restarted?)",
                    inner.position
                ),
                Self::entries_of(&inner, clusters),
            )
        } else if after + 1 < oldest {
            Resume::Resync(
                format!(
                    "resync: position {after} is older than this server's window (oldest {oldest})"
                ),
                Self::entries_of(&inner, clusters),
            )
        } else {
            Resume::From(
                inner
                    .recent
                    .iter()
                    .filter(|e| e.position > after)
                    .filter(|e| e.report.in_clusters(clusters))
                    .cloned()
                    .collect(),
            )
        };
        (rx, resume, inner.position)
    }

    /// A fresh snapshot (shared entries) after a subscriber fell behind.
    pub fn snapshot_entries(&self, clusters: &[String]) -> (Vec<Arc<Entry>>, u64) {
        let inner = self.read();
        (Self::entries_of(&inner, clusters), inner.position)
    }

    fn entries_of(inner: &Inner, clusters: &[String]) -> Vec<Arc<Entry>> {
        let mut names: Vec<&String> = inner
            .clusters
            .keys()
            .filter(|c| clusters.is_empty() || clusters.contains(c))
            .collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|c| inner.clusters[c].latest.iter().map(|e| e.0.clone()))
            .collect()
    }

    /// Waits until this cache holds `position`, at most `within`; whether
    /// it does.
    pub async fn wait_position(&self, position: u64, within: std::time::Duration) -> bool {
        let mut rx = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        while self.position() < position {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return false,
                Ok(_) => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(cluster: &str, node: &str, seq: u64) -> Report {
        Report {
            cluster: cluster.into(),
            node: node.into(),
            check: "up".into(),
            collector_id: "c1".into(),
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_stays_small() {
        // 180,000 latest reports (10,000 clusters) hold one each: every
        // 16 bytes here is 2.9 MB of the server's memory.
        assert!(
            std::mem::size_of::<Entry>() <= 136,
            "{}",
            std::mem::size_of::<Entry>()
        );
        assert_eq!(std::mem::size_of::<Latest>(), 8);
    }

    #[test]
    fn the_latest_of_a_node_and_check_replaces_the_one_before() {
        let cache = Cache::new(100, 16);
        cache.ingest(1, rep("a", "n1", 1));
        cache.ingest(1, rep("a", "n1", 2));
        let mut other = rep("a", "n1", 3);
        other.check = "disk".into();
        cache.ingest(1, other);
        let latest = cache.latest(&[]);
        let seqs: Vec<(String, u64)> = latest.iter().map(|r| (r.check.clone(), r.seq)).collect();
        assert_eq!(seqs, vec![("disk".into(), 3), ("up".into(), 2)]);
    }

    #[test]
    fn history_older_than_the_age_bound_goes_but_the_latest_stays() {
        let cache = Cache::new(100, 16).with_max_age(std::time::Duration::from_secs(3600));
        let hour = 3_600_000;
        let now = 10 * hour;
        for (seq, node, at) in [
            (1, "n1", now - 3 * hour),
            (2, "n2", now - 2 * hour),
            (3, "n1", now - 10),
        ] {
            let mut r = rep("a", node, seq);
            r.observed_at_ms = at;
            cache.ingest(7, r);
        }
        assert_eq!(cache.expire(now), 2);
        let history: Vec<u64> = cache.history(&[]).iter().map(|r| r.seq).collect();
        assert_eq!(history, vec![3]);
        // n2's only report is old, but it is still its latest.
        let mut latest: Vec<u64> = cache.latest(&[]).iter().map(|r| r.seq).collect();
        latest.sort();
        assert_eq!(latest, vec![2, 3]);
        let kept = cache.retained_positions();
        assert!(!kept.contains(&1) && kept.contains(&2) && kept.contains(&3));
        assert_eq!(Cache::new(100, 16).expire(now), 0, "no bound, nothing goes");
    }

    #[test]
    fn keeps_latest_per_node_and_check_and_bounded_history() {
        let cache = Cache::new(3, 16);
        for seq in 1..=5 {
            cache.ingest(7, rep("a", if seq % 2 == 0 { "n1" } else { "n2" }, seq));
        }
        let latest = cache.latest(&[]);
        assert_eq!(latest.len(), 2);
        assert_eq!(
            cache
                .history(&["a".into()])
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn drops_duplicates_within_an_epoch_and_resets_on_a_new_one() {
        let cache = Cache::new(10, 16);
        assert_eq!(cache.ingest(1, rep("a", "n", 1)), Ingested::Stored(1));
        assert_eq!(cache.ingest(1, rep("a", "n", 1)), Ingested::Duplicate);
        assert_eq!(cache.last_seq("c1", 1), 1);
        assert_eq!(cache.last_seq("c1", 2), 0);
        assert_eq!(cache.ingest(2, rep("a", "n", 1)), Ingested::Stored(2));
    }

    #[test]
    fn filters_by_cluster() {
        let cache = Cache::new(10, 16);
        cache.ingest(1, rep("a", "n", 1));
        cache.ingest(1, rep("b", "n", 2));
        assert_eq!(cache.latest(&["b".into()]).len(), 1);
        assert_eq!(cache.latest(&["b".into()])[0].cluster, "b");
    }

    #[test]
    fn resuming_gives_what_came_after_or_says_resync() {
        let mut cache = Cache::new(10, 16);
        cache.resume_window = 5;
        for seq in 1..=8 {
            cache.ingest(1, rep("a", "n", seq));
        }
        let (_, r, pos) = cache.resume(&[], 5);
        assert_eq!(pos, 8);
        match r {
            Resume::From(es) => assert_eq!(
                es.iter().map(|e| e.position).collect::<Vec<_>>(),
                vec![6, 7, 8]
            ),
            Resume::Resync(why, _) => panic!("{why}"),
        }
        let (_, r, _) = cache.resume(&[], 8);
        assert!(matches!(r, Resume::From(es) if es.is_empty()), "up to date");
        let (_, r, _) = cache.resume(&[], 1);
        assert!(
            matches!(r, Resume::Resync(why, _) if why.contains("older than")),
            "window holds 4..=8"
        );
        let (_, r, _) = cache.resume(&[], 99);
        assert!(matches!(r, Resume::Resync(why, _) if why.contains("unknown to this server")));
    }

    #[test]
    fn subscriber_sees_each_report_once() {
        let cache = Cache::new(10, 16);
        cache.ingest(1, rep("a", "n", 1));
        let (mut rx, snap, pos) = cache.subscribe(&[]);
        cache.ingest(1, rep("a", "n", 2));
        assert_eq!(snap.len(), 1);
        assert_eq!(pos, 1);
        let e = rx.try_recv().expect("one event after the snapshot");
        assert_eq!(e.position, 2);
        assert!(rx.try_recv().is_err());
    }
}
