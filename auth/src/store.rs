//! Users, their passkeys, invites and logins (each with its own macaroon
//! root key), in one JSON document: by default a file of mode 0600 in the
//! auth directory, or a row of the database that several servers share.
//!
//! The servers and `dbmon user` all change it: every change takes the
//! backend's exclusive lock (`auth.lock`, or a row lock), reads the document
//! afresh, applies itself and writes it back. A server re-reads the document
//! when its version changes ([`AuthStore::refresh`]), so a user removed from
//! the command line, or a logout on another server, is refused within the
//! server's poll interval.

use crate::perms::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
#[cfg(unix)]
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
        "{place}: not a dbmon auth store ({source}); restore it from a backup or move it away to start with no users"
    )]
    Corrupt {
        place: String,
        source: serde_json::Error,
    },
    #[error("{path} has mode {mode:o}: it holds the macaroon root keys; run `chmod 600 {path}`")]
    Mode { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Refused(String),
    /// The backend (a shared database) failed; says where and why.
    #[error("{0}")]
    Backend(String),
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
    /// A service account (scripts, CI, dashboards): no passkey, ever; its
    /// tokens are minted on the server's host with `dbmon token mint`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
}

impl User {
    /// A new user (a person, or a service account), with no passkey yet.
    fn new(role: Role, clusters: Vec<String>, service: bool) -> User {
        User {
            handle: webauthn_rs::prelude::Uuid::from_bytes(rand::random()),
            role,
            clusters,
            credentials: vec![],
            created_ms: now_ms(),
            service,
        }
    }
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

/// A login. Its `Debug` leaves the root key out: any `{:?}` in a log line
/// would otherwise print what mints tokens.
#[derive(Clone, Serialize, Deserialize)]
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

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("root_key", &"<redacted>")
            .field("user", &self.user)
            .field("credential", &self.credential)
            .field("peer", &self.peer)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .field("revoked_ms", &self.revoked_ms)
            .finish()
    }
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

/// A change of the document: the current one (None while there is none)
/// in, the new one out.
pub type Change<'a> = dyn FnMut(Option<&[u8]>) -> Result<Vec<u8>, StoreError> + 'a;

/// Where the state document lives: a file (the default) or a database
/// that several servers share. A backend changes the document only under
/// its own exclusive lock, so that concurrent changes from servers and
/// `dbmon user` never lose one another.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Names the place in errors and logs (never a secret).
    fn place(&self) -> String;
    /// Changes whenever the document does; None while there is none.
    fn version(&self) -> Result<Option<String>, StoreError>;
    /// The document and its version; None while there is none.
    fn load(&self) -> Result<Option<(Vec<u8>, String)>, StoreError>;
    /// Under the lock: reads the document, passes it to `f`, and writes
    /// back what `f` returns (nothing when `f` fails). Returns the new
    /// version.
    fn replace(&self, f: &mut Change<'_>) -> Result<String, StoreError>;
}

