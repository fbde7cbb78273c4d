//! Measuring: latency histograms, a process's CPU and memory, the machine,
//! and a tiny HTTP GET for the servers' `/metrics`.

use anyhow::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latencies in milliseconds, bucketed 0..=60,000 ms.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    pub max: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..=60_000).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, ms: i64) {
        let ms = ms.clamp(0, 60_000) as usize;
        self.buckets[ms].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(ms as u64, Ordering::Relaxed);
    }

    /// Empties it, for the next phase.
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.max.store(0, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (ms, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                return ms as u64;
            }
        }
        60_000
    }
}

/// Waits until `done` holds, checking every `every`, at most `within`;
/// whether it held.
pub async fn wait_until(within: Duration, every: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

/// CPU seconds (user + system) and peak RSS (bytes) of a process.
pub fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((cpu, kb("VmHWM:"), kb("VmRSS:")))
}

/// Where the machine's CPUs were at one moment: each CPU's busy and
/// total ticks since boot (`/proc/stat`), and this process's CPU seconds.
pub struct CpuMark {
    ticks: Vec<(u64, u64)>,
    own_s: f64,
}

impl CpuMark {
    pub fn take() -> CpuMark {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                let total: u64 = f.iter().sum();
                // idle and iowait
                let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
                (total - idle, total)
            })
            .collect();
        let own_s = usage(std::process::id()).map_or(0.0, |u| u.0);
        CpuMark { ticks, own_s }
    }

    /// Since `before`: each CPU's busy share (0 to 1), and this process's
    /// CPU seconds.
    pub fn since(&self, before: &CpuMark) -> (Vec<f64>, f64) {
        let busy = before
            .ticks
            .iter()
            .zip(&self.ticks)
            .map(|((b0, t0), (b1, t1))| {
                b1.saturating_sub(*b0) as f64 / t1.saturating_sub(*t0).max(1) as f64
            })
            .collect();
        (busy, self.own_s - before.own_s)
    }
}

/// Bytes in MB, one decimal.
pub fn mb(b: u64) -> f64 {
    (b as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// The body of a plain HTTP GET, or None.
pub async fn http_get(url: &str) -> Option<String> {
    // A tiny HTTP/1.0 GET: the load tool avoids adding an HTTP client of its own.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}")))?;
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// CPUs, model and memory of this machine.
pub fn machine() -> String {
    // The machine's CPUs, not the ones this process is pinned to.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {} GiB", mem / 1_048_576)
}

/// The server's two delivery histograms, `dbmon_watch_fanout_seconds`
/// (to the subscriber's stream) and `dbmon_watch_dispatch_seconds` (to its
/// queue), as (upper bound in seconds, cumulative count) read from its
/// `/metrics` at one moment.
pub struct ServerHists {
    fanout: Vec<(f64, u64)>,
    dispatch: Vec<(f64, u64)>,
}

/// The server's own share of delivery between two readings, p50 and p99
/// in ms (interpolated in the buckets): to the subscriber's stream, and to
/// its queue (the server's scheduling alone).
#[derive(serde::Serialize, Default, Clone, Copy)]
pub struct Share {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub dispatch_p50_ms: Option<f64>,
    pub dispatch_p99_ms: Option<f64>,
}

impl Share {
    /// "p50 / p99", then the queue's "p50 / p99", in whole ms.
    pub fn text(&self) -> (String, String) {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        (
            format!("{} / {}", ms(self.p50_ms), ms(self.p99_ms)),
            format!(
                "{} / {}",
                ms(self.dispatch_p50_ms),
                ms(self.dispatch_p99_ms)
            ),
        )
    }
}

impl ServerHists {
    pub async fn read(port: u16) -> ServerHists {
        let body = http_get(&format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap_or_default();
        let buckets = |name: &str| -> Vec<(f64, u64)> {
            let prefix = format!("{name}_bucket{{le=\"");
            body.lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .filter_map(|l| {
                    let (le, rest) = l.split_once("\"}")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, rest.trim().parse().ok()?))
                })
                .collect()
        };
        ServerHists {
            fanout: buckets("dbmon_watch_fanout_seconds"),
            dispatch: buckets("dbmon_watch_dispatch_seconds"),
        }
    }

    /// What was observed since `before`.
    pub fn since(&self, before: &ServerHists) -> Share {
        Share {
            p50_ms: share_ms(&before.fanout, &self.fanout, 0.50),
            p99_ms: share_ms(&before.fanout, &self.fanout, 0.99),
            dispatch_p50_ms: share_ms(&before.dispatch, &self.dispatch, 0.50),
            dispatch_p99_ms: share_ms(&before.dispatch, &self.dispatch, 0.99),
        }
    }
}

/// The `q` quantile (ms) of what was observed between `before` and
/// `after`, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does. None when nothing was observed.
fn share_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|b| b.0 == *le).map_or(0, |b| b.1);
            (*le, n.saturating_sub(was))
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = total as f64 * q;
    let mut lower = (0.0, 0u64);
    for (le, n) in &counts {
        if *n as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let within = (rank - lower.1 as f64) / (*n - lower.1).max(1) as f64;
            return Some((lower.0 + (le - lower.0) * within) * 1000.0);
        }
        lower = (*le, *n);
    }
    None
}
