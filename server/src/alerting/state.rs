//! The alert state machine, grouping and the outbox, with time passed in:
//! pure, so every rule of it is tested without waiting.
//!
//! An alert is *pending* while its condition holds for less than the rule's
//! `for`, *firing* after, and *resolved* once the condition has stayed away
//! for `resolve_after`. Alerts are grouped per (rule, cluster); a group is
//! notified when what it would say differs from what it last said (an alert
//! fired, resolved, changed severity, or was muted or unmuted): first after
//! `group_wait`, then at most every `group_interval`, and again every
//! `repeat_interval` while anything fires. Silences and maintenance windows
//! mute notifications only: muted alerts are still evaluated and recorded.
//! A notification goes to the outbox, one per receiver, and stays there
//! until delivered (at least once).

use super::rules::Condition;
use dbmon_config::{AlertRule, MaintenanceWindow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The outbox holds at most this many notifications per receiver; past it
/// the oldest is dropped, counted and logged (a receiver down for days).
pub const OUTBOX_PER_RECEIVER: usize = 10_000;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's condition on one (cluster, node, check).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: String,
    pub cluster: String,
    pub node: String,
    pub check: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the condition began to hold.
    pub active_since_ms: i64,
    pub fired_at_ms: Option<i64>,
    /// When the condition stopped holding, while firing.
    pub good_since_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// Why notifications are muted now ("silenced by … until …").
    pub muted_by: Option<String>,
    /// Receiver → outcome of the last delivery that carried this alert.
    #[serde(default)]
    pub deliveries: BTreeMap<String, DeliveryOutcome>,
}

/// How one delivery went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryOutcome {
    pub at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
    pub attempts: u32,
}

/// Notification state of one (rule, cluster) group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub rule: String,
    pub cluster: String,
    /// When the group first had something new to say, before its first
    /// notification (group_wait counts from here).
    pub first_ready_ms: Option<i64>,
    pub last_flush_ms: Option<i64>,
    /// What the last notification said was firing: fingerprint → severity.
    pub sent_firing: BTreeMap<String, String>,
}

/// An alert as a notification carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentAlert {
    pub fingerprint: String,
    pub status: AlertState,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
}

/// One message to one receiver, kept until delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    pub id: u64,
    pub receiver: String,
    pub rule: String,
    pub cluster: String,
    pub created_ms: i64,
    /// "firing" when any alert fires, else "resolved".
    pub status: AlertState,
    pub alerts: Vec<SentAlert>,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

impl Notification {
    /// The group's key, as receivers show it.
    pub fn group_key(&self) -> String {
        format!("{}/{}", self.rule, self.cluster)
    }
}

/// A person's silence: mutes notifications of matching alerts until it ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Silence {
    pub id: String,
    pub cluster: String,
    /// Empty: every node.
    pub node: String,
    /// Empty: every check.
    pub check: String,
    pub comment: String,
    pub created_by: String,
    pub login: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub expired_at_ms: Option<i64>,
    pub expired_by: Option<String>,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.expired_at_ms.is_none() && self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    fn matches(&self, a: &Alert) -> bool {
        self.cluster == a.cluster
            && (self.node.is_empty() || self.node == a.node)
            && (self.check.is_empty() || self.check == a.check)
    }
}

/// Delivery health of one receiver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReceiverHealth {
    pub delivered: u64,
    pub failed_attempts: u64,
    /// Notifications dropped because the outbox was full.
    pub dropped: u64,
    pub consecutive_failures: u32,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// Everything that must survive a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Doc {
    pub alerts: BTreeMap<String, Alert>,
    pub groups: BTreeMap<String, Group>,
    pub outbox: VecDeque<Notification>,
    pub silences: Vec<Silence>,
    pub receivers: BTreeMap<String, ReceiverHealth>,
    pub next_id: u64,
}

/// The rules and windows, and the state they act on.
pub struct Engine {
    rules: BTreeMap<String, Arc<AlertRule>>,
    windows: Vec<MaintenanceWindow>,
    pub doc: Doc,
    /// Something changed since the last save.
    pub dirty: bool,
}