/// `auth.json` (0600) in a directory (0700), changed under a lock on
/// `auth.lock` and replaced atomically.
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    /// Opens (creating when missing, mode 0700) the auth directory.
    pub fn open(dir: &Path) -> Result<FileBackend, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            // Elsewhere the directory keeps the ACL of where it is made
            // (on Windows, the user's profile: the user alone).
            #[cfg(unix)]
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(FileBackend {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
}

impl Backend for FileBackend {
    fn place(&self) -> String {
        self.path().display().to_string()
    }

    fn version(&self) -> Result<Option<String>, StoreError> {
        let path = self.path();
        match std::fs::metadata(&path) {
            Ok(m) => file_version(path, &m).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn load(&self) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let Some(version) = self.version()? else {
            return Ok(None);
        };
        let path = self.path();
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { path, source })?;
        Ok(Some((bytes, version)))
    }

    fn replace(&self, f: &mut Change<'_>) -> Result<String, StoreError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let lock = owner_only(OpenOptions::new().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let current = self.load()?;
        let bytes = f(current.as_ref().map(|(b, _)| b.as_slice()))?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.{}", std::process::id()));
        {
            let mut f: File =
                owner_only(OpenOptions::new().create(true).truncate(true).write(true))
                    .open(&tmp)
                    .map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename itself must reach the disk: a revocation lost to a
        // power cut would bring a revoked token back.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        let version = self.version()?.unwrap_or_default();
        drop(lock);
        Ok(version)
    }
}

/// Files readable and writable by their owner alone (mode 0600 where files
/// have modes; on Windows they inherit the auth directory's ACL).
fn owner_only(o: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    o.mode(0o600);
    o
}

/// What changes when the file does; refuses a file others may read.
#[cfg(unix)]
fn file_version(path: PathBuf, m: &std::fs::Metadata) -> Result<String, StoreError> {
    if m.mode() & 0o077 != 0 {
        return Err(StoreError::Mode {
            path,
            mode: m.mode() & 0o777,
        });
    }
    Ok(format!(
        "{}.{}:{}:{}",
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.len()
    ))
}

/// What changes when the file does (no modes to check here).
#[cfg(not(unix))]
fn file_version(_path: PathBuf, m: &std::fs::Metadata) -> Result<String, StoreError> {
    Ok(format!("{:?}:{}", m.modified().ok(), m.len()))
}

/// The state document in its backend, and an in-memory copy of it. Its
/// `Debug` names the place and counts, never keys or hashes.
#[derive(Clone)]
pub struct AuthStore {
    backend: Arc<dyn Backend>,
    /// The state as last read, and its version ("" when there was none).
    inner: Arc<RwLock<(State, String)>>,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("AuthStore")
            .field("place", &self.backend.place())
            .field("users", &inner.0.users.len())
            .field("invites", &inner.0.invites.len())
            .field("logins", &inner.0.sessions.len())
            .finish()
    }
}

impl AuthStore {
    /// Opens (creating when missing, mode 0700) the auth directory.
    pub fn open(dir: &Path) -> Result<AuthStore, StoreError> {
        AuthStore::with_backend(Arc::new(FileBackend::open(dir)?))
    }

    /// Opens the state kept in `backend`.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Result<AuthStore, StoreError> {
        let store = AuthStore {
            backend,
            inner: Arc::new(RwLock::new((State::default(), String::new()))),
        };
        store.refresh()?;
        Ok(store)
    }

    /// Where the state lives, for messages.
    pub fn place(&self) -> String {
        self.backend.place()
    }

    fn parse(&self, bytes: &[u8]) -> Result<State, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            place: self.backend.place(),
            source,
        })
    }

    /// Re-reads the state if it changed since the last read. True when it did.
    /// A broken document is refused and the copy in memory kept.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let current = self.backend.version()?.unwrap_or_default();
        if !current.is_empty() && self.inner.read().map(|g| g.1 == current).unwrap_or(false) {
            return Ok(false);
        }
        let fresh = match self.backend.load()? {
            Some((bytes, version)) => (self.parse(&bytes)?, version),
            None => (State::default(), String::new()),
        };
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let changed = g.1 != fresh.1;
        *g = fresh;
        Ok(changed)
    }

    /// The state as stored now (re-read if it changed; the last good copy
    /// if it cannot be read, with the error logged).
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

    /// Runs `f` on the state as read under the backend's lock; the state is
    /// written back only when `f` succeeds.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        let mut kept = None;
        let version = self.backend.replace(&mut |current| {
            let mut state = match current {
                Some(bytes) => self.parse(bytes)?,
                None => State::default(),
            };
            let f = f
                .take()
                .ok_or_else(|| StoreError::Refused("an auth store change ran twice".into()))?;
            out = Some(f(&mut state)?);
            let bytes = serde_json::to_vec_pretty(&state).map_err(|e| StoreError::Io {
                path: PathBuf::from(self.backend.place()),
                source: std::io::Error::other(e),
            })?;
            kept = Some(state);
            Ok(bytes)
        })?;
        if let Some(state) = kept {
            *self.inner.write().unwrap_or_else(|e| e.into_inner()) = (state, version);
        }
        out.ok_or_else(|| StoreError::Refused("an auth store change did not run".into()))
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
            s.users
                .insert(name.to_string(), User::new(role, clusters, false));
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
            match s.users.get(name) {
                None => return Err(no_such_user(name)),
                Some(u) if u.service => {
                    return Err(StoreError::Refused(format!(
                        "{name:?} is a service account: it never registers a passkey; `dbmon token mint {name}` makes its tokens"
                    )));
                }
                Some(_) => {}
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

    /// Adds a service account: a role and clusters, no passkey and no invite.
    pub fn add_service_account(
        &self,
        name: &str,
        role: Role,
        clusters: Vec<String>,
    ) -> Result<(), StoreError> {
        valid_name(name)?;
        self.update(|s| {
            if s.users.contains_key(name) {
                return Err(StoreError::Refused(format!(
                    "user {name:?} exists; `dbmon user remove {name}` removes it first"
                )));
            }
            s.users
                .insert(name.to_string(), User::new(role, clusters, true));
            Ok(())
        })
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
    #[cfg(unix)]
    fn changes_survive_reopen_and_refuse_loose_modes() {
        let dir = std::env::temp_dir().join(format!("dbmon-auth-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = AuthStore::open(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        let secret = store
            .add_user("alice", Role::Viewer, vec!["a".into()], 60_000)
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
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
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AuthStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let e = AuthStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("not a dbmon auth store"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every type that holds a root key, an invite secret or a token prints
    /// none of them with `{:?}`.
    #[test]
    fn debug_prints_no_secret() {
        crate::init();
        let dir = std::env::temp_dir().join(format!("dbmon-auth-debug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = AuthStore::open(&dir).unwrap();
        let invite = store
            .add_user("alice", Role::Viewer, vec![], 60_000)
            .unwrap();
        let verifier = crate::Verifier::new(store.clone());
        let (login, token) = verifier
            .new_login("alice", "cred", "127.0.0.1", 60_000)
            .unwrap();
        let state = store.snapshot();
        let root_key = state.sessions[&login].root_key.clone();
        let shown = [
            format!("{:?}", state.sessions[&login]),
            format!("{state:?}"),
            format!("{store:?}"),
            format!("{verifier:?}"),
        ];
        for s in &shown {
            for secret in [&root_key, &invite, &token] {
                assert!(!s.contains(secret.as_str()), "a secret in {s}");
            }
        }
        assert!(shown[0].contains("<redacted>"));
        assert!(shown[2].contains("logins: 1"), "{}", shown[2]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
