//! The alerting sections: `receivers:` (where notifications go), `alerts:`
//! (what fires, for how long, how often to remind, who is told) and
//! `maintenance:` (recurring windows when notifications are muted).
//!
//! Secrets (a webhook's signing key, a Slack URL, an SMTP password, a
//! header such as `Authorization`) are only ever given by reference.

use crate::raw::{RawSecret, Scalar};
use crate::secret::{HeaderValue, SecretRef};
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_FOR: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RESEND: Duration = Duration::from_secs(60);

/// Everything about telling people.
#[derive(Debug, Clone, Default)]
pub struct AlertingConfig {
    pub receivers: Vec<ReceiverConfig>,
    pub rules: Vec<AlertRule>,
    pub maintenance: Vec<MaintenanceWindow>,
}

/// One place notifications go.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub name: String,
    /// Longest wait for one delivery.
    pub timeout: Duration,
    pub kind: ReceiverKind,
}

/// The kinds of receivers.
#[derive(Debug, Clone)]
pub enum ReceiverKind {
    /// POST of the Alertmanager webhook body (version "4").
    Webhook {
        url: url::Url,
        /// Key of the HMAC-SHA256 signature over the body.
        secret: Option<SecretRef>,
        headers: Vec<(String, HeaderValue)>,
        ca_file: Option<PathBuf>,
    },
    /// A real Alertmanager's `POST /api/v2/alerts`.
    Alertmanager {
        url: url::Url,
        ca_file: Option<PathBuf>,
        /// How often firing alerts are sent again (Alertmanager forgets
        /// alerts that are not).
        resend_interval: Duration,
    },
    /// A Slack incoming webhook; its URL is a secret.
    Slack {
        url: SecretRef,
        ca_file: Option<PathBuf>,
    },
    /// Mail over SMTP.
    Email(EmailConfig),
}

/// An SMTP receiver.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only to a relay on this host.
    None,
}

/// One alert rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The `alertname` label.
    pub name: String,
    pub when: AlertWhen,
    pub matchers: Matchers,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// How long the condition must stay away before the alert resolves.
    pub resolve_after: Duration,
    /// Reminder while still firing.
    pub repeat_interval: Duration,
    pub send_resolved: bool,
    /// Wait before the first notification of a cluster's group, so that
    /// alerts arriving together go out together.
    pub group_wait: Duration,
    /// Wait between notifications of a group when it changes.
    pub group_interval: Duration,
    pub receivers: Vec<String>,
}

/// What makes an alert fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertWhen {
    /// The cluster's health is one of these.
    Health(Vec<HealthState>),
    /// Any (cluster, node, check) report at one of these levels.
    Check(Vec<Severity>),
}

/// Unhealthy states of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthState {
    Degraded,
    Unavailable,
    Unknown,
}

/// Bad levels of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warn,
    Crit,
}

/// Which clusters, nodes and checks a rule or window applies to. Empty
/// lists match everything; names may use `*` as a wildcard.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    pub clusters: Vec<String>,
    pub kinds: Vec<String>,
    pub nodes: Vec<String>,
    pub checks: Vec<String>,
    /// Every label given must equal the cluster's.
    pub labels: BTreeMap<String, String>,
}

impl Matchers {
    /// Whether a cluster (its name, kind and labels) is matched.
    pub fn cluster(&self, name: &str, kind: &str, labels: &BTreeMap<String, String>) -> bool {
        any_glob(&self.clusters, name)
            && any_glob(&self.kinds, kind)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Whether a node and check are matched.
    pub fn check(&self, node: &str, check: &str) -> bool {
        any_glob(&self.nodes, node) && any_glob(&self.checks, check)
    }
}

fn any_glob(patterns: &[String], text: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob(p, text))
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A recurring window in which notifications for some clusters are muted.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub name: String,
    /// Cluster names or patterns; empty: every cluster.
    pub clusters: Vec<String>,
    /// Days the window starts on; empty: every day.
    pub days: Vec<jiff::civil::Weekday>,
    pub start: jiff::civil::Time,
    pub duration: Duration,
    pub time_zone: jiff::tz::TimeZone,
    /// The zone's name as written, for messages.
    pub time_zone_name: String,
}

