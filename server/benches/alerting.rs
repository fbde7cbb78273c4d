//! What alerting costs, measured against ingest in the same run:
//!
//! 1. `alerting_per_report`: ingesting one poll of a cluster (30 reports:
//!    3 nodes, 10 checks) into a cache of 300 clusters is the baseline.
//!    Against it: what the evaluation task pays for the same poll when no
//!    status changed (a lookup per report), what judging the cluster costs
//!    when one did (its latest reports, a health rule and a check rule, the
//!    state machine), and one tick over every alert held (once per wake).
//! 2. `notification latency`: a crit report ingested → a real HTTP webhook
//!    on loopback has the notification (`for: 0s`, `group_wait: 0s`), over
//!    many events, p50/p99/max printed. This is the server's share; the
//!    collector's poll interval comes on top.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use criterion::{BatchSize, Criterion, black_box};
use dbmon_config::{
    AlertRule, AlertWhen, AlertingConfig, HealthState, Matchers, ReceiverConfig, ReceiverKind,
    Severity,
};
use dbmon_proto::{Report, Status};
use dbmon_server::alerting::rules::{ClusterFacts, evaluate};
use dbmon_server::alerting::state::{Doc, Engine};
use dbmon_server::alerting::{Alerting, StateStore, StatusMemory};
use dbmon_server::cache::Cache;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTERS: u64 = 300;
const CHECKS: u64 = 10;

/// Report `seq` of a cluster's poll: the 30 (node, check) pairs of a
/// cluster in turn.
fn report(seq: u64, cluster: u64, crit: bool) -> Report {
    let slot = seq % (3 * CHECKS);
    let mut r = Report {
        cluster: format!("cluster-{cluster}"),
        node: format!("n{}", slot % 3),
        check: if slot / 3 == 0 {
            "up".into()
        } else {
            format!("check{}", slot / 3)
        },
        kind: "etcd".into(),
        collector_id: "c".into(),
        seq,
        observed_at_ms: dbmon_proto::now_ms(),
        stale_after_ms: 3_600_000,
        message: "value 42 is fine".into(),
        value: Some(42.0),
        ..Default::default()
    };
    r.set_status(if crit { Status::Crit } else { Status::Ok });
    r
}

fn rules(for_: Duration, group_wait: Duration) -> Vec<AlertRule> {
    let base = AlertRule {
        name: "ClusterUnhealthy".into(),
        when: AlertWhen::Health(vec![
            HealthState::Degraded,
            HealthState::Unavailable,
            HealthState::Unknown,
        ]),
        matchers: Matchers::default(),
        for_,
        resolve_after: Duration::ZERO,
        repeat_interval: Duration::from_secs(3600),
        send_resolved: true,
        group_wait,
        group_interval: Duration::ZERO,
        receivers: vec!["hook".into()],
    };
    vec![
        base.clone(),
        AlertRule {
            name: "CheckFailing".into(),
            when: AlertWhen::Check(vec![Severity::Warn, Severity::Crit]),
            ..base
        },
    ]
}

