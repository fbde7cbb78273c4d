//! The sign-in pages, served on the people endpoint (the server's own
//! origin, because browsers bind passkeys to it), and their JSON API.
//!
//! - `GET /invite#SECRET`: register a passkey with an invite.
//! - `GET /login/ID`: show a CLI login's code and assert a passkey.
//! - The dashboard's sign-in page ([`signin_page`], routed by the dashboard).
//! - `POST /api/register/{start,finish}`, `POST /api/login/{start,finish}`.
//!
//! Pages load only their own script and style (a strict Content Security
//! Policy), may not be framed, and are never cached. The API takes JSON only
//! (so a cross-site form cannot post to it), at most 64 KiB.

use crate::peer::peer_from;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dbmon_auth::passkey::{AuthError, Passkeys};
use dbmon_auth::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;

const JS: &str = include_str!("web/dbmon.js");
const DASHBOARD_JS: &str = include_str!("web/dashboard.js");
const CSS: &str = include_str!("web/dbmon.css");
const MAX_BODY: usize = 64 * 1024;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router(passkeys: Arc<Passkeys>) -> Router {
    Router::new()
        .route("/invite", get(invite_page))
        .route("/login/{id}", get(login_page))
        .route(
            "/assets/dbmon.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(DASHBOARD_JS, "text/javascript") }),
        )
        .route(
            "/assets/dbmon.css",
            get(|| async { asset(CSS, "text/css") }),
        )
        .route("/api/register/start", post(register_start))
        .route("/api/register/finish", post(register_finish))
        .route("/api/login/start", post(login_start))
        .route("/api/login/finish", post(login_finish))
        .with_state(passkeys)
}

pub(crate) fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    secure(([(header::CONTENT_TYPE, kind)], body).into_response())
}

pub(crate) fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

pub(crate) fn page(status: StatusCode, data: &str, title: &str, body: &str) -> Response {
    page_with(status, data, "", title, "", body)
}