/// Separates the parts of an alert's key; no rule or cluster name holds it.
const SEP: char = '\u{1f}';

/// The key of an alert in [`Doc::alerts`]: rule, cluster, fingerprint. So a
/// group's alerts, and a cluster's alerts under one rule, are neighbours.
pub fn alert_key(rule: &str, cluster: &str, fingerprint: &str) -> String {
    format!("{rule}{SEP}{cluster}{SEP}{fingerprint}")
}

fn group_prefix(rule: &str, cluster: &str) -> String {
    format!("{rule}{SEP}{cluster}{SEP}")
}

/// The alerts under `prefix` (one group, or one rule in one cluster).
fn in_group<'a>(
    alerts: &'a BTreeMap<String, Alert>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Alert)> {
    alerts
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Why notifications about `a` are muted at `now_ms`, if they are.
fn mute_reason(
    silences: &[Silence],
    windows: &[MaintenanceWindow],
    a: &Alert,
    now_ms: i64,
) -> Option<String> {
    if let Some(s) = silences
        .iter()
        .filter(|s| s.active(now_ms) && s.matches(a))
        .max_by_key(|s| s.ends_at_ms)
    {
        return Some(format!(
            "silenced by {} ({}) until {}: {}",
            s.created_by,
            s.id,
            format_ms(s.ends_at_ms),
            s.comment
        ));
    }
    maintenance_reason(windows, &a.cluster, now_ms)
}

/// The maintenance window `cluster` is in at `now_ms`, if any, as a reason.
fn maintenance_reason(windows: &[MaintenanceWindow], cluster: &str, now_ms: i64) -> Option<String> {
    if windows.is_empty() {
        return None;
    }
    let now = jiff::Timestamp::from_millisecond(now_ms).ok()?;
    windows
        .iter()
        .filter(|w| w.covers(cluster))
        .filter_map(|w| w.active_until(now).map(|end| (w, end)))
        .max_by_key(|(_, end)| *end)
        .map(|(w, end)| {
            format!(
                "in maintenance {} until {}",
                w.name,
                format_ms(end.as_millisecond())
            )
        })
}

fn sent(a: &Alert, status: AlertState) -> SentAlert {
    SentAlert {
        fingerprint: a.fingerprint.clone(),
        status,
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at_ms: a.fired_at_ms.unwrap_or(a.active_since_ms),
        ends_at_ms: if status == AlertState::Resolved {
            a.resolved_at_ms
        } else {
            None
        },
    }
}

/// What a group holds against what it last said.
struct Look {
    /// Firing alerts not muted.
    firing_now: usize,
    /// An alert fired, changed severity, or resolved after being told.
    changed: bool,
    /// An alert resolved that nobody was told of.
    resolved_untold: bool,
    /// The group holds any alert.
    any: bool,
}

fn look<'a>(
    members: impl Iterator<Item = &'a Alert>,
    sent_firing: Option<&BTreeMap<String, String>>,
) -> Look {
    let told = |a: &Alert| sent_firing.is_some_and(|s| s.contains_key(&a.fingerprint));
    let mut l = Look {
        firing_now: 0,
        changed: false,
        resolved_untold: false,
        any: false,
    };
    for a in members {
        l.any = true;
        match a.state {
            AlertState::Firing if a.muted_by.is_none() => {
                l.firing_now += 1;
                if sent_firing
                    .and_then(|s| s.get(&a.fingerprint))
                    .map(String::as_str)
                    != Some(severity(a))
                {
                    l.changed = true;
                }
            }
            AlertState::Resolved if told(a) => l.changed = true,
            AlertState::Resolved => l.resolved_untold = true,
            _ => {}
        }
    }
    l
}

fn severity(a: &Alert) -> &str {
    a.labels.get("severity").map(String::as_str).unwrap_or("")
}

impl Engine {
    pub fn new(rules: &[AlertRule], windows: &[MaintenanceWindow], doc: Doc) -> Engine {
        let mut e = Engine {
            rules: rules
                .iter()
                .map(|r| (r.name.clone(), Arc::new(r.clone())))
                .collect(),
            windows: windows.to_vec(),
            doc: Doc::default(),
            dirty: false,
        };
        e.replace_doc(doc);
        e
    }