impl MaintenanceWindow {
    /// The end of the window occurrence that covers `now`, if one does.
    pub fn active_until(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let local = now.to_zoned_datetime(self.time_zone.clone());
        let span = jiff::SignedDuration::try_from(self.duration).ok()?;
        // An occurrence starting up to `duration` ago may still run: look at
        // the start on each of the last few days.
        let days_back = self.duration.as_secs() / 86_400 + 1;
        for back in 0..=days_back as i64 {
            let day = local
                .date()
                .checked_sub(jiff::Span::new().days(back))
                .ok()?;
            if !self.days.is_empty() && !self.days.contains(&day.weekday()) {
                continue;
            }
            let Ok(start) = day
                .to_datetime(self.start)
                .to_zoned_datetime(self.time_zone.clone())
            else {
                continue;
            };
            let start = start.timestamp();
            let Ok(end) = start.checked_add(span) else {
                continue;
            };
            if start <= now && now < end {
                return Some(end);
            }
        }
        None
    }

    /// Whether the window applies to `cluster`.
    pub fn covers(&self, cluster: &str) -> bool {
        any_glob(&self.clusters, cluster)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReceiver {
    name: Spanned<String>,
    timeout: Option<Spanned<String>>,
    webhook: Option<Spanned<RawWebhook>>,
    alertmanager: Option<Spanned<RawAlertmanager>>,
    slack: Option<Spanned<RawSlack>>,
    email: Option<Spanned<RawEmail>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    secret: Option<Spanned<RawSecret>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<RawSecret>>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: Spanned<String>,
    ca_file: Option<PathBuf>,
    resend_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    url: Spanned<RawSecret>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smarthost: Spanned<String>,
    tls: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<Vec<String>>,
    username: Option<String>,
    password: Option<Spanned<RawSecret>>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    name: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
    health: Option<Spanned<Vec<Spanned<String>>>>,
    severity: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "match")]
    matchers: Option<RawMatch>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    resolve_after: Option<Spanned<String>>,
    repeat_interval: Option<Spanned<String>>,
    send_resolved: Option<Spanned<Scalar>>,
    group_wait: Option<Spanned<String>>,
    group_interval: Option<Spanned<String>>,
    receivers: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    cluster: Vec<String>,
    #[serde(default)]
    kind: Vec<String>,
    #[serde(default)]
    node: Vec<String>,
    #[serde(default)]
    check: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    name: Spanned<String>,
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    days: Vec<Spanned<String>>,
    start: Spanned<String>,
    duration: Spanned<String>,
    time_zone: Option<Spanned<String>>,
}

