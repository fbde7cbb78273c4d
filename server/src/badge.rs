//! Status badges on the people endpoint: `GET /badge/NAME.svg` (a flat
//! SVG: "NAME | healthy", coloured by health) and `GET /badge/NAME.json`
//! (the shields.io endpoint format), for a README, a wiki or a dashboard.
//! With `?window=24h` or `?window=7d`, the badge is the cluster's uptime
//! over that window ("NAME uptime 24h | 99.95%"): the time it was healthy
//! or degraded against the time it was unavailable, from the log of
//! health changes ([`crate::uptime`]); time without reports counts as neither, and a badge
//! that knew the cluster for less than the window says for how long.
//!
//! A badge answers for a cluster marked `public: true` in the
//! configuration, or with a badge token in `?token=` (made by
//! `dbmon-client token badge --cluster NAME`): a login's token that allows
//! the `badge` operation on that one cluster and nothing else. A full login
//! token is refused there, so that none is ever left in a URL. Without
//! either, the answer is 404 whether the cluster exists or not.

use crate::cache::Cache;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dbmon_auth::Verifier;
use dbmon_proto::v1::Health;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

/// How long a badge proxy may keep a badge before asking again.
const MAX_AGE: &str = "max-age=30";

/// What the badge routes need.
pub struct Badges {
    pub cache: Arc<Cache>,
    /// Each cluster's health changes, for uptime badges.
    pub uptime: Arc<crate::uptime::HealthLog>,
    pub verifier: Verifier,
    /// Clusters marked `public: true`; replaced by a reload.
    pub public: Arc<RwLock<BTreeSet<String>>>,
}

pub fn router(badges: Arc<Badges>) -> Router {
    Router::new()
        .route("/badge/{file}", get(badge))
        .with_state(badges)
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Svg,
    Json,
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (status, text.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "no such badge: a cluster's badge needs `public: true` on the cluster, or a badge token (dbmon-client token badge --cluster NAME) in ?token=\n",
    )
}

async fn badge(
    State(b): State<Arc<Badges>>,
    Path(file): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (cluster, format) = match file.rsplit_once('.') {
        Some((c, "svg")) => (c, Format::Svg),
        Some((c, "json")) => (c, Format::Json),
        _ => return not_found(),
    };
    if !dbmon_config::valid_cluster_name(cluster) {
        return not_found();
    }
    if let Some(other) = query.keys().find(|k| *k != "token" && *k != "window") {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("unknown parameter {other:?}: a badge takes only ?token= and ?window=\n"),
        );
    }
    let window = match query.get("window").map(String::as_str) {
        None => None,
        Some("24h") => Some(("24h", 24 * 3_600_000)),
        Some("7d") => Some(("7d", 7 * 24 * 3_600_000)),
        Some(other) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!(
                    "window {other:?} is not offered: an uptime badge takes ?window=24h or ?window=7d\n"
                ),
            );
        }
    };
    let public = b
        .public
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains(cluster);
    if let Some(token) = query.get("token") {
        match b.verifier.verify(token, dbmon_proto::now_ms()) {
            Err(e) => {
                return plain(
                    StatusCode::UNAUTHORIZED,
                    &format!("badge token refused: {e}\n"),
                );
            }
            Ok(g) if !g.is_badge_only() || g.clusters.is_none() => {
                return plain(
                    StatusCode::UNAUTHORIZED,
                    "a login's token is refused here: a token in a URL is left in logs and histories; make a badge token with `dbmon-client token badge --cluster NAME`, which allows nothing else\n",
                );
            }
            Ok(g) if !g.sees(cluster) => return not_found(),
            Ok(_) => {}
        }
    } else if !public {
        return not_found();
    }
    let now = dbmon_proto::now_ms();
    let (label, word, fill) = match window {
        None => {
            let latest = b.cache.latest(&[cluster.to_string()]);
            let health = dbmon_proto::health::summarize(&latest, now)
                .first()
                .map_or(Health::Unknown, |s| s.health);
            (
                cluster.to_string(),
                dbmon_proto::health::health_name(health).to_string(),
                colour(health),
            )
        }
        Some((name, ms)) => {
            let u = b.uptime.uptime(cluster, ms, now).unwrap_or_default();
            (
                format!("{cluster} uptime {name}"),
                uptime_words(&u),
                uptime_colour(u.ratio()),
            )
        }
    };
    let (body, kind) = match format {
        Format::Svg => (svg(&label, &word, fill), "image/svg+xml"),
        Format::Json => (
            serde_json::json!({
                "schemaVersion": 1,
                "label": label,
                "message": word,
                "color": fill.trim_start_matches('#'),
            })
            .to_string(),
            "application/json",
        ),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// An uptime as a badge says it: `99.95%`, with `of 3h` when the server
/// knew the cluster for less of the window than it asked (the server
/// started since, or the cluster was silent), `no data` when not at all.
fn uptime_words(u: &crate::uptime::Uptime) -> String {
    let Some(ratio) = u.ratio() else {
        return "no data".into();
    };
    let pct = ratio * 100.0;
    // Never round up to a perfect record that was not.
    let shown = if pct < 100.0 {
        format!("{:.2}%", (pct * 100.0).floor() / 100.0)
    } else {
        "100%".to_string()
    };
    if u.known_ms() * 10 < u.window_ms * 9 {
        let known = std::time::Duration::from_secs((u.known_ms() / 1000).max(1) as u64);
        let coarse = if known.as_secs() >= 3600 {
            std::time::Duration::from_secs(known.as_secs() / 3600 * 3600)
        } else if known.as_secs() >= 60 {
            std::time::Duration::from_secs(known.as_secs() / 60 * 60)
        } else {
            known
        };
        format!("{shown} of {}", humantime::format_duration(coarse))
    } else {
        shown
    }
}

/// Green from 99.9%, then shades down to red below 95%.
fn uptime_colour(ratio: Option<f64>) -> &'static str {
    match ratio {
        None => "#616161",
        Some(r) if r >= 0.999 => "#2e7d32",
        Some(r) if r >= 0.99 => "#5b7f00",
        Some(r) if r >= 0.95 => "#b35c00",
        Some(_) => "#c62828",
    }
}

/// Dark enough for white text (contrast above 4.5:1); the word says the
/// health too, for anyone who does not see the colour.
pub fn colour(health: Health) -> &'static str {
    match health {
        Health::Healthy => "#2e7d32",
        Health::Degraded => "#b35c00",
        Health::Unavailable => "#c62828",
        _ => "#616161",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width of `text` in 11 px Verdana, near enough for a badge.
fn width(text: &str) -> u32 {
    text.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | '\'' | '|' => 4,
            'm' | 'w' | 'M' | 'W' => 10,
            c if c.is_ascii_uppercase() => 8,
            _ => 7,
        })
        .sum::<u32>()
        + 12
}

/// A flat badge: the label on grey, the health on its colour.
pub fn svg(label: &str, message: &str, colour: &str) -> String {
    let (lw, mw) = (width(label), width(message));
    let w = lw + mw;
    let (label, message) = (escape(label), escape(message));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {message}\">\
<title>{label}: {message}</title>\
<rect width=\"{w}\" height=\"20\" rx=\"3\" fill=\"#555\"/>\
<rect x=\"{lw}\" width=\"{mw}\" height=\"20\" rx=\"3\" fill=\"{colour}\"/>\
<rect x=\"{lw}\" width=\"4\" height=\"20\" fill=\"{colour}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{mx}\" y=\"14\">{message}</text></g></svg>",
        lx = lw / 2,
        mx = lw + mw / 2,
    )
}
