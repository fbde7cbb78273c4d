//! The `clusters:` section: what to watch, how often, how to reach and
//! authenticate to it, and the thresholds of its checks.

use crate::raw::{RawSecret, Scalar};
use crate::secret::SecretRef;
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
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
    /// Its badge (`/badge/NAME.svg`) may be fetched without a token.
    pub public: bool,
    /// The requests and checks of a cluster defined in YAML (`kind: http`,
    /// or a preset); None for kinds whose checks are built in.
    pub definition: Option<crate::http::Definition>,
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

/// Username and password login (CockroachDB's `/api/v2/login/`, HTTP
/// Basic, PostgreSQL roles, Redis ACL users).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub username: String,
    /// Always set, except for PostgreSQL roles that log in by client
    /// certificate alone.
    pub password: Option<SecretRef>,
}

impl AuthConfig {
    /// The password, read from its file or variable now; empty for a role
    /// that logs in by certificate alone.
    pub fn resolve_password(&self) -> Result<String, crate::SecretError> {
        self.password
            .as_ref()
            .map_or(Ok(String::new()), |p| p.resolve())
    }
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
    /// `requests:`, and checks defined in YAML rather than built in.
    Requests,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Tls => "tls",
            Section::ClientCert => "tls.cert_file",
            Section::Auth => "auth",
            Section::Requests => "requests",
        }
    }
}

/// How a kind reaches its nodes, which decides the forms `nodes:` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP(S): `HOST:PORT` or `http(s)://HOST:PORT`.
    Http,
    /// The PostgreSQL protocol: `HOST[:PORT]` or
    /// `postgresql://HOST[:PORT][/DATABASE]` (port 5432, database
    /// `postgres`).
    Postgres,
    /// Redis (RESP): `HOST[:PORT]`, `redis://HOST[:PORT]` or
    /// `rediss://HOST[:PORT]` (port 6379).
    Redis,
}

impl Protocol {
    /// The URL scheme nodes are stored with (`tls`: whether `tls:` is set).
    fn scheme(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Protocol::Http, false) => "http",
            (Protocol::Http, true) => "https",
            (Protocol::Postgres, _) => "postgresql",
            (Protocol::Redis, false) => "redis",
            (Protocol::Redis, true) => "rediss",
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Protocol::Http => None,
            Protocol::Postgres => Some(5432),
            Protocol::Redis => Some(6379),
        }
    }

    fn forms(self) -> &'static str {
        match self {
            Protocol::Http => "HOST:PORT or http(s)://HOST:PORT without a path",
            Protocol::Postgres => "HOST[:PORT] or postgresql://HOST[:PORT][/DATABASE]",
            Protocol::Redis => "HOST[:PORT], redis://HOST[:PORT] or rediss://HOST[:PORT]",
        }
    }
}

/// Whether `host` names this machine (a plaintext connection to it never
/// crosses a network).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    /// How `kind` reaches its nodes.
    fn protocol(&self, _kind: &str) -> Protocol {
        Protocol::Http
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Option<Spanned<String>>,
    /// A ready-made definition (deploy/presets/NAME.yaml) this entry starts from.
    pub(crate) preset: Option<Spanned<String>>,
    nodes: Spanned<Vec<Spanned<String>>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    auth: Option<Spanned<RawAuth>>,
    pub(crate) requests: Option<Spanned<BTreeMap<String, Spanned<crate::http::RawRequest>>>>,
    pub(crate) checks: Option<Spanned<BTreeMap<String, Spanned<Option<RawCheck>>>>>,
    labels: Option<BTreeMap<String, String>>,
    public: Option<Spanned<Scalar>>,
}

impl RawCluster {
    /// Where the entry says what it is: `kind:`, else `preset:`, else its name.
    pub(crate) fn kind_location(&self) -> Location {
        self.kind
            .as_ref()
            .or(self.preset.as_ref())
            .map(|k| k.referenced)
            .unwrap_or(self.name.referenced)
    }

    pub(crate) fn kind_name(&self) -> &str {
        self.kind.as_ref().map(|k| k.value.as_str()).unwrap_or("")
    }

    pub(crate) fn check_location(&self, name: &str) -> Option<Location> {
        Some(self.checks.as_ref()?.value.get(name)?.referenced)
    }

    pub(crate) fn request_named(&self, name: &str) -> Option<&crate::http::RawRequest> {
        Some(&self.requests.as_ref()?.value.get(name)?.value)
    }