    /// New rules and windows (a reload): alerts and groups of rules no
    /// longer configured are dropped, as at a restart.
    pub fn set_rules(&mut self, rules: &[AlertRule], windows: &[MaintenanceWindow]) {
        self.rules = rules
            .iter()
            .map(|r| (r.name.clone(), Arc::new(r.clone())))
            .collect();
        self.windows = windows.to_vec();
        let doc = std::mem::take(&mut self.doc);
        self.replace_doc(doc);
        // Saved at the next chance: the dropped alerts must stay dropped.
        self.dirty = true;
    }

    /// What a cluster's tile shows of alerting at `now_ms`: how many of
    /// its alerts fire, and why notifications about it are muted (a firing
    /// alert's silence, or a maintenance window it is in), if they are.
    pub fn marks(&self, cluster: &str, now_ms: i64) -> (usize, Option<String>) {
        let firing: Vec<&Alert> = self
            .doc
            .alerts
            .values()
            .filter(|a| a.cluster == cluster && a.state == AlertState::Firing)
            .collect();
        let muted = firing
            .iter()
            .find_map(|a| mute_reason(&self.doc.silences, &self.windows, a, now_ms))
            .or_else(|| maintenance_reason(&self.windows, cluster, now_ms));
        (firing.len(), muted)
    }

    pub fn rules(&self) -> impl Iterator<Item = &AlertRule> {
        self.rules.values().map(|r| &**r)
    }

    pub fn rule(&self, name: &str) -> Option<&AlertRule> {
        self.rules.get(name).map(|r| &**r)
    }

    /// Applies what the rules found in `cluster` now.
    pub fn observe(&mut self, cluster: &str, conditions: Vec<Condition>, now_ms: i64) {
        let mut seen = BTreeSet::new();
        for c in conditions {
            let key = alert_key(&c.rule, &c.cluster, &c.fingerprint);
            match self.doc.alerts.get_mut(&key) {
                Some(a) => {
                    match a.state {
                        AlertState::Pending => {}
                        AlertState::Firing => {
                            if a.good_since_ms.take().is_some() {
                                self.dirty = true;
                            }
                        }
                        AlertState::Resolved => {
                            // Back before its resolve went out: a new episode.
                            a.state = AlertState::Pending;
                            a.active_since_ms = now_ms;
                            a.fired_at_ms = None;
                            a.resolved_at_ms = None;
                            self.dirty = true;
                        }
                    }
                    if a.labels != c.labels || a.annotations != c.annotations {
                        a.labels = c.labels;
                        a.annotations = c.annotations;
                        self.dirty = true;
                    }
                }
                None => {
                    self.doc.alerts.insert(
                        key.clone(),
                        Alert {
                            fingerprint: c.fingerprint,
                            rule: c.rule,
                            cluster: c.cluster,
                            node: c.node,
                            check: c.check,
                            labels: c.labels,
                            annotations: c.annotations,
                            state: AlertState::Pending,
                            active_since_ms: now_ms,
                            fired_at_ms: None,
                            good_since_ms: None,
                            resolved_at_ms: None,
                            muted_by: None,
                            deliveries: BTreeMap::new(),
                        },
                    );
                    self.dirty = true;
                }
            }
            seen.insert(key);
        }
        // The cluster's alerts the rules no longer find: each rule's range.
        let mut gone = Vec::new();
        for rule in self.rules.keys() {
            let prefix = group_prefix(rule, cluster);
            for (key, a) in self.doc.alerts.range_mut(prefix.clone()..) {
                if !key.starts_with(&prefix) {
                    break;
                }
                if seen.contains(key) {
                    continue;
                }
                match a.state {
                    // A flap shorter than `for`: never fired, never told.
                    AlertState::Pending => gone.push(key.clone()),
                    AlertState::Firing => {
                        if a.good_since_ms.is_none() {
                            a.good_since_ms = Some(now_ms);
                            self.dirty = true;
                        }
                    }
                    AlertState::Resolved => {}
                }
            }
        }
        for key in gone {
            self.doc.alerts.remove(&key);
            self.dirty = true;
        }
    }

