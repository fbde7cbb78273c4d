//! The `server:` section: where the server listens, its certificates, its
//! store and people's logins.

use crate::raw::{RawSecret, Scalar};
use crate::secret::SecretRef;
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default gRPC address of the server for people and enrollment (TLS).
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
/// Default gRPC address of the server for collectors (mutual TLS).
pub const DEFAULT_COLLECTOR_ADDR: &str = "127.0.0.1:7072";
/// Default address of the server's `/healthz` and `/metrics`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7071";

const DEFAULT_HISTORY: usize = 1000;
const DEFAULT_SUBSCRIBER_QUEUE: usize = 1024;
const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_SERVICE_TOKEN_MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_COLLECTOR_TTL: Duration = Duration::from_secs(7 * 86_400);

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
    /// The URL people reach the server at, for links in notifications;
    /// defaults to the sign-in origin.
    pub external_url: Option<String>,
    /// The longest silence people may set.
    pub max_silence: Duration,
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
    /// The longest a service account's token may live (`dbmon token mint --ttl`).
    pub service_token_max_ttl: Duration,
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

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_GRPC_ADDR.parse().expect("constant address"),
            collector_listen: DEFAULT_COLLECTOR_ADDR.parse().expect("constant address"),
            http_listen: DEFAULT_HTTP_ADDR.parse().expect("constant address"),
            history_per_cluster: DEFAULT_HISTORY,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
            tls: None,
            pki_dir: None,
            collector_cert_ttl: DEFAULT_COLLECTOR_TTL,
            assignments: BTreeMap::new(),
            insecure_plaintext: false,
            store: None,
            shared_store: None,
            history_max_age: DEFAULT_HISTORY_MAX_AGE,
            external_url: None,
            max_silence: DEFAULT_MAX_SILENCE,
            auth: AuthSettings {
                dir: PathBuf::from("dbmon-auth"),
                origin: None,
                session_ttl: DEFAULT_SESSION_TTL,
                invite_ttl: DEFAULT_INVITE_TTL,
                service_token_max_ttl: DEFAULT_SERVICE_TOKEN_MAX_TTL,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    listen: Option<Spanned<String>>,
    collector_listen: Option<Spanned<String>>,
    http_listen: Option<Spanned<String>>,
    history_per_cluster: Option<Spanned<Scalar>>,
    subscriber_queue: Option<Spanned<Scalar>>,
    pki_dir: Option<Spanned<PathBuf>>,
    tls: Option<RawServerTls>,
    collector_cert_ttl: Option<Spanned<String>>,
    assignments: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    insecure_plaintext: Option<Spanned<Scalar>>,
    auth: Option<RawPeopleAuth>,
    store: Option<Spanned<String>>,
    store_password: Option<Spanned<RawSecret>>,
    store_ca_file: Option<Spanned<PathBuf>>,
    history_max_age: Option<Spanned<String>>,
    external_url: Option<Spanned<String>>,
    max_silence: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeopleAuth {
    dir: Option<Spanned<PathBuf>>,
    origin: Option<Spanned<String>>,
    session_ttl: Option<Spanned<String>>,
    invite_ttl: Option<Spanned<String>>,
    service_token_max_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    ca_file: Option<Spanned<PathBuf>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    crl_file: Option<Spanned<PathBuf>>,
}

impl Validator<'_> {
    /// Applies the `server:` section over the defaults in `out`, recording
    /// every problem.
    pub(crate) fn server(&mut self, s: RawServer, out: &mut ServerConfig) {
        if let Some(a) = s
            .listen
            .as_ref()
            .and_then(|a| self.addr(a, "server.listen"))
        {
            out.listen = a;
        }
        if let Some(a) = s
            .http_listen
            .as_ref()
            .and_then(|a| self.addr(a, "server.http_listen"))
        {
            out.http_listen = a;
        }
        if let Some(a) = s
            .collector_listen
            .as_ref()
            .and_then(|a| self.addr(a, "server.collector_listen"))
        {
            out.collector_listen = a;
        }
        if let Some(n) = s
            .history_per_cluster
            .as_ref()
            .and_then(|n| self.positive(n, "server.history_per_cluster"))
        {
            out.history_per_cluster = n;
        }
        if let Some(n) = s
            .subscriber_queue
            .as_ref()
            .and_then(|n| self.positive(n, "server.subscriber_queue"))
        {
            out.subscriber_queue = n;
        }
        if let Some(d) = &s.collector_cert_ttl {
            let field = "server.collector_cert_ttl";
            if let Some(ttl) = self.duration_at_least(d, field, Duration::from_secs(5)) {
                out.collector_cert_ttl = ttl;
            }
        }
        if let Some(a) = &s.assignments {
            out.assignments = a.value.clone();
        }
        out.pki_dir = s.pki_dir.as_ref().map(|p| p.value.clone());
        match &s.auth {
            Some(a) => self.people_auth(a, &mut out.auth),
            None => {
                // Next to the PKI by default: both are the server's state.
                if let Some(parent) = s.pki_dir.as_ref().and_then(|d| d.value.parent()) {
                    out.auth.dir = parent.join("auth");
                }
            }
        }
        if let Some(d) = &s.history_max_age {
            let field = "server.history_max_age";
            if let Some(age) = self.at_least_a_minute(d, field) {
                out.history_max_age = age;
            }
        }
        if let Some(u) = &s.external_url {
            match url::Url::parse(&u.value) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {
                    out.external_url = Some(u.value.trim_end_matches('/').to_string())
                }
                _ => self.err(
                    u,
                    "server.external_url",
                    format!("{:?} is not a URL; expected https://NAME[:PORT]", u.value),
                ),
            }
        }
        if let Some(d) = &s.max_silence
            && let Some(m) = self.at_least_a_minute(d, "server.max_silence")
        {
            out.max_silence = m;
        }
        self.store(&s, out);
        let plaintext = match &s.insecure_plaintext {
            Some(p) => self
                .flag(p, "server.insecure_plaintext")
                .unwrap_or_default(),
            None => false,
        };
        out.insecure_plaintext = plaintext;
        if plaintext {
            let loc = s
                .insecure_plaintext
                .as_ref()
                .map(|p| p.referenced)
                .unwrap_or(Location::UNKNOWN);
            for (addr, field) in [
                (out.listen, "server.listen"),
                (out.collector_listen, "server.collector_listen"),
            ] {
                if !addr.ip().is_loopback() {
                    self.error_at(loc, "server.insecure_plaintext", format!(
                        "plaintext is for development on loopback only, but {field} is {addr}; remove insecure_plaintext and configure tls"
                    ));
                }
            }
            if s.tls.is_some() {
                self.error_at(
                    loc,
                    "server.insecure_plaintext",
                    "insecure_plaintext and tls exclude each other; keep one",
                );
            }
        } else {
            out.tls = tls_files(&s);
        }
    }

    fn people_auth(&mut self, a: &RawPeopleAuth, out: &mut AuthSettings) {
        if let Some(d) = &a.dir {
            out.dir = d.value.clone();
        }
        if let Some(ttl) = a
            .session_ttl
            .as_ref()
            .and_then(|d| self.at_least_a_minute(d, "server.auth.session_ttl"))
        {
            out.session_ttl = ttl;
        }
        if let Some(ttl) = a
            .invite_ttl
            .as_ref()
            .and_then(|d| self.at_least_a_minute(d, "server.auth.invite_ttl"))
        {
            out.invite_ttl = ttl;
        }
        if let Some(ttl) = a
            .service_token_max_ttl
            .as_ref()
            .and_then(|d| self.at_least_a_minute(d, "server.auth.service_token_max_ttl"))
        {
            out.service_token_max_ttl = ttl;
        }
        if let Some(o) = &a.origin {
            out.origin = self.origin(o);
        }
    }

    /// A duration of at least a minute, said as "expected at least 1m".
    fn at_least_a_minute(&mut self, d: &Spanned<String>, field: &str) -> Option<Duration> {
        let v = self.duration(d, field)?;
        if v < Duration::from_secs(60) {
            self.err(d, field, "expected at least 1m");
            return None;
        }
        Some(v)
    }

    /// `server.store` and its companions: a redb file, `memory`, or a
    /// shared PostgreSQL database.
    fn store(&mut self, s: &RawServer, out: &mut ServerConfig) {
        let shared = s
            .store
            .as_ref()
            .filter(|v| v.value.starts_with("postgres://") || v.value.starts_with("postgresql://"));
        if let Some(v) = shared {
            let url = self.postgres_url(v);
            let ca_file = s.store_ca_file.as_ref().map(|c| c.value.clone());
            if let Some(url) = &url
                && ca_file.is_none()
                && !postgres_is_local(url)
            {
                self.err(
                    v,
                    "server.store",
                    "a database on another host is reached over TLS only: set server.store_ca_file to the CA certificate that signed the database's certificate",
                );
            }
            let password = s
                .store_password
                .as_ref()
                .and_then(|p| self.secret(p, "server.store_password"));
            out.shared_store = url.map(|url| SharedStore {
                url,
                password,
                ca_file,
            });
            out.store = None;
            return;
        }
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
        out.store = match &s.store {
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
            // Reports are kept on disk next to the PKI unless told otherwise.
            None => s.pki_dir.as_ref().and_then(|d| {
                d.value
                    .parent()
                    .map(|p| p.join("data").join("reports.redb"))
            }),
        };
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
}

/// The certificate files: given one by one, or the defaults in `pki_dir`.
fn tls_files(s: &RawServer) -> Option<ServerTls> {
    let dir = s.pki_dir.as_ref().map(|p| p.value.clone());
    let t = s.tls.as_ref();
    let pick = |f: Option<&Spanned<PathBuf>>, name: &str| {
        f.map(|p| p.value.clone())
            .or_else(|| dir.as_ref().map(|d| d.join(name)))
    };
    let ca_file = pick(t.and_then(|t| t.ca_file.as_ref()), "ca.crt")?;
    let cert_file = pick(t.and_then(|t| t.cert_file.as_ref()), "server.crt")?;
    let key_file = pick(t.and_then(|t| t.key_file.as_ref()), "server.key")?;
    let crl_file = t
        .and_then(|t| t.crl_file.as_ref())
        .map(|p| p.value.clone())
        .or_else(|| {
            dir.as_ref()
                .map(|d| d.join("ca.crl"))
                .filter(|p| p.exists())
        });
    Some(ServerTls {
        ca_file,
        cert_file,
        key_file,
        crl_file,
    })
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
