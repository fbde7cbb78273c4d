//! One-time join tokens: `dbmon pki token create` writes the hash of a
//! random secret with the collector's name and an expiry; the server
//! redeems a token once, then never again.

use crate::PkiError;
use crate::files::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const PREFIX: &str = "dbmon-join-";

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    id: String,
    secret_sha256: String,
    collector: String,
    expires_at: i64,
    used_at: Option<i64>,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "join token is malformed; expected dbmon-join-<id>.<secret> from `dbmon pki token create`"
    )]
    Malformed,
    #[error("join token {0} is unknown; create one with `dbmon pki token create`")]
    Unknown(String),
    #[error("join token {id} was already used at {at}; create a new one")]
    Used { id: String, at: i64 },
    #[error("join token {id} expired at {at}; create a new one")]
    Expired { id: String, at: i64 },
    #[error("token store: {0}")]
    Store(String),
}

/// The token file of a PKI directory.
pub struct TokenStore {
    path: PathBuf,
    lock: Mutex<()>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl TokenStore {
    pub fn new(dir: &Path) -> TokenStore {
        TokenStore {
            path: dir.join("tokens.json"),
            lock: Mutex::new(()),
        }
    }

    fn load(&self) -> Result<Vec<Entry>, TokenError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| TokenError::Store(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(TokenError::Store(format!("{}: {e}", self.path.display()))),
        }
    }

    fn save(&self, entries: &[Entry]) -> Result<(), TokenError> {
        let json =
            serde_json::to_vec_pretty(entries).map_err(|e| TokenError::Store(e.to_string()))?;
        write_atomic(&self.path, &json, true, true).map_err(|e| TokenError::Store(e.to_string()))
    }

    /// A new token for collector `name`, valid for `ttl`. Only its hash is stored.
    pub fn create(&self, name: &str, ttl: Duration) -> Result<String, PkiError> {
        if !crate::identity::valid_name(name) {
            return Err(PkiError::Invalid(format!(
                "collector name {name:?}: expected letters, digits, '-', '_' or '.'"
            )));
        }
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.load().map_err(|e| PkiError::Invalid(e.to_string()))?;
        let id = hex::encode(rand::random::<[u8; 6]>());
        let secret = hex::encode(rand::random::<[u8; 24]>());
        let now = now();
        // Forget tokens that are long dead.
        entries.retain(|e| e.expires_at > now - 86_400);
        entries.push(Entry {
            id: id.clone(),
            secret_sha256: sha(&secret),
            collector: name.to_string(),
            expires_at: now + ttl.as_secs() as i64,
            used_at: None,
        });
        self.save(&entries)
            .map_err(|e| PkiError::Invalid(e.to_string()))?;
        Ok(format!("{PREFIX}{id}.{secret}"))
    }

    /// Redeems a token: the collector name it was made for. Works once.
    pub fn redeem(&self, token: &str) -> Result<String, TokenError> {
        let rest = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        if id.is_empty() || secret.is_empty() {
            return Err(TokenError::Malformed);
        }
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.load()?;
        let now = now();
        let e = entries
            .iter_mut()
            .find(|e| e.id == id && e.secret_sha256 == sha(secret))
            .ok_or_else(|| TokenError::Unknown(id.to_string()))?;
        if let Some(at) = e.used_at {
            return Err(TokenError::Used {
                id: id.to_string(),
                at,
            });
        }
        if e.expires_at <= now {
            return Err(TokenError::Expired {
                id: id.to_string(),
                at: e.expires_at,
            });
        }
        e.used_at = Some(now);
        let name = e.collector.clone();
        self.save(&entries)?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let t = store.create("c1", Duration::from_secs(60)).unwrap();
        assert_eq!(store.redeem(&t).unwrap(), "c1");
        assert!(matches!(store.redeem(&t), Err(TokenError::Used { .. })));
        let expired = store.create("c2", Duration::ZERO).unwrap();
        assert!(matches!(
            store.redeem(&expired),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(store.redeem("nonsense"), Err(TokenError::Malformed));
        let forged = format!("{}.{}", &t[..t.find('.').unwrap()], "00");
        assert!(matches!(store.redeem(&forged), Err(TokenError::Unknown(_))));
    }
}
