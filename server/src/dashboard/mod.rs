//! The live dashboard, on the people endpoint beside the sign-in pages
//! (the same origin, the same passkeys, the same permission table).
//!
//! - `GET /signin`, `POST /api/signin/{start,finish}`: a passkey sign-in
//!   that makes a login of the browser's own (listed in `sessions list`,
//!   revocable, expiring) and sets its token as the session cookie.
//! - `GET /`: one tile per cluster the login may see.
//! - `GET /clusters/NAME`: the node × check matrix and the history strip.
//! - `GET /clusters/NAME/nodes/NODE/checks/CHECK`: one report's detail.
//! - `GET /live`: the live channel (Server-Sent Events), see [`live`].
//! - `POST /api/signout`: ends the browser's login.
//!
//! Every route passes [`crate::webauth::guard`] first. A cluster outside
//! the login's scope answers as one that does not exist.

pub mod live;
pub mod render;

use crate::cache::Cache;
use crate::web::{escape, page_with, secure};
use crate::webauth::Session;
use axum::Router;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dbmon_auth::passkey::AuthError;
use dbmon_auth::webauthn::PublicKeyCredential;
use dbmon_proto::v1::Health;
use dbmon_proto::v1::Report;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the dashboard's routes need.
pub struct Dashboard {
    pub cache: Arc<Cache>,
    pub auth: crate::auth::PeopleAuth,
    pub alerting: Arc<crate::alerting::Alerting>,
    /// The tile of each cluster as last drawn, shared by every open page:
    /// a thousand pages showing one change draw it once.
    pub tiles: Mutex<HashMap<String, Arc<Tile>>>,
}

/// A cluster's tile as drawn for the live channel.
pub struct Tile {
    /// The cluster's version (its newest entry's position) and the time
    /// bucket it was drawn in.
    version: u64,
    bucket: i64,
    /// The tile's HTML, for a page.
    pub html: String,
    /// The `html` event's data: `{"id": "tile-NAME", "html": …}`.
    pub data: Arc<str>,
    /// Health, stale, nodes up: what a page compares to know the clock
    /// changed a tile.
    pub key: (Health, bool, usize),
}

/// How long a drawn tile serves while its cluster is unchanged: what the
/// clock alone changes (staleness, alert marks) shows at most this late.
const TILE_TTL_MS: i64 = 2000;

impl Dashboard {
    pub fn new(
        cache: Arc<Cache>,
        auth: crate::auth::PeopleAuth,
        alerting: Arc<crate::alerting::Alerting>,
    ) -> Dashboard {
        Dashboard {
            cache,
            auth,
            alerting,
            tiles: Mutex::default(),
        }
    }

    /// The tile of `cluster` at `now`: the shared one while its cluster is
    /// unchanged and it is fresh, else drawn anew (None: no such cluster).
    pub fn tile(&self, cluster: &str, now: i64) -> Option<Arc<Tile>> {
        let version = self.cache.cluster_version(cluster)?;
        let bucket = now / TILE_TTL_MS;
        let lock = || self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = lock().get(cluster)
            && t.version == version
            && t.bucket == bucket
        {
            return Some(t.clone());
        }
        let latest = self.cache.latest(&[cluster.to_string()]);
        let sum = dbmon_proto::health::summarize(&latest, now)
            .into_iter()
            .next()?;
        let html = render::tile(&sum, &self.alerting.marks(cluster), now);
        let tile = Arc::new(Tile {
            version,
            bucket,
            data: live::fragment(&format!("tile-{cluster}"), &html),
            html,
            key: (sum.health, sum.stale, sum.nodes_up),
        });
        lock().insert(cluster.to_string(), tile.clone());
        Some(tile)
    }