    /// Moves timers on, groups what changed and queues the notifications
    /// that are due. Returns how many were queued.
    pub fn tick(&mut self, now_ms: i64) -> usize {
        // 1. Alert states, in one pass.
        let (silences, windows) = (&self.doc.silences, &self.windows);
        let quiet = windows.is_empty() && silences.iter().all(|s| !s.active(now_ms));
        for a in self.doc.alerts.values_mut() {
            let Some(rule) = self.rules.get(&a.rule) else {
                continue;
            };
            let muted = if quiet {
                None
            } else {
                mute_reason(silences, windows, a, now_ms)
            };
            if a.muted_by != muted {
                a.muted_by = muted;
                self.dirty = true;
            }
            match a.state {
                AlertState::Pending
                    if now_ms - a.active_since_ms >= rule.for_.as_millis() as i64 =>
                {
                    a.state = AlertState::Firing;
                    a.fired_at_ms = Some(now_ms);
                    self.dirty = true;
                }
                AlertState::Firing => {
                    if let Some(good) = a.good_since_ms
                        && now_ms - good >= rule.resolve_after.as_millis() as i64
                    {
                        a.state = AlertState::Resolved;
                        a.resolved_at_ms = Some(good);
                        self.dirty = true;
                    }
                }
                _ => {}
            }
        }
        // 2. Groups: those with alerts (neighbours in the map) and those
        // that told of alerts now gone.
        let mut keys: Vec<(String, String)> = Vec::new();
        for a in self.doc.alerts.values() {
            if keys
                .last()
                .is_none_or(|(r, c)| *r != a.rule || *c != a.cluster)
            {
                keys.push((a.rule.clone(), a.cluster.clone()));
            }
        }
        for g in self.doc.groups.values() {
            let prefix = group_prefix(&g.rule, &g.cluster);
            if in_group(&self.doc.alerts, &prefix).next().is_none() {
                keys.push((g.rule.clone(), g.cluster.clone()));
            }
        }
        let mut queued = 0;
        for (rule_name, cluster) in keys {
            queued += self.flush_group(&rule_name, &cluster, now_ms);
        }
        queued
    }

    fn flush_group(&mut self, rule_name: &str, cluster: &str, now_ms: i64) -> usize {
        let Some(rule) = self.rules.get(rule_name).cloned() else {
            return 0;
        };
        let key = format!("{rule_name}/{cluster}");
        let prefix = group_prefix(rule_name, cluster);
        let group = self.doc.groups.get(&key);
        let sent_firing = group.map(|g| &g.sent_firing);
        let Look {
            firing_now,
            changed,
            resolved_untold,
            any,
        } = look(
            in_group(&self.doc.alerts, &prefix).map(|(_, a)| a),
            sent_firing,
        );
        let said = sent_firing.map_or(0, |s| s.len());
        let needs = changed || firing_now != said;
        if !needs && !resolved_untold && !any && said == 0 {
            // Nothing held, nothing told: the group is gone.
            if self.doc.groups.remove(&key).is_some() {
                self.dirty = true;
            }
            return 0;
        }
        let last_flush = group.and_then(|g| g.last_flush_ms);
        let first_ready = group.and_then(|g| g.first_ready_ms);
        let due = if needs {
            match last_flush {
                None => Some(first_ready.unwrap_or(now_ms) + rule.group_wait.as_millis() as i64),
                Some(t) => Some(t + rule.group_interval.as_millis() as i64),
            }
        } else {
            match (firing_now > 0, last_flush) {
                (true, Some(t)) => Some(t + rule.repeat_interval.as_millis() as i64),
                _ => None,
            }
        };
        let flush = due.is_some_and(|d| now_ms >= d);
        if !flush && !resolved_untold {
            // Only the group_wait clock may need starting.
            let want = if needs && last_flush.is_none() {
                Some(first_ready.unwrap_or(now_ms))
            } else {
                None
            };
            if group.and_then(|g| g.first_ready_ms) != want {
                let g = self.group_mut(&key, rule_name, cluster);
                g.first_ready_ms = want;
                self.dirty = true;
            }
            return 0;
        }
        // Flush (or only forget resolved alerts nobody was told about).
        let (queued, done) = if flush {
            self.send_group(&rule, cluster, now_ms)
        } else {
            // Not due: resolved alerts that were never told are done.
            let done = in_group(&self.doc.alerts, &prefix)
                .filter(|(_, a)| {
                    a.state == AlertState::Resolved
                        && !sent_firing.is_some_and(|s| s.contains_key(&a.fingerprint))
                })
                .map(|(k, _)| k.clone())
                .collect();
            (0, done)
        };
        for k in done {
            self.doc.alerts.remove(&k);
        }
        // Everything told and gone: the group ends (a new incident starts
        // with group_wait again).
        let empty = in_group(&self.doc.alerts, &prefix).next().is_none();
        if empty
            && self
                .doc
                .groups
                .get(&key)
                .is_some_and(|g| g.sent_firing.is_empty())
        {
            self.doc.groups.remove(&key);
        }
        self.dirty = true;
        queued
    }