fn per_report(c: &mut Criterion) {
    let mut g = c.benchmark_group("alerting_per_report");
    // Every cluster's 30 reports; one check crit in every tenth cluster.
    let per = 3 * CHECKS;
    let full: Vec<Report> = (0..CLUSTERS * per)
        .map(|i| report(i, i / per, i % per == 4 && (i / per).is_multiple_of(10)))
        .collect();
    // Steady state: a cache holding every cluster; one poll of one cluster
    // (3 nodes x 10 checks = 30 reports) at a time.
    let ingest_cache = Cache::new(100, 1024);
    for r in &full {
        ingest_cache.ingest(1, r.clone());
    }
    let mut seq = full.len() as u64;
    let per_poll = 3 * CHECKS;
    g.bench_function("baseline_ingest_one_poll_30_reports", |b| {
        b.iter_batched(
            || {
                let cluster = seq % CLUSTERS;
                (0..per_poll)
                    .map(|_| {
                        seq += 1;
                        report(seq, cluster, false)
                    })
                    .collect::<Vec<_>>()
            },
            |poll| {
                for r in poll {
                    black_box(ingest_cache.ingest(1, r));
                }
            },
            BatchSize::SmallInput,
        )
    });
    let cache = Cache::new(100, 1_000_000);
    let (mut rx, _, _) = cache.subscribe_entries(&[]);
    for r in &full {
        cache.ingest(1, r.clone());
    }
    let mut entries = Vec::new();
    while let Ok(e) = rx.try_recv() {
        entries.push(e);
    }
    drop(rx);
    // What every report costs the evaluation task: remembering its status.
    // A poll that repeats the statuses (most polls) costs only this.
    let mut memory = StatusMemory::default();
    let mut changed = std::collections::BTreeSet::new();
    for e in &entries {
        memory.note(e, &mut changed);
    }
    let mut at = 0usize;
    g.bench_function("note_one_poll_30_reports_unchanged", |b| {
        b.iter(|| {
            let mut changed = std::collections::BTreeSet::new();
            for _ in 0..per_poll {
                at = (at + 1) % entries.len();
                memory.note(&entries[at], &mut changed);
            }
            black_box(changed.len())
        })
    });
    let rules = rules(Duration::from_secs(30), Duration::from_secs(30));
    let mut engine = Engine::new(&rules, &[], Doc::default());
    let labels = BTreeMap::new();
    let mut n = 0u64;
    let mut judge = |engine: &mut Engine| {
        n += 1;
        let cluster = format!("cluster-{}", n % CLUSTERS);
        let now = dbmon_proto::now_ms();
        let latest = cache.latest(std::slice::from_ref(&cluster));
        let facts = ClusterFacts {
            name: &cluster,
            kind: "etcd",
            labels: &labels,
        };
        let conds = rules
            .iter()
            .flat_map(|r| evaluate(r, &facts, &latest, now))
            .collect();
        engine.observe(&cluster, conds, now);
    };
    // When a status changes: judge the cluster once (its latest reports,
    // both rules, the state machine).
    g.bench_function("judge_one_poll_cluster", |b| b.iter(|| judge(&mut engine)));
    // Once per wake (at most every 250 ms, or per batch of reports): timers
    // and grouping over every alert held (here about 190).
    let held = engine.doc.alerts.len();
    g.bench_function(format!("tick_over_{held}_alerts"), |b| {
        b.iter(|| black_box(engine.tick(dbmon_proto::now_ms())))
    });
    g.finish();
}

/// A webhook on loopback: the time each notification's cluster arrived.
async fn hook(arrived: Arc<Mutex<BTreeMap<String, Instant>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let v: serde_json::Value =
                                serde_json::from_str(&body[..len]).unwrap_or_default();
                            if let Some(c) = v["groupLabels"]["cluster"].as_str() {
                                arrived
                                    .lock()
                                    .unwrap()
                                    .entry(c.to_string())
                                    .or_insert_with(Instant::now);
                            }
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

fn notification_latency(events: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let arrived: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let url = hook(arrived.clone()).await;
        let cfg = AlertingConfig {
            receivers: vec![ReceiverConfig {
                name: "hook".into(),
                timeout: Duration::from_secs(5),
                kind: ReceiverKind::Webhook {
                    url: url.parse().unwrap(),
                    secret: None,
                    headers: Vec::new(),
                    ca_file: None,
                },
            }],
            rules: rules(Duration::ZERO, Duration::ZERO),
            maintenance: Vec::new(),
        };
        let cache = Arc::new(Cache::new(100, 4096));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let alerting = Alerting::new(
            &cfg,
            &[],
            "http://dbmon.invalid".into(),
            Duration::from_secs(3600),
            StateStore::Memory,
        )
        .unwrap();
        alerting.spawn(cache.clone(), shutdown);
        let mut sent = Vec::new();
        let mut seq = 0;
        for i in 0..events {
            seq += 1;
            let r = report(seq * 3 * CHECKS, 100_000 + i as u64, true);
            let cluster = r.cluster.clone();
            let t0 = Instant::now();
            cache.ingest(1, r);
            sent.push((cluster.clone(), t0));
            // One event at a time, as a cluster failing: wait for it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !arrived.lock().unwrap().contains_key(&cluster) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let got = arrived.lock().unwrap().clone();
        let mut ms: Vec<f64> = sent
            .iter()
            .filter_map(|(c, t0)| got.get(c).map(|t1| (*t1 - *t0).as_secs_f64() * 1000.0))
            .collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "notification_latency/webhook_loopback: events {} delivered {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            events,
            ms.len(),
            pct(0.5),
            pct(0.99),
            ms.last().copied().unwrap_or(0.0)
        );
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    per_report(&mut c);
    c.final_summary();
    notification_latency(500);
}
