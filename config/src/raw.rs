//! The configuration as written: serde structs whose values keep their
//! source location, read leniently enough that validation can report every
//! problem at once.

use crate::Validator;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_HISTORY: usize = 1000;
pub(crate) const DEFAULT_SUBSCRIBER_QUEUE: usize = 1024;
pub(crate) const DEFAULT_BUFFER: usize = 10_000;
pub(crate) const DEFAULT_SPILL_MAX: u64 = 256 << 20;
pub(crate) const DEFAULT_HISTORY_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);
pub(crate) const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
pub(crate) const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_COLLECTOR_TTL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: Option<RawServer>,
    pub collector: Option<RawCollector>,
    pub client: Option<RawClient>,
    #[serde(default)]
    pub clusters: Vec<Option<(RawCluster, u64)>>,
}

/// The document read in one go, when it has no structural error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Whole {
    server: Option<RawServer>,
    collector: Option<RawCollector>,
    client: Option<RawClient>,
    #[serde(default)]
    clusters: Vec<RawCluster>,
}

/// The `client:` section alone; the rest is not looked at.
#[derive(Deserialize)]
pub(crate) struct ClientOnly {
    pub client: Option<RawClient>,
}

/// First pass: everything but the clusters, whose entries are only located.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outline {
    server: Option<RawServer>,
    collector: Option<RawCollector>,
    client: Option<RawClient>,
    #[serde(default)]
    clusters: Vec<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub collector_listen: Option<Spanned<String>>,
    pub http_listen: Option<Spanned<String>>,
    pub history_per_cluster: Option<Spanned<u64>>,
    pub subscriber_queue: Option<Spanned<u64>>,
    pub pki_dir: Option<Spanned<PathBuf>>,
    pub tls: Option<RawServerTls>,
    pub collector_cert_ttl: Option<Spanned<String>>,
    pub assignments: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    pub insecure_plaintext: Option<Spanned<bool>>,
    pub auth: Option<RawPeopleAuth>,
    pub store: Option<Spanned<String>>,
    pub store_password: Option<Spanned<RawSecret>>,
    pub store_ca_file: Option<Spanned<PathBuf>>,
    pub history_max_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeopleAuth {
    pub dir: Option<Spanned<PathBuf>>,
    pub origin: Option<Spanned<String>>,
    pub session_ttl: Option<Spanned<String>>,
    pub invite_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub ca_file: Option<Spanned<PathBuf>>,
    pub cert_file: Option<Spanned<PathBuf>>,
    pub key_file: Option<Spanned<PathBuf>>,
    pub crl_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCollector {
    pub id: Option<Spanned<String>>,
    pub server: Option<Spanned<String>>,
    pub enroll_server: Option<Spanned<String>>,
    pub buffer_reports: Option<Spanned<u64>>,
    pub spill_dir: Option<Spanned<String>>,
    pub spill_max_size: Option<Spanned<String>>,
    pub pki_dir: Option<Spanned<PathBuf>>,
    pub insecure_plaintext: Option<Spanned<bool>>,
    pub http_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub server: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub nodes: Spanned<Vec<Spanned<String>>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub tls: Option<RawTls>,
    pub auth: Option<RawAuth>,
    pub checks: Option<Spanned<BTreeMap<String, Spanned<Option<RawCheck>>>>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub ca_file: Option<Spanned<PathBuf>>,
    pub cert_file: Option<Spanned<PathBuf>>,
    pub key_file: Option<Spanned<PathBuf>>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub username: String,
    pub password: Spanned<RawSecret>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSecret {
    Inline(#[allow(dead_code)] String),
    Ref(RawSecretRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecretRef {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub enabled: Option<bool>,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

/// Reads the document. On a structural error inside the cluster list, each
/// entry is read on its own so that every broken entry is reported.
pub(crate) fn read(text: &str, v: &mut Validator<'_>) -> Option<RawConfig> {
    if text.trim().is_empty() {
        return Some(RawConfig {
            server: None,
            collector: None,
            client: None,
            clusters: Vec::new(),
        });
    }
    let err = match serde_saphyr::from_str::<Whole>(text) {
        Ok(w) => {
            return Some(RawConfig {
                server: w.server,
                collector: w.collector,
                client: w.client,
                clusters: w.clusters.into_iter().map(|c| Some((c, 0))).collect(),
            });
        }
        Err(e) => e,
    };
    let outline = match serde_saphyr::from_str::<Outline>(text) {
        Ok(o) => o,
        Err(_) => {
            // The problem is outside the clusters (or the YAML itself).
            v.serde_error(&err, "", 0);
            return None;
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut clusters = Vec::new();
    let before = v.errors.len();
    for (i, entry) in outline.clusters.iter().enumerate() {
        let (piece, line_offset) = entry_text(&lines, entry.referenced);
        match serde_saphyr::from_str::<RawCluster>(&piece) {
            Ok(c) => clusters.push(Some((c, line_offset))),
            Err(e) => {
                let before = v.errors.len();
                v.serde_error(&e, &format!("clusters[{i}]"), line_offset);
                // A missing field is noticed at the end of the entry; point at its start.
                if let Some(last) = v.errors.get_mut(before)
                    && last.message.starts_with("missing field")
                {
                    last.line = entry.referenced.line();
                    last.column = entry.referenced.column();
                }
                clusters.push(None);
            }
        }
    }
    if v.errors.len() == before {
        // Entries read fine on their own: report the whole-document error.
        v.serde_error(&err, "", 0);
        return None;
    }
    Some(RawConfig {
        server: outline.server,
        collector: outline.collector,
        client: outline.client,
        clusters,
    })
}

/// The text of one block-sequence entry starting at `start`: its first line
/// from the entry's column on (blanked before it, so columns stay true), and
/// the following lines indented deeper than that column.
fn entry_text(lines: &[&str], start: Location) -> (String, u64) {
    let first = (start.line() as usize).saturating_sub(1);
    let col = (start.column() as usize).saturating_sub(1);
    let mut out = String::new();
    if let Some(line) = lines.get(first) {
        let chars: Vec<char> = line.chars().collect();
        out.push_str(&" ".repeat(col.min(chars.len())));
        out.extend(chars.iter().skip(col));
        out.push('\n');
    }
    for line in lines.iter().skip(first + 1) {
        let trimmed = line.trim_start();
        let indent = line.chars().count() - trimmed.chars().count();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && indent < col {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, first as u64)
}

impl Validator<'_> {
    pub(crate) fn serde_error(&mut self, e: &serde_saphyr::Error, field: &str, line_offset: u64) {
        let inner = e.without_snippet();
        let loc = inner.location().unwrap_or(Location::UNKNOWN);
        let mut message = inner.to_string();
        for (from, to) in [
            (
                "unexpected event: expected sequence start",
                "expected a list",
            ),
            (
                "unexpected event: expected mapping start",
                "expected a mapping of fields",
            ),
        ] {
            if message.starts_with(from) {
                message = to.to_string();
            }
        }
        // The location is printed in front; drop serde-saphyr's own suffix.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        let (line, column) = if loc.line() == 0 {
            (0, 0)
        } else {
            (loc.line() + line_offset, loc.column())
        };
        self.errors.push(crate::ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
        });
    }
}
