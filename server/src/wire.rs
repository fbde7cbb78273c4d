//! `Monitor.Watch` on the wire: each report is encoded once for every
//! subscriber, and a subscriber's message is written around those bytes.
//!
//! A `WatchEvent` carrying reports is, on the wire, its oneof field (a
//! `Report`, or a `ReportBatch` whose field 1 repeats `Report`s) followed by
//! `position`; a `Report` inside it is a length-delimited copy of the
//! report's own encoding. So a subscriber's message is a few bytes of keys
//! and lengths around reports the broadcast already holds encoded
//! ([`Published::wire`]). Clients decode an ordinary `WatchEvent`; the
//! tests hold the two encodings equal.
//!
//! The generated `MonitorServer` fixes the codec of every method; this
//! module's [`Monitor`] serves `Watch` with [`WireCodec`] and hands every
//! other method of the service to the generated server.

use crate::cache::{Cache, Event, Published};
use dbmon_proto::v1::monitor_server::{self, MonitorServer};
use dbmon_proto::v1::{ReportBatch, WatchEvent, WatchRequest, watch_event};
use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;

/// `WatchEvent.report`, `WatchEvent.batch`, `WatchEvent.position` and
/// `ReportBatch.reports` (dbmon.proto).
const EVENT_REPORT: u32 = 2;
const EVENT_BATCH: u32 = 4;
const EVENT_POSITION: u32 = 3;
const BATCH_REPORTS: u32 = 1;

/// The stream a Watch returns.
pub type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<Outgoing, Status>> + Send + 'static>>;

/// A boxed future, as tonic's services return.
pub type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// What serves `Monitor`: the generated trait for every other method, and
/// Watch streams of [`Outgoing`] messages.
pub trait Watcher: monitor_server::Monitor + Clone {
    fn open_watch(
        &self,
        request: tonic::Request<WatchRequest>,
    ) -> BoxFuture<Result<tonic::Response<WatchStream>, Status>>;

    /// Where the fan-out histogram is kept.
    fn cache(&self) -> Arc<Cache>;
}

/// One message of a Watch stream as the server sends it.
#[derive(Debug)]
pub enum Outgoing {
    /// New reports (one: a `report`; more: a `batch`), from their shared
    /// encodings, and the position of the last.
    Reports { events: Vec<Event>, position: u64 },
    /// Anything else (snapshots, catching up from the cache), encoded as is.
    Message(WatchEvent),
}

impl Outgoing {
    /// The same message as a `WatchEvent`, built from the cache's entries.
    pub fn into_event(self) -> WatchEvent {
        match self {
            Outgoing::Message(e) => e,
            Outgoing::Reports { events, position } => reports_event(
                events.iter().map(|e| e.report.to_report()).collect(),
                position,
            ),
        }
    }

    /// Writes the encoded `WatchEvent` to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Outgoing::Message(e) => {
                // Only fails when the buffer cannot grow; tonic's can.
                let _ = e.encode(buf);
            }
            Outgoing::Reports { events, position } => {
                if let [one] = events.as_slice() {
                    let wire = one.wire();
                    encode_key(EVENT_REPORT, WireType::LengthDelimited, buf);
                    encode_varint(wire.len() as u64, buf);
                    buf.put_slice(wire);
                } else {
                    let inner: usize = events.iter().map(|e| nested_len(BATCH_REPORTS, e)).sum();
                    encode_key(EVENT_BATCH, WireType::LengthDelimited, buf);
                    encode_varint(inner as u64, buf);
                    for e in events {
                        let wire = e.wire();
                        encode_key(BATCH_REPORTS, WireType::LengthDelimited, buf);
                        encode_varint(wire.len() as u64, buf);
                        buf.put_slice(wire);
                    }
                }
                if *position != 0 {
                    encode_key(EVENT_POSITION, WireType::Varint, buf);
                    encode_varint(*position, buf);
                }
            }
        }
    }
}

/// A message of reports: one alone as a `report`, more as a `batch`.
pub fn reports_event(mut reports: Vec<dbmon_proto::Report>, position: u64) -> WatchEvent {
    let event = if reports.len() == 1 {
        watch_event::Event::Report(reports.remove(0))
    } else {
        watch_event::Event::Batch(ReportBatch { reports })
    };
    WatchEvent {
        event: Some(event),
        position,
    }
}

/// Length of `e`'s report as a length-delimited field `tag`.
fn nested_len(tag: u32, e: &Published) -> usize {
    let n = e.wire().len();
    key_len(tag) + encoded_len_varint(n as u64) + n
}

