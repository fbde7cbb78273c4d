//! Alerting: the server judges the reports it already has against the
//! `alerts:` rules, and tells the `receivers:`.
//!
//! One task reads the cache's broadcast like a watcher does (so ingest never
//! waits for it), re-evaluates the clusters that changed (and every cluster
//! every few seconds, for staleness), moves the [`state::Engine`] on and
//! saves its state in the report store before anything it queued is
//! delivered. One delivery task sends the outbox, in order per receiver,
//! one at a time per receiver, retrying with backoff; a receiver that hangs
//! holds back only itself. Alertmanager receivers also get every firing
//! alert again at their resend interval.

pub mod receivers;
pub mod rules;
pub mod shared;
pub mod state;

use crate::cache::Cache;
use crate::store::Persist;
use dbmon_config::{AlertingConfig, ClusterConfig};
use receivers::{Receiver, ReceiverError};
use rules::ClusterFacts;
use state::{AlertState, Doc, Engine, Silence};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};

/// How often timers (`for`, group waits, silences ending) are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How often every cluster is judged again, so that reports going stale
/// count without a new report.
const FULL_PASS: Duration = Duration::from_secs(5);
/// Longest wait between attempts to deliver one notification.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Alerting could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    #[error("the alerting state in {path} cannot be read ({why}); move the store away or fix it")]
    State { path: String, why: String },
}

/// Where the alerting state is kept.
pub enum StateStore {
    /// Nowhere: a restart forgets alerts and silences.
    Memory,
    /// In the embedded store, beside the reports.
    Embedded(Arc<Persist>),
    /// In the shared database; one server at a time sends.
    Shared(Arc<shared::SharedAlerting>),
}

/// The running alerting of one server.
pub struct Alerting {
    engine: Mutex<Engine>,
    /// Replaced whole by a reload.
    receivers: std::sync::RwLock<BTreeMap<String, Arc<Receiver>>>,
    /// Cluster name → its labels, from `clusters:`.
    labels: std::sync::RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    /// Whether the tasks run (they start with the first rule).
    running: std::sync::atomic::AtomicBool,
    external_url: String,
    /// The longest silence people may set.
    pub max_silence: Duration,
    store: StateStore,
    /// Notifications up to this id are saved and may be delivered.
    saved_id: AtomicU64,
    wake_delivery: Notify,
    pub save_errors: AtomicU64,
    pub last_save_error: Mutex<Option<String>>,
}

/// Whether and since when this server sends, with a shared store.
#[derive(Default)]
struct Leading {
    since: Option<tokio::time::Instant>,
    silences_read: Option<tokio::time::Instant>,
}

/// What the evaluation task does this round, with a shared store.
enum Lead {
    /// Another server sends: nothing to judge here.
    Follow,
    /// This server just became the sender: judge every cluster.
    Began,
    /// This server sends, as before.
    Goes,
}

/// The last status of every (cluster, node, check), so that a report that
/// only repeats its status (most of them) costs a lookup, not a judgement
/// of its cluster. Values and sentences in annotations catch up at the
/// full pass every few seconds.
#[derive(Default)]
pub struct StatusMemory(std::collections::HashMap<ReportKey, i32>);

/// Cluster, node and check of a report, shared with the cache.
type ReportKey = (Arc<str>, Arc<str>, Arc<str>);

impl StatusMemory {
    /// Marks the report's cluster changed if its status is new.
    pub fn note(&mut self, e: &crate::cache::Entry, changed: &mut BTreeSet<String>) {
        let status = e.report.status();
        if self.0.insert(e.report.key(), status) != Some(status)
            && !changed.contains(e.report.cluster())
        {
            changed.insert(e.report.cluster().to_string());
        }
    }
}

/// What the Alerts and Silences services and `/metrics` show of a receiver.
pub struct ReceiverView {
    pub name: String,
    pub kind: &'static str,
    pub health: state::ReceiverHealth,
    pub queued: usize,
}

