//! The part of the report buffer kept on disk: the oldest unacknowledged
//! reports, in segment files of length- and checksum-framed records, bounded
//! in total size. Past the bound the oldest segment goes, and its reports
//! are counted as lost by cluster.
//!
//! A segment is named by a generation number that only grows, so file name
//! order is report order, also across restarts of the collector. A record
//! is `len: u32 LE`, `crc32(payload): u32 LE`, then the protobuf `Report`.

use dbmon_proto::Report;
use prost::Message;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".seg";
/// Where the last clean stop left the numbering: collector, epoch, next
/// seq, highest acknowledged seq.
pub const STOP_FILE: &str = "stopped";
/// Locked while a collector uses the directory.
const LOCK: &str = "lock";
const HEADER: usize = 8;
/// A record larger than this is corrupt, not a report.
const MAX_RECORD: u32 = 16 << 20;

/// Why the disk buffer cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct SpillError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> SpillError + '_ {
    move |source| SpillError {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a run stopped cleanly.
#[derive(Debug, Clone, PartialEq)]
pub struct StopState {
    pub collector: String,
    pub epoch: u64,
    pub next_seq: u64,
    pub acked: u64,
}

/// Reports dropped from one cluster, not yet reported.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lost {
    pub count: u64,
    pub kind: String,
}

struct Segment {
    generation: u64,
    path: PathBuf,
    /// Sequence numbers of the first and last record.
    first: u64,
    last: u64,
    bytes: u64,
    /// Reports per cluster, to say whose reports were lost if it is dropped.
    clusters: BTreeMap<String, Lost>,
}

/// The on-disk part of the buffer.
pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    bytes: u64,
    next_generation: u64,
    /// Open writer of the last segment.
    writer: Option<BufWriter<File>>,
    /// Decoded records of one segment, while it is being sent.
    cached: Option<(u64, Vec<Report>)>,
    /// Held for the life of this spill: one collector per directory.
    _lock: File,
}

