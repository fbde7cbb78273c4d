//! The dashboard's live channel: `GET /live` (the overview's tiles) or
//! `GET /live?cluster=NAME` (one cluster's tile, matrix cells and history
//! strip), as Server-Sent Events.
//!
//! Each `html` event carries `{"id": ELEMENT, "html": FRAGMENT}`, drawn by
//! the same functions as the page, and the server position it is current
//! to as its event id. The page gives the position it was drawn at
//! (`?after=`); a browser that reconnects sends the last id it saw
//! (`Last-Event-ID`), and the channel goes on from there, as `watch` does:
//! what changed since is drawn again, or, when the position has left the
//! server's window (or a slow page fell behind), everything is. A login
//! that ends (signed out, revoked, its user removed, expired) gets an
//! `end` event with the reason and the channel closes. Every few seconds
//! the tiles are checked against the clock, so a cluster whose reports
//! went stale says so without a new report.

use super::{Dashboard, render};
use crate::cache::{Entry, Resume};
use crate::webauth::Session;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dbmon_proto::v1::{Health, Report};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;

/// Most entries folded into one round of updates.
const MAX_BATCH: usize = 1024;
/// How often tiles are checked for reports gone stale.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
pub struct LiveQuery {
    cluster: Option<String>,
    after: Option<u64>,
}

/// What a channel draws.
enum View {
    Overview { scope: Vec<String> },
    Cluster(String),
}

impl View {
    fn clusters(&self) -> Vec<String> {
        match self {
            View::Overview { scope } => scope.clone(),
            View::Cluster(c) => vec![c.clone()],
        }
    }
}

/// What changed since the last round.
enum Touched {
    All,
    Some(Vec<Arc<Entry>>),
}

pub async fn live(
    State(d): State<Arc<Dashboard>>,
    Query(q): Query<LiveQuery>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let view = match q.cluster {
        Some(c) if s.grant.sees(&c) && d.cache.cluster_version(&c).is_some() => View::Cluster(c),
        Some(c) => {
            return crate::web::json_error(
                StatusCode::NOT_FOUND,
                &format!("no cluster {c:?} here"),
            );
        }
        None => View::Overview { scope: d.scope(&s) },
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(run(d, view, after, s, tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// One channel's loop: updates until the page goes or the login ends.
async fn run(d: Arc<Dashboard>, view: View, after: u64, s: Session, tx: mpsc::Sender<Event>) {
    let _counted = d.cache.live_pages.open();
    let (end_tx, mut ended) = tokio::sync::oneshot::channel::<dbmon_auth::Denied>();
    tokio::spawn(crate::auth::watch_login(d.auth.clone(), s.grant, end_tx));
    let clusters = view.clusters();
    let (mut rx, resume, mut position) = d.cache.resume(&clusters, after);
    let mut drawn = Drawn::default();
    let first = match resume {
        Resume::From(entries) if after > 0 => Touched::Some(entries),
        _ => Touched::All,
    };
    if !drawn.send(&d, &view, first, position, &tx).await {
        return;
    }
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        let touched = tokio::select! {
            why = &mut ended => {
                if let Ok(why) = why {
                    let data = serde_json::json!({ "why": why.to_string() }).to_string();
                    let _ = tx.send(Event::default().event("end").data(data)).await;
                }
                return;
            }
            _ = tx.closed() => return,
            _ = recheck.tick() => Touched::Some(Vec::new()),
            got = rx.recv() => match got {
                Ok(first) => {
                    let mut batch = crate::cache::with_waiting(&mut rx, first, MAX_BATCH);
                    position = position.max(batch.last().map_or(0, |e| e.position));
                    batch.retain(|e| e.report.in_clusters(&clusters));
                    Touched::Some(batch.into_iter().map(|e| e.entry.clone()).collect())
                }
                // Fell behind the broadcast ring: draw everything anew.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    position = d.cache.position();
                    Touched::All
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !drawn.send(&d, &view, touched, position, &tx).await {
            return;
        }
    }
}

/// What a channel last sent of each cluster (health, stale, nodes up), to
/// send a tile again when the clock alone changed it.
#[derive(Default)]
struct Drawn {
    tiles: HashMap<String, (Health, bool, usize)>,
}

impl Drawn {
    /// Draws what `touched` changed and sends it; false once the page is gone.
    async fn send(
        &mut self,
        d: &Dashboard,
        view: &View,
        touched: Touched,
        position: u64,
        tx: &mpsc::Sender<Event>,
    ) -> bool {
        let now = dbmon_proto::now_ms();
        // Event data ready to send: a shared tile's, or drawn here.
        let mut out: Vec<Arc<str>> = Vec::new();
        let all = matches!(touched, Touched::All);
        let entries = match touched {
            Touched::All => Vec::new(),
            Touched::Some(e) => e,
        };
        // The clusters whose tiles to look at: those reported on, every one
        // in view when drawing anew, and on a recheck (no entries) every
        // one drawn.
        let names: BTreeSet<String> = if all {
            d.cache
                .cluster_names(&view.clusters())
                .into_iter()
                .collect()
        } else if entries.is_empty() {
            self.tiles.keys().cloned().collect()
        } else {
            entries
                .iter()
                .map(|e| e.report.cluster().to_string())
                .collect()
        };
        let rechecking = !all && entries.is_empty();
        for name in &names {
            let Some(tile) = d.tile(name, now) else {
                out.push(fragment(&format!("tile-{name}"), ""));
                self.tiles.remove(name);
                continue;
            };
            let before = self.tiles.insert(name.clone(), tile.key);
            if rechecking && before == Some(tile.key) {
                continue;
            }
            let health_changed = before.is_none_or(|b| b.0 != tile.key.0);
            out.push(tile.data.clone());
            if let View::Cluster(c) = view {
                if all {
                    let latest = d.cache.latest(std::slice::from_ref(c));
                    out.extend(cells(latest.iter(), now));
                }
                if all || health_changed {
                    let history = d.cache.history(std::slice::from_ref(c));
                    let strip = render::strip(&crate::uptime::health_changes(&history), now);
                    out.push(fragment("strip", &strip));
                }
            }
        }
        if let View::Cluster(_) = view
            && !all
        {
            // The last report of each cell in this round.
            let mut last: BTreeMap<(&str, &str), &Entry> = BTreeMap::new();
            for e in &entries {
                let r = &e.report;
                last.insert((r.node_name(), r.check_name()), e);
            }
            let reports: Vec<Report> = last.values().map(|e| e.report.to_report()).collect();
            out.extend(cells(reports.iter(), now));
        }
        let id = position.to_string();
        for data in out {
            let event = Event::default().event("html").id(&id).data(&*data);
            if tx.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The data of an `html` event: the element's id and its new HTML.
pub fn fragment(id: &str, html: &str) -> Arc<str> {
    serde_json::json!({ "id": id, "html": html })
        .to_string()
        .into()
}

fn cells<'a>(
    reports: impl Iterator<Item = &'a Report> + 'a,
    now: i64,
) -> impl Iterator<Item = Arc<str>> + 'a {
    reports.map(move |r| fragment(&render::cell_id(&r.node, &r.check), &render::cell(r, now)))
}