/// A page with `head` added to its head and `header` before its title.
pub(crate) fn page_with(
    status: StatusCode,
    data: &str,
    head: &str,
    title: &str,
    header: &str,
    body: &str,
) -> Response {
    let script = if data.contains("data-page=\"dashboard\"") {
        "dashboard.js"
    } else {
        "dbmon.js"
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>dbmon: {title}</title><link rel=\"stylesheet\" href=\"/assets/dbmon.css\">\
         <script src=\"/assets/{script}\" defer></script></head>\
         <body {data}>{header}<main><h1>{title}</h1>{body}<p id=\"status\" role=\"status\"></p></main></body></html>",
        title = escape(title)
    );
    secure(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

/// The sign-in page, saying `why` the browser is here (if it was sent).
pub(crate) fn signin_page(status: StatusCode, why: &str) -> Response {
    let why = if why.is_empty() {
        String::new()
    } else {
        format!("<p class=\"why\">{}</p>", escape(why))
    };
    page(
        status,
        "data-page=\"signin\"",
        "Sign in to dbmon",
        &format!(
            "{why}<p><label>User name <input id=\"user\" autocomplete=\"username webauthn\" autofocus></label></p>\
             <p><button id=\"go\" type=\"button\">Sign in with a passkey</button></p>\
             <p>No passkey yet? Ask an admin for an invite (<code>dbmon user invite NAME</code>).</p>"
        ),
    )
}

async fn invite_page() -> Response {
    page(
        StatusCode::OK,
        "data-page=\"invite\"",
        "Register a passkey",
        "<p>You were invited to dbmon. Register a passkey (this device, a phone or a security key) to sign in.</p>\
         <p><button id=\"go\" type=\"button\">Register a passkey</button></p>",
    )
}

async fn login_page(State(p): State<Arc<Passkeys>>, Path(id): Path<String>) -> Response {
    match p.user_code(&id) {
        Some(code) => page(
            StatusCode::OK,
            &format!("data-page=\"login\" data-login=\"{}\"", escape(&id)),
            "Sign in to dbmon",
            &format!(
                "<p>Check that your terminal shows this code; if it does not, close this page.</p>\
                 <p class=\"code\" id=\"code\">{}</p>\
                 <p><label>User name <input id=\"user\" autocomplete=\"username webauthn\" autofocus></label></p>\
                 <p><button id=\"go\" type=\"button\">Sign in with a passkey</button></p>",
                escape(&code)
            ),
        ),
        None => page(
            StatusCode::NOT_FOUND,
            "data-page=\"gone\"",
            "This sign-in link has expired",
            "<p>It was used already or is older than five minutes. Run <code>dbmon-client login</code> again.</p>",
        ),
    }
}

/// A JSON error, with the HTTP status that fits it.
pub(crate) fn fail(e: AuthError) -> Response {
    let status = match &e {
        AuthError::RateLimited(_) | AuthError::Busy => StatusCode::TOO_MANY_REQUESTS,
        AuthError::Store(_) | AuthError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AuthError::Refused(_) | AuthError::NoPasskey(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "sign-in failed on the server's side");
    }
    secure((status, axum::Json(json!({ "error": e.to_string() }))).into_response())
}

fn bad(msg: String) -> Response {
    json_error(StatusCode::BAD_REQUEST, &msg)
}

/// A JSON refusal: `{"error": msg}` with `status`.
pub(crate) fn json_error(status: StatusCode, msg: &str) -> Response {
    secure((status, axum::Json(json!({ "error": msg }))).into_response())
}

/// The peer and the JSON body of a request.
pub(crate) async fn read<T: DeserializeOwned>(req: Request) -> Result<(String, T), Response> {
    let (parts, body) = req.into_parts();
    let peer = peer_from(&parts.extensions);
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(bad("expected Content-Type: application/json".into()));
    }
    let bytes = axum::body::to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|_| bad(format!("the body is over {MAX_BODY} bytes")))?;
    let value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad request body: {e}")))?;
    Ok((peer, value))
}

/// One API call: the JSON body read, `f` run with the peer and the body,
/// its answer (or refusal) as JSON.
async fn api<T: DeserializeOwned>(
    req: Request,
    f: impl FnOnce(&str, T) -> Result<serde_json::Value, AuthError>,
) -> Response {
    let (peer, body) = match read::<T>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match f(&peer, body) {
        Ok(v) => secure(axum::Json(v).into_response()),
        Err(e) => fail(e),
    }
}

#[derive(serde::Deserialize)]
struct RegisterStart {
    invite: String,
}

async fn register_start(State(p): State<Arc<Passkeys>>, req: Request) -> Response {
    api(req, |peer, b: RegisterStart| {
        let (ceremony, user, options) = p.start_registration(&b.invite, peer)?;
        Ok(json!({ "ceremony": ceremony, "user": user, "options": options }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct RegisterFinish {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

async fn register_finish(State(p): State<Arc<Passkeys>>, req: Request) -> Response {
    api(req, |peer, b: RegisterFinish| {
        let (user, credential) = p.finish_registration(&b.ceremony, &b.credential, peer)?;
        Ok(json!({ "user": user, "credential": credential }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct LoginStart {
    login: String,
    user: String,
}

async fn login_start(State(p): State<Arc<Passkeys>>, req: Request) -> Response {
    api(req, |peer, b: LoginStart| {
        let (ceremony, options) = p.start_assertion(&b.login, &b.user, peer)?;
        Ok(json!({ "ceremony": ceremony, "options": options }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct LoginFinish {
    login: String,
    ceremony: String,
    credential: PublicKeyCredential,
}

async fn login_finish(State(p): State<Arc<Passkeys>>, req: Request) -> Response {
    api(req, |peer, b: LoginFinish| {
        let user = p.finish_assertion(&b.login, &b.ceremony, &b.credential, peer)?;
        Ok(json!({ "user": user }))
    })
    .await
}
