//! Typed YAML configuration shared by dbmon's server, collector and client.
//!
//! One file describes the clusters to watch and how the parts find each
//! other. Loading goes in two passes: serde reads the YAML into raw structs
//! whose values keep their source location ([`serde_saphyr::Spanned`]), then
//! [`validate`] turns them into the typed [`Config`], collecting *every*
//! problem it finds with its file, line, column and field, instead of stopping
//! at the first. Structural errors (an unknown field, a mapping where a list
//! belongs) are found by serde; each cluster entry is read on its own so that
//! one broken entry does not hide the errors of the others.
//!
//! Connector kinds and their checks are not known here (they live in the
//! collector, above this crate): callers pass a [`Catalog`] describing them.

mod raw;

use raw::RawCheck as RawCheckDefault;
mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secret::{SecretError, SecretRef};
use serde_saphyr::Spanned;

/// Default gRPC address of the server for people and enrollment (TLS).
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
/// Default gRPC address of the server for collectors (mutual TLS).
pub const DEFAULT_COLLECTOR_ADDR: &str = "127.0.0.1:7072";
/// Default address of the server's `/healthz` and `/metrics`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7071";

/// The whole configuration of one deployment.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub collector: CollectorConfig,
    pub client: ClientConfig,
    pub clusters: Vec<ClusterConfig>,
}

/// Where and how the server listens and how much it keeps.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// gRPC endpoint for people and enrollment: TLS with the server certificate.
    pub listen: SocketAddr,
    /// gRPC endpoint for collectors: mutual TLS, a collector certificate required.
    pub collector_listen: SocketAddr,
    /// Plain HTTP endpoint for `/healthz` and `/metrics`.
    pub http_listen: SocketAddr,
    /// Reports of history kept per cluster.
    pub history_per_cluster: usize,
    /// Reports a subscriber may fall behind before it is resynchronized.
    pub subscriber_queue: usize,
    /// Certificates, or None in the loopback-only development mode.
    pub tls: Option<ServerTls>,
    /// Directory of the CA key and join tokens, for enrolling and renewing
    /// collectors; None disables both.
    pub pki_dir: Option<PathBuf>,
    /// Lifetime of the collector certificates the server signs.
    pub collector_cert_ttl: Duration,
    /// Collector name → the clusters it may publish. Empty: no restriction.
    pub assignments: BTreeMap<String, Vec<String>>,
    /// Development only: plaintext gRPC, accepted on loopback addresses only.
    pub insecure_plaintext: bool,
    /// People's logins.
    pub auth: AuthSettings,
    /// The embedded store of reports (redb file); None: memory only, or
    /// the shared store.
    pub store: Option<PathBuf>,
    /// A PostgreSQL database that several servers share (`server.store:
    /// postgresql://...`); replaces the embedded store.
    pub shared_store: Option<SharedStore>,
    /// History older than this is dropped (the latest report of each node
    /// and check stays).
    pub history_max_age: Duration,
}

/// Where servers sharing state find PostgreSQL.
#[derive(Debug, Clone)]
pub struct SharedStore {
    /// `postgresql://USER@HOST:PORT/DATABASE[?options]`, without a password.
    pub url: String,
    /// The password, by reference.
    pub password: Option<SecretRef>,
    /// CA certificate(s) (PEM) of the database's certificate: the
    /// connection then uses TLS, always. Required unless the database is on
    /// this host (loopback or a unix socket).
    pub ca_file: Option<PathBuf>,
}

/// Where people's users, passkeys and logins live, and how long they last.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Holds `auth.json` (mode 0600: macaroon root keys); made 0700 if missing.
    pub dir: PathBuf,
    /// The URL browsers reach the server at (`https://NAME:PORT`); its host is
    /// the WebAuthn relying party, so passkeys registered for one origin
    /// do not work on another. None: `https://localhost:<listen port>`.
    pub origin: Option<String>,
    /// Lifetime of a login's macaroon.
    pub session_ttl: Duration,
    /// Lifetime of an invite URL.
    pub invite_ttl: Duration,
}

impl ServerConfig {
    /// The configured origin, or `https://localhost:<port of listen>`
    /// (`http://` in the plaintext development mode).
    pub fn origin(&self) -> String {
        self.auth.origin.clone().unwrap_or_else(|| {
            let scheme = if self.insecure_plaintext {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://localhost:{}", self.listen.port())
        })
    }
}

/// The server's certificate files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Trust bundle: the CA certificates collectors' certificates chain to
    /// (old and new during a CA rotation).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Revocation list; refused certificates take effect on reload.
    pub crl_file: Option<PathBuf>,
}

