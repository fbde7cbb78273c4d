//! The `collector:` section: who the collector is, where it sends reports,
//! and how much it keeps while the server is away.

use crate::raw::Scalar;
use crate::server::{DEFAULT_COLLECTOR_ADDR, DEFAULT_GRPC_ADDR};
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::net::SocketAddr;
use std::path::PathBuf;

const DEFAULT_BUFFER: usize = 10_000;
const DEFAULT_SPILL_MAX: u64 = 256 << 20;

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

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            id: default_collector_id(),
            server: format!("https://{DEFAULT_COLLECTOR_ADDR}"),
            enroll_server: format!("https://{DEFAULT_GRPC_ADDR}"),
            buffer_reports: DEFAULT_BUFFER,
            spill_dir: None,
            spill_max_bytes: DEFAULT_SPILL_MAX,
            pki_dir: None,
            insecure_plaintext: false,
            http_listen: None,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCollector {
    id: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    enroll_server: Option<Spanned<String>>,
    buffer_reports: Option<Spanned<Scalar>>,
    spill_dir: Option<Spanned<String>>,
    spill_max_size: Option<Spanned<String>>,
    pki_dir: Option<Spanned<PathBuf>>,
    insecure_plaintext: Option<Spanned<Scalar>>,
    http_listen: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// Applies the `collector:` section over the defaults in `out`,
    /// recording every problem.
    pub(crate) fn collector(&mut self, c: RawCollector, out: &mut CollectorConfig) {
        if let Some(id) = c.id {
            if id.value.trim().is_empty() {
                self.err(&id, "collector.id", "must not be empty");
            } else {
                out.id = id.value;
            }
        }
        let plaintext = match &c.insecure_plaintext {
            Some(p) => self
                .flag(p, "collector.insecure_plaintext")
                .unwrap_or_default(),
            None => false,
        };
        out.insecure_plaintext = plaintext;
        if let Some(s) = &c.server
            && let Some(server) = self.endpoint(s, "collector.server")
        {
            if server.starts_with("http://") && !plaintext {
                self.err(s, "collector.server", "plaintext http:// needs collector.insecure_plaintext: true (development on loopback only); expected https://HOST:PORT");
            }
            out.server = server;
        }
        if let Some(s) = c
            .enroll_server
            .as_ref()
            .and_then(|s| self.endpoint(s, "collector.enroll_server"))
        {
            out.enroll_server = s;
        }
        if let Some(n) = c
            .buffer_reports
            .as_ref()
            .and_then(|n| self.positive(n, "collector.buffer_reports"))
        {
            out.buffer_reports = n;
        }
        out.spill_dir = match &c.spill_dir {
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
        if let Some(n) = c
            .spill_max_size
            .as_ref()
            .and_then(|v| self.size(v, "collector.spill_max_size"))
        {
            out.spill_max_bytes = n;
        }
        out.pki_dir = c.pki_dir.map(|p| p.value);
        if let Some(a) = &c.http_listen {
            out.http_listen = self.addr(a, "collector.http_listen");
        }
    }
}
