//! The `clusters:` section: what to watch, how often, how to reach and
//! authenticate to it, and the thresholds of its checks.

use crate::raw::{RawSecret, Scalar};
use crate::secret::SecretRef;
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One watched cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    /// Connector kind: `etcd`, `cockroachdb`, ...
    pub kind: String,
    /// Base URLs of the nodes' HTTP APIs.
    pub nodes: Vec<url::Url>,
    pub interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Longest wait between polls while no node answers.
    pub max_backoff: Duration,
    pub tls: TlsConfig,
    pub auth: Option<AuthConfig>,
    /// The checks to run, with thresholds resolved against the kind's
    /// defaults. Always holds every enabled check of the kind.
    pub checks: BTreeMap<String, CheckConfig>,
    pub labels: BTreeMap<String, String>,
}

/// TLS towards a cluster's nodes.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// CA certificate(s) that sign the cluster's certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for clusters that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate (PEM); must not be readable by others.
    pub key_file: Option<PathBuf>,
    /// Skip verifying the cluster's certificate. Logged as a warning at every start.
    pub insecure_skip_verify: bool,
}

/// Username and password login (CockroachDB's `/api/v2/login/`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub username: String,
    pub password: SecretRef,
}

/// Resolved thresholds of one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckConfig {
    pub direction: Direction,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

/// Which way a value goes bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bad when the value is greater than the threshold.
    Above,
    /// Bad when the value is less than the threshold.
    Below,
}

/// Outcome of comparing a value with thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Crit,
}

impl CheckConfig {
    /// Compares `value` with the thresholds: crit wins over warn.
    pub fn level(&self, value: f64) -> Level {
        let bad = |t: f64| match self.direction {
            Direction::Above => value > t,
            Direction::Below => value < t,
        };
        if self.crit.is_some_and(bad) {
            Level::Crit
        } else if self.warn.is_some_and(bad) {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

/// A check a connector kind offers, with its defaults.
#[derive(Debug, Clone, Copy)]
pub struct CheckSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub unit: &'static str,
    pub direction: Direction,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

/// An optional part of a cluster entry that a kind may or may not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `tls.ca_file` and `tls.insecure_skip_verify`: verifying the nodes.
    Tls,
    /// `tls.cert_file` and `tls.key_file`: a client certificate.
    ClientCert,
    /// `auth:` username and password.
    Auth,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Tls => "tls",
            Section::ClientCert => "tls.cert_file",
            Section::Auth => "auth",
        }
    }
}

/// Describes the connector kinds that exist and the checks each offers.
pub trait Catalog {
    /// Every known kind, for error messages.
    fn kinds(&self) -> Vec<&'static str>;
    /// The checks of `kind`, or `None` for an unknown kind.
    fn checks(&self, kind: &str) -> Option<&'static [CheckSpec]>;
    /// The optional sections `kind` uses; any other is an error where it is
    /// written, rather than ignored.
    fn sections(&self, kind: &str) -> &'static [Section];
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) name: Spanned<String>,
    kind: Spanned<String>,
    nodes: Spanned<Vec<Spanned<String>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    auth: Option<Spanned<RawAuth>>,
    checks: Option<Spanned<BTreeMap<String, Spanned<Option<RawCheck>>>>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Spanned<PathBuf>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    insecure_skip_verify: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: String,
    password: Spanned<RawSecret>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    enabled: Option<Spanned<Scalar>>,
    warn: Option<Spanned<Scalar>>,
    crit: Option<Spanned<Scalar>>,
}

