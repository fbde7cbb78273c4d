//! `Monitor.Watch`: a subscriber's stream. It opens with a snapshot (or
//! the entries after the position the subscriber resumes from), then
//! carries every new report of the subscriber's clusters, putting whatever
//! is already waiting into one message. A subscriber that falls behind the
//! broadcast ring gets a fresh snapshot saying why (a resync), never a
//! silent gap; one whose login ends is told so and closed.

use crate::auth::scoped;
use crate::cache::{Cache, Entry, Event, Resume};
use crate::peer::peer_of;
use crate::wire::{Outgoing, WatchStream};
use dbmon_proto::v1::{Snapshot, WatchEvent, WatchRequest, watch_event};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status};

/// Most reports sent in one Watch message.
pub const MAX_BATCH: usize = 64;

/// Reports per snapshot part: bounds what one subscriber holds in its queue.
pub const SNAPSHOT_PART: usize = 500;

type Tx = mpsc::Sender<Result<Outgoing, Status>>;

/// What a Watch needs of the server.
pub struct Sources<'a> {
    pub cache: &'a Arc<Cache>,
    /// Servers share a store: a resume position may come from another one.
    pub shared_store: bool,
    /// People's logins, so that a stream ends with its login.
    pub auth: &'a crate::auth::PeopleAuth,
}

/// Opens a Watch for the request's grant and clusters.
pub async fn open(
    services: Sources<'_>,
    request: Request<WatchRequest>,
) -> Result<Response<WatchStream>, Status> {
    let peer = peer_of(&request);
    let grant = crate::auth::grant_of(&request)?;
    let req = request.into_inner();
    let clusters = scoped(&grant, &req.clusters)?;
    // The stream's login is watched by a task of its own, which says when
    // it ends (revoked, user removed, expired). The stream's loop then
    // polls one private channel instead of the revocation signal all
    // streams share.
    let (end_tx, ended_rx) = tokio::sync::oneshot::channel::<dbmon_auth::Denied>();
    tokio::spawn(crate::auth::watch_login(
        services.auth.clone(),
        grant.clone(),
        end_tx,
    ));
    // A position another server gave (sharing the store) may be ahead of
    // this one's reading by a moment: wait for it, briefly.
    if req.after_position > 0 && services.shared_store {
        services
            .cache
            .wait_position(req.after_position, std::time::Duration::from_secs(2))
            .await;
    }
    // A snapshot (and why), or the entries to catch up on.
    let (rx, start, position) = if req.after_position == 0 {
        let (rx, entries, pos) = services.cache.subscribe_entries(&clusters);
        (rx, Resume::Resync("initial".into(), entries), pos)
    } else {
        services.cache.resume(&clusters, req.after_position)
    };
    // Small: the real queue is the broadcast ring; this only decouples.
    let (tx, out) = mpsc::channel::<Result<Outgoing, Status>>(16);
    tracing::debug!(%peer, ?clusters, "watch started");
    let sub = Subscriber {
        tx,
        _counted: services.cache.watch_streams.open(),
        cache: services.cache.clone(),
        clusters,
        peer,
    };
    let after = req.after_position;
    tokio::spawn(async move {
        let ended = |d: dbmon_auth::Denied| {
            dbmon_auth::audit(
                "watch_closed",
                &grant.user,
                &grant.login,
                &sub.peer,
                &d.to_string(),
            );
            Err(crate::auth::status_of(&d))
        };
        if sub.start(start, position, after).await {
            sub.follow(rx, position, ended_rx, ended).await;
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(out),
    )))
}

/// One subscriber's side of the fan-out.
struct Subscriber {
    tx: Tx,
    /// Counts this stream in `dbmon_watch_subscribers` while it is open.
    _counted: crate::cache::StreamGuard,
    cache: Arc<Cache>,
    clusters: Vec<String>,
    peer: String,
}

