//! The WebAuthn ceremonies (webauthn-rs) and the CLI-to-browser login.
//!
//! Registration: `dbmon user add` makes an invite; its secret travels in the
//! URL fragment to the browser, which sends it back to start a registration.
//! The invite is spent by a successful registration.
//!
//! Login (a device flow): `dbmon-client login` asks the server to start a
//! login and gets a public login id (in the URL it prints), a short user code
//! (shown by the CLI and by the page, to compare) and a secret device code
//! (kept by the CLI to poll with). The person asserts a passkey on the page;
//! the server mints a macaroon for a new login and hands it to the next poll
//! carrying the device code, once.
//!
//! Every ceremony's state lives in memory until it finishes, fails or
//! expires; finishing consumes it, so an assertion cannot be replayed.

use crate::limit::Limiter;
use crate::store::{AuthStore, Credential, StoreError, now_ms, random_secret, sha256_hex};
use crate::token::Verifier;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Webauthn, WebauthnBuilder,
};

/// How long a ceremony (and a device login) may take.
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;
/// Pending ceremonies kept at most; past this, new ones are refused.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the invite is unknown, used or expired; ask an admin for a new one (`dbmon user invite NAME`)"
    )]
    BadInvite,
    #[error("no such login or it expired; run `dbmon-client login` again")]
    BadLogin,
    #[error("this ceremony is unknown or already finished; reload the page and try again")]
    BadChallenge,
    #[error("user {0:?} has no passkey registered here; ask an admin for an invite")]
    NoPasskey(String),
    #[error("the passkey was refused: {0}")]
    Refused(String),
    #[error("too many attempts from {0}; wait a minute")]
    RateLimited(IpAddr),
    #[error("too many logins in progress; try again shortly")]
    Busy,
    #[error("the server's WebAuthn settings are invalid: {0}; check server.auth.origin")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Registration {
    user: String,
    invite_hash: String,
    state: PasskeyRegistration,
    expires_ms: i64,
}

/// State of one CLI login.
pub enum Poll {
    Pending,
    /// The token, handed out once.
    Approved {
        token: String,
        user: String,
    },
    Expired,
}

struct DeviceLogin {
    device_hash: String,
    user_code: String,
    expires_ms: i64,
    assertion: Option<(String, String, PasskeyAuthentication)>,
    token: Option<(String, String)>,
}

impl DeviceLogin {
    /// Not expired and not yet approved.
    fn pending(&self) -> bool {
        self.expires_ms > now_ms() && self.token.is_none()
    }
}

/// A started CLI login, for the CLI.
pub struct Started {
    pub login_id: String,
    pub device_code: String,
    pub user_code: String,
    pub url: String,
    pub expires_ms: i64,
}

pub struct Passkeys {
    webauthn: Webauthn,
    origin: Url,
    verifier: Verifier,
    /// Lifetime of a new login; changed by a configuration reload.
    session_ttl_ms: std::sync::atomic::AtomicI64,
    registrations: Mutex<HashMap<String, Registration>>,
    logins: Mutex<HashMap<String, DeviceLogin>>,
    /// Browser sign-ins in progress, by ceremony id.
    signins: Mutex<HashMap<String, SignIn>>,
    limiter: Limiter,
}

/// A browser sign-in in progress: the user named and the assertion asked.
struct SignIn {
    user: String,
    state: PasskeyAuthentication,
    expires_ms: i64,
}

/// A finished browser sign-in: its login and the token for the cookie.
pub struct SignedIn {
    pub user: String,
    pub login: String,
    pub token: String,
    pub expires_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A credential id as shown and stored: lowercase hex.
pub fn cred_id_string(id: &[u8]) -> String {
    hex::encode(id)
}

/// A short code people compare between terminal and page: `ABCD-EFGH`,
/// from an alphabet without look-alikes.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let bytes: [u8; 8] = rand::random();
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &s[..4], &s[4..])
}

fn audit(event: &str, user: &str, credential: &str, login: &str, peer: &str, outcome: &str) {
    tracing::info!(target: "dbmon::audit", event, user, credential, login, peer, outcome, "audit");
}