impl Validator<'_> {
    /// Every entry of `clusters:` (None: an entry that could not be read,
    /// already reported), with the line offset of its text.
    pub(crate) fn clusters(
        &mut self,
        entries: Vec<Option<(RawCluster, u64)>>,
        catalog: &dyn Catalog,
    ) -> Vec<ClusterConfig> {
        let mut out = Vec::new();
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let Some((rc, line_offset)) = entry else {
                continue;
            };
            self.line_offset = line_offset;
            let field = format!("clusters[{i}]");
            if let Some(first) = names.get(&rc.name.value) {
                let msg = format!(
                    "duplicate cluster name {:?} (first defined at line {}); names must be unique",
                    rc.name.value, first
                );
                self.err(&rc.name, &format!("{field}.name"), msg);
            } else {
                names.insert(
                    rc.name.value.clone(),
                    rc.name.referenced.line() + line_offset,
                );
            }
            let cluster = self.cluster(rc, &field, catalog);
            self.line_offset = 0;
            out.extend(cluster);
        }
        out
    }

    fn cluster(
        &mut self,
        rc: RawCluster,
        field: &str,
        catalog: &dyn Catalog,
    ) -> Option<ClusterConfig> {
        let before = self.errors.len();
        let name = rc.name.value.clone();
        if !valid_name(&name) {
            self.err(
                &rc.name,
                &format!("{field}.name"),
                "expected a name of letters, digits, '-', '_' or '.', 1 to 63 characters",
            );
        }
        let specs = catalog.checks(&rc.kind.value);
        if specs.is_none() {
            let msg = format!(
                "unknown connector kind {:?}; expected one of: {}",
                rc.kind.value,
                catalog.kinds().join(", ")
            );
            self.err(&rc.kind, &format!("{field}.kind"), msg);
        } else {
            self.sections_used(&rc, field, catalog.sections(&rc.kind.value));
        }
        let mut nodes = Vec::new();
        if rc.nodes.value.is_empty() {
            self.err(
                &rc.nodes,
                &format!("{field}.nodes"),
                "expected at least one node address",
            );
        }
        for (j, n) in rc.nodes.value.iter().enumerate() {
            if let Some(u) = self.node_url(n, &format!("{field}.nodes[{j}]"), rc.tls.is_some()) {
                nodes.push(u);
            }
        }
        let (interval, timeout, max_backoff) = self.timing(&rc, field);
        let tls = match &rc.tls {
            Some(t) => self.cluster_tls(t, field),
            None => TlsConfig::default(),
        };
        let auth = rc.auth.as_ref().and_then(|a| {
            let password = self.secret(&a.value.password, &format!("{field}.auth.password"))?;
            Some(AuthConfig {
                username: a.value.username.clone(),
                password,
            })
        });
        let checks = match specs {
            Some(specs) => self.checks(&rc, field, specs),
            None => BTreeMap::new(),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ClusterConfig {
            name,
            kind: rc.kind.value,
            nodes,
            interval: interval?,
            timeout: timeout?,
            max_backoff: max_backoff?,
            tls,
            auth,
            checks,
            labels: rc.labels.unwrap_or_default(),
        })
    }

    /// Sections the kind does not use are errors at their line.
    fn sections_used(&mut self, rc: &RawCluster, field: &str, accepted: &[Section]) {
        let kind = &rc.kind.value;
        let refuse = |v: &mut Self, loc, section: Section| {
            v.error_at(
                loc,
                format!("{field}.{}", section.name()),
                format!(
                    "kind {kind:?} does not use {}; remove it (this kind accepts: {})",
                    section.name(),
                    if accepted.is_empty() {
                        "none of tls, auth".to_string()
                    } else {
                        accepted
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
        };
        if let Some(a) = &rc.auth
            && !accepted.contains(&Section::Auth)
        {
            refuse(self, a.referenced, Section::Auth);
        }
        if let Some(t) = &rc.tls {
            if !accepted.contains(&Section::Tls) {
                refuse(self, t.referenced, Section::Tls);
            } else if let Some(c) = t.value.cert_file.as_ref().or(t.value.key_file.as_ref())
                && !accepted.contains(&Section::ClientCert)
            {
                refuse(self, c.referenced, Section::ClientCert);
            }
        }
    }

    /// Interval, timeout and backoff, with defaults derived from each other.
    fn timing(
        &mut self,
        rc: &RawCluster,
        field: &str,
    ) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        let interval = match &rc.interval {
            Some(d) => self.duration(d, &format!("{field}.interval")),
            None => Some(DEFAULT_INTERVAL),
        };
        let timeout = match &rc.timeout {
            Some(d) => self.duration(d, &format!("{field}.timeout")),
            None => interval.map(|i| (i / 2).min(DEFAULT_TIMEOUT)),
        };
        if let (Some(i), Some(t), Some(ts)) = (interval, timeout, &rc.timeout)
            && t > i
        {
            let msg = format!(
                "timeout {} is longer than the interval {}; expected timeout <= interval",
                humantime::format_duration(t),
                humantime::format_duration(i)
            );
            self.err(ts, &format!("{field}.timeout"), msg);
        }
        let max_backoff = match &rc.max_backoff {
            Some(d) => self.duration(d, &format!("{field}.max_backoff")),
            None => interval.map(|i| (i * 8).clamp(i, DEFAULT_MAX_BACKOFF.max(i))),
        };
        if let (Some(i), Some(b), Some(bs)) = (interval, max_backoff, &rc.max_backoff)
            && b < i
        {
            self.err(
                bs,
                &format!("{field}.max_backoff"),
                "expected a max_backoff at least as long as the interval",
            );
        }
        (interval, timeout, max_backoff)
    }

    fn cluster_tls(&mut self, t: &Spanned<RawTls>, field: &str) -> TlsConfig {
        let raw = &t.value;
        if raw.cert_file.is_some() != raw.key_file.is_some() {
            self.error_at(
                raw.cert_file
                    .as_ref()
                    .or(raw.key_file.as_ref())
                    .map(|s| s.referenced)
                    .unwrap_or(t.referenced),
                format!("{field}.tls"),
                "cert_file and key_file go together; give both or neither",
            );
        }
        let skip = raw
            .insecure_skip_verify
            .as_ref()
            .and_then(|s| self.flag(s, &format!("{field}.tls.insecure_skip_verify")))
            .unwrap_or(false);
        TlsConfig {
            ca_file: raw.ca_file.as_ref().map(|s| s.value.clone()),
            cert_file: raw.cert_file.as_ref().map(|s| s.value.clone()),
            key_file: raw.key_file.as_ref().map(|s| s.value.clone()),
            insecure_skip_verify: skip,
        }
    }

    /// The kind's checks with the entry's overrides; unknown names and
    /// inverted thresholds are errors.
    fn checks(
        &mut self,
        rc: &RawCluster,
        field: &str,
        specs: &[CheckSpec],
    ) -> BTreeMap<String, CheckConfig> {
        let mut checks = BTreeMap::new();
        let chosen = rc.checks.as_ref();
        for spec in specs {
            let over = chosen.map(|c| c.value.get(spec.name));
            let check_field = format!("{field}.checks.{}", spec.name);
            let (enabled, warn, crit, loc) = match over {
                // `checks` given and this one not listed: not run.
                Some(None) => (false, None, None, rc.kind.referenced),
                Some(Some(o)) => match &o.value {
                    Some(v) => (
                        v.enabled
                            .as_ref()
                            .and_then(|e| self.flag(e, &format!("{check_field}.enabled")))
                            .unwrap_or(true),
                        v.warn
                            .as_ref()
                            .and_then(|n| self.number(n, &format!("{check_field}.warn"))),
                        v.crit
                            .as_ref()
                            .and_then(|n| self.number(n, &format!("{check_field}.crit"))),
                        o.referenced,
                    ),
                    None => (true, None, None, o.referenced),
                },
                None => (true, None, None, rc.kind.referenced),
            };
            if !enabled {
                continue;
            }
            let c = CheckConfig {
                direction: spec.direction,
                warn: warn.or(spec.warn),
                crit: crit.or(spec.crit),
            };
            if let (Some(w), Some(cr)) = (c.warn, c.crit) {
                let inverted = match c.direction {
                    Direction::Above => w > cr,
                    Direction::Below => w < cr,
                };
                if inverted {
                    let (word, cmp) = match c.direction {
                        Direction::Above => ("higher", "warn <= crit"),
                        Direction::Below => ("lower", "warn >= crit"),
                    };
                    self.error_at(
                        loc,
                        check_field,
                        format!(
                            "warn {w} and crit {cr} are inverted: {} is bad when {word}, so expected {cmp}",
                            spec.name
                        ),
                    );
                }
            }
            checks.insert(spec.name.to_string(), c);
        }
        if let Some(chosen) = chosen {
            for (name, entry) in &chosen.value {
                if !specs.iter().any(|s| s.name == name) {
                    let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                    self.err(
                        entry,
                        &format!("{field}.checks.{name}"),
                        format!(
                            "unknown check {name:?} for kind {:?}; expected one of: {}",
                            rc.kind.value,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        checks
    }

    fn node_url(&mut self, s: &Spanned<String>, field: &str, tls: bool) -> Option<url::Url> {
        let text = s.value.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("{}://{text}", if tls { "https" } else { "http" })
        };
        match url::Url::parse(&with_scheme) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.port_or_known_default().is_some()
                    && u.path() == "/" =>
            {
                Some(u)
            }
            _ => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is not a node address; expected HOST:PORT or http(s)://HOST:PORT without a path",
                        s.value
                    ),
                );
                None
            }
        }
    }
}

/// Letters, digits, '-', '_' or '.', 1 to 63 characters.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
