//! Each cluster's health through time, for uptime badges
//! (`/badge/NAME.svg?window=24h`) and the dashboard's history strip.
//!
//! A task reads the cache's broadcast like a watcher (so ingest never
//! waits for it), takes whatever is waiting at once, and judges each
//! cluster it touched once, from the cache's latest reports, with the one
//! health rule. It records a change only when the health changes: a log of
//! changes, not of reports, so it reaches back days where the history
//! holds minutes. A report that arrives after the cluster's previous
//! reports went stale follows a silence, which is recorded as unknown from
//! the moment they did; time unknown counts as neither up nor down.
//!
//! The log lives in memory; at start it is replayed from the history the
//! store gave back.

use crate::cache::Cache;
use dbmon_proto::Report;
use dbmon_proto::v1::Health;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// Changes kept per cluster (besides the age bound).
const CHANGES: usize = 10_000;
/// Most entries taken in one round.
const MAX_BATCH: usize = 4096;

/// How a cluster fared over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Uptime {
    /// Time healthy or degraded (taking requests), ms.
    pub up_ms: i64,
    /// Time unavailable, ms.
    pub down_ms: i64,
    /// The window asked for, ms; the rest of it was unknown (no reports,
    /// the server not running, or before the first report).
    pub window_ms: i64,
}

impl Uptime {
    /// Up as a share of the time known, or None when none was.
    pub fn ratio(&self) -> Option<f64> {
        let known = self.known_ms();
        (known > 0).then(|| self.up_ms as f64 / known as f64)
    }

    pub fn known_ms(&self) -> i64 {
        self.up_ms + self.down_ms
    }
}

#[derive(Default)]
struct Log {
    /// `(from_ms, health)` at each change, in time order.
    changes: VecDeque<(i64, Health)>,
    /// Until when the newest reports vouch for the cluster (observed plus
    /// stale-after).
    heard_until: i64,
}

impl Log {
    /// Records `health` from `at` when it differs from the last recorded;
    /// drops what is older than `max_age_ms` before `at` (keeping the
    /// change in force then).
    fn change(&mut self, at: i64, health: Health, max_age_ms: i64) {
        if self.changes.back().is_some_and(|(_, h)| *h == health) {
            return;
        }
        // A late report (a slow node's) moves nothing back in time.
        let at = self.changes.back().map_or(at, |(last, _)| at.max(*last));
        self.changes.push_back((at, health));
        let cutoff = at.saturating_sub(max_age_ms);
        while self.changes.len() > CHANGES || (self.changes.len() > 1 && self.changes[1].0 < cutoff)
        {
            self.changes.pop_front();
        }
    }

    /// A report observed `at`, vouching until `at + stale_after_ms`.
    fn heard(&mut self, at: i64, stale_after_ms: i64, max_age_ms: i64) {
        if self.heard_until > 0 && at > self.heard_until {
            let silent_from = self.heard_until;
            self.change(silent_from, Health::Unknown, max_age_ms);
        }
        let vouched = if stale_after_ms > 0 {
            at.saturating_add(stale_after_ms)
        } else {
            i64::MAX
        };
        self.heard_until = self.heard_until.max(vouched);
    }
}

/// Every cluster's log of health changes.
pub struct HealthLog {
    logs: Mutex<HashMap<String, Log>>,
    max_age_ms: i64,
}

