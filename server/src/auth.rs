//! Authorization of every people RPC by one layer, and the `Auth` and
//! `Sessions` services.
//!
//! The layer looks the method up in [`dbmon_auth::perms::METHODS`]: a method
//! missing there is refused; a public one passes; any other needs a
//! macaroon in the `macaroon` metadata key, verified and checked against the
//! method's operation. The [`Grant`] goes into the request's extensions for
//! the handlers, which narrow clusters with it. Refusals are
//! `Unauthenticated` (no valid token) or `PermissionDenied` (a valid token
//! that does not allow the call), each with an audit line.

use crate::peer::peer_from;
use dbmon_auth::passkey::{Passkeys, Poll};
use dbmon_auth::perms::Access;
use dbmon_auth::store::now_ms;
use dbmon_auth::{Denied, Grant, METADATA_KEY, Role, Verifier};
use dbmon_proto::v1::auth_server::Auth;
use dbmon_proto::v1::poll_login_response::State as PollState;
use dbmon_proto::v1::sessions_server::Sessions;
use dbmon_proto::v1::{
    ListSessionsRequest, ListSessionsResponse, LogoutRequest, LogoutResponse, MintBadgeRequest,
    MintBadgeResponse, PollLoginRequest, PollLoginResponse, RevokeSessionRequest,
    RevokeSessionResponse, Session, StartLoginRequest, StartLoginResponse, WhoAmIRequest,
    WhoAmIResponse,
};
use std::sync::Arc;
use std::task::{Context, Poll as TaskPoll};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// The server's side of people's logins (cheap to clone).
#[derive(Clone)]
pub struct PeopleAuth {
    pub verifier: Verifier,
    pub passkeys: Arc<Passkeys>,
    /// Bumped whenever a login may have been revoked (a logout, a
    /// revocation, a change of the store on disk): open Watch streams
    /// re-check their token.
    pub revocations: watch::Sender<u64>,
}