impl Spill {
    /// Opens (creating, mode 0700) `dir`. Segments left by an earlier run
    /// are returned as `leftover`: the caller numbers their reports anew
    /// and then removes them with [`Spill::remove_leftover`].
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spill, Vec<PathBuf>), SpillError> {
        create_private_dir(dir).map_err(at(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpillError {
                    path: dir.to_path_buf(),
                    source: std::io::Error::other(
                        "another collector spills here; give each collector its own collector.spill_dir",
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(at(&lock_path)(e)),
        }
        let mut leftover = Vec::new();
        let mut next_generation = 0;
        for entry in std::fs::read_dir(dir).map_err(at(dir))? {
            let entry = entry.map_err(at(dir))?;
            let name = entry.file_name();
            let Some(generation) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            next_generation = next_generation.max(generation + 1);
            leftover.push((generation, entry.path()));
        }
        leftover.sort();
        let spill = Spill {
            dir: dir.to_path_buf(),
            max_bytes,
            // Small enough that dropping one loses little, large enough to
            // keep the number of files low.
            segment_bytes: (max_bytes / 8).clamp(4096, 4 << 20),
            segments: VecDeque::new(),
            bytes: 0,
            next_generation,
            writer: None,
            cached: None,
            _lock: lock,
        };
        Ok((spill, leftover.into_iter().map(|(_, p)| p).collect()))
    }

    /// Removes a segment of an earlier run once its reports are taken over.
    pub fn remove_leftover(path: &Path) -> Result<(), SpillError> {
        std::fs::remove_file(path).map_err(at(path))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reports on disk.
    pub fn len(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.clusters.values().map(|l| l.count).sum::<u64>())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `r` (already numbered). Returns what had to be dropped to
    /// stay within the bound, by cluster.
    pub fn append(&mut self, r: &Report) -> Result<BTreeMap<String, Lost>, SpillError> {
        let payload = r.encode_to_vec();
        let size = (HEADER + payload.len()) as u64;
        let roll = match self.segments.back() {
            Some(s) => self.writer.is_none() || s.bytes + size > self.segment_bytes,
            None => true,
        };
        if roll {
            self.roll()?;
        }
        let seg = self.segments.back_mut().expect("a segment after roll");
        let w = self.writer.as_mut().expect("a writer after roll");
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        w.write_all(&header)
            .and_then(|_| w.write_all(&payload))
            .map_err(at(&seg.path))?;
        if seg.bytes == 0 {
            seg.first = r.seq;
        }
        seg.last = r.seq;
        seg.bytes += size;
        let lost = seg.clusters.entry(r.cluster.clone()).or_default();
        lost.count += 1;
        lost.kind.clone_from(&r.kind);
        self.bytes += size;
        if self
            .cached
            .as_ref()
            .is_some_and(|(g, _)| *g == seg.generation)
        {
            self.cached = None;
        }
        let mut dropped: BTreeMap<String, Lost> = BTreeMap::new();
        while self.bytes > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.pop_front().expect("more than one segment");
            self.forget(&oldest);
            for (cluster, l) in oldest.clusters {
                let d = dropped.entry(cluster).or_default();
                d.count += l.count;
                d.kind = l.kind;
            }
        }
        Ok(dropped)
    }

    fn roll(&mut self) -> Result<(), SpillError> {
        if let Some(mut w) = self.writer.take() {
            let path = &self.segments.back().expect("a writer has a segment").path;
            w.flush().map_err(at(path))?;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let path = self.dir.join(format!("{generation:020}{SUFFIX}"));
        let file = private_file(&path).map_err(at(&path))?;
        self.writer = Some(BufWriter::new(file));
        self.segments.push_back(Segment {
            generation,
            path,
            first: 0,
            last: 0,
            bytes: 0,
            clusters: BTreeMap::new(),
        });
        Ok(())
    }

    fn forget(&mut self, seg: &Segment) {
        self.bytes -= seg.bytes;
        if self
            .cached
            .as_ref()
            .is_some_and(|(g, _)| *g == seg.generation)
        {
            self.cached = None;
        }
        if self.segments.is_empty() {
            self.writer = None;
        }
        if let Err(e) = std::fs::remove_file(&seg.path) {
            tracing::warn!(file = %seg.path.display(), error = %e, "cannot remove a spilled segment");
        }
    }

    /// Removes segments whose every report is acknowledged.
    pub fn ack(&mut self, seq: u64) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.bytes > 0 && s.last <= seq)
        {
            let s = self.segments.pop_front().expect("checked");
            self.forget(&s);
        }
    }

    /// The first reports after `after`, at most `max`, in order. A segment
    /// that cannot be read (or only in part) is dropped, and what it held
    /// beyond the readable part is returned as lost.
    pub fn after(&mut self, after: u64, max: usize) -> (Vec<Report>, BTreeMap<String, Lost>) {
        let mut out = Vec::new();
        let mut lost: BTreeMap<String, Lost> = BTreeMap::new();
        let wanted: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| s.bytes > 0 && s.last > after)
            .map(|s| s.generation)
            .collect();
        for generation in wanted {
            if out.len() >= max {
                break;
            }
            if self.cached.as_ref().is_none_or(|(g, _)| *g != generation) {
                let Some(i) = self
                    .segments
                    .iter()
                    .position(|s| s.generation == generation)
                else {
                    continue;
                };
                let last = i + 1 == self.segments.len();
                let seg = &self.segments[i];
                let flushed = match (last, self.writer.as_mut()) {
                    (true, Some(w)) => w.flush().map_err(at(&seg.path)),
                    _ => Ok(()),
                };
                let read = flushed.and_then(|_| read_segment(&seg.path));
                let (records, problem) = match read {
                    Ok((records, None)) => (records, None),
                    Ok((records, Some(p))) => {
                        (records, Some(format!("{}: {p}", seg.path.display())))
                    }
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                if let Some(problem) = problem {
                    tracing::error!(error = %problem, "a spilled segment cannot be read back in full; its unreadable reports are lost");
                    // Keep what reads; count the rest once, as lost.
                    let mut readable: BTreeMap<String, Lost> = BTreeMap::new();
                    for r in &records {
                        let l = readable.entry(r.cluster.clone()).or_default();
                        l.count += 1;
                        l.kind.clone_from(&r.kind);
                    }
                    let seg = &mut self.segments[i];
                    for (cluster, l) in &seg.clusters {
                        let kept = readable.get(cluster).map_or(0, |k| k.count);
                        if l.count > kept {
                            let d = lost.entry(cluster.clone()).or_default();
                            d.count += l.count - kept;
                            d.kind.clone_from(&l.kind);
                        }
                    }
                    seg.clusters = readable;
                    if let Some(r) = records.last() {
                        seg.last = r.seq;
                    }
                    if last {
                        // Never append after a damaged part.
                        self.writer = None;
                    }
                    if records.is_empty() {
                        let seg = self.segments.remove(i).expect("found above");
                        self.forget(&seg);
                        continue;
                    }
                }
                self.cached = Some((generation, records));
            }
            let (_, records) = self.cached.as_ref().expect("just cached");
            out.extend(
                records
                    .iter()
                    .filter(|r| r.seq > after)
                    .take(max - out.len())
                    .cloned(),
            );
        }
        (out, lost)
    }

    /// Notes, for the next start, where this run stopped: the next start
    /// goes on under the same epoch and numbers, so that the server knows
    /// the reports it already has, and skips what was acknowledged.
    pub fn mark_stop(&self, stop: &StopState) -> Result<(), SpillError> {
        let path = self.dir.join(STOP_FILE);
        let tmp = self.dir.join(format!(".{STOP_FILE}"));
        std::fs::write(
            &tmp,
            format!(
                "{} {} {} {}\n",
                stop.collector, stop.epoch, stop.next_seq, stop.acked
            ),
        )
        .map_err(at(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(at(&path))
    }

    /// Reads and removes the mark an earlier run left at a clean stop;
    /// None after a crash (or without one).
    pub fn take_stop_state(dir: &Path) -> Option<StopState> {
        let path = dir.join(STOP_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let mut f = text.split_whitespace();
        let parsed = (|| {
            Some(StopState {
                collector: f.next()?.to_string(),
                epoch: f.next()?.parse().ok()?,
                next_seq: f.next()?.parse().ok()?,
                acked: f.next()?.parse().ok()?,
            })
        })();
        if parsed.is_none() {
            tracing::warn!(file = %path.display(), "not a stop mark; the reports of the earlier run are numbered anew and may reach the server twice");
        }
        parsed
    }

    /// Writes out what is buffered in the open segment.
    pub fn flush(&mut self) -> Result<(), SpillError> {
        if let (Some(w), Some(s)) = (self.writer.as_mut(), self.segments.back()) {
            w.flush().map_err(at(&s.path))?;
        }
        Ok(())
    }
}

/// Reads a segment's records. A torn or corrupt tail (a crash mid-write)
/// ends the segment; the second value says what was wrong with it.
pub fn read_segment(path: &Path) -> Result<(Vec<Report>, Option<String>), SpillError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(at(path))?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let problem = if data.len() - pos < HEADER {
            Some("a record header cut short".to_string())
        } else {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let start = pos + HEADER;
            if len > MAX_RECORD || data.len() - start < len as usize {
                Some(format!("a record of {len} bytes cut short"))
            } else {
                let payload = &data[start..start + len as usize];
                if crc32fast::hash(payload) != crc {
                    Some("a record whose checksum does not match".to_string())
                } else {
                    match Report::decode(payload) {
                        Ok(r) => {
                            out.push(r);
                            pos = start + len as usize;
                            None
                        }
                        Err(e) => Some(format!("a record that is not a report ({e})")),
                    }
                }
            }
        };
        if let Some(p) = problem {
            return Ok((out, Some(format!("{p} at byte {pos}"))));
        }
    }
    Ok((out, None))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(cluster: &str, seq: u64) -> Report {
        Report {
            cluster: cluster.into(),
            check: "up".into(),
            kind: "etcd".into(),
            message: "x".repeat(100),
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn appends_reads_in_order_and_acks_remove_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, left) = Spill::open(&dir.path().join("spill"), 1 << 20).unwrap();
        assert!(left.is_empty());
        for seq in 1..=200 {
            assert!(s.append(&rep("a", seq)).unwrap().is_empty());
        }
        assert_eq!(s.len(), 200);
        let got: Vec<u64> = s.after(0, 1000).0.iter().map(|r| r.seq).collect();
        assert_eq!(got, (1..=200).collect::<Vec<_>>());
        let got: Vec<u64> = s.after(150, 10).0.iter().map(|r| r.seq).collect();
        assert_eq!(got, (151..=160).collect::<Vec<_>>());
        let before = s.bytes();
        s.ack(200);
        assert!(s.is_empty() && s.bytes() == 0 && before > 0);
        let left: Vec<_> = std::fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCK)]);
    }

    #[test]
    fn past_the_bound_the_oldest_segment_goes_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spill::open(dir.path(), 64 << 10).unwrap();
        let mut lost = 0;
        for seq in 1..=2000 {
            let cluster = if seq % 2 == 0 { "a" } else { "b" };
            for (_, l) in s.append(&rep(cluster, seq)).unwrap() {
                lost += l.count;
            }
            assert!(s.bytes() <= 64 << 10, "{} bytes", s.bytes());
        }
        assert!(lost > 0);
        assert_eq!(lost + s.len(), 2000);
        // What is left is the newest, still in order.
        let got: Vec<u64> = s.after(0, 5000).0.iter().map(|r| r.seq).collect();
        assert_eq!(*got.last().unwrap(), 2000);
        assert_eq!(got.len() as u64, s.len());
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn a_torn_tail_keeps_the_records_before_it_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spill::open(dir.path(), 1 << 20).unwrap();
        for seq in 1..=3 {
            s.append(&rep("a", seq)).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        let (_, left) = Spill::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(left.len(), 1);
        let path = &left[0];
        let mut data = std::fs::read(path).unwrap();
        let whole = data.len();
        data.truncate(whole - 10);
        std::fs::write(path, &data).unwrap();
        let (records, problem) = read_segment(path).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let problem = problem.unwrap();
        assert!(problem.contains("cut short"), "{problem}");
        // A flipped byte in a payload is caught by the checksum.
        let mut data = std::fs::read(path).unwrap();
        data[HEADER + 3] ^= 0xff;
        std::fs::write(path, &data).unwrap();
        let (records, problem) = read_segment(path).unwrap();
        assert!(records.is_empty());
        assert!(problem.unwrap().contains("checksum"));
    }

    #[test]
    fn a_second_collector_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Spill::open(dir.path(), 1 << 20).unwrap();
        let e = Spill::open(dir.path(), 1 << 20).err().expect("refused");
        assert!(
            e.to_string().contains("another collector spills here"),
            "{e}"
        );
        drop(first);
        assert!(Spill::open(dir.path(), 1 << 20).is_ok());
    }

    #[test]
    fn files_are_private_and_new_segments_follow_old_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        let (mut s, _) = Spill::open(&spill, 1 << 20).unwrap();
        s.append(&rep("a", 1)).unwrap();
        s.flush().unwrap();
        drop(s);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&spill), 0o700);
        let (mut s, left) = Spill::open(&spill, 1 << 20).unwrap();
        assert_eq!(mode(&left[0]), 0o600);
        s.append(&rep("a", 1)).unwrap();
        s.flush().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&spill)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        names.sort();
        assert_eq!(names[0], left[0], "the earlier run's segment sorts first");
    }
}
