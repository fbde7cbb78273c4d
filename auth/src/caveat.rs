//! First-party caveats: `name = value` lines. Every caveat narrows what a
//! token may do; a caveat this server does not know refuses the token.
//!
//! | caveat                              | holds when                          |
//! |-------------------------------------|-------------------------------------|
//! | `expires = 2026-11-24T12:00:00Z`    | now is before that instant (UTC)    |
//! | `user = alice`                      | the login belongs to alice          |
//! | `ops = read,watch`                  | the call needs one of these ops     |
//! | `clusters = a,b`                    | only these clusters are seen        |

use crate::perms::{Op, ops_to_string};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caveat {
    /// Unix milliseconds.
    Expires(i64),
    User(String),
    Ops(BTreeSet<Op>),
    Clusters(BTreeSet<String>),
}

/// Why a caveat could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaveatError {
    #[error("unknown caveat {0:?}: this server knows expires, user, ops and clusters")]
    Unknown(String),
    #[error("caveat {caveat:?}: {why}")]
    Invalid { caveat: String, why: String },
}

impl Caveat {
    pub fn parse(text: &str) -> Result<Caveat, CaveatError> {
        let invalid = |why: &str| CaveatError::Invalid {
            caveat: text.to_string(),
            why: why.to_string(),
        };
        let Some((name, value)) = text.split_once(" = ") else {
            return Err(CaveatError::Unknown(text.to_string()));
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        match name {
            "expires" => {
                let t = OffsetDateTime::parse(value, &Rfc3339)
                    .map_err(|_| invalid("expected an RFC 3339 time like 2026-11-24T12:00:00Z"))?;
                Ok(Caveat::Expires(
                    (t.unix_timestamp_nanos() / 1_000_000).clamp(i64::MIN as i128, i64::MAX as i128)
                        as i64,
                ))
            }
            "user" if !value.is_empty() && !value.contains(char::is_whitespace) => {
                Ok(Caveat::User(value.to_string()))
            }
            "user" => Err(invalid("expected one user name")),
            "ops" => {
                let mut ops = BTreeSet::new();
                for o in list(value) {
                    ops.insert(Op::parse(&o).ok_or_else(|| {
                        invalid(&format!(
                            "unknown operation {o:?}; expected read, watch or sessions"
                        ))
                    })?);
                }
                Ok(Caveat::Ops(ops))
            }
            "clusters" => Ok(Caveat::Clusters(list(value).into_iter().collect())),
            _ => Err(CaveatError::Unknown(text.to_string())),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Caveat::Expires(ms) => format!("expires = {}", format_ms(*ms)),
            Caveat::User(u) => format!("user = {u}"),
            Caveat::Ops(ops) => format!("ops = {}", ops_to_string(ops)),
            Caveat::Clusters(c) => {
                format!(
                    "clusters = {}",
                    c.iter().cloned().collect::<Vec<_>>().join(",")
                )
            }
        }
    }
}

/// `2026-11-24T12:00:00Z` (second precision, UTC).
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in [
            "expires = 2026-11-24T12:00:00Z",
            "user = alice",
            "ops = read,watch",
            "clusters = a,b",
            "clusters = ",
        ] {
            let c = Caveat::parse(text).unwrap();
            assert_eq!(Caveat::parse(&c.to_text()).unwrap(), c, "{text}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(matches!(
            Caveat::parse("ip = 10.0.0.1"),
            Err(CaveatError::Unknown(_))
        ));
        assert!(matches!(
            Caveat::parse("time < 2026"),
            Err(CaveatError::Unknown(_))
        ));
        assert!(matches!(
            Caveat::parse("ops = read,write"),
            Err(CaveatError::Invalid { .. })
        ));
        assert!(matches!(
            Caveat::parse("expires = tomorrow"),
            Err(CaveatError::Invalid { .. })
        ));
        assert!(matches!(
            Caveat::parse("user = a b"),
            Err(CaveatError::Invalid { .. })
        ));
    }
}
