//! The gRPC services: `Ingest` for collectors, `Monitor` for clients.

use crate::auth::scoped;
use crate::cache::Cache;
use crate::peer::peer_of;
use dbmon_pki::transport::PeerInfo;
use dbmon_pki::{Identity, Role};
use dbmon_proto::v1::ingest_server::Ingest;
use dbmon_proto::v1::monitor_server::Monitor;
use dbmon_proto::v1::{CertificateRequest, CertificateResponse};
use dbmon_proto::v1::{
    ListReportsRequest, ListReportsResponse, PublishAck, PublishRequest, WatchRequest,
    publish_request,
};
use dbmon_proto::{Report, Status as ReportStatus};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Shared by both services (cheap to clone).
#[derive(Clone)]
pub struct Services {
    pub cache: Arc<Cache>,
    /// Alert rules, receivers and silences.
    pub alerting: Arc<crate::alerting::Alerting>,
    /// Where collectors' reports are kept before they are acknowledged.
    pub store: Arc<dyn crate::report_store::ReportStore>,
    pub collectors: Arc<AtomicUsize>,
    /// Collector name → clusters it may publish; empty: no restriction.
    /// Replaced by a reload.
    pub assignments: Arc<std::sync::RwLock<BTreeMap<String, Vec<String>>>>,
    /// Signs renewals; None when the server holds no CA key.
    pub signer: Option<Arc<crate::enroll::Signer>>,
    /// People's logins: open Watch streams end when theirs is revoked.
    pub auth: crate::auth::PeopleAuth,
    /// The last reload of the configuration, for `/healthz`.
    pub reload: Arc<std::sync::Mutex<dbmon_pki::reload::ReloadStatus>>,
    /// Clusters whose badge needs no token (`public: true`); replaced by a
    /// reload.
    pub public: Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>,
}

/// The collector identity of the caller's certificate. Without TLS (the
/// loopback development mode) there is none and `None` is returned.
fn collector_identity<T>(request: &Request<T>) -> Result<Option<Identity>, Status> {
    match request.extensions().get::<PeerInfo>() {
        None => Ok(None),
        Some(PeerInfo {
            identity: Some(id), ..
        }) if id.role == Role::Collector => Ok(Some(id.clone())),
        Some(p) => Err(Status::permission_denied(format!(
            "peer {} has no collector certificate; only collectors may publish",
            p.addr
        ))),
    }
}

/// Acknowledges what waited for positions up to `durable`.
fn release(
    waiting: &std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
    durable: u64,
    ack: &watch::Sender<u64>,
) {
    let mut top = None;
    {
        let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
        while w.front().is_some_and(|(p, _)| *p <= durable) {
            top = w.pop_front().map(|(_, s)| s);
        }
    }
    if let Some(seq) = top {
        ack.send_if_modified(|a| {
            let up = seq > *a;
            *a = (*a).max(seq);
            up
        });
    }
}

/// Checks a report from a collector; the error names the field.
fn validate(r: &Report) -> Result<(), String> {
    if r.cluster.is_empty() {
        return Err(format!("report seq {}: field `cluster` is empty", r.seq));
    }
    // The seq is what makes a replay a duplicate (and, in the shared store,
    // a row unique): an unnumbered report could not be told apart.
    if r.seq == 0 {
        return Err(format!(
            "report of {}: field `seq` is 0; a collector numbers its reports from 1",
            r.cluster
        ));
    }
    if r.check.is_empty() {
        return Err(format!(
            "report seq {} of {}: field `check` is empty",
            r.seq, r.cluster
        ));
    }
    if ReportStatus::try_from(r.status).is_err() || r.status == 0 {
        return Err(format!(
            "report seq {} of {}: field `status` is {}, expected 1 (ok) to 4 (unknown)",
            r.seq, r.cluster, r.status
        ));
    }
    Ok(())
}

/// `InvalidArgument` for a malformed report, naming its seq in metadata.
fn refused(seq: u64, why: String) -> Status {
    let mut status = Status::invalid_argument(why);
    if let Ok(v) = seq.to_string().parse() {
        status
            .metadata_mut()
            .insert(dbmon_proto::REFUSED_SEQ_KEY, v);
    }
    status
}

#[tonic::async_trait]
impl Ingest for Services {
    type PublishStream = BoxStream<PublishAck>;

