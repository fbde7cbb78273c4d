//! The stream of reports to the server. Reports are numbered here, kept
//! until the server acknowledges them (in memory, the older ones spilled to
//! disk), and sent again, in order, after a reconnect. When the buffer is
//! full the oldest are dropped, and the loss itself becomes a report.

use crate::spill::{self, Lost, Spill};
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::{Hello, PublishRequest, publish_request};
use dbmon_proto::{Report, Status};
use std::collections::{BTreeMap, VecDeque};
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
    /// Unacknowledged reports, in memory and on disk.
    pub buffered: std::sync::atomic::AtomicU64,
    pub on_disk: std::sync::atomic::AtomicU64,
    /// Reports dropped since the start because the buffer was full.
    pub lost: std::sync::atomic::AtomicU64,
    /// The last reload of the configuration.
    pub reload: std::sync::Mutex<dbmon_pki::reload::ReloadStatus>,
}

/// Settings of the stream.
pub struct PublisherConfig {
    pub collector_id: String,
    pub link: crate::link::Link,
    pub clusters: Vec<String>,
    /// Reports kept in memory.
    pub buffer_reports: usize,
    /// Where older unacknowledged reports go, and the most bytes they take.
    pub spill: Option<(std::path::PathBuf, u64)>,
    pub state: std::sync::Arc<StreamState>,
}

/// Reports in flight (sent, not yet acknowledged) at most, per stream.
const WINDOW: u64 = 1024;

/// Numbered reports not yet acknowledged by the server: the newest in
/// memory, the older ones on disk once memory holds `mem_cap` (when a spill
/// directory is set). Report order is disk, then memory.
struct Buffer {
    mem: VecDeque<Report>,
    mem_cap: usize,
    spill: Option<Spill>,
    /// Whether the last write to the spill failed, to log only changes.
    spill_failing: bool,
    next_seq: u64,
    /// Highest sequence number the server acknowledged.
    acked: u64,
    /// Dropped reports not yet reported, by cluster.
    unreported: BTreeMap<String, Lost>,
    lost_total: u64,
    collector_id: String,
    /// Reports the server refused as malformed: never sent again.
    refused: std::collections::BTreeSet<u64>,
}

impl Buffer {
    fn new(mem_cap: usize, spill: Option<Spill>, collector_id: String) -> Buffer {
        Buffer {
            mem: VecDeque::new(),
            mem_cap: mem_cap.max(1),
            spill,
            spill_failing: false,
            next_seq: 1,
            acked: 0,
            unreported: BTreeMap::new(),
            lost_total: 0,
            collector_id,
            refused: Default::default(),
        }
    }

    /// Drops the report `seq` that the server refused as malformed, and
    /// says so in a report of its own (sending it again would be refused
    /// again, and hold back every report behind it).
    fn refuse(&mut self, seq: u64, why: &str) {
        let Some(r) = self
            .after(seq.saturating_sub(1), 1)
            .into_iter()
            .find(|r| r.seq == seq)
        else {
            return;
        };
        if !self.refused.insert(seq) {
            return;
        }
        tracing::error!(cluster = %r.cluster, seq, check = %r.check, reason = why, "the server refused a report as malformed; it is dropped");
        self.lost_total += 1;
        let mut note = Report {
            cluster: r.cluster,
            check: LOST_CHECK.into(),
            message: format!(
                "report seq {seq} ({}) was refused by the server and dropped: {why}",
                r.check
            ),
            value: Some(1.0),
            unit: "reports".into(),
            observed_at_ms: dbmon_proto::now_ms(),
            collector_id: self.collector_id.clone(),
            kind: r.kind,
            ..Default::default()
        };
        note.set_status(Status::Warn);
        self.push(note);
    }

    /// Numbers and keeps `r`.
    fn push(&mut self, mut r: Report) {
        r.seq = self.next_seq;
        self.next_seq += 1;
        self.keep(r);
    }

    /// Keeps `r`, numbered already (by an earlier run, under the same epoch).
    fn keep(&mut self, r: Report) {
        self.next_seq = self.next_seq.max(r.seq + 1);
        self.mem.push_back(r);
        while self.mem.len() > self.mem_cap {
            let oldest = self.mem.pop_front().expect("over capacity");
            let Some(spill) = self.spill.as_mut() else {
                self.lose_one(&oldest);
                continue;
            };
            match spill.append(&oldest) {
                Ok(dropped) => {
                    if self.spill_failing {
                        self.spill_failing = false;
                        tracing::info!(dir = %spill.dir().display(), "spilling reports to disk again");
                    }
                    for (cluster, l) in dropped {
                        self.lose(cluster, l);
                    }
                }
                Err(e) => {
                    if !self.spill_failing {
                        self.spill_failing = true;
                        tracing::error!(error = %e, "cannot spill reports to disk; the oldest in memory are dropped until it works again");
                    }
                    self.lose_one(&oldest);
                }
            }
        }
    }