/// Identity of the collector and where it sends reports.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Names this collector in every report; defaults to the host name.
    pub id: String,
    /// Collector endpoint of the server, `https://host:port` (mutual TLS).
    pub server: String,
    /// Enrollment endpoint of the server, `https://host:port`, for `--join`.
    pub enroll_server: String,
    /// Unacknowledged reports kept in memory; older ones go to `spill_dir`
    /// (or, without one, are dropped and the loss is reported).
    pub buffer_reports: usize,
    /// Where unacknowledged reports past `buffer_reports` are kept, across
    /// restarts too; None: memory only. Defaults to `spill` next to `pki_dir`.
    pub spill_dir: Option<PathBuf>,
    /// Most bytes the spill takes; past it the oldest reports are dropped
    /// and the loss is reported.
    pub spill_max_bytes: u64,
    /// Holds `ca.crt`, `collector.<id>.crt` and `collector.<id>.key`; None
    /// only in the loopback-only development mode.
    pub pki_dir: Option<PathBuf>,
    /// Development only: plaintext `http://` to a loopback server.
    pub insecure_plaintext: bool,
    /// Optional `/healthz` endpoint: 200 while the stream to the server is up.
    pub http_listen: Option<SocketAddr>,
}

/// Where `dbmon-client` finds the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    /// CA certificate(s) that the server's certificate chains to.
    pub ca_file: Option<PathBuf>,
}

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

/// Describes the connector kinds that exist and the checks each offers.
pub trait Catalog {
    /// Every known kind, for error messages.
    fn kinds(&self) -> Vec<&'static str>;
    /// The checks of `kind`, or `None` for an unknown kind.
    fn checks(&self, kind: &str) -> Option<&'static [CheckSpec]>;
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the position is unknown.
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field, e.g. `clusters[1].interval`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path, catalog: &dyn Catalog) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        Self::parse(&text, path, catalog)
    }

    /// Validates `text`; `file` names it in error messages.
    pub fn parse(text: &str, file: &Path, catalog: &dyn Catalog) -> Result<Config, ConfigErrors> {
        let mut v = Validator {
            file,
            errors: Vec::new(),
            line_offset: 0,
        };
        let config = raw::read(text, &mut v).and_then(|raw| v.config(raw, catalog));
        match config {
            Some(c) if v.errors.is_empty() => Ok(c),
            _ => {
                v.errors.sort_by_key(|e| (e.line, e.column));
                Err(ConfigErrors(v.errors))
            }
        }
    }

    /// Reads only the `client:` section of a file, for `dbmon-client`.
    /// Other sections are left to `dbmon config check`.
    pub fn load_client(path: &Path) -> Result<ClientConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        let mut v = Validator {
            file: path,
            errors: Vec::new(),
            line_offset: 0,
        };
        let mut client = Config::embedded_default().client;
        match serde_saphyr::from_str::<raw::ClientOnly>(&text) {
            Ok(raw::ClientOnly { client: Some(c) }) => {
                if let Some(s) = c.server
                    && let Some(server) = v.endpoint(&s, "client.server")
                {
                    client.server = server;
                }
                client.ca_file = c.ca_file.map(|p| p.value);
            }
            Ok(_) => {}
            Err(e) => v.serde_error(&e, "", 0),
        }
        if v.errors.is_empty() {
            Ok(client)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    /// The configuration used when none is given: a server and collector on
    /// loopback and no clusters.
    pub fn embedded_default() -> Config {
        Config {
            server: ServerConfig {
                listen: DEFAULT_GRPC_ADDR.parse().expect("constant address"),
                collector_listen: DEFAULT_COLLECTOR_ADDR.parse().expect("constant address"),
                http_listen: DEFAULT_HTTP_ADDR.parse().expect("constant address"),
                history_per_cluster: raw::DEFAULT_HISTORY,
                subscriber_queue: raw::DEFAULT_SUBSCRIBER_QUEUE,
                tls: None,
                pki_dir: None,
                collector_cert_ttl: raw::DEFAULT_COLLECTOR_TTL,
                assignments: BTreeMap::new(),
                insecure_plaintext: false,
                store: None,
                shared_store: None,
                history_max_age: raw::DEFAULT_HISTORY_MAX_AGE,
                auth: AuthSettings {
                    dir: PathBuf::from("dbmon-auth"),
                    origin: None,
                    session_ttl: raw::DEFAULT_SESSION_TTL,
                    invite_ttl: raw::DEFAULT_INVITE_TTL,
                },
            },
            collector: CollectorConfig {
                id: default_collector_id(),
                server: format!("https://{DEFAULT_COLLECTOR_ADDR}"),
                enroll_server: format!("https://{DEFAULT_GRPC_ADDR}"),
                buffer_reports: raw::DEFAULT_BUFFER,
                spill_dir: None,
                spill_max_bytes: raw::DEFAULT_SPILL_MAX,
                pki_dir: None,
                insecure_plaintext: false,
                http_listen: None,
            },
            client: ClientConfig {
                server: format!("https://{DEFAULT_GRPC_ADDR}"),
                ca_file: None,
            },
            clusters: Vec::new(),
        }
    }
}

