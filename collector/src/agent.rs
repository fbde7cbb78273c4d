//! One agent task per cluster: poll at the interval (with jitter), bound
//! each poll by a deadline, back off while no node answers, and stamp every
//! observation into a report for the publisher.

use crate::connector::{Connector, Observation};
use crate::registry;
use dbmon_config::ClusterConfig;
use dbmon_proto::health::UP_CHECK;
use dbmon_proto::{Report, Status};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Reports leave an agent through this channel, without a sequence number
/// (the publisher numbers them).
pub type ReportSender = mpsc::Sender<Report>;

/// Runs until `shutdown` turns true; the first poll comes at a random
/// moment within `first_within`, so that many clusters' polls spread out.
pub async fn run(
    cluster: ClusterConfig,
    collector_id: String,
    out: ReportSender,
    first_within: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connector: Option<Box<dyn Connector>> = None;
    let mut down_polls: u32 = 0;
    let first = jitter(first_within);
    if wait(first, &mut shutdown).await {
        return;
    }
    loop {
        let started = Instant::now();
        let observations = match &connector {
            Some(c) => poll_bounded(c.as_ref(), &cluster).await,
            None => match build(&cluster) {
                Ok(c) => {
                    let obs = poll_bounded(c.as_ref(), &cluster).await;
                    connector = Some(c);
                    obs
                }
                Err(e) => vec![Observation::new("", "config", Status::Unknown, e)],
            },
        };
        let all_down = {
            let mut ups = observations
                .iter()
                .filter(|o| o.check == UP_CHECK)
                .peekable();
            ups.peek().is_some() && ups.all(|o| o.status == Status::Crit)
        };
        down_polls = if all_down {
            down_polls.saturating_add(1)
        } else {
            0
        };
        let next = next_delay(&cluster, down_polls);
        if all_down {
            tracing::warn!(cluster = %cluster.name, next_poll = %humantime::format_duration(next), "no node answers; backing off");
        }
        let stale_after = (next.max(cluster.interval) * 3 + cluster.timeout).as_millis() as i64;
        let observed_at_ms = dbmon_proto::now_ms();
        for o in observations {
            let essential = registry::essential(&cluster, &o.check);
            let report = Report {
                cluster: cluster.name.clone(),
                node: o.node,
                check: o.check,
                status: o.status as i32,
                value: o.value,
                unit: o.unit,
                message: o.message,
                observed_at_ms,
                latency_us: o.latency.as_micros() as u64,
                collector_id: collector_id.clone(),
                seq: 0,
                kind: cluster.kind.clone(),
                stale_after_ms: stale_after,
                essential,
            };
            if out.send(report).await.is_err() {
                return;
            }
        }
        let elapsed = started.elapsed();
        let delay = (next + jitter(next / 10)).saturating_sub(elapsed);
        if wait(delay, &mut shutdown).await {
            return;
        }
    }
}

fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, String> {
    let reg = registry::find(&cluster.kind)
        .ok_or_else(|| format!("unknown connector kind {:?}", cluster.kind))?;
    (reg.build)(cluster).map_err(|e| {
        tracing::error!(cluster = %cluster.name, error = %e, "cannot set up the connector; retrying at every interval");
        format!("cannot set up the connector: {e}")
    })
}

/// Polls with a deadline: requests are bounded by the timeout, but a
/// connector must never stall its agent, whatever it does.
async fn poll_bounded(c: &dyn Connector, cluster: &ClusterConfig) -> Vec<Observation> {
    let deadline = cluster.timeout * 3 + Duration::from_secs(1);
    match tokio::time::timeout(deadline, c.poll()).await {
        Ok(obs) => obs,
        Err(_) => vec![Observation::new(
            "",
            "poll",
            Status::Unknown,
            format!(
                "poll did not finish within {}",
                humantime::format_duration(deadline)
            ),
        )],
    }
}

/// The interval, doubled for each poll in a row where no node answered,
/// up to `max_backoff`.
pub fn next_delay(cluster: &ClusterConfig, down_polls: u32) -> Duration {
    if down_polls <= 1 {
        return cluster.interval;
    }
    let factor = 1u32 << (down_polls - 1).min(16);
    (cluster.interval.saturating_mul(factor)).min(cluster.max_backoff)
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_micros(rand::rng().random_range(0..=max.as_micros() as u64))
}

/// Sleeps for `d`; true if shutdown was asked meanwhile.
async fn wait(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(interval: u64, max_backoff: u64) -> ClusterConfig {
        let yaml = format!(
            "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:1]\n    interval: {interval}s\n    max_backoff: {max_backoff}s\n"
        );
        let cfg =
            dbmon_config::Config::parse(&yaml, std::path::Path::new("t.yaml"), &crate::Registry)
                .expect("valid config");
        cfg.clusters[0].clone()
    }

    #[test]
    fn backs_off_while_down_up_to_the_limit() {
        let c = cluster(2, 10);
        let delays: Vec<u64> = (0..6).map(|n| next_delay(&c, n).as_secs()).collect();
        // Up, first miss: the interval; then doubling, capped at max_backoff.
        assert_eq!(delays, vec![2, 2, 4, 8, 10, 10]);
    }
}