    /// Says what the group holds now: one notification per receiver (when
    /// there is anything to say) and the group's record of it. Returns how
    /// many were queued and the keys of the resolved alerts now done.
    fn send_group(&mut self, rule: &AlertRule, cluster: &str, now_ms: i64) -> (usize, Vec<String>) {
        let key = format!("{}/{cluster}", rule.name);
        let prefix = group_prefix(&rule.name, cluster);
        let told: BTreeSet<String> = self
            .doc
            .groups
            .get(&key)
            .map(|g| g.sent_firing.keys().cloned().collect())
            .unwrap_or_default();
        let mut alerts: Vec<SentAlert> = Vec::new();
        let mut resolved: Vec<SentAlert> = Vec::new();
        let mut firing: BTreeMap<String, String> = BTreeMap::new();
        let mut done = Vec::new();
        for (k, a) in in_group(&self.doc.alerts, &prefix) {
            match a.state {
                AlertState::Firing if a.muted_by.is_none() => {
                    firing.insert(a.fingerprint.clone(), severity(a).to_string());
                    alerts.push(sent(a, AlertState::Firing));
                }
                AlertState::Resolved => {
                    if rule.send_resolved && told.contains(&a.fingerprint) {
                        resolved.push(sent(a, AlertState::Resolved));
                    }
                    done.push(k.clone());
                }
                _ => {}
            }
        }
        let status = if alerts.is_empty() {
            AlertState::Resolved
        } else {
            AlertState::Firing
        };
        alerts.extend(resolved);
        let mut queued = 0;
        if !alerts.is_empty() {
            for receiver in &rule.receivers {
                self.doc.next_id += 1;
                let n = Notification {
                    id: self.doc.next_id,
                    receiver: receiver.clone(),
                    rule: rule.name.clone(),
                    cluster: cluster.to_string(),
                    created_ms: now_ms,
                    status,
                    alerts: alerts.clone(),
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    last_error: None,
                };
                self.enqueue(n);
                queued += 1;
            }
        }
        let g = self.group_mut(&key, &rule.name, cluster);
        if !alerts.is_empty() {
            g.last_flush_ms = Some(now_ms);
        }
        g.sent_firing = firing;
        g.first_ready_ms = None;
        (queued, done)
    }

    fn group_mut(&mut self, key: &str, rule: &str, cluster: &str) -> &mut Group {
        self.doc
            .groups
            .entry(key.to_string())
            .or_insert_with(|| Group {
                rule: rule.to_string(),
                cluster: cluster.to_string(),
                ..Group::default()
            })
    }

    fn enqueue(&mut self, n: Notification) {
        let receiver = n.receiver.clone();
        let count = self
            .doc
            .outbox
            .iter()
            .filter(|o| o.receiver == receiver)
            .count();
        if count >= OUTBOX_PER_RECEIVER
            && let Some(i) = self.doc.outbox.iter().position(|o| o.receiver == receiver)
        {
            let old = self.doc.outbox.remove(i);
            self.doc
                .receivers
                .entry(receiver.clone())
                .or_default()
                .dropped += 1;
            tracing::error!(receiver = %receiver, notification = old.map(|o| o.id).unwrap_or(0), "outbox full for this receiver: the oldest undelivered notification is dropped");
        }
        self.doc.outbox.push_back(n);
    }

