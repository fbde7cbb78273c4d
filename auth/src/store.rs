//! Users, their passkeys, invites and logins (each with its own macaroon
//! root key), in one JSON file of mode 0600 in the auth directory.
//!
//! The server and `dbmon user` both change it: every change takes an
//! exclusive lock on `auth.lock`, reads the file afresh, applies itself and
//! replaces the file atomically. The server re-reads the file when it
//! changes ([`AuthStore::refresh`]), so a user removed from the command line
//! is refused within the server's poll interval.

use crate::perms::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use webauthn_rs::prelude::Passkey;

pub const STATE_FILE: &str = "auth.json";
const LOCK_FILE: &str = "auth.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a dbmon auth store ({source}); restore it from a backup or move it away to start with no users"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has mode {mode:o}: it holds the macaroon root keys; run `chmod 600 {path}`")]
    Mode { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub invites: Vec<Invite>,
    /// Login id (the macaroon identifier) → login.
    #[serde(default)]
    pub sessions: BTreeMap<String, Session>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// WebAuthn user handle (random, never shown).
    pub handle: webauthn_rs::prelude::Uuid,
    pub role: Role,
    /// Empty: every cluster.
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    /// The credential id, base64url, as browsers and `dbmon user list` show it.
    pub id: String,
    pub passkey: Passkey,
    pub created_ms: i64,
    #[serde(default)]
    pub last_used_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    /// SHA-256 of the invite secret (hex); the secret itself is only in the URL.
    pub hash: String,
    pub user: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The macaroon root key (hex, 32 bytes).
    pub root_key: String,
    pub user: String,
    /// The passkey that logged in.
    pub credential: String,
    pub peer: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    #[serde(default)]
    pub revoked_ms: Option<i64>,
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random secret: 32 bytes, base64url-free hex.
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    hex::encode(b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    mtime_ns: i64,
    ino: u64,
    len: u64,
}

/// The state file and an in-memory copy of it.
#[derive(Debug, Clone)]
pub struct AuthStore {
    dir: PathBuf,
    inner: Arc<RwLock<(State, Stamp)>>,
}

impl AuthStore {
    /// Opens (creating when missing, mode 0700) the auth directory.
    pub fn open(dir: &Path) -> Result<AuthStore, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let store = AuthStore {
            dir: dir.to_path_buf(),
            inner: Arc::new(RwLock::new((State::default(), Stamp::default()))),
        };
        store.refresh()?;
        Ok(store)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn stamp(&self) -> Result<Option<Stamp>, StoreError> {
        let path = self.path();
        match std::fs::metadata(&path) {
            Ok(m) => {
                if m.mode() & 0o077 != 0 {
                    return Err(StoreError::Mode {
                        path,
                        mode: m.mode() & 0o777,
                    });
                }
                Ok(Some(Stamp {
                    mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ino: m.ino(),
                    len: m.len(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn read(&self) -> Result<(State, Stamp), StoreError> {
        let path = self.path();
        let Some(stamp) = self.stamp()? else {
            return Ok((State::default(), Stamp::default()));
        };
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let state = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Corrupt { path, source })?;
        Ok((state, stamp))
    }

    /// Re-reads the file if it changed since the last read. True when it did.
    /// A broken file is refused and the copy in memory kept.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let current = self.stamp()?.unwrap_or_default();
        if self.inner.read().map(|g| g.1 == current).unwrap_or(false) && current != Stamp::default()
        {
            return Ok(false);
        }
        let fresh = self.read()?;
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let changed = g.1 != fresh.1;
        *g = fresh;
        Ok(changed)
    }

    /// The state as it is on disk now (re-read if the file changed; the
    /// last good copy if it cannot be read, with the error logged).
    pub fn fresh(&self) -> State {
        if let Err(e) = self.refresh() {
            tracing::error!(error = %e, "auth store refused; using the last good copy");
        }
        self.snapshot()
    }

    /// Runs `f` on the state as last read, without copying it.
    pub fn read_with<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// A copy of the state as last read.
    pub fn snapshot(&self) -> State {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Runs `f` on the state as read under the lock; the state is written
    /// back only when `f` succeeds.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let (mut state, _) = self.read()?;
        let out = f(&mut state)?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        {
            let mut f: File = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let stamp = self.stamp()?.unwrap_or_default();
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = (state, stamp);
        drop(lock);
        Ok(out)
    }

    /// Adds a user (no passkey yet) and an invite to register one.
    /// Returns the invite secret.
    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        clusters: Vec<String>,
        invite_ttl_ms: i64,
    ) -> Result<String, StoreError> {
        valid_name(name)?;
        let secret = random_secret();
        let hash = sha256_hex(&secret);
        self.update(|s| {
            if s.users.contains_key(name) {
                return Err(StoreError::Refused(format!(
                    "user {name:?} exists; `dbmon user invite {name}` adds a passkey, `dbmon user remove {name}` removes the user"
                )));
            }
            s.users.insert(
                name.to_string(),
                User {
                    handle: webauthn_rs::prelude::Uuid::from_bytes(rand::random()),
                    role,
                    clusters,
                    credentials: vec![],
                    created_ms: now_ms(),
                },
            );
            s.invites.push(Invite {
                hash,
                user: name.to_string(),
                expires_ms: now_ms() + invite_ttl_ms,
            });
            Ok(())
        })?;
        Ok(secret)
    }

    /// A new invite for an existing user, to register another passkey.
    pub fn invite(&self, name: &str, invite_ttl_ms: i64) -> Result<String, StoreError> {
        let secret = random_secret();
        let hash = sha256_hex(&secret);
        self.update(|s| {
            if !s.users.contains_key(name) {
                return Err(no_such_user(name));
            }
            let now = now_ms();
            s.invites.retain(|i| i.expires_ms > now);
            s.invites.push(Invite {
                hash,
                user: name.to_string(),
                expires_ms: now + invite_ttl_ms,
            });
            Ok(())
        })?;
        Ok(secret)
    }

    /// Removes a user with their passkeys, invites and logins.
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.update(|s| {
            s.users.remove(name).ok_or_else(|| no_such_user(name))?;
            s.invites.retain(|i| i.user != name);
            // Kept (revoked) until they expire, so that their tokens are
            // refused with the reason rather than as unknown.
            let now = now_ms();
            for l in s.sessions.values_mut().filter(|l| l.user == name) {
                l.revoked_ms.get_or_insert(now);
            }
            Ok(())
        })
    }

    /// Removes one passkey of a user (by id or an unambiguous id prefix) and
    /// revokes the logins made with it.
    pub fn remove_credential(&self, name: &str, id: &str) -> Result<String, StoreError> {
        self.update(|s| {
            let user = s.users.get_mut(name).ok_or_else(|| no_such_user(name))?;
            let matching: Vec<String> = user
                .credentials
                .iter()
                .filter(|c| c.id.starts_with(id))
                .map(|c| c.id.clone())
                .collect();
            let full = match matching.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(StoreError::Refused(format!(
                        "user {name:?} has no passkey whose id starts with {id:?}; `dbmon user list` shows them"
                    )));
                }
                _ => {
                    return Err(StoreError::Refused(format!(
                        "{id:?} matches {} passkeys of {name:?}; give more of the id",
                        matching.len()
                    )));
                }
            };
            user.credentials.retain(|c| c.id != full);
            let now = now_ms();
            for l in s.sessions.values_mut() {
                if l.user == name && l.credential == full && l.revoked_ms.is_none() {
                    l.revoked_ms = Some(now);
                }
            }
            Ok(full)
        })
    }

    /// Marks logins revoked; returns their ids. Expired ones are pruned.
    pub fn revoke(&self, pick: impl Fn(&str, &Session) -> bool) -> Result<Vec<String>, StoreError> {
        self.update(|s| {
            let now = now_ms();
            s.sessions.retain(|_, l| l.expires_ms > now);
            let mut out = vec![];
            for (id, l) in s.sessions.iter_mut() {
                if l.revoked_ms.is_none() && pick(id, l) {
                    l.revoked_ms = Some(now);
                    out.push(id.clone());
                }
            }
            Ok(out)
        })
    }
}

fn no_such_user(name: &str) -> StoreError {
    StoreError::Refused(format!(
        "no user {name:?}; `dbmon user list` shows the users"
    ))
}

/// User names: 1 to 64 of `a-z A-Z 0-9 . _ @ -`.
pub fn valid_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "user name {name:?}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_reopen_and_refuse_loose_modes() {
        let dir = std::env::temp_dir().join(format!("dbmon-auth-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = AuthStore::open(&dir).unwrap();
        let secret = store
            .add_user("alice", Role::Viewer, vec!["a".into()], 60_000)
            .unwrap();
        assert_eq!(
            std::fs::metadata(store.path()).unwrap().mode() & 0o777,
            0o600
        );
        let again = AuthStore::open(&dir).unwrap();
        let s = again.snapshot();
        assert_eq!(s.users["alice"].clusters, vec!["a".to_string()]);
        assert_eq!(s.invites[0].hash, sha256_hex(&secret));
        assert!(!s.invites[0].hash.contains(&secret));
        assert!(matches!(
            store.add_user("alice", Role::Admin, vec![], 1),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store.add_user("bad name", Role::Admin, vec![], 1),
            Err(StoreError::Refused(_))
        ));
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AuthStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(store.path(), b"{not json").unwrap();
        let e = AuthStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("not a dbmon auth store"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
