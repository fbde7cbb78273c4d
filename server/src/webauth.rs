//! Authorization of every web route of the people endpoint by one layer,
//! the browser's counterpart of [`crate::auth::AuthLayer`].
//!
//! The layer looks the route (its method and pattern, as routed) up in
//! [`dbmon_auth::perms::WEB_ROUTES`]: a route missing there is refused; a
//! public one passes (its handler authenticates what it takes: an invite,
//! a ceremony, a badge token); any other needs a signed-in browser's
//! session cookie, an HttpOnly, Secure, SameSite=Strict cookie holding a
//! login's macaroon, verified and checked against the route's operation.
//! Every state-changing request also shows that it comes from the
//! dashboard's own pages: an `Origin` equal to the server's and, with a
//! session, the session's CSRF token in `X-CSRF-Token`.
//!
//! A page asked without a valid session answers with the sign-in page
//! (401), and the stale cookie is cleared; the live channel and the JSON
//! API answer 401 or 403 with the reason. Every refusal writes an audit line.

use crate::peer::peer_from;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use dbmon_auth::perms::{Access, web_access};
use dbmon_auth::store::{now_ms, sha256_hex};
use dbmon_auth::{Denied, Grant, Verifier};
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "dbmon_session";
/// The header carrying a session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the layer needs.
pub struct WebAuth {
    pub verifier: Verifier,
    /// The server's origin as browsers send it (`https://host:port`).
    pub origin: String,
}

/// A request's session, for handlers behind the layer.
#[derive(Clone)]
pub struct Session {
    pub grant: Grant,
    /// The token to echo in `X-CSRF-Token` (derived from the cookie's
    /// macaroon, which pages never see).
    pub csrf: String,
}

/// The CSRF token of a session token: a hash of the secret cookie, so that
/// only a page of this origin, which the server gave it, knows it.
pub fn csrf_of(token: &str) -> String {
    sha256_hex(&format!("dbmon csrf {token}"))[..32].to_string()
}

/// The session token in the request's cookies.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then_some(v)
        })
}

/// The cookie that holds a session for `max_age_s` seconds.
pub fn set_cookie(token: &str, max_age_s: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| clear_cookie())
}

/// The header that makes a browser forget the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("dbmon_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// Whether a route answers people's eyes (a page) rather than a script.
fn is_page(method: &Method, pattern: &str) -> bool {
    method == Method::GET && !pattern.starts_with("/api/") && pattern != "/live"
}

/// The layer's function: see the module's documentation.
pub async fn guard(
    State(w): State<Arc<WebAuth>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let pattern = matched.as_ref().map_or("", |m| m.as_str()).to_string();
    let peer = peer_from(req.extensions());
    let refuse = |status: StatusCode, why: String, user: &str, login: &str| {
        dbmon_auth::audit(
            "denied",
            user,
            login,
            &peer,
            &format!("{method} {}: {why}", req.uri().path()),
        );
        crate::web::json_error(status, &why)
    };
    let Some(access) = web_access(method.as_str(), &pattern) else {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{method} {pattern} is not in the server's table of web routes"),
            "",
            "",
        );
    };
    let changes = method != Method::GET && method != Method::HEAD;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if changes && origin.is_some_and(|o| o != w.origin) {
        let why = format!(
            "a request from {:?} may not change anything here; open {} instead",
            origin.unwrap_or_default(),
            w.origin
        );
        return refuse(StatusCode::FORBIDDEN, why, "", "");
    }
    match access {
        Access::Public => return next.run(req).await,
        Access::Collector => {
            let why = Denied::CollectorOnly(pattern.clone()).to_string();
            return refuse(StatusCode::FORBIDDEN, why, "", "");
        }
        Access::Session | Access::Op(_) => {}
    }
    let Some(token) = session_token(req.headers()).map(str::to_string) else {
        // No cookie at all: a first visit, nothing to warn about or clear.
        return signed_out(&method, &pattern, "you are not signed in", false);
    };
    let grant = match w.verifier.verify(&token, now_ms()) {
        Ok(g) => g,
        Err(d) => {
            dbmon_auth::audit(
                "denied",
                "",
                "",
                &peer,
                &format!("{method} {}: {d}", req.uri().path()),
            );
            return signed_out(&method, &pattern, &d.to_string(), true);
        }
    };
    if let Err(d) = grant.authorize(&pattern, access) {
        return refuse(
            StatusCode::FORBIDDEN,
            d.to_string(),
            &grant.user,
            &grant.login,
        );
    }
    let csrf = csrf_of(&token);
    if changes {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if origin.is_none() || sent != Some(csrf.as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "this request did not come from a dbmon page (no Origin or CSRF token); reload the page".into(),
                &grant.user,
                &grant.login,
            );
        }
    }
    req.extensions_mut().insert(Session { grant, csrf });
    next.run(req).await
}