    /// The clusters `session` may see, as a scope for the cache (empty: all).
    fn scope(&self, session: &Session) -> Vec<String> {
        session
            .grant
            .clusters
            .as_ref()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest reports of `cluster`, if the session may see it and the
    /// server holds any.
    fn cluster(&self, session: &Session, cluster: &str) -> Option<Vec<Report>> {
        if !session.grant.sees(cluster) {
            return None;
        }
        let latest = self.cache.latest(&[cluster.to_string()]);
        (!latest.is_empty()).then_some(latest)
    }
}

pub fn router(d: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/clusters/{cluster}", get(cluster_page))
        .route(
            "/clusters/{cluster}/nodes/{node}/checks/{check}",
            get(report_page),
        )
        .route("/live", get(live::live))
        .route("/api/signout", post(signout))
        .route(
            "/signin",
            get(|| async { crate::web::signin_page(StatusCode::OK, "") }),
        )
        .route("/api/signin/start", post(signin_start))
        .route("/api/signin/finish", post(signin_finish))
        .with_state(d)
}

/// A dashboard page: the header (who is signed in, sign out), `body`, the
/// live channel's address in `live` (empty: none), and the position the
/// page was drawn at, which the channel continues from.
fn dashboard_page(
    s: &Session,
    title: &str,
    live: &str,
    position: u64,
    crumbs: &str,
    body: &str,
) -> Response {
    let head = format!(
        "<meta name=\"csrf-token\" content=\"{csrf}\">",
        csrf = escape(&s.csrf)
    );
    let data = format!(
        "data-page=\"dashboard\" data-live=\"{}\" data-position=\"{position}\"",
        escape(live)
    );
    let header = format!(
        "<header class=\"bar\"><nav aria-label=\"breadcrumb\"><a href=\"/\">dbmon</a>{crumbs}</nav>\
         <p class=\"who\">{user} ({role}) <button id=\"signout\" type=\"button\">Sign out</button></p>\
         <p class=\"live\" id=\"live\" role=\"status\" data-state=\"connecting\">connecting…</p></header>",
        user = escape(&s.grant.user),
        role = s.grant.role,
    );
    page_with(StatusCode::OK, &data, &head, title, &header, body)
}

fn not_found(what: &str) -> Response {
    crate::web::page(
        StatusCode::NOT_FOUND,
        "data-page=\"missing\"",
        "Not found",
        &format!(
            "<p>{}</p><p><a href=\"/\">Back to the overview</a></p>",
            escape(what)
        ),
    )
}

async fn overview(State(d): State<Arc<Dashboard>>, Extension(s): Extension<Session>) -> Response {
    let position = d.cache.position();
    let now = dbmon_proto::now_ms();
    let tiles: String = d
        .cache
        .cluster_names(&d.scope(&s))
        .iter()
        .filter_map(|name| d.tile(name, now))
        .map(|t| t.html.clone())
        .collect();
    let body = if tiles.is_empty() {
        "<p id=\"empty\">No cluster has reported yet (or none is yours to see). Tiles appear here as collectors report.</p><section class=\"tiles\" id=\"tiles\"></section>".to_string()
    } else {
        format!("<section class=\"tiles\" id=\"tiles\" aria-label=\"clusters\">{tiles}</section>")
    };
    dashboard_page(&s, "Clusters", "/live", position, "", &body)
}

async fn cluster_page(
    State(d): State<Arc<Dashboard>>,
    Path(cluster): Path<String>,
    Extension(s): Extension<Session>,
) -> Response {
    let position = d.cache.position();
    let Some(latest) = d.cluster(&s, &cluster) else {
        return not_found(&format!("No cluster {cluster:?} here."));
    };
    let now = dbmon_proto::now_ms();
    let tile = d
        .tile(&cluster, now)
        .map(|t| t.html.clone())
        .unwrap_or_default();
    let history = d.cache.history(std::slice::from_ref(&cluster));
    let body = format!(
        "<section class=\"summary\" id=\"summary\">{tile}</section>{strip}<h2>Nodes and checks</h2>{matrix}",
        strip = render::strip(&crate::uptime::health_changes(&history), now),
        matrix = render::matrix(&latest, now),
    );
    let live = format!("/live?cluster={}", url_part(&cluster));
    let crumbs = format!(" / {}", escape(&cluster));
    dashboard_page(&s, &cluster, &live, position, &crumbs, &body)
}

fn url_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn report_page(
    State(d): State<Arc<Dashboard>>,
    Path((cluster, node, check)): Path<(String, String, String)>,
    Extension(s): Extension<Session>,
) -> Response {
    let position = d.cache.position();
    let node = if node == render::CLUSTER_WIDE {
        String::new()
    } else {
        node
    };
    let Some(report) = d
        .cluster(&s, &cluster)
        .and_then(|l| l.into_iter().find(|r| r.node == node && r.check == check))
    else {
        return not_found(&format!(
            "No report of check {check:?} on {:?} in cluster {cluster:?} here.",
            render::node_key(&node)
        ));
    };
    let history = d.cache.history(std::slice::from_ref(&cluster));
    let now = dbmon_proto::now_ms();
    let title = format!("{} {} {}", cluster, render::node_key(&node), check);
    let crumbs = format!(
        " / <a href=\"{}\">{}</a> / {} {}",
        escape(&render::cluster_href(&cluster)),
        escape(&cluster),
        escape(render::node_key(&node)),
        escape(&check)
    );
    let body = render::detail(&report, &history, now);
    dashboard_page(&s, &title, "", position, &crumbs, &body)
}

/// A JSON answer from the sign-in API, or its refusal.
fn answer(r: Result<serde_json::Value, AuthError>) -> Response {
    match r {
        Ok(v) => secure(axum::Json(v).into_response()),
        Err(e) => crate::web::fail(e),
    }
}

#[derive(serde::Deserialize)]
struct SigninStart {
    user: String,
}

async fn signin_start(State(d): State<Arc<Dashboard>>, req: Request) -> Response {
    let (peer, b) = match crate::web::read::<SigninStart>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    answer(
        d.auth
            .passkeys
            .start_signin(&b.user, &peer)
            .map(|(ceremony, options)| json!({ "ceremony": ceremony, "options": options })),
    )
}

#[derive(serde::Deserialize)]
struct SigninFinish {
    ceremony: String,
    credential: PublicKeyCredential,
}

async fn signin_finish(State(d): State<Arc<Dashboard>>, req: Request) -> Response {
    let (peer, b) = match crate::web::read::<SigninFinish>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match d
        .auth
        .passkeys
        .finish_signin(&b.ceremony, &b.credential, &peer)
    {
        Ok(signed) => {
            let max_age = ((signed.expires_ms - dbmon_proto::now_ms()) / 1000).max(0);
            let mut r = answer(Ok(json!({ "user": signed.user })));
            r.headers_mut().insert(
                header::SET_COOKIE,
                crate::webauth::set_cookie(&signed.token, max_age),
            );
            r
        }
        Err(e) => answer(Err(e)),
    }
}

/// Ends the browser's login: revoked in the store (every open live view of
/// it closes), the cookie cleared.
async fn signout(
    State(d): State<Arc<Dashboard>>,
    Extension(s): Extension<Session>,
    req: Request,
) -> Response {
    let peer = crate::peer::peer_from(req.extensions());
    let login = s.grant.login.clone();
    let revoked = d.auth.verifier.store().revoke(|id, _| *id == login);
    d.auth.bump();
    match revoked {
        Ok(_) => {
            dbmon_auth::audit("logout", &s.grant.user, &s.grant.login, &peer, "ok");
            let mut r = answer(Ok(json!({ "signed_out": s.grant.user })));
            r.headers_mut()
                .insert(header::SET_COOKIE, crate::webauth::clear_cookie());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot revoke a browser's login");
            crate::web::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot end the login: {e}"),
            )
        }
    }
}