    fn lose_one(&mut self, r: &Report) {
        self.lose(
            r.cluster.clone(),
            Lost {
                count: 1,
                kind: r.kind.clone(),
            },
        );
    }

    fn lose(&mut self, cluster: String, l: Lost) {
        if self.lost_total == 0 || self.unreported.is_empty() {
            tracing::warn!(cluster = %cluster, "report buffer full; dropping the oldest reports");
        }
        self.lost_total += l.count;
        let u = self.unreported.entry(cluster).or_default();
        u.count += l.count;
        u.kind = l.kind;
    }

    /// Turns the losses not yet reported into reports of their own, one
    /// per cluster, behind everything buffered.
    fn report_losses(&mut self) {
        for (cluster, l) in std::mem::take(&mut self.unreported) {
            tracing::warn!(cluster = %cluster, lost = l.count, lost_total = self.lost_total, "reports were dropped before the server acknowledged them");
            let mut loss = Report {
                cluster,
                check: LOST_CHECK.into(),
                message: format!(
                    "{} reports dropped: the server did not acknowledge them before the collector's buffer filled",
                    l.count
                ),
                value: Some(l.count as f64),
                unit: "reports".into(),
                observed_at_ms: dbmon_proto::now_ms(),
                collector_id: self.collector_id.clone(),
                kind: l.kind,
                ..Default::default()
            };
            loss.set_status(Status::Warn);
            self.push(loss);
        }
    }

    fn ack(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
        self.refused.retain(|s| *s > seq);
        if let Some(s) = self.spill.as_mut() {
            s.ack(seq);
        }
        while self.mem.front().is_some_and(|r| r.seq <= seq) {
            self.mem.pop_front();
        }
    }

    /// The first reports after `after`, at most `max`, in order.
    fn after(&mut self, after: u64, max: usize) -> Vec<Report> {
        let mut out = Vec::new();
        if let Some(s) = self.spill.as_mut().filter(|s| !s.is_empty()) {
            let (reports, lost) = s.after(after, max);
            out = reports;
            for (cluster, l) in lost {
                self.lose(cluster, l);
            }
        }
        let from = self.mem.partition_point(|r| r.seq <= after);
        out.extend(self.mem.range(from..).take(max - out.len()).cloned());
        out
    }

    /// What to send after `sent` while at most WINDOW reports are in
    /// flight; moves `sent` on, past refused reports too.
    fn next_to_send(&mut self, sent: &mut u64) -> Vec<Report> {
        let mut out = Vec::new();
        loop {
            let in_flight = *sent - self.acked.min(*sent);
            if in_flight >= WINDOW {
                break;
            }
            let room = (WINDOW - in_flight) as usize;
            let batch = self.after(*sent, room.min(256));
            if batch.is_empty() {
                break;
            }
            for r in batch {
                *sent = r.seq;
                if !self.refused.contains(&r.seq) {
                    out.push(r);
                }
            }
        }
        out
    }

    fn on_disk(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.len())
    }

    fn len(&self) -> u64 {
        self.mem.len() as u64 + self.on_disk()
    }

    /// Moves what memory holds to disk, with where the numbering stopped,
    /// so that the next start goes on from here.
    fn keep_on_disk(&mut self, epoch: u64) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let n = self.mem.len();
        for r in std::mem::take(&mut self.mem) {
            if let Err(e) = spill.append(&r) {
                tracing::error!(error = %e, "cannot keep unacknowledged reports on disk; they are lost with this process");
                return;
            }
        }
        let stop = spill::StopState {
            collector: self.collector_id.clone(),
            epoch,
            next_seq: self.next_seq,
            acked: self.acked,
        };
        match spill.flush().and_then(|_| spill.mark_stop(&stop)) {
            Ok(()) if n > 0 || !spill.is_empty() => {
                tracing::info!(dir = %spill.dir().display(), reports = spill.len(), "unacknowledged reports kept on disk for the next start")
            }
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e, "cannot keep unacknowledged reports on disk"),
        }
    }

    fn publish_state(&self, state: &StreamState) {
        use std::sync::atomic::Ordering::Relaxed;
        state.buffered.store(self.len(), Relaxed);
        state.on_disk.store(self.on_disk(), Relaxed);
        state.lost.store(self.lost_total, Relaxed);
    }
}