    pub(crate) fn request_names(&self) -> Vec<&str> {
        self.requests
            .as_ref()
            .map(|r| r.value.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
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
    password: Option<Spanned<RawSecret>>,
}

/// A check entry: thresholds of a built-in check, or (`kind: http`) the
/// whole definition of one.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub(crate) enabled: Option<Spanned<Scalar>>,
    pub(crate) warn: Option<Spanned<Scalar>>,
    pub(crate) crit: Option<Spanned<Scalar>>,
    pub(crate) request: Option<Spanned<String>>,
    pub(crate) value: Option<Spanned<String>>,
    pub(crate) unit: Option<Spanned<String>>,
    pub(crate) cluster: Option<Spanned<String>>,
    pub(crate) about: Option<Spanned<String>>,
    pub(crate) essential: Option<Spanned<Scalar>>,
}

impl RawCheck {
    /// Fields of `over` replace this entry's.
    pub(crate) fn overlay(&mut self, over: RawCheck) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            enabled, warn, crit, request, value, unit, cluster, about, essential
        );
    }

    /// Points every location at `loc` (the `preset:` line).
    pub(crate) fn relocate(&mut self, loc: Location) {
        for s in [
            &mut self.enabled,
            &mut self.warn,
            &mut self.crit,
            &mut self.essential,
        ]
        .into_iter()
        .flatten()
        {
            s.referenced = loc;
        }
        for s in [
            &mut self.request,
            &mut self.value,
            &mut self.unit,
            &mut self.cluster,
            &mut self.about,
        ]
        .into_iter()
        .flatten()
        {
            s.referenced = loc;
        }
    }

    /// The first field that only a YAML-defined check takes.
    fn definition_field(&self) -> Option<(&'static str, Location)> {
        [
            ("request", &self.request),
            ("value", &self.value),
            ("unit", &self.unit),
            ("cluster", &self.cluster),
            ("about", &self.about),
        ]
        .into_iter()
        .find_map(|(n, f)| f.as_ref().map(|f| (n, f.referenced)))
        .or_else(|| self.essential.as_ref().map(|e| ("essential", e.referenced)))
    }
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
        let mut rc = rc;
        if rc.preset.is_some() {
            crate::presets::apply(self, &mut rc, field);
        }
        let kind = rc.kind_name().to_string();
        let specs = catalog.checks(&kind);
        let defined = catalog.sections(&kind).contains(&Section::Requests);
        match &rc.kind {
            None if rc.preset.is_none() => self.err(
                &rc.name,
                &format!("{field}.kind"),
                format!(
                    "expected kind: one of {}, or preset: one of {}",
                    catalog.kinds().join(", "),
                    crate::presets::names().join(", ")
                ),
            ),
            None => {}
            Some(k) if specs.is_none() => {
                let msg = format!(
                    "unknown connector kind {:?}; expected one of: {}",
                    k.value,
                    catalog.kinds().join(", ")
                );
                self.err(k, &format!("{field}.kind"), msg);
            }
            Some(_) => self.sections_used(&rc, field, catalog.sections(&kind)),
        }
        let mut nodes = Vec::new();
        if rc.nodes.value.is_empty() {
            self.err(
                &rc.nodes,
                &format!("{field}.nodes"),
                "expected at least one node address",
            );
        }
        let protocol = catalog.protocol(&kind);
        for (j, n) in rc.nodes.value.iter().enumerate() {
            let node_field = format!("{field}.nodes[{j}]");
            if let Some(u) = self.node_url(n, &node_field, protocol, rc.tls.is_some()) {
                nodes.push(u);
            }
        }
        let (interval, timeout, max_backoff) = self.timing(&rc, field);
        let tls = match &rc.tls {
            Some(t) => self.cluster_tls(t, field),
            None => TlsConfig::default(),
        };
        // A database's own protocol has no system CA to fall back on: its
        // certificates are checked against the CA given, or not at all.
        if let Some(t) = &rc.tls
            && protocol != Protocol::Http
            && tls.ca_file.is_none()
            && !tls.insecure_skip_verify
        {
            self.error_at(
                t.referenced,
                format!("{field}.tls.ca_file"),
                "expected ca_file: the CA that signs the nodes' certificates (or insecure_skip_verify: true, which does not verify them)",
            );
        }
        let auth = rc.auth.as_ref().and_then(|a| {
            let password = match &a.value.password {
                Some(p) => Some(self.secret(p, &format!("{field}.auth.password"))?),
                // A PostgreSQL role may log in by its client certificate,
                // or as pg_hba.conf allows without a password.
                None if protocol == Protocol::Postgres => None,
                None => {
                    self.err(
                        a,
                        &format!("{field}.auth.password"),
                        "expected password: {file: PATH} or {env: NAME}",
                    );
                    return None;
                }
            };
            Some(AuthConfig {
                username: a.value.username.clone(),
                password,
            })
        });
        let public = rc
            .public
            .as_ref()
            .and_then(|p| self.flag(p, &format!("{field}.public")))
            .unwrap_or(false);
        let (checks, definition) = match specs {
            Some(_) if defined => (BTreeMap::new(), self.definition(&rc, field)),
            Some(specs) => (self.checks(&rc, field, specs), None),
            None => (BTreeMap::new(), None),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ClusterConfig {
            name,
            kind,
            nodes,
            interval: interval?,
            timeout: timeout?,
            max_backoff: max_backoff?,
            tls,
            auth,
            checks,
            labels: rc.labels.unwrap_or_default(),
            public,
            definition,
        })
    }

    /// Sections the kind does not use are errors at their line.
    fn sections_used(&mut self, rc: &RawCluster, field: &str, accepted: &[Section]) {
        let kind = rc.kind_name();
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
        if let Some(r) = &rc.requests
            && !accepted.contains(&Section::Requests)
        {
            refuse(self, r.referenced, Section::Requests);
        }
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
                Some(None) => (false, None, None, rc.kind_location()),
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
                None => (true, None, None, rc.kind_location()),
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
                if let Some((f, loc)) = entry.value.as_ref().and_then(RawCheck::definition_field) {
                    self.error_at(
                        loc,
                        format!("{field}.checks.{name}.{f}"),
                        format!(
                            "{f}: belongs to checks defined in YAML (kind: http); the checks of kind {:?} are built in and take enabled, warn and crit",
                            rc.kind_name()
                        ),
                    );
                }
                if !specs.iter().any(|s| s.name == name) {
                    let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                    self.err(
                        entry,
                        &format!("{field}.checks.{name}"),
                        format!(
                            "unknown check {name:?} for kind {:?}; expected one of: {}",
                            rc.kind_name(),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        checks
    }

    fn node_url(
        &mut self,
        s: &Spanned<String>,
        field: &str,
        protocol: Protocol,
        tls: bool,
    ) -> Option<url::Url> {
        let text = s.value.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("{}://{text}", protocol.scheme(tls))
        };
        let parsed = url::Url::parse(&with_scheme).ok().filter(|u| {
            let scheme_fits = match protocol {
                Protocol::Http => matches!(u.scheme(), "http" | "https"),
                Protocol::Postgres => matches!(u.scheme(), "postgresql" | "postgres"),
                Protocol::Redis => matches!(u.scheme(), "redis" | "rediss"),
            };
            let path_fits = match protocol {
                Protocol::Http => u.path() == "/",
                Protocol::Postgres => u
                    .path()
                    .trim_start_matches('/')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')),
                Protocol::Redis => u.path().is_empty() || u.path() == "/",
            };
            scheme_fits
                && path_fits
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none()
                && (u.port_or_known_default().is_some() || protocol.default_port().is_some())
        });
        let Some(mut u) = parsed else {
            let hint = if text.contains('@') || text.contains('?') {
                "; credentials go in auth: and TLS settings in tls:, never in the address"
            } else {
                ""
            };
            // Whatever precedes '@' may be a password: never echoed.
            let shown = match text.rsplit_once('@') {
                Some((before, after)) => match before.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://[redacted]@{after}"),
                    None => format!("[redacted]@{after}"),
                },
                None => text.to_string(),
            };
            self.err(
                s,
                field,
                format!(
                    "{shown:?} is not a node address; expected {}{hint}",
                    protocol.forms()
                ),
            );
            return None;
        };
        if protocol == Protocol::Http {
            return Some(u);
        }
        // One spelling per protocol, the port always written.
        let port = u.port().or(protocol.default_port());
        let host = u.host_str().unwrap_or_default().to_string();
        let database = u.path().trim_start_matches('/').to_string();
        if protocol == Protocol::Redis && u.scheme() == "rediss" && !tls {
            self.err(
                s,
                field,
                "rediss:// means TLS: set tls.ca_file to the CA that signs the nodes' certificates",
            );
            return None;
        }
        if !tls && !is_loopback_host(&host) {
            self.err(
                s,
                field,
                format!(
                    "{host} is not this machine: {} nodes elsewhere are reached over TLS only (the password and the answers would cross the network in clear); set tls.ca_file to the CA that signs their certificates",
                    if protocol == Protocol::Postgres { "PostgreSQL" } else { "Redis" }
                ),
            );
            return None;
        }
        let text = match protocol {
            Protocol::Postgres => format!(
                "postgresql://{host}:{}/{}",
                port.unwrap_or(5432),
                if database.is_empty() {
                    "postgres"
                } else {
                    &database
                }
            ),
            _ => format!("{}://{host}:{}", protocol.scheme(tls), port.unwrap_or(6379)),
        };
        match url::Url::parse(&text) {
            Ok(n) => u = n,
            Err(e) => {
                self.err(
                    s,
                    field,
                    format!("{:?} is not a node address: {e}", s.value),
                );
                return None;
            }
        }
        Some(u)
    }
}

/// Letters, digits, '-', '_' or '.', 1 to 63 characters: a cluster's (or
/// a check's) name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
