//! Watch subscribers over TLS, each on its own connection, and what they
//! count: delivery latency, resyncs, silent gaps, the newest report held.

use crate::measure::Histogram;
use crate::stack::{authed, channel};
use anyhow::{Context, Result};
use dbmon_proto::now_ms;
use dbmon_proto::v1::WatchRequest;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_stream::StreamExt;

/// How many subscribers open their connection and stream at a time.
const OPENING_AT_ONCE: usize = 32;

/// What a subscriber reads of a `WatchEvent`: the same wire format, only
/// the fields measured decoded (the rest skipped, nothing allocated for
/// names and messages), so that the subscribers' decoding takes as little
/// of the machine as it can and what is measured is the server's delivery.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LightEvent {
    #[prost(oneof = "LightKind", tags = "4, 1, 2")]
    pub event: Option<LightKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum LightKind {
    #[prost(message, tag = "4")]
    Batch(LightBatch),
    #[prost(message, tag = "1")]
    Snapshot(LightSnapshot),
    #[prost(message, tag = "2")]
    Report(LightReport),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LightBatch {
    #[prost(message, repeated, tag = "1")]
    pub reports: Vec<LightReport>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LightSnapshot {
    #[prost(message, repeated, tag = "1")]
    pub latest: Vec<LightReport>,
    #[prost(bytes = "bytes", tag = "2")]
    pub reason: bytes::Bytes,
    #[prost(uint32, tag = "4")]
    pub part: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LightReport {
    #[prost(int64, tag = "8")]
    pub observed_at_ms: i64,
    #[prost(bytes = "bytes", tag = "10")]
    pub collector_id: bytes::Bytes,
    #[prost(uint64, tag = "11")]
    pub seq: u64,
}

impl LightReport {
    /// Published straight to the server by the load tool.
    fn published(&self) -> bool {
        self.collector_id == "state"
    }
}

/// `Monitor.Watch`, its events read as [`LightEvent`].
async fn watch(
    ch: tonic::transport::Channel,
    req: tonic::Request<WatchRequest>,
) -> Result<tonic::Streaming<LightEvent>> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<WatchRequest, LightEvent>::default();
    let path = http::uri::PathAndQuery::from_static("/dbmon.v1.Monitor/Watch");
    Ok(grpc.server_streaming(req, path, codec).await?.into_inner())
}

/// Subscribers of one kind (prompt or slow), with what they counted.
///
/// Reports published straight to the server (collector `state`, numbered
/// without holes) go to `hist` and are checked for gaps; reports of the
/// real collector polling its nodes go to `polled`.
pub struct Readers {
    pub n: usize,
    pub hist: Arc<Histogram>,
    pub polled: Arc<Histogram>,
    /// Resync snapshots (not the initial one).
    pub resyncs: Arc<AtomicU64>,
    /// Reports of the publisher missing between two a subscriber received
    /// with no resync between them: a silent gap. Must stay 0.
    pub gaps: Arc<AtomicU64>,
    /// Streams that ended while the phase ran.
    pub ended: Arc<AtomicU64>,
    /// Each subscriber's newest report of the publisher, received live or
    /// in a snapshot: once every one holds the last sent, nothing is owed.
    newest: Vec<Arc<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    /// `n` Watch streams over TLS, each its own connection
    /// ([`OPENING_AT_ONCE`] opened at a time). With `hold`, each stops
    /// reading while it says true.
    pub async fn start(
        url: &str,
        pki: &Path,
        token: &str,
        n: usize,
        hold: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Readers> {
        let mut r = Readers {
            n,
            hist: Arc::new(Histogram::new()),
            polled: Arc::new(Histogram::new()),
            resyncs: Arc::default(),
            gaps: Arc::default(),
            ended: Arc::default(),
            newest: Vec::with_capacity(n),
            tasks: Vec::with_capacity(n),
        };
        let mut opening = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < n || !opening.is_empty() {
            while next < n && opening.len() < OPENING_AT_ONCE {
                let (url, pki, token, i) =
                    (url.to_string(), pki.to_path_buf(), token.to_string(), next);
                opening.spawn(async move {
                    let ch = channel(&url, &pki, None)
                        .await
                        .with_context(|| format!("subscriber {i}"))?;
                    let stream = watch(ch, authed(WatchRequest::default(), &token)?)
                        .await
                        .with_context(|| format!("subscriber {i}: Watch"))?;
                    anyhow::Ok(stream)
                });
                next += 1;
            }
            let Some(opened) = opening.join_next().await else {
                break;
            };
            let stream = opened??;
            let newest = Arc::new(AtomicU64::new(0));
            r.newest.push(newest.clone());
            r.tasks
                .push(tokio::spawn(r.read(stream, newest, hold.clone())));
        }
        Ok(r)
    }

    /// One subscriber's reading loop.
    fn read(
        &self,
        mut stream: tonic::Streaming<LightEvent>,
        newest: Arc<AtomicU64>,
        mut hold: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (hist, polled, resyncs, gaps, ended) = (
            self.hist.clone(),
            self.polled.clone(),
            self.resyncs.clone(),
            self.gaps.clone(),
            self.ended.clone(),
        );
        async move {
            let mut last: Option<u64> = None;
            while let Some(Ok(e)) = stream.next().await {
                let reports = match e.event {
                    Some(LightKind::Snapshot(s)) => {
                        if s.reason != "initial" && s.part == 0 {
                            resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        for r in s.latest.iter().filter(|r| r.published()) {
                            newest.fetch_max(r.seq, Ordering::Relaxed);
                        }
                        last = None;
                        continue;
                    }
                    Some(LightKind::Batch(b)) => b.reports,
                    Some(LightKind::Report(r)) => vec![r],
                    None => continue,
                };
                let now = now_ms();
                for r in reports {
                    if !r.published() {
                        polled.record(now - r.observed_at_ms);
                        continue;
                    }
                    // The phases of one server number on from the last.
                    if let Some(l) = last
                        && r.seq > l + 1
                    {
                        gaps.fetch_add(r.seq - l - 1, Ordering::Relaxed);
                    }
                    last = Some(r.seq);
                    newest.fetch_max(r.seq, Ordering::Relaxed);
                    hist.record(now - r.observed_at_ms);
                }
                if let Some(h) = &mut hold {
                    // A stalled reader: what it does not read waits in the
                    // transport's buffers, then in the server's queue,
                    // until it falls out of it.
                    let _ = h.wait_for(|held| !*held).await;
                }
            }
            ended.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn reset(&self) {
        self.hist.reset();
        self.polled.reset();
        self.resyncs.store(0, Ordering::Relaxed);
        self.gaps.store(0, Ordering::Relaxed);
        self.ended.store(0, Ordering::Relaxed);
        for n in &self.newest {
            n.store(0, Ordering::Relaxed);
        }
    }

    /// How many hold report `seq` (or a later one).
    pub fn holding(&self, seq: u64) -> usize {
        self.newest
            .iter()
            .filter(|n| n.load(Ordering::Relaxed) >= seq)
            .count()
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