    /// Records how delivering notification `id` went; on failure it stays
    /// in the outbox and is tried again at `retry_at_ms`.
    pub fn delivered(
        &mut self,
        id: u64,
        result: Result<(), String>,
        now_ms: i64,
        retry_at_ms: i64,
    ) {
        let Some(i) = self.doc.outbox.iter().position(|n| n.id == id) else {
            return;
        };
        let n = &mut self.doc.outbox[i];
        n.attempts += 1;
        let attempts = n.attempts;
        let receiver = n.receiver.clone();
        let fps: Vec<String> = n
            .alerts
            .iter()
            .map(|a| alert_key(&n.rule, &n.cluster, &a.fingerprint))
            .collect();
        let health = self.doc.receivers.entry(receiver.clone()).or_default();
        let outcome = match &result {
            Ok(()) => {
                health.delivered += 1;
                health.consecutive_failures = 0;
                health.last_ok_ms = Some(now_ms);
                DeliveryOutcome {
                    at_ms: now_ms,
                    ok: true,
                    error: None,
                    attempts,
                }
            }
            Err(e) => {
                health.failed_attempts += 1;
                health.consecutive_failures += 1;
                health.last_error = Some(e.clone());
                health.last_error_ms = Some(now_ms);
                DeliveryOutcome {
                    at_ms: now_ms,
                    ok: false,
                    error: Some(e.clone()),
                    attempts,
                }
            }
        };
        for fp in fps {
            if let Some(a) = self.doc.alerts.get_mut(&fp) {
                a.deliveries.insert(receiver.clone(), outcome.clone());
            }
        }
        match result {
            Ok(()) => {
                self.doc.outbox.remove(i);
            }
            Err(e) => {
                let n = &mut self.doc.outbox[i];
                n.last_error = Some(e);
                n.next_attempt_ms = retry_at_ms;
            }
        }
        self.dirty = true;
    }

