//! Macaroons: minted for one login, each login with its own root key (so
//! one can be revoked alone), narrowed by caveats, checked on every call.
//!
//! On the wire a token is the macaroon in the standard V2 binary format,
//! base64url-encoded, in the gRPC metadata key [`METADATA_KEY`].

use crate::caveat::{Caveat, CaveatError, format_ms};
use crate::perms::{Access, Op, Role, ops_to_string};
use crate::store::{AuthStore, Session, StoreError, now_ms};
use macaroon::{ByteString, Format, Macaroon, MacaroonKey};
use std::collections::BTreeSet;

/// The gRPC metadata key every client call carries its token in.
pub const METADATA_KEY: &str = "macaroon";
const LOCATION: &str = "dbmon";
const LOGIN: &str = "run `dbmon-client login`";

/// Why a call was refused. [`Denied::is_permission`] tells a valid token that
/// does not allow the call (PermissionDenied) from a token that is not valid
/// (Unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no token: this call needs one; {LOGIN} (or set DBMON_TOKEN)")]
    Missing,
    #[error("the token is not a macaroon ({0}); {LOGIN} for a new one")]
    Malformed(String),
    #[error(
        "the token was not issued by this server (unknown login id {0}); {LOGIN} against this server"
    )]
    UnknownKey(String),
    #[error(
        "the token's signature does not match: it was altered or signed by another key; {LOGIN}"
    )]
    BadSignature,
    #[error("the token expired at {}; {LOGIN}", format_ms(*.0))]
    Expired(i64),
    #[error("the token's login was revoked at {}; {LOGIN}", format_ms(*.0))]
    Revoked(i64),
    #[error("the token's user {0:?} no longer exists; ask an admin")]
    NoUser(String),
    #[error("the token has a caveat this server refuses: {0}")]
    Caveat(#[from] CaveatError),
    #[error("the token has a third-party caveat; dbmon does not use them")]
    ThirdParty,
    #[error("the token says user {claimed:?} but was issued to {actual:?}")]
    WrongUser { claimed: String, actual: String },
    #[error("{method} needs the {needed} operation; this token allows {allowed}")]
    Op {
        method: String,
        needed: Op,
        allowed: String,
    },
    #[error(
        "{0} needs a login's token; this token allows badge only: it opens one cluster's badge and nothing else"
    )]
    BadgeOnly(String),
    #[error("cluster {cluster:?} is outside this token's scope ({scope})")]
    Cluster { cluster: String, scope: String },
    #[error("{0} is served to collectors only, on the collector endpoint")]
    CollectorOnly(String),
    #[error("{0} is not a method of this server")]
    UnknownMethod(String),
    #[error("{0}")]
    Store(String),
}

impl Denied {
    /// True when the token is valid but does not allow the call.
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            Denied::Op { .. }
                | Denied::BadgeOnly(_)
                | Denied::Cluster { .. }
                | Denied::CollectorOnly(_)
                | Denied::UnknownMethod(_)
        )
    }
}

/// What a verified token allows, for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub role: Role,
    /// The login (root key id) the token belongs to.
    pub login: String,
    pub ops: BTreeSet<Op>,
    /// None: every cluster.
    pub clusters: Option<BTreeSet<String>>,
    /// The earliest expiry among the login and the token's caveats.
    pub expires_ms: i64,
    pub caveats: Vec<String>,
}

impl Grant {
    pub fn allows(&self, op: Op) -> bool {
        self.ops.contains(&op)
    }

    /// A badge token: the `badge` operation alone.
    pub fn is_badge_only(&self) -> bool {
        self.ops.len() == 1 && self.ops.contains(&Op::Badge)
    }

    pub fn sees(&self, cluster: &str) -> bool {
        self.clusters.as_ref().is_none_or(|c| c.contains(cluster))
    }

    /// The clusters a request for `asked` (empty: all) may see: None for
    /// all. A cluster named outside the scope is refused rather than
    /// silently dropped.
    pub fn scope(&self, asked: &[String]) -> Result<Option<BTreeSet<String>>, Denied> {
        match &self.clusters {
            None if asked.is_empty() => Ok(None),
            None => Ok(Some(asked.iter().cloned().collect())),
            Some(scope) if asked.is_empty() => Ok(Some(scope.clone())),
            Some(scope) => {
                for c in asked {
                    if !scope.contains(c) {
                        return Err(Denied::Cluster {
                            cluster: c.clone(),
                            scope: scope.iter().cloned().collect::<Vec<_>>().join(","),
                        });
                    }
                }
                Ok(Some(asked.iter().cloned().collect()))
            }
        }
    }