/// Encodes [`Outgoing`], decodes `WatchRequest`; measures, as it writes a
/// message of new reports, how long its oldest report took from arriving
/// at the server to this moment (`dbmon_watch_fanout_seconds`).
#[derive(Clone)]
pub struct WireCodec {
    pub cache: Arc<Cache>,
}

impl Codec for WireCodec {
    type Encode = Outgoing;
    type Decode = WatchRequest;
    type Encoder = WireCodec;
    type Decoder = WireCodec;

    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.clone()
    }
}

impl Encoder for WireCodec {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        if let Outgoing::Reports { events, .. } = &item
            && let Some(oldest) = events.first()
        {
            self.cache.fanout.observe(oldest.arrived.elapsed());
        }
        Ok(())
    }
}

impl Decoder for WireCodec {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        WatchRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("Watch: unreadable request: {e}")))
    }
}

/// The `Monitor` service: `Watch` through [`WireCodec`], every other
/// method through the generated server.
#[derive(Clone)]
pub struct Monitor<S: Watcher> {
    generated: MonitorServer<S>,
    services: Arc<S>,
}

impl<S: Watcher> Monitor<S> {
    pub fn new(services: S) -> Self {
        Monitor {
            generated: MonitorServer::new(services.clone()),
            services: Arc::new(services),
        }
    }
}

impl<S: Watcher> NamedService for Monitor<S> {
    const NAME: &'static str = monitor_server::SERVICE_NAME;
}

/// The path `Watch` is called on.
const WATCH_PATH: &str = "/dbmon.v1.Monitor/Watch";

impl<S: Watcher> tower::Service<http::Request<tonic::body::Body>> for Monitor<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return Box::pin(tower::Service::call(&mut self.generated, req));
        }
        let services = self.services.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(WireCodec {
                cache: services.cache(),
            });
            Ok(grpc.server_streaming(Watch(services), req).await)
        })
    }
}

/// `Watch` as tonic's server calls it.
struct Watch<S>(Arc<S>);

impl<S: Watcher> tonic::server::ServerStreamingService<WatchRequest> for Watch<S> {
    type Response = Outgoing;
    type ResponseStream = WatchStream;
    type Future = BoxFuture<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<WatchRequest>) -> Self::Future {
        self.0.open_watch(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use dbmon_proto::Report;

    fn report(i: u64) -> Report {
        Report {
            cluster: format!("c{}", i % 3),
            node: format!("node-{i}"),
            check: "disk_used".into(),
            status: (i % 4) as i32,
            value: i.is_multiple_of(2).then_some(i as f64 * 1.5),
            unit: "%".into(),
            message: "é".repeat(i as usize * 7),
            observed_at_ms: 1_700_000_000_000 + i as i64,
            latency_us: i * 1000,
            collector_id: "col".into(),
            seq: i + 1,
            kind: "etcd".into(),
            stale_after_ms: 30_000,
            essential: i.is_multiple_of(3),
        }
    }

    fn published(n: u64) -> Vec<Event> {
        let cache = Cache::new(100, 1024);
        let (mut rx, _, _) = cache.subscribe_entries(&[]);
        (0..n).for_each(|i| {
            cache.ingest(1, report(i));
        });
        (0..n).filter_map(|_| rx.try_recv().ok()).collect()
    }

    fn bytes(o: &Outgoing) -> Vec<u8> {
        let mut v = Vec::new();
        o.encode(&mut v);
        v
    }

    #[test]
    fn shared_encodings_make_the_same_bytes_as_prost() {
        // One report, a batch of two, a full batch with messages whose
        // lengths need two-byte varints.
        for n in [1, 2, 64] {
            let events = published(n);
            assert_eq!(events.len(), n as usize);
            for position in [0, 7, 1 << 40] {
                let o = Outgoing::Reports {
                    events: events.clone(),
                    position,
                };
                let ours = bytes(&o);
                let reference = o.into_event();
                assert_eq!(ours, reference.encode_to_vec(), "{n} reports at {position}");
                let back = WatchEvent::decode(ours.as_slice()).unwrap();
                assert_eq!(back, reference);
            }
        }
    }

    #[test]
    fn other_messages_are_encoded_as_they_are() {
        let e = WatchEvent {
            event: Some(watch_event::Event::Report(report(3))),
            position: 9,
        };
        assert_eq!(
            bytes(&Outgoing::Message(e.clone())),
            e.encode_to_vec(),
            "snapshot and catch-up messages"
        );
    }
}
