//! The stream of reports to the server. Reports are numbered here, kept
//! until the server acknowledges them, and sent again, in order, after a
//! reconnect. When the buffer is full the oldest are dropped, and the loss
//! itself becomes a report.

use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::{Hello, PublishRequest, publish_request};
use dbmon_proto::{Report, Status};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

/// Check name of the report that says reports were dropped.
pub const LOST_CHECK: &str = "dbmon_lost_reports";

/// Whether the stream to the server is up, for `/healthz`.
#[derive(Default)]
pub struct StreamState {
    pub connected: std::sync::atomic::AtomicBool,
    pub last_error: std::sync::Mutex<String>,
}

/// Settings of the stream.
pub struct PublisherConfig {
    pub collector_id: String,
    pub link: crate::link::Link,
    pub clusters: Vec<String>,
    pub buffer_reports: usize,
    pub state: std::sync::Arc<StreamState>,
}

/// Numbered reports not yet acknowledged by the server.
struct Buffer {
    items: VecDeque<Report>,
    capacity: usize,
    next_seq: u64,
    lost: u64,
}

impl Buffer {
    /// Numbers and keeps `r`; returns the reports to send now (r, and a loss
    /// report when something had to be dropped).
    fn push(&mut self, mut r: Report) -> Vec<Report> {
        let mut out = Vec::with_capacity(2);
        if self.items.len() >= self.capacity {
            // Room for the loss report and `r`.
            let mut dropped = None;
            while self.items.len() + 2 > self.capacity {
                match self.items.pop_front() {
                    Some(d) => {
                        self.lost += 1;
                        dropped = Some(d);
                    }
                    None => break,
                }
            }
            if let Some(d) = dropped {
                tracing::warn!(cluster = %d.cluster, seq = d.seq, lost = self.lost, "report buffer full; dropped the oldest reports");
                let mut loss = Report {
                    cluster: d.cluster,
                    check: LOST_CHECK.into(),
                    message: format!(
                        "{} reports dropped: the server did not acknowledge them before the buffer of {} filled",
                        self.lost, self.capacity
                    ),
                    value: Some(self.lost as f64),
                    unit: "reports".into(),
                    observed_at_ms: dbmon_proto::now_ms(),
                    collector_id: d.collector_id,
                    kind: d.kind,
                    ..Default::default()
                };
                loss.set_status(Status::Warn);
                self.number(&mut loss);
                self.items.push_back(loss.clone());
                out.push(loss);
            }
        }
        self.number(&mut r);
        self.items.push_back(r.clone());
        out.push(r);
        out
    }

    fn number(&mut self, r: &mut Report) {
        r.seq = self.next_seq;
        self.next_seq += 1;
    }

    fn ack(&mut self, seq: u64) {
        while self.items.front().is_some_and(|r| r.seq <= seq) {
            self.items.pop_front();
        }
    }
}

/// Sends every report from `reports` to the server until `shutdown`.
/// Reconnects with backoff; never gives up while it runs.
pub async fn run(
    cfg: PublisherConfig,
    mut reports: mpsc::Receiver<Report>,
    mut shutdown: watch::Receiver<bool>,
) {
    let epoch = rand::random::<u64>() >> 1;
    let mut buf = Buffer {
        items: VecDeque::new(),
        capacity: cfg.buffer_reports.max(2),
        next_seq: 1,
        lost: 0,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let ended = session(&cfg, epoch, &mut buf, &mut reports, &mut shutdown).await;
        cfg.state
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        match ended {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Server) => {
                tracing::warn!(server = %cfg.link.server(), "the server closed the report stream; reconnecting");
                *cfg.state
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = "the server closed the stream".into();
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                *cfg.state
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = e.clone();
                tracing::warn!(server = %cfg.link.server(), error = %e, buffered = buf.items.len(), retry_in = ?backoff, "cannot stream reports to the server");
            }
        }
        // Keep accepting reports while waiting, so agents never block.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                r = reports.recv() => match r {
                    Some(r) => { buf.push(r); }
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

enum Ended {
    Shutdown,
    Server,
}

async fn session(
    cfg: &PublisherConfig,
    epoch: u64,
    buf: &mut Buffer,
    reports: &mut mpsc::Receiver<Report>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, String> {
    let channel = cfg.link.channel().await?;
    let mut client = IngestClient::new(channel);
    // Unbounded: at most the buffer's content plus what arrives meanwhile.
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: cfg.collector_id.clone(),
            epoch,
            clusters: cfg.clusters.clone(),
        })),
    };
    let _ = tx.send(hello);
    for r in &buf.items {
        let _ = tx.send(report_msg(r.clone()));
    }
    let resent = buf.items.len();
    let mut acks = client
        .publish(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| format!("server refused the stream: {}", s.message()))?
        .into_inner();
    tracing::info!(server = %cfg.link.server(), resent, "streaming reports to the server");
    cfg.state
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    loop {
        tokio::select! {
            r = reports.recv() => match r {
                Some(r) => {
                    for m in buf.push(r) {
                        let _ = tx.send(report_msg(m));
                    }
                }
                None => return Ok(Ended::Shutdown),
            },
            a = acks.next() => match a {
                Some(Ok(a)) => buf.ack(a.acked_seq),
                Some(Err(s)) => return Err(format!("stream broke: {}", s.message())),
                None => return Ok(Ended::Server),
            },
            _ = shutdown.changed() => return Ok(Ended::Shutdown),
        }
    }
}

fn report_msg(r: Report) -> PublishRequest {
    PublishRequest {
        msg: Some(publish_request::Msg::Report(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(cluster: &str) -> Report {
        Report {
            cluster: cluster.into(),
            check: "up".into(),
            ..Default::default()
        }
    }

    #[test]
    fn numbers_in_order_and_acks_release() {
        let mut b = Buffer {
            items: VecDeque::new(),
            capacity: 10,
            next_seq: 1,
            lost: 0,
        };
        let seqs: Vec<u64> = (0..3)
            .flat_map(|_| b.push(rep("a")))
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        b.ack(2);
        assert_eq!(b.items.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn overflow_drops_oldest_and_reports_the_loss() {
        let mut b = Buffer {
            items: VecDeque::new(),
            capacity: 3,
            next_seq: 1,
            lost: 0,
        };
        for _ in 0..3 {
            b.push(rep("a"));
        }
        let sent = b.push(rep("a"));
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].check, LOST_CHECK);
        assert_eq!(sent[0].status(), Status::Warn);
        assert_eq!(b.items.len(), 3);
        assert!(b.lost >= 1);
        // Sequence numbers stay strictly increasing.
        let seqs: Vec<u64> = b.items.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}