fn default_collector_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "collector".to_string())
}

/// Collects errors while turning raw structs into typed ones.
pub(crate) struct Validator<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
    /// Lines before the text being validated (a cluster entry read alone).
    line_offset: u64,
}

impl Validator<'_> {
    pub(crate) fn error_at(
        &mut self,
        loc: serde_saphyr::Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: if loc.line() == 0 {
                0
            } else {
                loc.line() + self.line_offset
            },
            column: loc.column(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn err<T>(&mut self, s: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.error_at(s.referenced, field, message);
    }

    fn config(&mut self, raw: raw::RawConfig, catalog: &dyn Catalog) -> Option<Config> {
        let mut config = Config::embedded_default();
        if let Some(s) = raw.server {
            if let Some(a) = s.listen {
                config.server.listen = self.addr(&a, "server.listen")?;
            }
            if let Some(a) = s.http_listen {
                config.server.http_listen = self.addr(&a, "server.http_listen")?;
            }
            if let Some(n) = s.history_per_cluster {
                config.server.history_per_cluster =
                    self.positive(&n, "server.history_per_cluster")?;
            }
            if let Some(n) = s.subscriber_queue {
                config.server.subscriber_queue = self.positive(&n, "server.subscriber_queue")?;
            }
            if let Some(a) = s.collector_listen {
                config.server.collector_listen = self.addr(&a, "server.collector_listen")?;
            }
            if let Some(d) = &s.collector_cert_ttl {
                let ttl = self.duration(d, "server.collector_cert_ttl")?;
                if ttl < Duration::from_secs(5) {
                    self.err(d, "server.collector_cert_ttl", "expected at least 5s");
                }
                config.server.collector_cert_ttl = ttl;
            }
            if let Some(a) = s.assignments {
                config.server.assignments = a.value;
            }
            config.server.pki_dir = s.pki_dir.as_ref().map(|p| p.value.clone());
            if let Some(a) = &s.auth {
                if let Some(d) = &a.dir {
                    config.server.auth.dir = d.value.clone();
                }
                for (d, field, slot) in [
                    (
                        &a.session_ttl,
                        "server.auth.session_ttl",
                        &mut config.server.auth.session_ttl,
                    ),
                    (
                        &a.invite_ttl,
                        "server.auth.invite_ttl",
                        &mut config.server.auth.invite_ttl,
                    ),
                ] {
                    if let Some(d) = d {
                        let ttl = self.duration(d, field)?;
                        if ttl < Duration::from_secs(60) {
                            self.err(d, field, "expected at least 1m");
                        }
                        *slot = ttl;
                    }
                }
                if let Some(o) = &a.origin {
                    config.server.auth.origin = Some(self.origin(o)?);
                }
            } else if let Some(d) = &s.pki_dir {
                // Next to the PKI by default: both are the server's state.
                if let Some(parent) = d.value.parent() {
                    config.server.auth.dir = parent.join("auth");
                }
            }
            // Reports are kept on disk next to the PKI unless told otherwise.
            if let Some(d) = &s.history_max_age {
                let age = self.duration(d, "server.history_max_age")?;
                if age < Duration::from_secs(60) {
                    self.err(d, "server.history_max_age", "expected at least 1m");
                }
                config.server.history_max_age = age;
            }
            if let Some(v) = s.store.as_ref().filter(|v| {
                v.value.starts_with("postgres://") || v.value.starts_with("postgresql://")
            }) {
                let url = self.postgres_url(v)?;
                let ca_file = s.store_ca_file.as_ref().map(|c| c.value.clone());
                if ca_file.is_none() && !postgres_is_local(&url) {
                    self.err(
                        v,
                        "server.store",
                        "a database on another host is reached over TLS only: set server.store_ca_file to the CA certificate that signed the database's certificate",
                    );
                }
                config.server.shared_store = Some(SharedStore {
                    url,
                    password: match &s.store_password {
                        Some(p) => Some(self.secret(p, "server.store_password")?),
                        None => None,
                    },
                    ca_file,
                });
            } else {
                if let Some(p) = &s.store_password {
                    self.err(
                        p,
                        "server.store_password",
                        "only a postgresql:// server.store takes a password",
                    );
                }
                if let Some(c) = &s.store_ca_file {
                    self.err(
                        c,
                        "server.store_ca_file",
                        "only a postgresql:// server.store takes a CA file",
                    );
                }
            }
            config.server.store = match &s.store {
                _ if config.server.shared_store.is_some() => None,
                Some(v) if v.value == "memory" => None,
                Some(v) if v.value.trim().is_empty() => {
                    self.err(
                        v,
                        "server.store",
                        "expected a file path, or `memory` to keep reports in memory only",
                    );
                    None
                }
                Some(v) => Some(PathBuf::from(&v.value)),
                None => s.pki_dir.as_ref().and_then(|d| {
                    d.value
                        .parent()
                        .map(|p| p.join("data").join("reports.redb"))
                }),
            };
            let plaintext = s.insecure_plaintext.as_ref().is_some_and(|p| p.value);
            config.server.insecure_plaintext = plaintext;
            if plaintext {
                let server = &config.server;
                for (addr, field) in [
                    (server.listen, "server.listen"),
                    (server.collector_listen, "server.collector_listen"),
                ] {
                    if !addr.ip().is_loopback() {
                        let loc = s
                            .insecure_plaintext
                            .as_ref()
                            .map(|p| p.referenced)
                            .unwrap_or(serde_saphyr::Location::UNKNOWN);
                        self.error_at(loc, "server.insecure_plaintext", format!(
                            "plaintext is for development on loopback only, but {field} is {addr}; remove insecure_plaintext and configure tls"
                        ));
                    }
                }
                if s.tls.is_some() {
                    self.error_at(
                        s.insecure_plaintext
                            .as_ref()
                            .map(|p| p.referenced)
                            .unwrap_or(serde_saphyr::Location::UNKNOWN),
                        "server.insecure_plaintext",
                        "insecure_plaintext and tls exclude each other; keep one",
                    );
                }
            } else {
                let dir = s.pki_dir.as_ref().map(|p| p.value.clone());
                let t = s.tls.as_ref();
                let pick = |f: Option<&Spanned<PathBuf>>, name: &str| {
                    f.map(|p| p.value.clone())
                        .or_else(|| dir.as_ref().map(|d| d.join(name)))
                };
                let tls = (
                    pick(t.and_then(|t| t.ca_file.as_ref()), "ca.crt"),
                    pick(t.and_then(|t| t.cert_file.as_ref()), "server.crt"),
                    pick(t.and_then(|t| t.key_file.as_ref()), "server.key"),
                );
                config.server.tls = match tls {
                    (Some(ca_file), Some(cert_file), Some(key_file)) => Some(ServerTls {
                        ca_file,
                        cert_file,
                        key_file,
                        crl_file: t
                            .and_then(|t| t.crl_file.as_ref())
                            .map(|p| p.value.clone())
                            .or_else(|| {
                                dir.as_ref()
                                    .map(|d| d.join("ca.crl"))
                                    .filter(|p| p.exists())
                            }),
                    }),
                    _ => None,
                };
            }
        }
        if let Some(c) = raw.collector {
            if let Some(id) = c.id {
                if id.value.trim().is_empty() {
                    self.err(&id, "collector.id", "must not be empty");
                } else {
                    config.collector.id = id.value;
                }
            }
            let plaintext = c.insecure_plaintext.as_ref().is_some_and(|p| p.value);
            config.collector.insecure_plaintext = plaintext;
            if let Some(s) = c.server {
                config.collector.server = self.endpoint(&s, "collector.server")?;
                if config.collector.server.starts_with("http://") && !plaintext {
                    self.err(&s, "collector.server", "plaintext http:// needs collector.insecure_plaintext: true (development on loopback only); expected https://HOST:PORT");
                }
            }
            if let Some(s) = c.enroll_server {
                config.collector.enroll_server = self.endpoint(&s, "collector.enroll_server")?;
            }
            if let Some(n) = c.buffer_reports {
                config.collector.buffer_reports = self.positive(&n, "collector.buffer_reports")?;
            }
            config.collector.spill_dir = match &c.spill_dir {
                Some(v) if v.value == "none" => None,
                Some(v) if v.value.trim().is_empty() => {
                    self.err(
                        v,
                        "collector.spill_dir",
                        "expected a directory, or `none` to buffer in memory only",
                    );
                    None
                }
                Some(v) => Some(PathBuf::from(&v.value)),
                // Next to the PKI by default: both are the collector's state.
                None => c
                    .pki_dir
                    .as_ref()
                    .and_then(|d| d.value.parent().map(|p| p.join("spill"))),
            };
            if let Some(v) = &c.spill_max_size {
                config.collector.spill_max_bytes = self.size(v, "collector.spill_max_size")?;
            }
            config.collector.pki_dir = c.pki_dir.map(|p| p.value);
            if let Some(a) = c.http_listen {
                config.collector.http_listen = Some(self.addr(&a, "collector.http_listen")?);
            }
        }
        if let Some(c) = raw.client {
            if let Some(s) = c.server {
                config.client.server = self.endpoint(&s, "client.server")?;
            }
            config.client.ca_file = c.ca_file.map(|p| p.value);
        }
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        for (i, entry) in raw.clusters.into_iter().enumerate() {
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
            config.clusters.extend(cluster);
        }
        Some(config)
    }

    fn cluster(
        &mut self,
        rc: raw::RawCluster,
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
        let interval = match &rc.interval {
            Some(d) => self.duration(d, &format!("{field}.interval")),
            None => Some(raw::DEFAULT_INTERVAL),
        };
        let timeout = match &rc.timeout {
            Some(d) => self.duration(d, &format!("{field}.timeout")),
            None => interval.map(|i| (i / 2).min(raw::DEFAULT_TIMEOUT)),
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
            None => interval.map(|i| (i * 8).clamp(i, raw::DEFAULT_MAX_BACKOFF.max(i))),
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
        let tls = match rc.tls {
            Some(t) => {
                if t.cert_file.is_some() != t.key_file.is_some() {
                    self.error_at(
                        t.cert_file
                            .as_ref()
                            .or(t.key_file.as_ref())
                            .map(|s| s.referenced)
                            .unwrap_or(rc.name.referenced),
                        format!("{field}.tls"),
                        "cert_file and key_file go together; give both or neither",
                    );
                }
                TlsConfig {
                    ca_file: t.ca_file.map(|s| s.value),
                    cert_file: t.cert_file.map(|s| s.value),
                    key_file: t.key_file.map(|s| s.value),
                    insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
                }
            }
            None => TlsConfig::default(),
        };
        let auth = rc.auth.and_then(|a| {
            let password = self.secret(&a.password, &format!("{field}.auth.password"))?;
            Some(AuthConfig {
                username: a.username,
                password,
            })
        });
        let mut checks = BTreeMap::new();
        if let Some(specs) = specs {
            let chosen = rc.checks.as_ref();
            for spec in specs {
                let over = chosen.map(|c| c.value.get(spec.name));
                let (enabled, warn, crit, loc) = match over {
                    // `checks` given and this one not listed: not run.
                    Some(None) => (false, None, None, rc.kind.referenced),
                    Some(Some(o)) => {
                        let d = RawCheckDefault::default();
                        let v = o.value.as_ref().unwrap_or(&d);
                        (v.enabled.unwrap_or(true), v.warn, v.crit, o.referenced)
                    }
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
                            format!("{field}.checks.{}", spec.name),
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
        }
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

    fn addr(&mut self, s: &Spanned<String>, field: &str) -> Option<SocketAddr> {
        match s.value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is not an address; expected IP:PORT such as 127.0.0.1:7070",
                        s.value
                    ),
                );
                None
            }
        }
    }

    /// A WebAuthn origin: `https://NAME[:PORT]` (or `http://localhost`), no
    /// path; NAME a domain, because browsers refuse passkeys for IPs.
    fn origin(&mut self, s: &Spanned<String>) -> Option<String> {
        let field = "server.auth.origin";
        let u = match url::Url::parse(&s.value) {
            Ok(u) => u,
            Err(e) => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is not a URL ({e}); expected https://NAME:PORT",
                        s.value
                    ),
                );
                return None;
            }
        };
        let local = u.host_str() == Some("localhost");
        let problem = if !(u.scheme() == "https" || (u.scheme() == "http" && local)) {
            Some("expected https:// (plain http:// only for localhost)")
        } else if !matches!(u.host(), Some(url::Host::Domain(_))) {
            Some(
                "expected a DNS name: browsers refuse passkeys for IP addresses; use the name people type, or localhost",
            )
        } else if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
            Some("expected scheme, name and port only, without a path")
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.err(s, field, format!("{:?}: {p}", s.value));
                None
            }
            None => Some(s.value.trim_end_matches('/').to_string()),
        }
    }

    fn endpoint(&mut self, s: &Spanned<String>, field: &str) -> Option<String> {
        match url::Url::parse(&s.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Some(s.value.trim_end_matches('/').to_string())
            }
            _ => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is not a server URL; expected http://HOST:PORT or https://HOST:PORT",
                        s.value
                    ),
                );
                None
            }
        }
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

    fn duration(&mut self, s: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(s.value.trim()) {
            Ok(d) if d >= Duration::from_millis(100) => Some(d),
            Ok(_) => {
                self.err(
                    s,
                    field,
                    format!("{:?} is too short; expected at least 100ms", s.value),
                );
                None
            }
            Err(_) => {
                self.err(
                    s,
                    field,
                    format!("{:?} is not a duration; expected a number and a unit, like 500ms, 10s or 1m", s.value),
                );
                None
            }
        }
    }

    /// A PostgreSQL URL with a user, a host and a database, and no password.
    fn postgres_url(&mut self, v: &Spanned<String>) -> Option<String> {
        let field = "server.store";
        let u = match url::Url::parse(&v.value) {
            Ok(u) => u,
            Err(e) => {
                self.err(
                    v,
                    field,
                    format!("not a URL ({e}); expected postgresql://USER@HOST:PORT/DATABASE"),
                );
                return None;
            }
        };
        if u.password().is_some() {
            self.err(v, field, "secrets are never written inline; remove the password from the URL and give it as server.store_password: {file: PATH} or {env: VARIABLE}");
            return None;
        }
        let db = u.path().trim_start_matches('/');
        if u.username().is_empty()
            || u.host_str().is_none_or(str::is_empty)
            || db.is_empty()
            || db.contains('/')
        {
            self.err(
                v,
                field,
                format!(
                    "{:?}: expected postgresql://USER@HOST:PORT/DATABASE",
                    v.value
                ),
            );
            return None;
        }
        Some(v.value.clone())
    }

    /// A size such as `64MiB`, `1GiB`, `500MB` or a number of bytes; at
    /// least 64KiB.
    fn size(&mut self, s: &Spanned<String>, field: &str) -> Option<u64> {
        match parse_size(&s.value) {
            Some(n) if n >= 64 << 10 => Some(n),
            Some(_) => {
                self.err(
                    s,
                    field,
                    format!("{:?} is too small; expected at least 64KiB", s.value),
                );
                None
            }
            None => {
                self.err(
                    s,
                    field,
                    format!("{:?} is not a size; expected a number and a unit, like 64MiB, 1GiB or 500MB", s.value),
                );
                None
            }
        }
    }

    fn positive(&mut self, n: &Spanned<u64>, field: &str) -> Option<usize> {
        if n.value == 0 {
            self.err(n, field, "expected a number greater than 0");
            return None;
        }
        Some(n.value as usize)
    }

    fn secret(&mut self, s: &Spanned<raw::RawSecret>, field: &str) -> Option<SecretRef> {
        match &s.value {
            raw::RawSecret::Inline(_) => {
                self.err(
                    s,
                    field,
                    "secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
                );
                None
            }
            raw::RawSecret::Ref(r) => match (&r.file, &r.env) {
                (Some(f), None) => Some(SecretRef::File(f.clone())),
                (None, Some(e)) if !e.is_empty() => Some(SecretRef::Env(e.clone())),
                _ => {
                    self.err(
                        s,
                        field,
                        "expected exactly one of file: PATH or env: VARIABLE",
                    );
                    None
                }
            },
        }
    }
}

/// Whether a PostgreSQL URL names this host: loopback or a unix socket.
fn postgres_is_local(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.host() {
        // Hosts of postgresql:// URLs are opaque to the URL parser: an
        // address comes as text.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.starts_with("%2F")
                || d.starts_with("%2f")
                || d.trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Bytes in a size written as a number and an optional unit (B, KB, MB,
/// GB, KiB, MiB, GiB).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