/// Opens the spill directory and takes over what an earlier run left there:
/// after a clean stop under the same epoch and numbers (the server then
/// drops what it already has), after a crash numbered anew under a new
/// epoch. Without a usable directory, buffers in memory only. Returns the
/// buffer and the epoch to publish under.
fn open_buffer(cfg: &PublisherConfig) -> (Buffer, u64) {
    let fresh_epoch = rand::random::<u64>() >> 1;
    let Some((dir, max)) = &cfg.spill else {
        return (
            Buffer::new(cfg.buffer_reports, None, cfg.collector_id.clone()),
            fresh_epoch,
        );
    };
    let (spill, leftover) = match Spill::open(dir, *max) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the spill directory (collector.spill_dir); buffering in memory only");
            return (
                Buffer::new(cfg.buffer_reports, None, cfg.collector_id.clone()),
                fresh_epoch,
            );
        }
    };
    let mut buf = Buffer::new(cfg.buffer_reports, Some(spill), cfg.collector_id.clone());
    let stop = Spill::take_stop_state(dir);
    let resumed = stop.filter(|s| s.collector == cfg.collector_id);
    let epoch = match &resumed {
        Some(s) => {
            buf.next_seq = s.next_seq.max(1);
            buf.acked = s.acked;
            s.epoch
        }
        None => fresh_epoch,
    };
    let mut taken = 0;
    for path in leftover {
        match spill::read_segment(&path) {
            Ok((reports, problem)) => {
                if let Some(p) = problem {
                    tracing::error!(file = %path.display(), error = %p, "a segment left by an earlier run is damaged; the reports after the damage are lost");
                }
                for r in reports {
                    match &resumed {
                        // Acknowledged before the stop: the server has it.
                        Some(s) if r.seq <= s.acked => continue,
                        Some(_) => buf.keep(r),
                        None => buf.push(r),
                    }
                    taken += 1;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a segment left by an earlier run; leaving it in place");
                continue;
            }
        }
        if let Err(e) = Spill::remove_leftover(&path) {
            tracing::error!(error = %e, "cannot remove a segment taken over from an earlier run; its reports may be sent again at the next start");
        }
    }
    if taken > 0 {
        tracing::info!(dir = %dir.display(), reports = taken, same_epoch = resumed.is_some(), "took over reports an earlier run had not delivered");
    }
    (buf, epoch)
}

/// Sends every report from `reports` to the server until `shutdown`.
/// Reconnects with backoff; never gives up while it runs.
pub async fn run(
    cfg: PublisherConfig,
    mut reports: mpsc::Receiver<Report>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut buf, epoch) = open_buffer(&cfg);
    buf.publish_state(&cfg.state);
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let ended = session(&cfg, epoch, &mut buf, &mut reports, &mut shutdown).await;
        cfg.state
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        match ended {
            Ok(Ended::Shutdown) => break,
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
                tracing::warn!(server = %cfg.link.server(), error = %e, buffered = buf.len(), on_disk = buf.on_disk(), lost = buf.lost_total, retry_in = ?backoff, "cannot stream reports to the server");
            }
        }
        // Keep accepting reports while waiting, so agents never block.
        let until = tokio::time::Instant::now() + backoff;
        let stop = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break false,
                r = reports.recv() => match r {
                    Some(r) => { buf.push(r); buf.publish_state(&cfg.state); }
                    None => break true,
                },
                _ = shutdown.changed() => break true,
            }
        };
        if stop {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    // Reports still queued by agents are kept too.
    while let Ok(r) = reports.try_recv() {
        buf.push(r);
    }
    buf.keep_on_disk(epoch);
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
    // Unbounded, but never more than WINDOW reports are in it or in flight.
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: cfg.collector_id.clone(),
            epoch,
            clusters: cfg.clusters.clone(),
        })),
    };
    let _ = tx.send(hello);
    buf.report_losses();
    // Everything not acknowledged is sent again, oldest first.
    let resent = buf.len();
    let mut sent = buf.acked;
    let fill = |buf: &mut Buffer, sent: &mut u64| {
        for r in buf.next_to_send(sent) {
            let _ = tx.send(report_msg(r));
        }
    };
    fill(buf, &mut sent);
    let mut acks = client
        .publish(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| format!("server refused the stream: {}", s.message()))?
        .into_inner();
    tracing::info!(server = %cfg.link.server(), resent, on_disk = buf.on_disk(), "streaming reports to the server");
    cfg.state
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Losses while connected (a server that does not keep up) are reported
    // at most once a second.
    let mut losses = tokio::time::interval(Duration::from_secs(1));
    losses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = reports.recv() => match r {
                Some(r) => buf.push(r),
                None => return Ok(Ended::Shutdown),
            },
            a = acks.next() => match a {
                Some(Ok(a)) => buf.ack(a.acked_seq),
                Some(Err(s)) => {
                    if let Some(seq) = refused_seq(&s) {
                        buf.refuse(seq, s.message());
                    }
                    return Err(format!("stream broke: {}", s.message()));
                }
                None => return Ok(Ended::Server),
            },
            _ = losses.tick() => buf.report_losses(),
            _ = shutdown.changed() => return Ok(Ended::Shutdown),
        }
        fill(buf, &mut sent);
        buf.publish_state(&cfg.state);
    }
}