impl Alerting {
    /// Builds receivers (reading their secrets) and restores the state.
    pub fn new(
        cfg: &AlertingConfig,
        clusters: &[ClusterConfig],
        external_url: String,
        max_silence: Duration,
        store: StateStore,
    ) -> Result<Arc<Alerting>, AlertingError> {
        let mut receivers = BTreeMap::new();
        for r in &cfg.receivers {
            receivers.insert(r.name.clone(), Arc::new(Receiver::build(r)?));
        }
        let doc = match &store {
            StateStore::Embedded(p) => match p.load_alerts() {
                Ok(Some(bytes)) => {
                    serde_json::from_slice::<Doc>(&bytes).map_err(|e| AlertingError::State {
                        path: p.path().display().to_string(),
                        why: e.to_string(),
                    })?
                }
                Ok(None) => Doc::default(),
                Err(why) => {
                    return Err(AlertingError::State {
                        path: p.path().display().to_string(),
                        why,
                    });
                }
            },
            // Shared: loaded when this server becomes the sender.
            StateStore::Memory | StateStore::Shared(_) => Doc::default(),
        };
        let restored = (doc.alerts.len(), doc.outbox.len(), doc.silences.len());
        let engine = Engine::new(&cfg.rules, &cfg.maintenance, doc);
        let saved = engine.doc.next_id;
        if restored != (0, 0, 0) {
            tracing::info!(
                alerts = restored.0,
                outbox = restored.1,
                silences = restored.2,
                "alerting state restored"
            );
        }
        Ok(Arc::new(Alerting {
            engine: Mutex::new(engine),
            receivers: std::sync::RwLock::new(receivers),
            labels: std::sync::RwLock::new(labels_of(clusters)),
            running: std::sync::atomic::AtomicBool::new(false),
            external_url,
            max_silence,
            store,
            saved_id: AtomicU64::new(saved),
            wake_delivery: Notify::new(),
            save_errors: AtomicU64::new(0),
            last_save_error: Mutex::new(None),
        }))
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The receiver named `name`, as configured now.
    fn receiver(&self, name: &str) -> Option<Arc<Receiver>> {
        self.receivers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn all_receivers(&self) -> Vec<Arc<Receiver>> {
        self.receivers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Starts evaluation, delivery and the Alertmanager resends (once).
    pub fn spawn(self: &Arc<Self>, cache: Arc<Cache>, shutdown: watch::Receiver<bool>) {
        if self.running.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let StateStore::Shared(sh) = &self.store {
            tokio::spawn(sh.clone().lease_loop(shutdown.clone()));
        }
        tokio::spawn(self.clone().evaluate_loop(cache, shutdown.clone()));
        tokio::spawn(self.clone().deliver_loop(shutdown.clone()));
        for r in self.all_receivers() {
            self.spawn_resends(&r, &shutdown);
        }
    }

    fn spawn_resends(self: &Arc<Self>, r: &Arc<Receiver>, shutdown: &watch::Receiver<bool>) {
        if let Some(every) = r.resend_interval() {
            tokio::spawn(self.clone().resend_loop(r.clone(), every, shutdown.clone()));
        }
    }

    /// Applies new alerting sections without a restart: receivers, rules,
    /// maintenance windows and the clusters' labels. A receiver that cannot
    /// be built refuses the whole change. Alerts of rules no longer
    /// configured are dropped, as at a restart. Starts the tasks when the
    /// first rule arrives. Says what it now runs.
    pub fn reconfigure(
        self: &Arc<Self>,
        cfg: &AlertingConfig,
        clusters: &[ClusterConfig],
        cache: &Arc<Cache>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<String, AlertingError> {
        let mut receivers = BTreeMap::new();
        for r in &cfg.receivers {
            receivers.insert(r.name.clone(), Arc::new(Receiver::build(r)?));
        }
        let fresh: Vec<Arc<Receiver>> = receivers.values().cloned().collect();
        *self.receivers.write().unwrap_or_else(|e| e.into_inner()) = receivers;
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = labels_of(clusters);
        {
            let mut e = self.engine();
            e.set_rules(&cfg.rules, &cfg.maintenance);
            let names: BTreeSet<String> = cfg.receivers.iter().map(|r| r.name.clone()).collect();
            e.doc.receivers.retain(|n, _| names.contains(n));
        }
        if self.running.load(std::sync::atomic::Ordering::SeqCst) {
            // The old resend loops end when they see their receiver replaced.
            for r in &fresh {
                self.spawn_resends(r, shutdown);
            }
        } else if !cfg.rules.is_empty() {
            self.spawn(cache.clone(), shutdown.clone());
        }
        self.wake_delivery.notify_one();
        Ok(format!(
            "{} rule(s), {} receiver(s), {} maintenance window(s)",
            cfg.rules.len(),
            cfg.receivers.len(),
            cfg.maintenance.len()
        ))
    }

    async fn evaluate_loop(
        self: Arc<Self>,
        cache: Arc<Cache>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (mut rx, _, _) = cache.subscribe_entries(&[]);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut full = true;
        let mut last_full = tokio::time::Instant::now();
        let mut leading = Leading::default();
        let mut statuses = StatusMemory::default();
        loop {
            let mut changed: BTreeSet<String> = BTreeSet::new();
            tokio::select! {
                _ = shutdown.changed() => {
                    self.save().await;
                    return;
                }
                _ = tick.tick() => {}
                r = rx.recv() => match r {
                    Ok(e) => statuses.note(&e, &mut changed),
                    Err(broadcast::error::RecvError::Lagged(_)) => full = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            loop {
                match rx.try_recv() {
                    Ok(e) => statuses.note(&e, &mut changed),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => full = true,
                    Err(_) => break,
                }
            }
            if last_full.elapsed() >= FULL_PASS {
                full = true;
            }
            // With a shared store only the sender judges.
            if let StateStore::Shared(sh) = &self.store {
                match self.lead(sh, &mut leading).await {
                    Lead::Follow => continue,
                    Lead::Began => full = true,
                    Lead::Goes => {}
                }
            }
            let now = dbmon_proto::now_ms();
            if full || !changed.is_empty() {
                let asked: Vec<String> = if full {
                    Vec::new()
                } else {
                    changed.into_iter().collect()
                };
                let reports = cache.latest(&asked);
                self.judge(&reports, now);
                if full {
                    full = false;
                    last_full = tokio::time::Instant::now();
                }
            }
            let queued = {
                let mut e = self.engine();
                e.prune_silences(now);
                e.tick(now)
            };
            if queued > 0 {
                tracing::debug!(queued, "notifications queued");
            }
            self.save().await;
        }
    }

    /// With a shared store: whether this server sends now. On becoming the
    /// sender it starts from the state the previous one saved; while it
    /// sends, it reads the silences every second.
    async fn lead(&self, sh: &shared::SharedAlerting, leading: &mut Leading) -> Lead {
        if !*sh.leader.borrow() {
            leading.since = None;
            return Lead::Follow;
        }
        let began = leading.since.is_none();
        if began {
            let doc = match sh.load().await {
                Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "the alerting state in the shared store cannot be read; starting from none");
                    Doc::default()
                }),
                Ok(None) => Doc::default(),
                Err(why) => {
                    tracing::warn!(error = %why, "cannot read the alerting state from the shared store; will try again");
                    return Lead::Follow;
                }
            };
            let mut e = self.engine();
            e.replace_doc(doc);
            self.saved_id.store(e.doc.next_id, Ordering::Release);
            leading.since = Some(tokio::time::Instant::now());
            leading.silences_read = None;
        }
        if leading
            .silences_read
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            match sh.silences().await {
                Ok(list) => {
                    let now = dbmon_proto::now_ms();
                    let (keep, old): (Vec<Silence>, Vec<Silence>) = list
                        .into_iter()
                        .partition(|s| now - s.expired_at_ms.unwrap_or(s.ends_at_ms) < 86_400_000);
                    let old: Vec<String> = old.into_iter().map(|s| s.id).collect();
                    let _ = sh.forget_silences(&old).await;
                    self.engine().set_silences(keep);
                }
                Err(why) => tracing::debug!(error = %why, "cannot read silences"),
            }
            leading.silences_read = Some(tokio::time::Instant::now());
        }
        if began { Lead::Began } else { Lead::Goes }
    }

    /// Judges the reports (grouped by cluster, as `latest` returns them).
    fn judge(&self, reports: &[dbmon_proto::Report], now: i64) {
        let empty = BTreeMap::new();
        let labels = self.labels.read().unwrap_or_else(|e| e.into_inner());
        let mut e = self.engine();
        let rules: Vec<dbmon_config::AlertRule> = e.rules().cloned().collect();
        for chunk in reports.chunk_by(|a, b| a.cluster == b.cluster) {
            let cluster = &chunk[0].cluster;
            let facts = ClusterFacts {
                name: cluster,
                kind: &chunk[0].kind,
                labels: labels.get(cluster).unwrap_or(&empty),
            };
            let conditions = rules
                .iter()
                .flat_map(|r| rules::evaluate(r, &facts, chunk, now))
                .collect();
            e.observe(cluster, conditions, now);
        }
    }

    /// Writes the state if it changed; then what it queued may go out.
    async fn save(&self) {
        let (bytes, newest) = {
            let mut e = self.engine();
            if !e.dirty {
                return;
            }
            e.dirty = false;
            let newest = e.doc.next_id;
            match &self.store {
                StateStore::Memory => (None, newest),
                _ => (serde_json::to_vec(&e.doc).ok(), newest),
            }
        };
        let result = match (&self.store, bytes) {
            (StateStore::Embedded(store), Some(bytes)) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.save_alerts(&bytes))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
            (StateStore::Shared(sh), Some(bytes)) => match sh.save(&bytes).await {
                Ok(()) => Ok(()),
                Err(why) => {
                    // Not saved, not sent: a server that is no longer the
                    // sender must not notify.
                    tracing::warn!(error = %why, "alerting state not saved to the shared store; holding notifications");
                    self.engine().dirty = true;
                    *self
                        .last_save_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(why);
                    self.save_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ => Ok(()),
        };
        if let Err(why) = result {
            // Deliver anyway: a notification sent twice after a crash is
            // better than one not sent.
            self.save_errors.fetch_add(1, Ordering::Relaxed);
            let mut last = self
                .last_save_error
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.as_deref() != Some(&why) {
                tracing::error!(error = %why, "cannot save the alerting state; notifications go on, but a restart may repeat or lose some");
            }
            *last = Some(why);
            self.engine().dirty = true;
        } else {
            *self
                .last_save_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.saved_id.fetch_max(newest, Ordering::Release);
        self.wake_delivery.notify_one();
    }

    /// Whether this server sends notifications now.
    fn sends(&self) -> bool {
        match &self.store {
            StateStore::Shared(sh) => *sh.leader.borrow(),
            _ => true,
        }
    }

    async fn deliver_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let inflight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        loop {
            // Woken by a save or a finished delivery; otherwise at the
            // earliest retry (at most a second away, so a new sender notices).
            let mut next_retry_ms = i64::MAX;
            let due: Vec<state::Notification> = if !self.sends() {
                Vec::new()
            } else {
                let saved = self.saved_id.load(Ordering::Acquire);
                let now = dbmon_proto::now_ms();
                let busy = inflight.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let mut e = self.engine();
                let mut first: BTreeSet<String> = BTreeSet::new();
                let mut unknown = Vec::new();
                let mut due = Vec::new();
                for n in &e.doc.outbox {
                    // Only the oldest of each receiver: order is kept.
                    if !first.insert(n.receiver.clone()) {
                        continue;
                    }
                    if self.receiver(&n.receiver).is_none() {
                        unknown.push(n.id);
                        continue;
                    }
                    if n.id <= saved && !busy.contains(&n.receiver) {
                        if n.next_attempt_ms <= now {
                            due.push(n.clone());
                        } else {
                            next_retry_ms = next_retry_ms.min(n.next_attempt_ms);
                        }
                    }
                }
                if !unknown.is_empty() {
                    tracing::warn!(
                        dropped = unknown.len(),
                        "notifications for receivers no longer configured are dropped"
                    );
                    e.doc.outbox.retain(|n| !unknown.contains(&n.id));
                    e.dirty = true;
                }
                due
            };
            for n in due {
                let Some(receiver) = self.receiver(&n.receiver) else {
                    continue;
                };
                inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(n.receiver.clone());
                let me = self.clone();
                let inflight = inflight.clone();
                tokio::spawn(async move {
                    let result = receiver.send(&n, &me.external_url).await;
                    let now = dbmon_proto::now_ms();
                    let attempts = n.attempts + 1;
                    let backoff = Duration::from_secs(1)
                        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
                        .min(MAX_BACKOFF);
                    match &result {
                        Ok(()) => tracing::info!(
                            receiver = %n.receiver, rule = %n.rule, cluster = %n.cluster,
                            status = n.status.as_str(), alerts = n.alerts.len(), notification = n.id, attempts,
                            "notification delivered"
                        ),
                        Err(error) => tracing::warn!(
                            receiver = %n.receiver, rule = %n.rule, cluster = %n.cluster,
                            notification = n.id, attempts, %error, retry_in = ?backoff,
                            "notification not delivered; will retry"
                        ),
                    }
                    me.engine()
                        .delivered(n.id, result, now, now + backoff.as_millis() as i64);
                    inflight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&n.receiver);
                    me.wake_delivery.notify_one();
                });
            }
            tokio::select! {
                _ = self.wake_delivery.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(
                    next_retry_ms.saturating_sub(dbmon_proto::now_ms()).clamp(1, 1000) as u64,
                )) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn resend_loop(
        self: Arc<Self>,
        receiver: Arc<Receiver>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Replaced or removed by a reload: a new loop serves the new one.
            if !self
                .receiver(&receiver.name)
                .is_some_and(|now| Arc::ptr_eq(&now, &receiver))
            {
                return;
            }
            if !self.sends() {
                continue;
            }
            let alerts = self.engine().firing_for(&receiver.name);
            if alerts.is_empty() {
                continue;
            }
            if let Err(error) = receiver.resend(&alerts, &self.external_url).await {
                tracing::warn!(receiver = %receiver.name, %error, "re-sending firing alerts to Alertmanager failed; will try again");
            }
        }
    }

    /// The state to show: this server's, or, with a shared store on a
    /// server that does not send, the sender's as last saved.
    /// Waits at most a few seconds for the database, then shows this
    /// server's own state.
    pub async fn snapshot(&self) -> Doc {
        if let StateStore::Shared(sh) = &self.store
            && !*sh.leader.borrow()
            && self.engine().rules().next().is_some()
        {
            match tokio::time::timeout(Duration::from_secs(3), sh.load()).await {
                Ok(Ok(Some(bytes))) => {
                    if let Ok(doc) = serde_json::from_slice::<Doc>(&bytes) {
                        return doc;
                    }
                }
                Ok(Ok(None)) => return Doc::default(),
                Ok(Err(why)) => {
                    tracing::debug!(error = %why, "cannot read the sender's alerting state")
                }
                Err(_) => tracing::debug!("the shared store did not answer within 3s"),
            }
        }
        self.local()
    }

    /// This server's own state, without asking anyone (for `/healthz` and
    /// `/metrics`, which must answer while the database does not: with a
    /// shared store, the sender's show the deliveries).
    pub fn local(&self) -> Doc {
        self.engine().doc.clone()
    }

    /// Alerts of the clusters in `scope` (None: all).
    pub fn alerts_in(
        &self,
        doc: &Doc,
        scope: Option<&BTreeSet<String>>,
    ) -> Vec<dbmon_proto::v1::Alert> {
        let e = self.engine();
        doc.alerts
            .values()
            .filter(|a| scope.is_none_or(|s| s.contains(&a.cluster)))
            .map(|a| dbmon_proto::v1::Alert {
                fingerprint: a.fingerprint.clone(),
                rule: a.rule.clone(),
                cluster: a.cluster.clone(),
                node: a.node.clone(),
                check: a.check.clone(),
                state: a.state.as_str().to_string(),
                severity: a.labels.get("severity").cloned().unwrap_or_default(),
                labels: a.labels.clone().into_iter().collect(),
                annotations: a.annotations.clone().into_iter().collect(),
                active_since_ms: a.active_since_ms,
                fired_at_ms: a.fired_at_ms.unwrap_or(0),
                receivers: e
                    .rule(&a.rule)
                    .map(|r| r.receivers.clone())
                    .unwrap_or_default(),
                muted_by: a.muted_by.clone().unwrap_or_default(),
                deliveries: a
                    .deliveries
                    .iter()
                    .map(|(r, d)| dbmon_proto::v1::AlertDelivery {
                        receiver: r.clone(),
                        at_ms: d.at_ms,
                        ok: d.ok,
                        error: d.error.clone().unwrap_or_default(),
                        attempts: d.attempts,
                    })
                    .collect(),
            })
            .collect()
    }

    /// A cluster's alerting marks for the dashboard: see [`Engine::marks`].
    pub fn marks(&self, cluster: &str) -> (usize, Option<String>) {
        self.engine().marks(cluster, dbmon_proto::now_ms())
    }

    /// Every receiver with its delivery health.
    pub fn receivers_in(&self, doc: &Doc) -> Vec<ReceiverView> {
        self.all_receivers()
            .iter()
            .map(|r| ReceiverView {
                name: r.name.clone(),
                kind: r.kind(),
                health: doc.receivers.get(&r.name).cloned().unwrap_or_default(),
                queued: doc.outbox.iter().filter(|n| n.receiver == r.name).count(),
            })
            .collect()
    }

    /// Counts of alerts by state.
    pub fn counts_in(doc: &Doc) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::from([("pending", 0), ("firing", 0), ("resolved", 0)]);
        for a in doc.alerts.values() {
            *out.entry(a.state.as_str()).or_default() += 1;
        }
        let muted = doc
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Firing && a.muted_by.is_some())
            .count();
        out.insert("muted", muted);
        out
    }

    /// Adds a silence; with a shared store any server may, and the sender
    /// picks it up within a second.
    pub async fn add_silence(&self, mut s: Silence) -> Result<Silence, String> {
        s.id = format!("s-{:012x}", rand::random::<u64>() >> 16);
        if let StateStore::Shared(sh) = &self.store {
            sh.put_silence(&s).await?;
        }
        self.engine().put_silence(s.clone());
        Ok(s)
    }

    /// Every silence kept (in force, and ended within a day).
    pub async fn silences(&self) -> Result<Vec<Silence>, String> {
        match &self.store {
            StateStore::Shared(sh) => sh.silences().await,
            _ => Ok(self.engine().doc.silences.clone()),
        }
    }

    /// Ends a silence now; None when there is no such silence.
    pub async fn expire_silence(&self, id: &str, by: &str) -> Result<Option<Silence>, String> {
        let now = dbmon_proto::now_ms();
        let Some(mut s) = self.silences().await?.into_iter().find(|s| s.id == id) else {
            return Ok(None);
        };
        if s.expired_at_ms.is_none() && s.ends_at_ms > now {
            s.expired_at_ms = Some(now);
            s.expired_by = Some(by.to_string());
        }
        if let StateStore::Shared(sh) = &self.store {
            sh.put_silence(&s).await?;
        }
        self.engine().put_silence(s.clone());
        Ok(Some(s))
    }

    /// Why the state could not be saved last, if it could not.
    pub fn state_saved_error(&self) -> Option<String> {
        self.last_save_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Cluster name → its labels.
fn labels_of(clusters: &[ClusterConfig]) -> BTreeMap<String, BTreeMap<String, String>> {
    clusters
        .iter()
        .map(|c| (c.name.clone(), c.labels.clone()))
        .collect()
}