    /// Firing, unmuted alerts of rules that route to `receiver`.
    pub fn firing_for(&self, receiver: &str) -> Vec<SentAlert> {
        self.doc
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Firing && a.muted_by.is_none())
            .filter(|a| {
                self.rules
                    .get(&a.rule)
                    .is_some_and(|r| r.receivers.iter().any(|x| x == receiver))
            })
            .map(|a| SentAlert {
                fingerprint: a.fingerprint.clone(),
                status: AlertState::Firing,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_since_ms),
                ends_at_ms: None,
            })
            .collect()
    }

    /// Adds a silence, or replaces the one with its id.
    pub fn put_silence(&mut self, s: Silence) {
        match self.doc.silences.iter_mut().find(|x| x.id == s.id) {
            Some(x) => *x = s,
            None => self.doc.silences.push(s),
        }
        self.dirty = true;
    }

    /// The silences as the shared store holds them.
    pub fn set_silences(&mut self, mut list: Vec<Silence>) {
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let mut mine = self.doc.silences.clone();
        mine.sort_by(|a, b| a.id.cmp(&b.id));
        if mine != list {
            self.doc.silences = list;
            self.dirty = true;
        }
    }

    /// Starts from a saved state (a new sender taking over), keeping only
    /// what the configured rules know.
    pub fn replace_doc(&mut self, mut doc: Doc) {
        let alerts = std::mem::take(&mut doc.alerts);
        doc.alerts = alerts
            .into_values()
            .filter(|a| self.rules.contains_key(&a.rule))
            .map(|a| (alert_key(&a.rule, &a.cluster, &a.fingerprint), a))
            .collect();
        doc.groups.retain(|_, g| self.rules.contains_key(&g.rule));
        self.doc = doc;
        self.dirty = false;
    }

    /// Drops silences that ended more than a day ago.
    pub fn prune_silences(&mut self, now_ms: i64) {
        let before = self.doc.silences.len();
        self.doc.silences.retain(|s| {
            let end = s.expired_at_ms.unwrap_or(s.ends_at_ms);
            now_ms - end < 86_400_000
        });
        if self.doc.silences.len() != before {
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::rules::fingerprint;
    use dbmon_config::{AlertWhen, HealthState, Matchers};
    use std::time::Duration;

    fn rule(for_s: u64, wait_s: u64, interval_s: u64, repeat_s: u64) -> AlertRule {
        AlertRule {
            name: "r".into(),
            when: AlertWhen::Health(vec![HealthState::Degraded]),
            matchers: Matchers::default(),
            for_: Duration::from_secs(for_s),
            resolve_after: Duration::ZERO,
            repeat_interval: Duration::from_secs(repeat_s),
            send_resolved: true,
            group_wait: Duration::from_secs(wait_s),
            group_interval: Duration::from_secs(interval_s),
            receivers: vec!["ops".into()],
        }
    }

    fn cond(node: &str) -> Condition {
        Condition {
            fingerprint: fingerprint("r", "c", node, "up"),
            rule: "r".into(),
            cluster: "c".into(),
            node: node.into(),
            check: "up".into(),
            labels: BTreeMap::from([("severity".to_string(), "critical".to_string())]),
            annotations: BTreeMap::new(),
        }
    }

    const S: i64 = 1000;

    #[test]
    fn a_flap_shorter_than_for_sends_nothing() {
        let mut e = Engine::new(&[rule(30, 0, 0, 3600)], &[], Doc::default());
        e.observe("c", vec![cond("n1")], 0);
        assert_eq!(e.tick(0), 0);
        e.observe("c", vec![], 20 * S);
        assert_eq!(e.tick(20 * S), 0);
        assert_eq!(e.tick(60 * S), 0);
        assert!(e.doc.alerts.is_empty());
        // Held for `for`: fires.
        e.observe("c", vec![cond("n1")], 100 * S);
        assert_eq!(e.tick(129 * S), 0);
        assert_eq!(e.tick(130 * S), 1);
        assert_eq!(e.doc.outbox[0].status, AlertState::Firing);
    }

    #[test]
    fn three_nodes_together_make_one_notification_then_reminders_and_one_resolve() {
        let mut e = Engine::new(&[rule(0, 10, 60, 600)], &[], Doc::default());
        e.observe("c", vec![cond("n1")], 0);
        e.tick(0);
        e.observe("c", vec![cond("n1"), cond("n2")], 3 * S);
        e.tick(3 * S);
        e.observe("c", vec![cond("n1"), cond("n2"), cond("n3")], 6 * S);
        assert_eq!(e.tick(6 * S), 0, "group_wait holds the first notification");
        assert_eq!(e.tick(10 * S), 1);
        assert_eq!(e.doc.outbox[0].alerts.len(), 3);
        // Nothing new: nothing until the repeat.
        assert_eq!(e.tick(100 * S), 0);
        assert_eq!(e.tick(610 * S), 1, "reminder at repeat_interval");
        // All resolve: one resolved notification, at group_interval after the last.
        e.observe("c", vec![], 620 * S);
        assert_eq!(e.tick(620 * S), 0);
        assert_eq!(e.tick(670 * S), 1);
        let last = e.doc.outbox.back().unwrap();
        assert_eq!(last.status, AlertState::Resolved);
        assert_eq!(last.alerts.len(), 3);
        assert!(e.doc.alerts.is_empty());
        assert!(e.doc.groups.is_empty());
    }

    #[test]
    fn a_silenced_alert_is_recorded_but_not_sent_and_notifies_when_the_silence_ends() {
        let mut e = Engine::new(&[rule(0, 0, 60, 3600)], &[], Doc::default());
        e.put_silence(Silence {
            id: "s1".into(),
            cluster: "c".into(),
            node: String::new(),
            check: String::new(),
            comment: "disk swap".into(),
            created_by: "alice".into(),
            login: "l1".into(),
            starts_at_ms: 0,
            ends_at_ms: 100 * S,
            expired_at_ms: None,
            expired_by: None,
        });
        e.observe("c", vec![cond("n1")], S);
        assert_eq!(e.tick(S), 0);
        let a = e.doc.alerts.values().next().unwrap();
        assert_eq!(a.state, AlertState::Firing);
        assert!(
            a.muted_by
                .as_deref()
                .unwrap()
                .starts_with("silenced by alice")
        );
        // The dashboard's tile says so.
        let (firing, muted) = e.marks("c", S);
        assert_eq!(firing, 1);
        assert!(muted.unwrap().starts_with("silenced by alice"));
        assert_eq!(e.marks("other", S), (0, None));
        assert_eq!(e.tick(99 * S), 0);
        assert_eq!(e.tick(100 * S), 1, "the silence ended while still bad");
    }

    #[test]
    fn a_cluster_in_maintenance_is_marked_without_an_alert() {
        let window = MaintenanceWindow {
            name: "all-day".into(),
            clusters: vec!["c".into()],
            days: vec![],
            start: jiff::civil::time(0, 0, 0, 0),
            duration: Duration::from_secs(86_400),
            time_zone: jiff::tz::TimeZone::UTC,
            time_zone_name: "UTC".into(),
        };
        let e = Engine::new(&[rule(0, 0, 60, 3600)], &[window], Doc::default());
        let (firing, muted) = e.marks("c", 1_764_590_400_000);
        assert_eq!(firing, 0);
        assert!(muted.unwrap().starts_with("in maintenance all-day until"));
        assert_eq!(e.marks("d", 1_764_590_400_000), (0, None));
    }

    #[test]
    fn an_escalation_is_a_change_and_a_resolve_needs_send_resolved() {
        let mut r = rule(0, 0, 0, 3600);
        r.send_resolved = false;
        let mut e = Engine::new(&[r], &[], Doc::default());
        let mut c = cond("n1");
        c.labels.insert("severity".into(), "warning".into());
        e.observe("c", vec![c.clone()], 0);
        assert_eq!(e.tick(0), 1);
        c.labels.insert("severity".into(), "critical".into());
        e.observe("c", vec![c], S);
        assert_eq!(e.tick(S), 1);
        e.observe("c", vec![], 2 * S);
        assert_eq!(
            e.tick(2 * S),
            0,
            "no resolve notification without send_resolved"
        );
        assert!(e.doc.alerts.is_empty());
    }

    #[test]
    fn a_failed_delivery_stays_in_the_outbox_until_it_succeeds() {
        let mut e = Engine::new(&[rule(0, 0, 0, 3600)], &[], Doc::default());
        e.observe("c", vec![cond("n1")], 0);
        e.tick(0);
        let id = e.doc.outbox[0].id;
        e.delivered(id, Err("HTTP 500".into()), S, 2 * S);
        assert_eq!(e.doc.outbox.len(), 1);
        assert_eq!(e.doc.outbox[0].next_attempt_ms, 2 * S);
        assert_eq!(e.doc.receivers["ops"].consecutive_failures, 1);
        e.delivered(id, Ok(()), 2 * S, 0);
        assert!(e.doc.outbox.is_empty());
        let a = e.doc.alerts.values().next().unwrap();
        assert!(a.deliveries["ops"].ok);
        assert_eq!(a.deliveries["ops"].attempts, 2);
    }

    #[test]
    fn the_state_survives_a_round_trip_and_does_not_notify_again() {
        let mut e = Engine::new(&[rule(0, 0, 60, 3600)], &[], Doc::default());
        e.observe("c", vec![cond("n1")], 0);
        assert_eq!(e.tick(0), 1);
        let saved = serde_json::to_vec(&e.doc).unwrap();
        let doc: Doc = serde_json::from_slice(&saved).unwrap();
        let mut again = Engine::new(&[rule(0, 0, 60, 3600)], &[], doc);
        again.observe("c", vec![cond("n1")], 5 * S);
        assert_eq!(again.tick(5 * S), 0, "no second firing after a restart");
        again.observe("c", vec![], 6 * S);
        assert_eq!(again.tick(60 * S), 1, "the resolve still goes out");
    }
}