/// The answer to a request without a valid session: the sign-in page for
/// a page (saying `why` when `tell`, the cookie cleared), 401 for a script.
fn signed_out(method: &Method, pattern: &str, why: &str, tell: bool) -> Response {
    let mut r = if is_page(method, pattern) {
        crate::web::signin_page(StatusCode::UNAUTHORIZED, if tell { why } else { "" })
    } else {
        crate::web::json_error(StatusCode::UNAUTHORIZED, &format!("{why}; sign in again"))
    };
    // A cookie that was sent and refused is cleared.
    if tell {
        r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn guarded(router: Router) -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dbmon_auth::store::AuthStore::open(dir.path()).expect("store");
        let w = Arc::new(WebAuth {
            verifier: Verifier::new(store),
            origin: "https://dbmon.example:7443".into(),
        });
        let r = router.route_layer(axum::middleware::from_fn_with_state(w, guard));
        (r, dir)
    }

    async fn call(r: &Router, req: http::Request<Body>) -> (StatusCode, HeaderMap, String) {
        let resp = r.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_route_missing_from_the_table_is_refused() {
        let (r, _dir) = guarded(
            Router::new()
                .route("/not-in-the-table", get(|| async { "served" }))
                .route("/signin", get(|| async { "the sign-in page" })),
        );
        let get = |p: &str| http::Request::get(p).body(Body::empty()).expect("request");
        let (status, _, body) = call(&r, get("/not-in-the-table")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("not in the server's table"), "{body}");
        let (status, _, body) = call(&r, get("/signin")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "the sign-in page")
        );
    }

    #[tokio::test]
    async fn a_page_without_a_session_is_the_sign_in_page_and_a_post_needs_its_origin() {
        let (r, _dir) = guarded(
            Router::new()
                .route("/", get(|| async { "the overview" }))
                .route("/api/signout", post(|| async { "signed out" }))
                .route("/api/signin/start", post(|| async { "started" })),
        );
        let (status, headers, body) = call(
            &r,
            http::Request::get("/")
                .header(header::COOKIE, "dbmon_session=tampered")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("data-page=\"signin\""), "{body}");
        let cleared = headers[header::SET_COOKIE].to_str().expect("ascii");
        assert!(cleared.starts_with("dbmon_session=;") && cleared.contains("Max-Age=0"));
        let (status, _, body) = call(
            &r,
            http::Request::post("/api/signout")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _, body) = call(
            &r,
            http::Request::post("/api/signin/start")
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("may not change anything here"), "{body}");
        let (status, _, _) = call(
            &r,
            http::Request::post("/api/signin/start")
                .header(header::ORIGIN, "https://dbmon.example:7443")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_with_its_flags() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dbmon_session=tok; b=2"),
        );
        assert_eq!(session_token(&h), Some("tok"));
        let set = set_cookie("tok", 60);
        let set = set.to_str().expect("ascii");
        for flag in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(set.contains(flag), "{set}");
        }
        assert_ne!(csrf_of("tok"), csrf_of("tok2"));
    }
}
