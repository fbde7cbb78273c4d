//! Reading the document: serde structs whose values keep their source
//! location, read leniently enough that validation can report every problem
//! at once. When the whole document does not read, each top-level section
//! and each cluster entry is read on its own, so that one broken part does
//! not hide the errors of the others.

use crate::alerting::{RawReceiver, RawRule, RawWindow};
use crate::client::RawClient;
use crate::cluster::RawCluster;
use crate::collector::RawCollector;
use crate::server::RawServer;
use crate::validate::Validator;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::{Location, Spanned};
use std::path::PathBuf;

/// A scalar as written, so that a value of the wrong type is reported with
/// its field and the type expected, and validation goes on.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    /// The value as the user wrote it, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => format!("the text {s:?}"),
        }
    }
}

/// A secret as written: a reference, or (refused) the secret itself.
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

/// A piece of the document and the lines before it (0 when it was read as
/// part of the whole document).
pub(crate) type Piece<T> = Option<(T, u64)>;

/// The document as read, each part with its line offset.
#[derive(Default)]
pub(crate) struct RawConfig {
    pub server: Piece<RawServer>,
    pub collector: Piece<RawCollector>,
    pub client: Piece<RawClient>,
    /// None for an entry that could not be read (already reported).
    pub clusters: Vec<Piece<RawCluster>>,
    pub receivers: Vec<Piece<RawReceiver>>,
    pub alerts: Vec<Piece<RawRule>>,
    pub maintenance: Vec<Piece<RawWindow>>,
}

/// The document read in one go, when it has no structural error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Whole {
    server: Option<RawServer>,
    collector: Option<RawCollector>,
    client: Option<RawClient>,
    #[serde(default, deserialize_with = "null_as_empty")]
    clusters: Vec<RawCluster>,
    #[serde(default, deserialize_with = "null_as_empty")]
    receivers: Vec<RawReceiver>,
    #[serde(default, deserialize_with = "null_as_empty")]
    alerts: Vec<RawRule>,
    #[serde(default, deserialize_with = "null_as_empty")]
    maintenance: Vec<RawWindow>,
}

/// Only where each part is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outline {
    server: Option<Spanned<IgnoredAny>>,
    collector: Option<Spanned<IgnoredAny>>,
    client: Option<Spanned<IgnoredAny>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    clusters: Vec<Spanned<IgnoredAny>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    receivers: Vec<Spanned<IgnoredAny>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    alerts: Vec<Spanned<IgnoredAny>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    maintenance: Vec<Spanned<IgnoredAny>>,
}

/// A top-level list left empty (`clusters:` with nothing after it) is an
/// empty list, not an error.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(d).map(Option::unwrap_or_default)
}

/// Reads the document; None when nothing of it could be read (the error is
/// recorded).
pub(crate) fn read(text: &str, v: &mut Validator<'_>) -> Option<RawConfig> {
    if text.trim().is_empty() {
        return Some(RawConfig::default());
    }
    let err = match serde_saphyr::from_str::<Whole>(text) {
        Ok(w) => {
            return Some(RawConfig {
                server: w.server.map(|s| (s, 0)),
                collector: w.collector.map(|s| (s, 0)),
                client: w.client.map(|s| (s, 0)),
                clusters: w.clusters.into_iter().map(|c| Some((c, 0))).collect(),
                receivers: w.receivers.into_iter().map(|c| Some((c, 0))).collect(),
                alerts: w.alerts.into_iter().map(|c| Some((c, 0))).collect(),
                maintenance: w.maintenance.into_iter().map(|c| Some((c, 0))).collect(),
            });
        }
        Err(e) => e,
    };
    let outline = match serde_saphyr::from_str::<Outline>(text) {
        Ok(o) => o,
        Err(_) => {
            // The problem is at the top level (or the YAML itself).
            v.serde_error(&err, "", 0);
            return None;
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let before = v.errors.len();
    let mut raw = RawConfig {
        server: section(v, &lines, outline.server.as_ref(), "server"),
        collector: section(v, &lines, outline.collector.as_ref(), "collector"),
        client: section(v, &lines, outline.client.as_ref(), "client"),
        ..RawConfig::default()
    };
    for (i, entry) in outline.clusters.iter().enumerate() {
        raw.clusters
            .push(section(v, &lines, Some(entry), &format!("clusters[{i}]")));
    }
    for (i, entry) in outline.receivers.iter().enumerate() {
        raw.receivers
            .push(section(v, &lines, Some(entry), &format!("receivers[{i}]")));
    }
    for (i, entry) in outline.alerts.iter().enumerate() {
        raw.alerts
            .push(section(v, &lines, Some(entry), &format!("alerts[{i}]")));
    }
    for (i, entry) in outline.maintenance.iter().enumerate() {
        raw.maintenance.push(section(
            v,
            &lines,
            Some(entry),
            &format!("maintenance[{i}]"),
        ));
    }
    if v.errors.len() == before {
        // Every part reads on its own: report the whole-document error.
        v.serde_error(&err, "", 0);
        return None;
    }
    Some(raw)
}

/// Reads one part of the document on its own; None when absent or broken
/// (then the error is recorded under `field`).
fn section<T: DeserializeOwned>(
    v: &mut Validator<'_>,
    lines: &[&str],
    at: Option<&Spanned<IgnoredAny>>,
    field: &str,
) -> Piece<T> {
    let at = at?;
    let (piece, line_offset) = entry_text(lines, at.referenced);
    match serde_saphyr::from_str::<T>(&piece) {
        Ok(t) => Some((t, line_offset)),
        Err(e) => {
            let before = v.errors.len();
            v.serde_error(&e, field, line_offset);
            // A missing field is noticed at the end of the part; point at its start.
            if let Some(last) = v.errors.get_mut(before)
                && last.message.starts_with("missing field")
            {
                last.line = at.referenced.line();
                last.column = at.referenced.column();
            }
            None
        }
    }
}

/// The text of one part starting at `start`: its first line from the
/// part's column on (blanked before it, so columns stay true), and the
/// following lines indented at least as deep as that column.
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
            ("expected sequence start", "expected a list"),
            ("expected mapping start", "expected a mapping of fields"),
        ] {
            if message
                .trim_start_matches("unexpected event: ")
                .starts_with(from)
            {
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