    async fn publish(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        let peer = peer_of(&request);
        let identity = collector_identity(&request)?;
        let mut stream = request.into_inner();
        let hello = match stream.next().await {
            Some(Ok(PublishRequest {
                msg: Some(publish_request::Msg::Hello(h)),
            })) if !h.collector_id.is_empty() => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of Publish must be a Hello with a collector_id",
                ));
            }
        };
        if let Some(id) = &identity
            && id.name != hello.collector_id
        {
            tracing::warn!(%peer, certificate = %id, hello = %hello.collector_id, "collector claimed another name");
            return Err(Status::permission_denied(format!(
                "certificate names collector {:?} but Hello says {:?}; set collector.id to {:?}",
                id.name, hello.collector_id, id.name
            )));
        }
        let allowed: Option<Vec<String>> = {
            let assignments = self.assignments.read().unwrap_or_else(|e| e.into_inner());
            if assignments.is_empty() {
                None
            } else {
                Some(
                    assignments
                        .get(&hello.collector_id)
                        .cloned()
                        .unwrap_or_default(),
                )
            }
        };
        let cache = self.cache.clone();
        let start = cache.last_seq(&hello.collector_id, hello.epoch);
        let (ack_tx, ack_rx) = watch::channel(start);
        let ack_tx = Arc::new(ack_tx);
        // A report is acknowledged once the store says it is safe (on disk,
        // committed, or at once without a store): until then its collector
        // keeps it. (ticket, seq) wait here meanwhile.
        let store = self.store.clone();
        let durable = store.durable();
        let waiting: Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>> = Arc::default();
        {
            let (waiting, ack_tx, mut durable) = (waiting.clone(), ack_tx.clone(), durable.clone());
            tokio::spawn(async move {
                loop {
                    let d = *durable.borrow_and_update();
                    release(&waiting, d, &ack_tx);
                    tokio::select! {
                        r = durable.changed() => if r.is_err() { return },
                        _ = ack_tx.closed() => return,
                    }
                }
            });
        }
        let collectors = self.collectors.clone();
        collectors.fetch_add(1, Ordering::Relaxed);
        tracing::info!(collector = %hello.collector_id, %peer, clusters = ?hello.clusters, resume_after = start, "collector connected");
        let (err_tx, err_rx) = mpsc::channel::<Status>(1);
        tokio::spawn(async move {
            let id = hello.collector_id;
            let result = async {
                while let Some(msg) = stream.next().await {
                    let msg = msg?;
                    match msg.msg {
                        Some(publish_request::Msg::Report(mut r)) => {
                            validate(&r).map_err(|why| refused(r.seq, why))?;
                            if let Some(allowed) = &allowed
                                && !allowed.contains(&r.cluster)
                            {
                                return Err(Status::permission_denied(format!(
                                    "collector {id:?} may not publish cluster {:?}: server.assignments gives it {allowed:?}",
                                    r.cluster
                                )));
                            }
                            // The collector's identity is the Hello's, not what a report claims.
                            r.collector_id.clone_from(&id);
                            let seq = r.seq;
                            let ticket = store.accept(&cache, hello.epoch, r);
                            waiting
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push_back((ticket, seq));
                            release(&waiting, *durable.borrow(), &ack_tx);
                        }
                        Some(publish_request::Msg::Hello(_)) => {
                            return Err(Status::invalid_argument(
                                "Hello may only be sent once, first",
                            ));
                        }
                        None => return Err(Status::invalid_argument("empty PublishRequest")),
                    }
                }
                Ok::<(), Status>(())
            }
            .await;
            collectors.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => tracing::info!(collector = %id, %peer, "collector disconnected"),
                Err(e) => {
                    tracing::warn!(collector = %id, %peer, error = %e.message(), "collector stream ended");
                    let _ = err_tx.send(e).await;
                }
            }
        });
        // Acks are cumulative: a slow reader gets the latest, never blocks ingest.
        let acks = tokio_stream::wrappers::WatchStream::new(ack_rx)
            .map(|s| Ok(PublishAck { acked_seq: s }));
        let errors = tokio_stream::wrappers::ReceiverStream::new(err_rx).map(Err);
        Ok(Response::new(Box::pin(acks.merge(errors))))
    }

    async fn renew(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let peer = peer_of(&request);
        let Some(id) = collector_identity(&request)? else {
            return Err(Status::failed_precondition(
                "renewal needs the mutual TLS endpoint",
            ));
        };
        let Some(signer) = &self.signer else {
            return Err(Status::failed_precondition(
                "this server holds no CA key (server.pki_dir); renew with dbmon pki issue collector",
            ));
        };
        let resp = signer.sign(&request.into_inner().csr_pem, &id.name)?;
        tracing::info!(%peer, collector = %id.name, "collector certificate renewed");
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl Monitor for Services {
    async fn list_reports(
        &self,
        request: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        let grant = crate::auth::grant_of(&request)?;
        let req = request.into_inner();
        let clusters = scoped(&grant, &req.clusters)?;
        let latest = self.cache.latest(&clusters);
        let history = if req.include_history {
            self.cache.history(&clusters)
        } else {
            Vec::new()
        };
        Ok(Response::new(ListReportsResponse {
            latest,
            history,
            server_time_ms: dbmon_proto::now_ms(),
        }))
    }

    type WatchStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<dbmon_proto::v1::WatchEvent, Status>>
                + Send
                + 'static,
        >,
    >;

    /// The server routes `Watch` to [`crate::wire::Monitor`], which writes
    /// the same messages from shared encodings; this is the same stream
    /// as plain `WatchEvent`s.
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use tokio_stream::StreamExt;
        let stream = self.watch_stream(request).await?.into_inner();
        Ok(Response::new(Box::pin(
            stream.map(|m| m.map(crate::wire::Outgoing::into_event)),
        )))
    }
}

impl crate::wire::Watcher for Services {
    fn open_watch(
        &self,
        request: Request<WatchRequest>,
    ) -> crate::wire::BoxFuture<Result<Response<crate::wire::WatchStream>, Status>> {
        let services = self.clone();
        Box::pin(async move { services.watch_stream(request).await })
    }

    fn cache(&self) -> Arc<Cache> {
        self.cache.clone()
    }
}

impl Services {
    /// A Watch stream for the request's grant and clusters.
    pub async fn watch_stream(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<crate::wire::WatchStream>, Status> {
        let sources = crate::subscribers::Sources {
            cache: &self.cache,
            shared_store: self.store.shared(),
            auth: &self.auth,
        };
        crate::subscribers::open(sources, request).await
    }
}