    /// Checks `access` for the method at `path`.
    pub fn authorize(&self, path: &str, access: Access) -> Result<(), Denied> {
        match access {
            Access::Public => Ok(()),
            // A badge token is a login of its own, but it speaks for
            // nobody: it may not ask who it is, end itself, or anything else.
            Access::Session if self.is_badge_only() => Err(Denied::BadgeOnly(path.to_string())),
            Access::Session => Ok(()),
            Access::Collector => Err(Denied::CollectorOnly(path.to_string())),
            Access::Op(op) if self.allows(op) => Ok(()),
            Access::Op(op) => Err(Denied::Op {
                method: path.to_string(),
                needed: op,
                allowed: if self.ops.is_empty() {
                    "nothing".into()
                } else {
                    ops_to_string(&self.ops)
                },
            }),
        }
    }
}

fn parse(token: &str) -> Result<Macaroon, Denied> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Denied::Missing);
    }
    if token.starts_with('{') {
        return Err(Denied::Malformed("JSON macaroons are not accepted".into()));
    }
    // The decoder is third-party code fed attacker bytes: a panic in it is
    // a refused token, never a dead connection task.
    let owned = token.to_string();
    std::panic::catch_unwind(move || Macaroon::deserialize(owned.as_bytes()))
        .map_err(|_| Denied::Malformed("undecodable".into()))?
        .map_err(|e| Denied::Malformed(format!("{e:?}")))
}

fn serialize(m: &Macaroon) -> String {
    m.serialize(Format::V2)
        .expect("V2 serialization of a macaroon built here cannot fail")
}

fn key_of(hex_key: &str) -> Result<MacaroonKey, Denied> {
    let bytes = hex::decode(hex_key).map_err(|e| Denied::Store(format!("bad root key: {e}")))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Denied::Store("bad root key length".into()))?;
    Ok(MacaroonKey::from(arr))
}

/// Mints the token of a new login: identifier = login id, caveats user and
/// expiry.
pub fn mint(login_id: &str, session: &Session) -> String {
    let key = key_of(&session.root_key).expect("root keys are made by this crate");
    let mut m = Macaroon::create(
        Some(LOCATION.into()),
        &key,
        ByteString::from(login_id.as_bytes().to_vec()),
    )
    .expect("a non-empty identifier");
    for c in [
        Caveat::User(session.user.clone()),
        Caveat::Expires(session.expires_ms),
    ] {
        m.add_first_party_caveat(ByteString::from(c.to_text()));
    }
    serialize(&m)
}

/// Adds caveats to a token without the server: the result can only do less.
pub fn attenuate(token: &str, caveats: &[Caveat]) -> Result<String, Denied> {
    let mut m = parse(token)?;
    for c in caveats {
        m.add_first_party_caveat(ByteString::from(c.to_text()));
    }
    Ok(serialize(&m))
}

/// The login id and caveats of a token, unverified (for `whoami` offline).
pub fn inspect(token: &str) -> Result<(String, Vec<String>), Denied> {
    let m = parse(token)?;
    Ok((
        String::from_utf8_lossy(&m.identifier().0).into_owned(),
        first_party(&m)?,
    ))
}