impl HealthLog {
    /// A log keeping changes for `max_age` (the history's age bound).
    pub fn new(max_age: std::time::Duration) -> HealthLog {
        HealthLog {
            logs: Mutex::default(),
            max_age_ms: max_age.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Log>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replays what `cache` holds: each cluster's history.
    pub fn seed(&self, cache: &Cache) {
        for name in cache.cluster_names(&[]) {
            let history = cache.history(std::slice::from_ref(&name));
            let log = replay(&history, self.max_age_ms);
            self.logs().insert(name, log);
        }
    }

    /// Takes in `entries`: silences noted, and each cluster they touch
    /// judged once from the cache's latest reports, as of the newest of
    /// its entries.
    pub fn note(&self, cache: &Cache, entries: &[crate::cache::Event]) {
        let mut touched: BTreeMap<&str, i64> = BTreeMap::new();
        {
            let mut logs = self.logs();
            for e in entries {
                let r = &e.report;
                let log = match logs.get_mut(r.cluster()) {
                    Some(l) => l,
                    None => logs.entry(r.cluster().to_string()).or_default(),
                };
                log.heard(r.observed_at_ms(), r.stale_after_ms(), self.max_age_ms);
                let at = touched.entry(r.cluster()).or_default();
                *at = (*at).max(r.observed_at_ms());
            }
        }
        for (cluster, at) in touched {
            self.judge(cache, cluster, at);
        }
    }

    /// Judges `cluster` from the cache's latest reports as of `at`.
    fn judge(&self, cache: &Cache, cluster: &str, at: i64) {
        let latest = cache.latest(&[cluster.to_string()]);
        let health = dbmon_proto::health::derive(&latest, at);
        if let Some(log) = self.logs().get_mut(cluster) {
            log.change(at, health, self.max_age_ms);
        }
    }

    /// Every cluster judged again at `now_ms` (after the task fell behind).
    fn judge_all(&self, cache: &Cache, now_ms: i64) {
        let names: Vec<String> = self.logs().keys().cloned().collect();
        for name in names {
            self.judge(cache, &name, now_ms);
        }
    }

    /// How `cluster` fared over the `window_ms` before `now_ms`; None for a
    /// cluster never heard of.
    pub fn uptime(&self, cluster: &str, window_ms: i64, now_ms: i64) -> Option<Uptime> {
        let logs = self.logs();
        let log = logs.get(cluster)?;
        let start = now_ms.saturating_sub(window_ms);
        let mut u = Uptime {
            window_ms,
            ..Default::default()
        };
        for (i, (from, h)) in log.changes.iter().enumerate() {
            let to = log
                .changes
                .get(i + 1)
                .map_or(now_ms.min(log.heard_until), |n| n.0);
            let span = to.min(now_ms) - (*from).max(start);
            if span <= 0 {
                continue;
            }
            match h {
                Health::Healthy | Health::Degraded => u.up_ms += span,
                Health::Unavailable => u.down_ms += span,
                Health::Unknown | Health::Unspecified => {}
            }
        }
        Some(u)
    }
}

/// Keeps `log` current from `cache`'s broadcast until `shutdown`.
pub fn spawn(log: Arc<HealthLog>, cache: Arc<Cache>, mut shutdown: watch::Receiver<bool>) {
    let (mut rx, _, _) = cache.subscribe_entries(&[]);
    log.seed(&cache);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                got = rx.recv() => match got {
                    Ok(first) => {
                        let batch = crate::cache::with_waiting(&mut rx, first, MAX_BATCH);
                        log.note(&cache, &batch);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        log.judge_all(&cache, dbmon_proto::now_ms());
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
}

/// The log of `history` (one cluster's reports in the order the server
/// took them in), replayed report by report through the one health rule:
/// judged again at each new status, and at each report replacing a stale
/// one; a silence recorded as unknown.
fn replay(history: &[Report], max_age_ms: i64) -> Log {
    let mut log = Log::default();
    let mut latest: BTreeMap<(&str, &str), &Report> = BTreeMap::new();
    for r in history {
        let at = r.observed_at_ms;
        log.heard(at, r.stale_after_ms, max_age_ms);
        let before = latest.insert((&r.node, &r.check), r);
        let changed =
            before.is_none_or(|b| b.status != r.status || dbmon_proto::health::is_stale(b, at));
        if changed {
            let h = dbmon_proto::health::derive(latest.values().copied(), at);
            log.change(at, h, max_age_ms);
        }
    }
    log
}

/// A cluster's health through `history`: `(from_ms, health)` at each
/// change (see [`replay`]).
pub fn health_changes(history: &[Report]) -> Vec<(i64, Health)> {
    replay(history, i64::MAX).changes.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbmon_proto::health::health_name;
    use dbmon_proto::v1::Status;

    const MIN: i64 = 60_000;

    fn rep(node: &str, status: Status, at: i64, seq: u64) -> Report {
        let mut r = Report {
            cluster: "a".into(),
            node: node.into(),
            check: "up".into(),
            collector_id: "c1".into(),
            observed_at_ms: at,
            stale_after_ms: 3 * MIN,
            seq,
            ..Default::default()
        };
        r.set_status(status);
        r
    }

    #[test]
    fn uptime_counts_up_and_down_time_and_a_silence_as_neither() {
        let cache = Cache::new(100, 1 << 16);
        let (mut rx, _, _) = cache.subscribe_entries(&[]);
        let log = HealthLog::new(std::time::Duration::from_secs(7 * 86_400));
        let mut seq = 0;
        let mut poll = |at: i64, statuses: [Status; 3]| {
            for (node, st) in ["n1", "n2", "n3"].into_iter().zip(statuses) {
                seq += 1;
                cache.ingest(1, rep(node, st, at, seq));
            }
            let mut batch = Vec::new();
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
            log.note(&cache, &batch);
        };
        let (ok, crit) = (Status::Ok, Status::Crit);
        // Healthy for 10 min, two nodes down (unavailable) for 5, healthy
        // for 5, nothing heard for 20 (stale after 3), healthy for 10.
        for m in 0..10 {
            poll(m * MIN, [ok, ok, ok]);
        }
        for m in 10..15 {
            poll(m * MIN, [ok, crit, crit]);
        }
        for m in 15..20 {
            poll(m * MIN, [ok, ok, ok]);
        }
        for m in 40..50 {
            poll(m * MIN, [ok, ok, ok]);
        }
        let now = 50 * MIN;
        let u = log.uptime("a", 60 * MIN, now).unwrap();
        // Up: 0..10, 15..22 (heard until 19 + 3), 40..50 = 27 min; down 5.
        assert_eq!(u.down_ms, 5 * MIN);
        assert_eq!(u.up_ms, 27 * MIN);
        assert!((u.ratio().unwrap() - 27.0 / 32.0).abs() < 1e-9);
        // A window within the last healthy stretch: all up.
        let recent = log.uptime("a", 5 * MIN, now).unwrap();
        assert_eq!((recent.up_ms, recent.down_ms), (5 * MIN, 0));
        // The collector falls silent: the time after the last report's
        // promise is not counted as up.
        let later = log.uptime("a", 60 * MIN, now + 30 * MIN).unwrap();
        assert_eq!(later.up_ms, (22 - 20) * MIN + (52 - 40) * MIN);
        assert!(log.uptime("nosuch", MIN, now).is_none());
        // A server started later replays the same from the history held.
        let seeded = HealthLog::new(std::time::Duration::from_secs(86_400));
        seeded.seed(&cache);
        assert_eq!(seeded.uptime("a", 60 * MIN, now), Some(u));
    }

    #[test]
    fn the_changes_follow_the_health_through_history() {
        let h = [
            rep("a", Status::Ok, 1000, 1),
            rep("b", Status::Ok, 1000, 2),
            rep("c", Status::Ok, 1000, 3),
            rep("a", Status::Ok, 2000, 4),
            rep("b", Status::Crit, 3000, 5),
            rep("b", Status::Crit, 4000, 6),
            rep("b", Status::Ok, 5000, 7),
        ];
        let changes: Vec<(i64, &str)> = health_changes(&h)
            .into_iter()
            .map(|(at, h)| (at, health_name(h)))
            .collect();
        assert_eq!(
            changes,
            [(1000, "healthy"), (3000, "degraded"), (5000, "healthy")]
        );
    }
}