/// Header names whose values are credentials: never inline.
impl Validator<'_> {
    /// The three alerting sections together: rules name receivers.
    pub(crate) fn alerting(
        &mut self,
        receivers: Vec<(RawReceiver, u64)>,
        rules: Vec<(RawRule, u64)>,
        windows: Vec<(RawWindow, u64)>,
    ) -> AlertingConfig {
        let mut out = AlertingConfig::default();
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        for (i, (r, offset)) in receivers.into_iter().enumerate() {
            self.line_offset = offset;
            let field = format!("receivers[{i}]");
            if let Some(first) = names.get(&r.name.value) {
                let msg = format!(
                    "duplicate receiver name {:?} (first defined at line {first}); names must be unique",
                    r.name.value
                );
                self.err(&r.name, &format!("{field}.name"), msg);
            } else {
                names.insert(r.name.value.clone(), r.name.referenced.line() + offset);
            }
            out.receivers.extend(self.receiver(r, &field));
        }
        let mut rule_names: BTreeMap<String, u64> = BTreeMap::new();
        for (i, (r, offset)) in rules.into_iter().enumerate() {
            self.line_offset = offset;
            let field = format!("alerts[{i}]");
            if let Some(rule) = self.rule(r, &field, &names, &mut rule_names) {
                out.rules.push(rule);
            }
        }
        for (i, (w, offset)) in windows.into_iter().enumerate() {
            self.line_offset = offset;
            out.maintenance
                .extend(self.window(w, &format!("maintenance[{i}]")));
        }
        self.line_offset = 0;
        out
    }

    fn receiver(&mut self, r: RawReceiver, field: &str) -> Option<ReceiverConfig> {
        let before = self.errors.len();
        if !crate::cluster::valid_name(&r.name.value) {
            self.err(
                &r.name,
                &format!("{field}.name"),
                "expected a name of letters, digits, '-', '_' or '.', 1 to 63 characters",
            );
        }
        let timeout = match &r.timeout {
            Some(t) => self.duration(t, &format!("{field}.timeout")),
            None => Some(DEFAULT_RECEIVER_TIMEOUT),
        };
        let given = [
            r.webhook.as_ref().map(|w| w.referenced),
            r.alertmanager.as_ref().map(|w| w.referenced),
            r.slack.as_ref().map(|w| w.referenced),
            r.email.as_ref().map(|w| w.referenced),
        ];
        let count = given.iter().flatten().count();
        if count != 1 {
            self.err(
                &r.name,
                field,
                format!(
                    "expected exactly one of webhook, alertmanager, slack or email, found {count}"
                ),
            );
            return None;
        }
        let kind = if let Some(w) = r.webhook {
            let f = format!("{field}.webhook");
            let url = self.http_url(&w.value.url, &format!("{f}.url"));
            let secret = w
                .value
                .secret
                .as_ref()
                .and_then(|s| self.secret(s, &format!("{f}.secret")));
            let headers = self.headers(&w.value.headers, &f);
            url.map(|url| ReceiverKind::Webhook {
                url,
                secret,
                headers,
                ca_file: w.value.ca_file,
            })
        } else if let Some(a) = r.alertmanager {
            let f = format!("{field}.alertmanager");
            let url = self.http_url(&a.value.url, &format!("{f}.url"));
            let resend = match &a.value.resend_interval {
                Some(d) => self.duration_at_least(
                    d,
                    &format!("{f}.resend_interval"),
                    Duration::from_secs(1),
                ),
                None => Some(DEFAULT_RESEND),
            };
            match (url, resend) {
                (Some(url), Some(resend_interval)) => Some(ReceiverKind::Alertmanager {
                    url,
                    ca_file: a.value.ca_file,
                    resend_interval,
                }),
                _ => None,
            }
        } else if let Some(s) = r.slack {
            self.secret(&s.value.url, &format!("{field}.slack.url"))
                .map(|url| ReceiverKind::Slack {
                    url,
                    ca_file: s.value.ca_file,
                })
        } else if let Some(e) = r.email {
            self.email(e.value, &format!("{field}.email"))
                .map(ReceiverKind::Email)
        } else {
            None
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ReceiverConfig {
            name: r.name.value,
            timeout: timeout?,
            kind: kind?,
        })
    }

    fn email(&mut self, e: RawEmail, field: &str) -> Option<EmailConfig> {
        let tls = match e.tls.as_ref().map(|t| t.value.as_str()) {
            None | Some("starttls") => Some(SmtpTls::Starttls),
            Some("implicit") => Some(SmtpTls::Implicit),
            Some("none") => Some(SmtpTls::None),
            Some(other) => {
                let t = e.tls.as_ref().expect("matched Some");
                self.err(
                    t,
                    &format!("{field}.tls"),
                    format!("{other:?}: expected starttls, implicit or none"),
                );
                None
            }
        };
        let default_port = match tls {
            Some(SmtpTls::Implicit) => 465,
            Some(SmtpTls::None) => 25,
            _ => 587,
        };
        let (host, port) = match e.smarthost.value.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) if !h.is_empty() => (h.to_string(), p),
                _ => {
                    self.err(
                        &e.smarthost,
                        &format!("{field}.smarthost"),
                        format!("{:?}: expected HOST or HOST:PORT", e.smarthost.value),
                    );
                    return None;
                }
            },
            None => (e.smarthost.value.clone(), default_port),
        };
        let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
        if tls == Some(SmtpTls::None) && !crate::cluster::is_loopback_host(&host) {
            let at = e
                .tls
                .as_ref()
                .map(|t| t.referenced)
                .unwrap_or(e.smarthost.referenced);
            self.error_at(
                at,
                format!("{field}.tls"),
                "tls: none is only for a relay on this host (loopback); use starttls or implicit",
            );
        }
        for (a, f) in std::iter::once((&e.from.value, format!("{field}.from"))).chain(
            e.to.value
                .iter()
                .enumerate()
                .map(|(i, t)| (t, format!("{field}.to[{i}]"))),
        ) {
            if !plausible_address(a) {
                self.err(
                    &e.from,
                    &f,
                    format!("{a:?} is not a mail address; expected NAME@DOMAIN"),
                );
            }
        }
        if e.to.value.is_empty() {
            self.err(
                &e.to,
                &format!("{field}.to"),
                "expected at least one address",
            );
        }
        let password = e
            .password
            .as_ref()
            .and_then(|p| self.secret(p, &format!("{field}.password")));
        if password.is_some() != e.username.is_some() {
            self.err(
                &e.smarthost,
                field,
                "username and password go together; give both or neither",
            );
        }
        Some(EmailConfig {
            host,
            port,
            tls: tls?,
            from: e.from.value,
            to: e.to.value,
            username: e.username,
            password,
            ca_file: e.ca_file,
        })
    }

    fn rule(
        &mut self,
        r: RawRule,
        field: &str,
        receivers: &BTreeMap<String, u64>,
        names: &mut BTreeMap<String, u64>,
    ) -> Option<AlertRule> {
        let before = self.errors.len();
        let when = self.rule_when(&r, field);
        let name = match &r.name {
            Some(n) => {
                if !crate::cluster::valid_name(&n.value) {
                    self.err(
                        n,
                        &format!("{field}.name"),
                        "expected a name of letters, digits, '-', '_' or '.', 1 to 63 characters",
                    );
                }
                n.value.clone()
            }
            None => match when {
                AlertWhen::Check(_) => "CheckFailing".to_string(),
                AlertWhen::Health(_) => "ClusterUnhealthy".to_string(),
            },
        };
        let line = r
            .name
            .as_ref()
            .map(|n| n.referenced.line())
            .unwrap_or(r.receivers.referenced.line())
            + self.line_offset;
        if let Some(first) = names.get(&name) {
            let msg = format!(
                "duplicate alert name {name:?} (first defined at line {first}); give each rule its own `name:`"
            );
            match &r.name {
                Some(n) => self.err(n, &format!("{field}.name"), msg),
                None => self.err(&r.receivers, &format!("{field}.name"), msg),
            }
        } else {
            names.insert(name.clone(), line);
        }
        let m = r.matchers.unwrap_or_default();
        if !matches!(when, AlertWhen::Check(_)) && (!m.node.is_empty() || !m.check.is_empty()) {
            self.err(
                &r.receivers,
                &format!("{field}.match"),
                "node and check matchers are for `when: check` rules",
            );
        }
        let matchers = Matchers {
            clusters: m.cluster,
            kinds: m.kind,
            nodes: m.node,
            checks: m.check,
            labels: m.labels,
        };
        let dur = |v: &mut Self, d: &Option<Spanned<String>>, name: &str, default: Duration| match d
        {
            Some(d) => v
                .duration_at_least(d, &format!("{field}.{name}"), Duration::ZERO)
                .unwrap_or(default),
            None => default,
        };
        let for_ = dur(self, &r.for_, "for", DEFAULT_FOR);
        let resolve_after = dur(self, &r.resolve_after, "resolve_after", Duration::ZERO);
        let group_wait = dur(self, &r.group_wait, "group_wait", DEFAULT_GROUP_WAIT);
        let group_interval = dur(
            self,
            &r.group_interval,
            "group_interval",
            DEFAULT_GROUP_INTERVAL,
        );
        let repeat_interval = match &r.repeat_interval {
            Some(d) => self
                .duration_at_least(
                    d,
                    &format!("{field}.repeat_interval"),
                    Duration::from_secs(1),
                )
                .unwrap_or(DEFAULT_REPEAT),
            None => DEFAULT_REPEAT,
        };
        let send_resolved = r
            .send_resolved
            .as_ref()
            .and_then(|s| self.flag(s, &format!("{field}.send_resolved")))
            .unwrap_or(true);
        self.rule_receivers(&r.receivers, field, receivers);
        if self.errors.len() > before {
            return None;
        }
        Some(AlertRule {
            name,
            when,
            matchers,
            for_,
            resolve_after,
            repeat_interval,
            send_resolved,
            group_wait,
            group_interval,
            receivers: r.receivers.value.into_iter().map(|s| s.value).collect(),
        })
    }

    /// What makes a rule fire: `when:` with its `health:` or `severity:`.
    fn rule_when(&mut self, r: &RawRule, field: &str) -> AlertWhen {
        let when_word = r
            .when
            .as_ref()
            .map(|w| w.value.as_str())
            .unwrap_or("health");
        match when_word {
            "health" => {
                if let Some(s) = &r.severity {
                    self.err(
                        s,
                        &format!("{field}.severity"),
                        "severity is for `when: check` rules; a health rule takes `health:`",
                    );
                }
                let mut states = Vec::new();
                for h in r.health.iter().flat_map(|h| h.value.iter()) {
                    match h.value.as_str() {
                        "degraded" => states.push(HealthState::Degraded),
                        "unavailable" => states.push(HealthState::Unavailable),
                        "unknown" => states.push(HealthState::Unknown),
                        other => self.err(
                            h,
                            &format!("{field}.health"),
                            format!("{other:?}: expected degraded, unavailable or unknown"),
                        ),
                    }
                }
                if states.is_empty() {
                    states = vec![
                        HealthState::Degraded,
                        HealthState::Unavailable,
                        HealthState::Unknown,
                    ];
                }
                states.sort();
                states.dedup();
                AlertWhen::Health(states)
            }
            "check" => {
                if let Some(h) = &r.health {
                    self.err(
                        h,
                        &format!("{field}.health"),
                        "health is for `when: health` rules; a check rule takes `severity:`",
                    );
                }
                let mut levels = Vec::new();
                for s in r.severity.iter().flat_map(|s| s.value.iter()) {
                    match s.value.as_str() {
                        "warn" | "warning" => levels.push(Severity::Warn),
                        "crit" | "critical" => levels.push(Severity::Crit),
                        other => self.err(
                            s,
                            &format!("{field}.severity"),
                            format!("{other:?}: expected warn or crit"),
                        ),
                    }
                }
                if levels.is_empty() {
                    levels = vec![Severity::Warn, Severity::Crit];
                }
                levels.sort();
                levels.dedup();
                AlertWhen::Check(levels)
            }
            other => {
                let w = r.when.as_ref().expect("a word other than the default");
                self.err(
                    w,
                    &format!("{field}.when"),
                    format!("{other:?}: expected health or check"),
                );
                AlertWhen::Health(Vec::new())
            }
        }
    }

    /// Each receiver a rule names must exist.
    fn rule_receivers(
        &mut self,
        names: &Spanned<Vec<Spanned<String>>>,
        field: &str,
        receivers: &BTreeMap<String, u64>,
    ) {
        if names.value.is_empty() {
            self.err(
                names,
                &format!("{field}.receivers"),
                "expected at least one receiver name",
            );
        }
        for (j, name) in names.value.iter().enumerate() {
            if !receivers.contains_key(&name.value) {
                let known: Vec<&str> = receivers.keys().map(String::as_str).collect();
                self.err(
                    name,
                    &format!("{field}.receivers[{j}]"),
                    format!(
                        "unknown receiver {:?}; expected one of the names under receivers: ({})",
                        name.value,
                        if known.is_empty() {
                            "none defined".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }

    fn window(&mut self, w: RawWindow, field: &str) -> Option<MaintenanceWindow> {
        let before = self.errors.len();
        let mut days = Vec::new();
        for d in &w.days {
            use jiff::civil::Weekday::*;
            let day = match d.value.to_ascii_lowercase().as_str() {
                "mon" | "monday" => Some(Monday),
                "tue" | "tuesday" => Some(Tuesday),
                "wed" | "wednesday" => Some(Wednesday),
                "thu" | "thursday" => Some(Thursday),
                "fri" | "friday" => Some(Friday),
                "sat" | "saturday" => Some(Saturday),
                "sun" | "sunday" => Some(Sunday),
                _ => None,
            };
            match day {
                Some(day) => days.push(day),
                None => self.err(
                    d,
                    &format!("{field}.days"),
                    format!("{:?}: expected a weekday such as mon or saturday", d.value),
                ),
            }
        }
        let start = match jiff::civil::Time::strptime("%H:%M", w.start.value.trim()) {
            Ok(t) => Some(t),
            Err(_) => {
                self.err(
                    &w.start,
                    &format!("{field}.start"),
                    format!(
                        "{:?}: expected a time of day HH:MM, like 02:30",
                        w.start.value
                    ),
                );
                None
            }
        };
        let duration = self.duration_at_least(
            &w.duration,
            &format!("{field}.duration"),
            Duration::from_secs(60),
        );
        if duration.is_some_and(|d| d > Duration::from_secs(7 * 86_400)) {
            self.err(
                &w.duration,
                &format!("{field}.duration"),
                "expected at most 7d; a window recurs, so a longer one never ends",
            );
        }
        let (zone_name, zone) = match &w.time_zone {
            Some(z) => match jiff::tz::TimeZone::get(z.value.trim()) {
                Ok(tz) => (z.value.trim().to_string(), Some(tz)),
                Err(_) => {
                    self.err(
                        z,
                        &format!("{field}.time_zone"),
                        format!(
                            "{:?} is not a known time zone; expected an IANA name such as Europe/Paris or UTC",
                            z.value
                        ),
                    );
                    (String::new(), None)
                }
            },
            None => ("UTC".to_string(), Some(jiff::tz::TimeZone::UTC)),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(MaintenanceWindow {
            name: w.name.value,
            clusters: w.clusters,
            days,
            start: start?,
            duration: duration?,
            time_zone: zone?,
            time_zone_name: zone_name,
        })
    }

    fn http_url(&mut self, s: &Spanned<String>, field: &str) -> Option<url::Url> {
        match url::Url::parse(s.value.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.password().unwrap_or("").is_empty() {
                    self.err(s, field, "secrets are never written inline; remove the password from the URL and use a header by reference");
                    return None;
                }
                Some(u)
            }
            _ => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is not an http(s) URL; expected https://HOST[:PORT]/PATH",
                        s.value
                    ),
                );
                None
            }
        }
    }
}

fn plausible_address(a: &str) -> bool {
    let a = a.trim();
    let addr = match (a.rfind('<'), a.rfind('>')) {
        (Some(i), Some(j)) if i < j => &a[i + 1..j],
        _ => a,
    };
    matches!(addr.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !addr.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_written() {
        assert!(glob("prod-*", "prod-eu"));
        assert!(!glob("prod-*", "dev-eu"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c-y-b"));
        assert!(glob("exact", "exact"));
        assert!(!glob("ab*ab", "ab"));
    }

    fn window(
        days: &[jiff::civil::Weekday],
        start: &str,
        hours: u64,
        tz: &str,
    ) -> MaintenanceWindow {
        MaintenanceWindow {
            name: "w".into(),
            clusters: vec![],
            days: days.to_vec(),
            start: jiff::civil::Time::strptime("%H:%M", start).unwrap(),
            duration: Duration::from_secs(hours * 3600),
            time_zone: jiff::tz::TimeZone::get(tz).unwrap(),
            time_zone_name: tz.into(),
        }
    }

    #[test]
    fn a_window_follows_its_time_zone() {
        use jiff::civil::Weekday::Saturday;
        // Saturday 02:00 to 04:00 in Paris is 00:00 to 02:00 UTC in summer.
        let w = window(&[Saturday], "02:00", 2, "Europe/Paris");
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            w.active_until(at("2026-07-04T00:30:00Z")),
            Some(at("2026-07-04T02:00:00Z"))
        );
        assert_eq!(w.active_until(at("2026-07-04T02:00:00Z")), None);
        assert_eq!(w.active_until(at("2026-07-03T23:59:00Z")), None);
        // Not on a Sunday.
        assert_eq!(w.active_until(at("2026-07-05T00:30:00Z")), None);
        // In winter Paris is UTC+1.
        assert_eq!(
            w.active_until(at("2026-12-05T01:30:00Z")),
            Some(at("2026-12-05T03:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_midnight_covers_the_next_morning() {
        let w = window(&[jiff::civil::Weekday::Friday], "23:00", 3, "UTC");
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // 2026-07-03 is a Friday; the window runs into Saturday 02:00.
        assert_eq!(
            w.active_until(at("2026-07-04T01:00:00Z")),
            Some(at("2026-07-04T02:00:00Z"))
        );
    }
}