impl Subscriber {
    /// The opening: a snapshot, or what came after the resume position.
    /// False when the subscriber is gone.
    async fn start(&self, start: Resume, position: u64, after: u64) -> bool {
        match start {
            Resume::Resync(reason, entries) => {
                send_snapshot(&self.tx, &entries, position, &reason).await
            }
            Resume::From(entries) => {
                tracing::debug!(peer = %self.peer, after, catching_up = entries.len(), "watch resumed");
                for chunk in entries.chunks(MAX_BATCH) {
                    let last = chunk.last().map_or(position, |e| e.position);
                    let reports = chunk.iter().map(|e| e.report.to_report()).collect();
                    let message = Outgoing::Message(crate::wire::reports_event(reports, last));
                    if self.tx.send(Ok(message)).await.is_err() {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Live: every new report of the subscriber's clusters, batched, until
    /// the subscriber leaves or its login ends.
    async fn follow(
        &self,
        mut rx: broadcast::Receiver<Event>,
        position: u64,
        mut ended_rx: tokio::sync::oneshot::Receiver<dbmon_auth::Denied>,
        ended: impl Fn(dbmon_auth::Denied) -> Result<Outgoing, Status>,
    ) {
        loop {
            let next = tokio::select! {
                n = rx.recv() => n,
                _ = self.tx.closed() => return,
                d = &mut ended_rx => {
                    if let Ok(d) = d {
                        let _ = self.tx.send(ended(d)).await;
                    }
                    return;
                }
            };
            let keep_going = match next {
                Ok(e) if e.position <= position => true,
                Ok(e) => {
                    // Whatever else is already waiting goes in the same message.
                    let mut batch = Vec::new();
                    let mut last = e.position;
                    if e.report.in_clusters(&self.clusters) {
                        batch.push(e);
                    }
                    let mut lagged = None;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(more) => {
                                last = more.position;
                                if more.report.in_clusters(&self.clusters) {
                                    batch.push(more);
                                }
                            }
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                lagged = Some(n);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    (batch.is_empty() || self.send_batch(batch, last).await)
                        && match lagged {
                            Some(n) => self.resync(n).await,
                            None => true,
                        }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.resync(n).await,
                Err(broadcast::error::RecvError::Closed) => false,
            };
            if !keep_going {
                return;
            }
        }
    }

    /// One message of new reports (one alone, or a batch); false when the
    /// subscriber is gone.
    async fn send_batch(&self, events: Vec<Event>, position: u64) -> bool {
        if let Some(oldest) = events.first() {
            self.cache.dispatch.observe(oldest.arrived.elapsed());
        }
        self.tx
            .send(Ok(Outgoing::Reports { events, position }))
            .await
            .is_ok()
    }

    /// The subscriber fell `missed` reports behind: a fresh snapshot that
    /// says so. False when the subscriber is gone.
    async fn resync(&self, missed: u64) -> bool {
        tracing::warn!(peer = %self.peer, missed, "watch subscriber fell behind; resynchronizing");
        let (latest, pos) = self.cache.snapshot_entries(&self.clusters);
        send_snapshot(
            &self.tx,
            &latest,
            pos,
            &format!("resync: fell {missed} reports behind"),
        )
        .await
    }
}

/// Sends a snapshot in parts, copying reports one part at a time; false if
/// the subscriber is gone.
async fn send_snapshot(tx: &Tx, entries: &[Arc<Entry>], position: u64, reason: &str) -> bool {
    let parts = entries.len().div_ceil(SNAPSHOT_PART).max(1);
    for part in 0..parts {
        let chunk = entries
            .iter()
            .skip(part * SNAPSHOT_PART)
            .take(SNAPSHOT_PART);
        let event = Outgoing::Message(WatchEvent {
            event: Some(watch_event::Event::Snapshot(Snapshot {
                latest: chunk.map(|e| e.report.to_report()).collect(),
                reason: reason.to_string(),
                server_time_ms: dbmon_proto::now_ms(),
                part: part as u32,
                last: part + 1 == parts,
            })),
            position,
        });
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    true
}
