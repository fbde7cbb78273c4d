//! The validator every section uses: it records each problem with its
//! location and field and goes on, so one run reports them all. Helpers for
//! values that several sections share (addresses, durations, sizes,
//! numbers, flags, secrets) live here; a section's own rules live in its
//! module.

use crate::error::ConfigError;
use crate::raw::{RawSecret, Scalar};
use crate::secret::{HeaderValue, SecretRef};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Collects errors while turning raw structs into typed ones.
pub(crate) struct Validator<'a> {
    pub(crate) file: &'a Path,
    pub(crate) errors: Vec<ConfigError>,
    /// Lines before the text being validated (a piece read alone).
    pub(crate) line_offset: u64,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Validator {
            file,
            errors: Vec::new(),
            line_offset: 0,
        }
    }

    /// The errors so far, in file order.
    pub(crate) fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors
    }

    pub(crate) fn error_at(
        &mut self,
        loc: Location,
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

    pub(crate) fn err<T>(&mut self, s: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.error_at(s.referenced, field, message);
    }

    pub(crate) fn addr(&mut self, s: &Spanned<String>, field: &str) -> Option<SocketAddr> {
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

    /// `http(s)://HOST[:PORT]` of a dbmon server.
    pub(crate) fn endpoint(&mut self, s: &Spanned<String>, field: &str) -> Option<String> {
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

    /// A duration of at least 100ms.
    pub(crate) fn duration(&mut self, s: &Spanned<String>, field: &str) -> Option<Duration> {
        self.duration_at_least(s, field, Duration::from_millis(100))
    }

    /// A duration of at least `min` (zero allowed when `min` is zero).
    pub(crate) fn duration_at_least(
        &mut self,
        s: &Spanned<String>,
        field: &str,
        min: Duration,
    ) -> Option<Duration> {
        let text = s.value.trim();
        let parsed = if text == "0" {
            Ok(Duration::ZERO)
        } else {
            humantime::parse_duration(text)
        };
        match parsed {
            Ok(d) if d >= min => Some(d),
            Ok(_) => {
                self.err(
                    s,
                    field,
                    format!(
                        "{:?} is too short; expected at least {}",
                        s.value,
                        humantime::format_duration(min)
                    ),
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

    /// A size such as `64MiB`, `1GiB`, `500MB` or a number of bytes; at
    /// least 64KiB.
    pub(crate) fn size(&mut self, s: &Spanned<String>, field: &str) -> Option<u64> {
        match crate::parse_size(&s.value) {
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

    /// A whole number greater than 0.
    pub(crate) fn positive(&mut self, n: &Spanned<Scalar>, field: &str) -> Option<usize> {
        match n.value {
            Scalar::Int(i) if i > 0 => usize::try_from(i).ok(),
            _ => {
                self.err(
                    n,
                    field,
                    format!(
                        "expected a whole number greater than 0, found {}",
                        n.value.describe()
                    ),
                );
                None
            }
        }
    }

    /// Any number.
    pub(crate) fn number(&mut self, n: &Spanned<Scalar>, field: &str) -> Option<f64> {
        match n.value {
            Scalar::Int(i) => Some(i as f64),
            Scalar::Float(f) if f.is_finite() => Some(f),
            _ => {
                self.err(
                    n,
                    field,
                    format!("expected a number, found {}", n.value.describe()),
                );
                None
            }
        }
    }

    /// `true` or `false`.
    pub(crate) fn flag(&mut self, b: &Spanned<Scalar>, field: &str) -> Option<bool> {
        match b.value {
            Scalar::Bool(v) => Some(v),
            _ => {
                self.err(
                    b,
                    field,
                    format!("expected true or false, found {}", b.value.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn secret(&mut self, s: &Spanned<RawSecret>, field: &str) -> Option<SecretRef> {
        match &s.value {
            RawSecret::Inline(_) => {
                self.err(
                    s,
                    field,
                    "secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
                );
                None
            }
            RawSecret::Ref(r) => match (&r.file, &r.env) {
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

    /// HTTP headers: a header that carries credentials (Authorization,
    /// Cookie, anything named token, key, secret...) only by reference.
    pub(crate) fn headers(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawSecret>>,
        field: &str,
    ) -> Vec<(String, HeaderValue)> {
        let mut headers = Vec::new();
        for (name, v) in raw {
            let hf = format!("{field}.headers.{name}");
            if http_header_name(name).is_none() {
                self.err(v, &hf, "not a valid HTTP header name");
                continue;
            }
            match &v.value {
                RawSecret::Inline(text) if !secret_header(name) => {
                    headers.push((name.clone(), HeaderValue::Plain(text.clone())))
                }
                _ => {
                    if let Some(s) = self.secret(v, &hf) {
                        headers.push((name.clone(), HeaderValue::Secret(s)));
                    }
                }
            }
        }
        headers
    }
}

fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || ["token", "secret", "key", "auth", "password"]
            .iter()
            .any(|w| n.contains(w))
}

fn http_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(())
}