/// The seq of the report an `InvalidArgument` from the server refused.
fn refused_seq(s: &tonic::Status) -> Option<u64> {
    if s.code() != tonic::Code::InvalidArgument {
        return None;
    }
    s.metadata()
        .get(dbmon_proto::REFUSED_SEQ_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()
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
            kind: "etcd".into(),
            ..Default::default()
        }
    }

    fn seqs(b: &mut Buffer) -> Vec<u64> {
        b.after(0, usize::MAX).iter().map(|r| r.seq).collect()
    }

    #[test]
    fn numbers_in_order_and_acks_release() {
        let mut b = Buffer::new(10, None, "c".into());
        for _ in 0..3 {
            b.push(rep("a"));
        }
        assert_eq!(seqs(&mut b), vec![1, 2, 3]);
        b.ack(2);
        assert_eq!(seqs(&mut b), vec![3]);
        assert_eq!(b.after(3, 10).len(), 0);
    }

    #[test]
    fn overflow_in_memory_drops_oldest_and_reports_the_loss_per_cluster() {
        let mut b = Buffer::new(3, None, "c".into());
        for c in ["a", "b", "a", "a", "b"] {
            b.push(rep(c));
        }
        // 1 (a) and 2 (b) were dropped.
        assert_eq!(seqs(&mut b), vec![3, 4, 5]);
        assert_eq!(b.lost_total, 2);
        b.report_losses();
        let kept = b.after(0, 10);
        let losses: Vec<_> = kept.iter().filter(|r| r.check == LOST_CHECK).collect();
        assert_eq!(losses.len(), 2, "{kept:?}");
        for l in &losses {
            assert_eq!(l.status(), Status::Warn);
            assert_eq!(l.value, Some(1.0));
            assert_eq!(l.collector_id, "c");
            assert_eq!(l.kind, "etcd");
        }
        // Two loss reports pushed two more out: counted, to report next.
        assert_eq!(b.lost_total, 4);
        assert_eq!(b.unreported["a"].count, 2);
        let s = seqs(&mut b);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
    }

    #[test]
    fn at_most_a_window_of_reports_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (spill, _) = Spill::open(dir.path(), 16 << 20).unwrap();
        let mut b = Buffer::new(100, Some(spill), "c".into());
        for _ in 0..3000 {
            b.push(rep("a"));
        }
        let mut sent = 0;
        assert_eq!(b.next_to_send(&mut sent).len() as u64, WINDOW);
        assert!(
            b.next_to_send(&mut sent).is_empty(),
            "nothing more until acks"
        );
        b.ack(500);
        let more = b.next_to_send(&mut sent);
        assert_eq!(more.len(), 500);
        assert_eq!(more[0].seq, WINDOW + 1);
        assert_eq!(sent, WINDOW + 500);
    }

    #[test]
    fn a_report_the_server_refused_is_dropped_and_said_so() {
        let mut b = Buffer::new(10, None, "c".into());
        for _ in 0..3 {
            b.push(rep("a"));
        }
        let mut status =
            tonic::Status::invalid_argument("report seq 2 of a: field `check` is empty");
        status
            .metadata_mut()
            .insert(dbmon_proto::REFUSED_SEQ_KEY, "2".parse().unwrap());
        assert_eq!(refused_seq(&status), Some(2));
        assert_eq!(refused_seq(&tonic::Status::unavailable("x")), None);
        b.refuse(2, status.message());
        b.refuse(2, status.message());
        assert_eq!(b.lost_total, 1, "counted once");
        let kept = b.after(0, 10);
        let note = kept.last().unwrap();
        assert_eq!(note.check, LOST_CHECK);
        assert!(
            note.message
                .contains("report seq 2 (up) was refused by the server"),
            "{}",
            note.message
        );
        // What a stream sends: everything but the refused one.
        let mut cursor = 0;
        let sent: Vec<u64> = b.next_to_send(&mut cursor).iter().map(|r| r.seq).collect();
        assert_eq!(sent, vec![1, 3, 4]);
        assert_eq!(cursor, 4);
        b.ack(4);
        assert!(b.refused.is_empty());
    }

    #[test]
    fn older_reports_spill_to_disk_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (spill, _) = Spill::open(dir.path(), 1 << 20).unwrap();
        let mut b = Buffer::new(10, Some(spill), "c".into());
        for _ in 0..100 {
            b.push(rep("a"));
        }
        assert_eq!(b.mem.len(), 10);
        assert_eq!(b.on_disk(), 90);
        assert_eq!(seqs(&mut b), (1..=100).collect::<Vec<_>>());
        // Sent in windows: the cursor crosses from disk to memory.
        let mut sent = 0;
        let mut got = Vec::new();
        loop {
            let batch = b.after(sent, 7);
            if batch.is_empty() {
                break;
            }
            sent = batch.last().unwrap().seq;
            got.extend(batch.into_iter().map(|r| r.seq));
        }
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
        b.ack(95);
        assert_eq!(seqs(&mut b), (96..=100).collect::<Vec<_>>());
        assert_eq!(b.on_disk(), 0);
        assert_eq!(b.lost_total, 0);
    }

    #[test]
    fn a_full_spill_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let (spill, _) = Spill::open(dir.path(), 16 << 10).unwrap();
        let mut b = Buffer::new(10, Some(spill), "c".into());
        for _ in 0..2000 {
            b.push(rep("a"));
        }
        assert!(b.lost_total > 0);
        let s = seqs(&mut b);
        assert_eq!(s.len() as u64 + b.lost_total, 2000);
        assert_eq!(*s.last().unwrap(), 2000, "the newest are kept");
        assert!(
            s.windows(2).all(|w| w[1] == w[0] + 1),
            "dropped from the front only"
        );
    }

    #[test]
    fn what_memory_holds_at_shutdown_is_taken_over_by_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (spill, _) = Spill::open(dir.path(), 1 << 20).unwrap();
        let mut b = Buffer::new(10, Some(spill), "c".into());
        for i in 0..25 {
            let mut r = rep("a");
            r.message = format!("report {i}");
            b.push(r);
        }
        b.ack(5);
        b.keep_on_disk(77);
        drop(b);
        let cfg = PublisherConfig {
            collector_id: "c".into(),
            link: crate::link::Link::Plain {
                server: "http://127.0.0.1:1".into(),
            },
            clusters: vec!["a".into()],
            buffer_reports: 10,
            spill: Some((dir.path().to_path_buf(), 1 << 20)),
            state: Default::default(),
        };
        let (mut b, epoch) = open_buffer(&cfg);
        let kept = b.after(0, 100);
        let messages: Vec<_> = kept.iter().map(|r| r.message.clone()).collect();
        let expected: Vec<_> = (5..25).map(|i| format!("report {i}")).collect();
        assert_eq!(messages, expected);
        // The same epoch and numbers go on: the server knows what it has.
        assert_eq!(epoch, 77);
        assert_eq!(kept[0].seq, 6);
        b.push(rep("a"));
        assert_eq!(b.after(25, 1)[0].seq, 26);
        b.keep_on_disk(77);
        drop(b);

        // After a crash (no stop mark) the reports are numbered anew under
        // a new epoch.
        std::fs::remove_file(dir.path().join(spill::STOP_FILE)).unwrap();
        let (mut b, epoch) = open_buffer(&cfg);
        assert_ne!(epoch, 77);
        let kept = b.after(0, 100);
        assert_eq!(kept.len(), 21);
        assert_eq!(kept[0].seq, 1);
        assert_eq!(kept[0].message, "report 5");
    }
}