impl Passkeys {
    /// `origin` is the URL people's browsers use to reach the server (its
    /// host is the WebAuthn relying party id).
    pub fn new(
        verifier: Verifier,
        origin: &Url,
        session_ttl_ms: i64,
        limiter: Limiter,
    ) -> Result<Passkeys, AuthError> {
        let rp_id = origin
            .host_str()
            .ok_or_else(|| AuthError::Config(format!("{origin} has no host")))?;
        let webauthn = WebauthnBuilder::new(rp_id, origin)
            .and_then(|b| b.rp_name("dbmon").build())
            .map_err(|e| AuthError::Config(format!("{origin}: {e}")))?;
        Ok(Passkeys {
            webauthn,
            origin: origin.clone(),
            verifier,
            session_ttl_ms: std::sync::atomic::AtomicI64::new(session_ttl_ms),
            registrations: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
            signins: Mutex::new(HashMap::new()),
            limiter,
        })
    }

    pub fn origin(&self) -> &Url {
        &self.origin
    }

    pub fn store(&self) -> &AuthStore {
        self.verifier.store()
    }

    /// Logins made from now on live `ttl_ms` (a configuration reload).
    pub fn set_session_ttl(&self, ttl_ms: i64) {
        self.session_ttl_ms
            .store(ttl_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The URL of an invite, to give to the person.
    pub fn invite_url(origin: &Url, secret: &str) -> String {
        format!("{}invite#{secret}", with_slash(origin))
    }

    fn check_rate(&self, peer: &str) -> Result<(), AuthError> {
        let ip = peer_ip(peer);
        if self.limiter.allow(ip) {
            Ok(())
        } else {
            audit("rate_limited", "", "", "", peer, "refused");
            Err(AuthError::RateLimited(ip))
        }
    }

    fn prune(&self) {
        let now = now_ms();
        lock(&self.registrations).retain(|_, r| r.expires_ms > now);
        lock(&self.logins).retain(|_, l| l.expires_ms > now);
        lock(&self.signins).retain(|_, l| l.expires_ms > now);
    }

    /// Starts registering a passkey with an invite secret. Returns the
    /// ceremony id and the options for `navigator.credentials.create`.
    pub fn start_registration(
        &self,
        invite: &str,
        peer: &str,
    ) -> Result<(String, String, CreationChallengeResponse), AuthError> {
        self.check_rate(peer)?;
        self.prune();
        let hash = sha256_hex(invite.trim());
        let state = self.store().fresh();
        let now = now_ms();
        let Some(inv) = state
            .invites
            .iter()
            .find(|i| i.hash == hash && i.expires_ms > now)
        else {
            audit("register", "", "", "", peer, "bad invite");
            return Err(AuthError::BadInvite);
        };
        let user = state.users.get(&inv.user).ok_or(AuthError::BadInvite)?;
        let exclude = user
            .credentials
            .iter()
            .map(|c| c.passkey.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, reg) = self
            .webauthn
            .start_passkey_registration(user.handle, &inv.user, &inv.user, Some(exclude))
            .map_err(|e| AuthError::Refused(e.to_string()))?;
        let mut regs = lock(&self.registrations);
        if regs.len() >= MAX_PENDING {
            return Err(AuthError::Busy);
        }
        let id = random_secret();
        regs.insert(
            id.clone(),
            Registration {
                user: inv.user.clone(),
                invite_hash: hash,
                state: reg,
                expires_ms: now + CEREMONY_TTL_MS,
            },
        );
        Ok((id, inv.user.clone(), options))
    }

    /// Finishes a registration: stores the passkey and spends the invite.
    /// Returns the user and the credential id.
    pub fn finish_registration(
        &self,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
        peer: &str,
    ) -> Result<(String, String), AuthError> {
        self.check_rate(peer)?;
        let reg = lock(&self.registrations)
            .remove(ceremony)
            .filter(|r| r.expires_ms > now_ms())
            .ok_or(AuthError::BadChallenge)?;
        let passkey = match self
            .webauthn
            .finish_passkey_registration(credential, &reg.state)
        {
            Ok(p) => p,
            Err(e) => {
                audit(
                    "register",
                    &reg.user,
                    "",
                    "",
                    peer,
                    &format!("refused: {e}"),
                );
                return Err(AuthError::Refused(e.to_string()));
            }
        };
        let id = cred_id_string(passkey.cred_id().as_ref());
        let (user, hash, id2) = (reg.user.clone(), reg.invite_hash.clone(), id.clone());
        self.store().update(move |s| {
            let now = now_ms();
            let pos = s
                .invites
                .iter()
                .position(|i| i.hash == hash && i.expires_ms > now)
                .ok_or_else(|| StoreError::Refused(AuthError::BadInvite.to_string()))?;
            s.invites.remove(pos);
            let u = s
                .users
                .get_mut(&user)
                .ok_or_else(|| StoreError::Refused(AuthError::BadInvite.to_string()))?;
            u.credentials.push(Credential {
                id: id2,
                passkey,
                created_ms: now,
                last_used_ms: None,
            });
            Ok(())
        })?;
        audit("register", &reg.user, &id, "", peer, "ok");
        Ok((reg.user, id))
    }

    /// Starts a CLI login.
    pub fn start_login(&self, peer: &str) -> Result<Started, AuthError> {
        self.check_rate(peer)?;
        self.prune();
        let mut logins = lock(&self.logins);
        if logins.len() >= MAX_PENDING {
            return Err(AuthError::Busy);
        }
        let login_id = random_secret()[..32].to_string();
        let device_code = random_secret();
        let code = user_code();
        let expires_ms = now_ms() + CEREMONY_TTL_MS;
        logins.insert(
            login_id.clone(),
            DeviceLogin {
                device_hash: sha256_hex(&device_code),
                user_code: code.clone(),
                expires_ms,
                assertion: None,
                token: None,
            },
        );
        Ok(Started {
            url: format!("{}login/{login_id}", with_slash(&self.origin)),
            login_id,
            device_code,
            user_code: code,
            expires_ms,
        })
    }

    /// The code the login page shows, while the login is pending.
    pub fn user_code(&self, login_id: &str) -> Option<String> {
        lock(&self.logins)
            .get(login_id)
            .filter(|l| l.pending())
            .map(|l| l.user_code.clone())
    }

    /// Starts the passkey assertion of a CLI login for `user`.
    pub fn start_assertion(
        &self,
        login_id: &str,
        user: &str,
        peer: &str,
    ) -> Result<(String, RequestChallengeResponse), AuthError> {
        let (options, auth) = self.challenge(user, peer)?;
        let mut logins = lock(&self.logins);
        let login = logins
            .get_mut(login_id)
            .filter(|l| l.pending())
            .ok_or(AuthError::BadLogin)?;
        let ceremony = random_secret();
        login.assertion = Some((ceremony.clone(), user.to_string(), auth));
        Ok((ceremony, options))
    }

    /// Finishes the assertion: a new login with its own root key; its token
    /// waits for the CLI's next poll. Returns the user.
    pub fn finish_assertion(
        &self,
        login_id: &str,
        ceremony: &str,
        credential: &PublicKeyCredential,
        peer: &str,
    ) -> Result<String, AuthError> {
        self.check_rate(peer)?;
        let (user, auth) = {
            let mut logins = lock(&self.logins);
            let login = logins
                .get_mut(login_id)
                .filter(|l| l.pending())
                .ok_or(AuthError::BadLogin)?;
            match login.assertion.take() {
                Some((c, user, auth)) if c == ceremony => (user, auth),
                other => {
                    login.assertion = other;
                    return Err(AuthError::BadChallenge);
                }
            }
        };
        let (_, token, _) =
            self.verified_login(&user, &auth, credential, peer, |cred| cred.to_string())?;
        if let Some(l) = lock(&self.logins).get_mut(login_id) {
            l.token = Some((token, user.clone()));
        }
        Ok(user)
    }

    /// The passkeys of `user` and an assertion challenge for them.
    fn challenge(
        &self,
        user: &str,
        peer: &str,
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), AuthError> {
        self.check_rate(peer)?;
        let state = self.store().fresh();
        let passkeys: Vec<_> = state
            .users
            .get(user)
            .map(|u| u.credentials.iter().map(|c| c.passkey.clone()).collect())
            .unwrap_or_default();
        if passkeys.is_empty() {
            audit("login", user, "", "", peer, "no passkey");
            return Err(AuthError::NoPasskey(user.to_string()));
        }
        self.webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| AuthError::Refused(e.to_string()))
    }

    /// Checks `credential` against the challenge `auth` of `user`, records
    /// the passkey's use, and makes a new login (its credential column from
    /// `label` of the passkey's id). Returns the login, its token and when
    /// it expires.
    fn verified_login(
        &self,
        user: &str,
        auth: &PasskeyAuthentication,
        credential: &PublicKeyCredential,
        peer: &str,
        label: impl FnOnce(&str) -> String,
    ) -> Result<(String, String, i64), AuthError> {
        let result = match self
            .webauthn
            .finish_passkey_authentication(credential, auth)
        {
            Ok(r) => r,
            Err(e) => {
                audit("login", user, "", "", peer, &format!("refused: {e}"));
                return Err(AuthError::Refused(e.to_string()));
            }
        };
        let cred = cred_id_string(result.cred_id().as_ref());
        let (u2, c2) = (user.to_string(), cred.clone());
        self.store().update(move |s| {
            let u = s
                .users
                .get_mut(&u2)
                .ok_or_else(|| StoreError::Refused(format!("user {u2:?} was removed")))?;
            let c = u
                .credentials
                .iter_mut()
                .find(|c| c.id == c2)
                .ok_or_else(|| StoreError::Refused("the passkey was removed".into()))?;
            c.passkey.update_credential(&result);
            c.last_used_ms = Some(now_ms());
            Ok(())
        })?;
        let ttl = self
            .session_ttl_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let expires_ms = now_ms() + ttl;
        let (login, token) = self.verifier.new_login(user, &label(&cred), peer, ttl)?;
        audit("login", user, &cred, &login, peer, "ok");
        audit("mint", user, &cred, &login, peer, "ok");
        Ok((login, token, expires_ms))
    }

    /// Starts a browser sign-in of `user` (the dashboard's): the ceremony
    /// id and the options for `navigator.credentials.get`.
    pub fn start_signin(
        &self,
        user: &str,
        peer: &str,
    ) -> Result<(String, RequestChallengeResponse), AuthError> {
        self.prune();
        let (options, state) = self.challenge(user, peer)?;
        let mut signins = lock(&self.signins);
        if signins.len() >= MAX_PENDING {
            return Err(AuthError::Busy);
        }
        let ceremony = random_secret();
        signins.insert(
            ceremony.clone(),
            SignIn {
                user: user.to_string(),
                state,
                expires_ms: now_ms() + CEREMONY_TTL_MS,
            },
        );
        Ok((ceremony, options))
    }

    /// Finishes a browser sign-in: a new login of its own (listed as a
    /// browser's, revocable), whose token the server sets as the cookie.
    pub fn finish_signin(
        &self,
        ceremony: &str,
        credential: &PublicKeyCredential,
        peer: &str,
    ) -> Result<SignedIn, AuthError> {
        self.check_rate(peer)?;
        let signin = lock(&self.signins)
            .remove(ceremony)
            .filter(|s| s.expires_ms > now_ms())
            .ok_or(AuthError::BadChallenge)?;
        let (login, token, expires_ms) =
            self.verified_login(&signin.user, &signin.state, credential, peer, |cred| {
                format!("browser, passkey {cred}")
            })?;
        Ok(SignedIn {
            user: signin.user,
            login,
            token,
            expires_ms,
        })
    }

    /// The CLI's poll with its device code.
    pub fn poll(&self, device_code: &str, peer: &str) -> Result<Poll, AuthError> {
        let hash = sha256_hex(device_code);
        let mut logins = lock(&self.logins);
        let Some((id, login)) = logins.iter_mut().find(|(_, l)| l.device_hash == hash) else {
            self.check_rate(peer)?;
            return Ok(Poll::Expired);
        };
        if login.expires_ms <= now_ms() {
            let id = id.clone();
            logins.remove(&id);
            return Ok(Poll::Expired);
        }
        match login.token.take() {
            Some((token, user)) => {
                let id = id.clone();
                logins.remove(&id);
                Ok(Poll::Approved { token, user })
            }
            None => Ok(Poll::Pending),
        }
    }
}

fn with_slash(u: &Url) -> String {
    let s = u.as_str();
    if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    }
}

/// The IP of `ip:port` (or of an unparsable peer: unspecified, one bucket).
pub fn peer_ip(peer: &str) -> IpAddr {
    peer.parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<IpAddr>())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}