fn first_party(m: &Macaroon) -> Result<Vec<String>, Denied> {
    m.caveats()
        .iter()
        .map(|c| match c {
            macaroon::Caveat::FirstParty(fp) => {
                Ok(String::from_utf8_lossy(&fp.predicate().0).into_owned())
            }
            macaroon::Caveat::ThirdParty(_) => Err(Denied::ThirdParty),
        })
        .collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks tokens against the logins in the store.
#[derive(Debug, Clone)]
pub struct Verifier {
    store: AuthStore,
}

impl Verifier {
    pub fn new(store: AuthStore) -> Verifier {
        Verifier { store }
    }

    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// Verifies `token` at `now_ms`: signature (recomputed with the login's
    /// root key and compared in constant time), every caveat, the login and
    /// the user as they are now.
    pub fn verify(&self, token: &str, now: i64) -> Result<Grant, Denied> {
        let m = parse(token)?;
        let login = String::from_utf8_lossy(&m.identifier().0).into_owned();
        // What the check needs of the store, copied under its read lock.
        let (session, user) = self.store.read_with(|state| {
            let session = state
                .sessions
                .get(&login)
                .ok_or_else(|| Denied::UnknownKey(login.clone()))?
                .clone();
            let user = state
                .users
                .get(&session.user)
                .map(|u| (u.role, u.clusters.clone(), u.service));
            Ok::<_, Denied>((session, user))
        })?;
        let key = key_of(&session.root_key)?;
        let caveats = first_party(&m)?;
        let mut expected =
            Macaroon::create(None, &key, m.identifier()).map_err(|_| Denied::BadSignature)?;
        for c in &caveats {
            expected.add_first_party_caveat(ByteString::from(c.as_str()));
        }
        if !ct_eq(&expected.signature()[..], &m.signature()[..]) {
            return Err(Denied::BadSignature);
        }
        let (role, clusters, service) = user.ok_or_else(|| Denied::NoUser(session.user.clone()))?;
        if let Some(at) = session.revoked_ms {
            return Err(Denied::Revoked(at));
        }
        let mut grant = Grant {
            user: session.user.clone(),
            role,
            login: login.clone(),
            // A service account never manages people's logins, whatever its role.
            ops: role
                .ops()
                .into_iter()
                .filter(|o| !(service && *o == crate::perms::Op::Sessions))
                .collect(),
            clusters: (!clusters.is_empty()).then(|| clusters.into_iter().collect()),
            expires_ms: session.expires_ms,
            caveats: caveats.clone(),
        };
        for text in &caveats {
            match Caveat::parse(text)? {
                Caveat::Expires(at) => grant.expires_ms = grant.expires_ms.min(at),
                Caveat::User(u) if u == session.user => {}
                Caveat::User(u) => {
                    return Err(Denied::WrongUser {
                        claimed: u,
                        actual: session.user.clone(),
                    });
                }
                Caveat::Ops(ops) => grant.ops = grant.ops.intersection(&ops).copied().collect(),
                Caveat::Clusters(c) => {
                    grant.clusters = Some(match grant.clusters {
                        None => c,
                        Some(old) => old.intersection(&c).cloned().collect(),
                    })
                }
            }
        }
        if now >= grant.expires_ms {
            return Err(Denied::Expired(grant.expires_ms));
        }
        Ok(grant)
    }

    /// Mints a token for service account `name`, valid `ttl_ms`: a new
    /// login (revocable like any other) whose macaroon carries the extra
    /// `caveats`. Returns the login id and the token.
    pub fn mint_service_token(
        &self,
        name: &str,
        ttl_ms: i64,
        caveats: &[crate::caveat::Caveat],
        peer: &str,
    ) -> Result<(String, String), crate::store::StoreError> {
        self.mint_login(name, "service token", ttl_ms, caveats, peer, |u| {
            match u {
                None => Err(format!(
                    "no user {name:?}; `dbmon user add {name} --service --role viewer` makes a service account"
                )),
                Some(u) if !u.service => Err(format!(
                    "{name:?} is a person, who signs in with a passkey (`dbmon-client login`); tokens are minted only for service accounts (`dbmon user add NAME --service`)"
                )),
                Some(_) => Ok(()),
            }
        })
    }

    /// Mints a badge token of `user` for `cluster`, valid `ttl_ms`: a new
    /// login of theirs (listed and revoked like any other) whose token
    /// allows the `badge` operation on that one cluster, nothing else.
    pub fn mint_badge_token(
        &self,
        user: &str,
        cluster: &str,
        ttl_ms: i64,
        peer: &str,
    ) -> Result<(String, String), crate::store::StoreError> {
        let caveats = [
            crate::caveat::Caveat::Ops([Op::Badge].into_iter().collect()),
            crate::caveat::Caveat::Clusters([cluster.to_string()].into_iter().collect()),
        ];
        let credential = format!("badge token for {cluster}");
        self.mint_login(user, &credential, ttl_ms, &caveats, peer, |u| match u {
            None => Err(format!("no user {user:?}")),
            Some(_) => Ok(()),
        })
    }

    /// A new login of `user`, stored if `allowed` accepts the user as
    /// stored now, and its token with `caveats`.
    fn mint_login(
        &self,
        user: &str,
        credential: &str,
        ttl_ms: i64,
        caveats: &[crate::caveat::Caveat],
        peer: &str,
        allowed: impl Fn(Option<&crate::store::User>) -> Result<(), String>,
    ) -> Result<(String, String), crate::store::StoreError> {
        let id = crate::store::random_secret()[..32].to_string();
        let session = Session {
            root_key: crate::store::random_secret(),
            user: user.to_string(),
            credential: credential.to_string(),
            peer: peer.to_string(),
            created_ms: now_ms(),
            expires_ms: now_ms() + ttl_ms,
            revoked_ms: None,
        };
        self.store.update(|s| {
            allowed(s.users.get(user)).map_err(crate::store::StoreError::Refused)?;
            let now = now_ms();
            s.sessions.retain(|_, l| l.expires_ms > now);
            s.sessions.insert(id.clone(), session.clone());
            Ok(())
        })?;
        let token = mint(&id, &session);
        if caveats.is_empty() {
            return Ok((id, token));
        }
        let token = attenuate(&token, caveats).map_err(|e| {
            crate::store::StoreError::Refused(format!("cannot add the caveats: {e}"))
        })?;
        Ok((id, token))
    }

    /// Starts a login for `user` with `credential`: a new root key, stored;
    /// returns the login id and its token.
    pub fn new_login(
        &self,
        user: &str,
        credential: &str,
        peer: &str,
        ttl_ms: i64,
    ) -> Result<(String, String), StoreError> {
        self.mint_login(user, credential, ttl_ms, &[], peer, |_| Ok(()))
    }
}