impl PeopleAuth {
    pub fn bump(&self) {
        self.revocations.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The reason `grant` is no longer valid, if it is not.
    pub fn still_valid(&self, grant: &Grant) -> Result<(), Denied> {
        self.verifier.store().read_with(|state| {
            let session = state
                .sessions
                .get(&grant.login)
                .ok_or_else(|| Denied::UnknownKey(grant.login.clone()))?;
            if !state.users.contains_key(&grant.user) {
                return Err(Denied::NoUser(grant.user.clone()));
            }
            match session.revoked_ms {
                Some(at) => Err(Denied::Revoked(at)),
                None => Ok(()),
            }
        })?;
        if now_ms() >= grant.expires_ms {
            return Err(Denied::Expired(grant.expires_ms));
        }
        Ok(())
    }
}

/// Waits until `grant`'s login ends (revoked, user removed: checked each
/// time the store may have changed; or expired) and says why on `end`.
/// Returns early when the stream is gone.
pub async fn watch_login(
    auth: PeopleAuth,
    grant: Grant,
    mut end: tokio::sync::oneshot::Sender<Denied>,
) {
    let mut revocations = auth.revocations.subscribe();
    let expiry = tokio::time::Instant::now()
        + std::time::Duration::from_millis((grant.expires_ms - now_ms()).max(0) as u64);
    let expired = tokio::time::sleep_until(expiry);
    tokio::pin!(expired);
    loop {
        tokio::select! {
            _ = revocations.changed() => {
                if let Err(d) = auth.still_valid(&grant) {
                    let _ = end.send(d);
                    return;
                }
            }
            _ = &mut expired => {
                let _ = end.send(Denied::Expired(grant.expires_ms));
                return;
            }
            _ = end.closed() => return,
        }
    }
}

/// The gRPC status of a refusal.
pub fn status_of(d: &Denied) -> Status {
    if d.is_permission() {
        Status::permission_denied(d.to_string())
    } else {
        Status::unauthenticated(d.to_string())
    }
}

/// The grant the layer put on the request. Its absence means the request
/// did not go through the layer: refuse rather than serve unchecked.
pub fn grant_of<T>(request: &Request<T>) -> Result<Grant, Status> {
    request.extensions().get::<Grant>().cloned().ok_or_else(|| {
        Status::unauthenticated("no verified token on this request; run `dbmon-client login`")
    })
}

/// Checks one request against the table; the grant for the handlers.
pub fn check(
    verifier: &Verifier,
    path: &str,
    token: Option<&str>,
) -> Result<Option<Grant>, Denied> {
    let access =
        dbmon_auth::perms::access(path).ok_or_else(|| Denied::UnknownMethod(path.into()))?;
    if access == Access::Public {
        return Ok(None);
    }
    if access == Access::Collector {
        return Err(Denied::CollectorOnly(path.to_string()));
    }
    let token = token.ok_or(Denied::Missing)?;
    let grant = verifier.verify(token, now_ms())?;
    grant.authorize(path, access)?;
    Ok(Some(grant))
}

/// How long a request whose token names a login the server does not know
/// waits for the store to change (a login minted by `dbmon token mint` a
/// moment ago) before it is refused. The store is re-read every 200 ms.
const UNKNOWN_LOGIN_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// The tower layer in front of the people endpoint's services.
#[derive(Clone)]
pub struct AuthLayer {
    pub verifier: Verifier,
    /// Changes whenever the store did (`PeopleAuth::revocations`).
    pub changes: watch::Receiver<u64>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            changes: self.changes.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Verifier,
    changes: watch::Receiver<u64>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> TaskPoll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The ready service is the one to call; the clone waits for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_string();
        // Web pages and their JSON API check their own input.
        if !path.starts_with("/dbmon.") {
            return Box::pin(inner.call(req));
        }
        let peer = peer_from(req.extensions());
        let token = req
            .headers()
            .get(METADATA_KEY)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let first = check(&self.verifier, &path, token);
        if let Err(Denied::UnknownKey(_)) = first {
            // A login this server has not read yet: asked again once the
            // store changes, or refused after a moment. Nothing else waits.
            let (verifier, mut changes) = (self.verifier.clone(), self.changes.clone());
            let token = token.map(str::to_string);
            return Box::pin(async move {
                changes.mark_unchanged();
                let _ = tokio::time::timeout(UNKNOWN_LOGIN_WAIT, changes.changed()).await;
                match check(&verifier, &path, token.as_deref()) {
                    Ok(grant) => {
                        if let Some(g) = grant {
                            req.extensions_mut().insert(g);
                        }
                        inner.call(req).await
                    }
                    Err(denied) => Ok(refuse(&denied, token.as_deref(), &peer, &path)),
                }
            });
        }
        match first {
            Ok(grant) => {
                if let Some(g) = grant {
                    req.extensions_mut().insert(g);
                }
                Box::pin(inner.call(req))
            }
            Err(denied) => {
                let response = refuse(&denied, token, &peer, &path);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The answer to a refused request, written to the audit log first.
fn refuse(
    denied: &Denied,
    token: Option<&str>,
    peer: &str,
    path: &str,
) -> http::Response<tonic::body::Body> {
    let (user, login) = token
        .and_then(|t| dbmon_auth::token::inspect(t).ok())
        .map(|(login, caveats)| {
            let user = caveats
                .iter()
                .find_map(|c| c.strip_prefix("user = ").map(str::to_string))
                .unwrap_or_default();
            (user, login)
        })
        .unwrap_or_default();
    dbmon_auth::audit("denied", &user, &login, peer, &format!("{path}: {denied}"));
    status_of(denied).into_http()
}

#[tonic::async_trait]
impl Auth for PeopleAuth {
    async fn start_login(
        &self,
        request: Request<StartLoginRequest>,
    ) -> Result<Response<StartLoginResponse>, Status> {
        let peer = peer_from(request.extensions());
        let s = self.passkeys.start_login(&peer).map_err(|e| match e {
            dbmon_auth::passkey::AuthError::RateLimited(_)
            | dbmon_auth::passkey::AuthError::Busy => Status::resource_exhausted(e.to_string()),
            e => Status::internal(e.to_string()),
        })?;
        Ok(Response::new(StartLoginResponse {
            url: s.url,
            user_code: s.user_code,
            device_code: s.device_code,
            expires_at_ms: s.expires_ms,
            interval_ms: 1000,
        }))
    }

    async fn poll_login(
        &self,
        request: Request<PollLoginRequest>,
    ) -> Result<Response<PollLoginResponse>, Status> {
        let peer = peer_from(request.extensions());
        let code = request.into_inner().device_code;
        let resp = match self.passkeys.poll(&code, &peer) {
            Ok(Poll::Pending) => PollLoginResponse {
                state: PollState::Pending as i32,
                ..Default::default()
            },
            Ok(Poll::Expired) => PollLoginResponse {
                state: PollState::Expired as i32,
                ..Default::default()
            },
            Ok(Poll::Approved { token, user }) => PollLoginResponse {
                state: PollState::Approved as i32,
                macaroon: token,
                user,
            },
            Err(e) => return Err(Status::resource_exhausted(e.to_string())),
        };
        Ok(Response::new(resp))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let g = grant_of(&request)?;
        Ok(Response::new(WhoAmIResponse {
            user: g.user,
            role: g.role.to_string(),
            login: g.login,
            ops: g.ops.iter().map(|o| o.to_string()).collect(),
            clusters: g
                .clusters
                .map(|c| c.into_iter().collect())
                .unwrap_or_default(),
            expires_at_ms: g.expires_ms,
            caveats: g.caveats,
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let peer = peer_from(request.extensions());
        let g = grant_of(&request)?;
        let login = g.login.clone();
        self.verifier
            .store()
            .revoke(|id, _| id == login)
            .map_err(|e| Status::internal(e.to_string()))?;
        self.bump();
        dbmon_auth::audit("revoke", &g.user, &g.login, &peer, "logout");
        Ok(Response::new(LogoutResponse { login: g.login }))
    }
}

#[tonic::async_trait]
impl Sessions for PeopleAuth {
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        grant_of(&request)?;
        let state = self.verifier.store().snapshot();
        let now = now_ms();
        let sessions = state
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_ms > now)
            .map(|(id, s)| Session {
                login: id.clone(),
                user: s.user.clone(),
                credential: s.credential.clone(),
                peer: s.peer.clone(),
                created_at_ms: s.created_ms,
                expires_at_ms: s.expires_ms,
                revoked_at_ms: s.revoked_ms.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        let peer = peer_from(request.extensions());
        let g = grant_of(&request)?;
        let req = request.into_inner();
        if req.login.is_empty() == req.user.is_empty() {
            return Err(Status::invalid_argument(
                "give either `login` (one login's id) or `user` (all of a user's logins)",
            ));
        }
        let state = self.verifier.store().snapshot();
        let admin = |user: &str| state.users.get(user).is_some_and(|u| u.role == Role::Admin);
        let target_user = if req.user.is_empty() {
            state
                .sessions
                .get(&req.login)
                .map(|s| s.user.clone())
                .ok_or_else(|| Status::not_found(format!("no login {}", req.login)))?
        } else {
            req.user.clone()
        };
        if g.role != Role::Admin && admin(&target_user) {
            return Err(Status::permission_denied(format!(
                "{target_user} is an admin; only an admin may revoke an admin's logins"
            )));
        }
        let revoked = self
            .verifier
            .store()
            .revoke(|id, s| {
                if req.user.is_empty() {
                    id == req.login
                } else {
                    s.user == req.user
                }
            })
            .map_err(|e| Status::internal(e.to_string()))?;
        self.bump();
        for id in &revoked {
            dbmon_auth::audit("revoke", &target_user, id, &peer, &format!("by {}", g.user));
        }
        Ok(Response::new(RevokeSessionResponse { revoked }))
    }

    async fn mint_badge(
        &self,
        request: Request<MintBadgeRequest>,
    ) -> Result<Response<MintBadgeResponse>, Status> {
        const DAY_MS: i64 = 86_400_000;
        let peer = peer_from(request.extensions());
        let g = grant_of(&request)?;
        let req = request.into_inner();
        if !dbmon_config::valid_cluster_name(&req.cluster) {
            return Err(Status::invalid_argument(format!(
                "{:?} is not a cluster name (letters, digits, '-', '_' or '.')",
                req.cluster
            )));
        }
        if !g.sees(&req.cluster) {
            return Err(Status::permission_denied(format!(
                "this login may not read cluster {}, so it may not make its badge",
                req.cluster
            )));
        }
        let ttl = match req.ttl_ms {
            0 => 90 * DAY_MS,
            t if (1..=366 * DAY_MS).contains(&t) => t,
            t => {
                return Err(Status::invalid_argument(format!(
                    "ttl {t} ms: expected more than 0 and at most a year"
                )));
            }
        };
        let (login, token) = self
            .verifier
            .mint_badge_token(&g.user, &req.cluster, ttl, &peer)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.bump();
        dbmon_auth::audit(
            "badge",
            &g.user,
            &login,
            &peer,
            &format!("badge token for {}", req.cluster),
        );
        Ok(Response::new(MintBadgeResponse {
            login,
            token,
            expires_at_ms: now_ms() + ttl,
        }))
    }
}

/// Re-reads the auth store when it changes on disk (a `dbmon user` command)
/// and tells open streams to re-check their tokens.
pub async fn watch_store(auth: PeopleAuth, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Off the runtime's threads: with a shared store this is a query,
        // and a database that hangs must not stall the server with it.
        let store = auth.verifier.store().clone();
        match tokio::task::spawn_blocking(move || store.refresh()).await {
            Ok(Ok(true)) => auth.bump(),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "auth store refused; keeping the last good copy")
            }
            Err(e) => tracing::error!(error = %e, "auth store refresh failed"),
        }
    }
}

/// The clusters a people request may see, as the cache takes them (empty:
/// all), from the caller's grant and what it asked for.
pub fn scoped(grant: &dbmon_auth::Grant, asked: &[String]) -> Result<Vec<String>, Status> {
    match grant.scope(asked).map_err(|d| status_of(&d))? {
        None => Ok(Vec::new()),
        Some(s) if s.is_empty() => Err(Status::permission_denied(
            "this token's cluster scope is empty (its caveats and the user's clusters share none); ask for a token that names a cluster you may see",
        )),
        Some(s) => Ok(s.into_iter().collect()),
    }
}
