//! Ingesting into the cache (latest state, history, fan-out), against a
//! plain HashMap insert of the same keys as the baseline; and writing one
//! Watch message for 1,000 subscribers from the shared encodings, against
//! building and encoding a `WatchEvent` per subscriber.

use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use dbmon_proto::Report;
use dbmon_server::cache::Cache;
use std::collections::HashMap;

fn reports(n: u64) -> Vec<Report> {
    (1..=n)
        .map(|seq| Report {
            cluster: format!("cluster-{}", seq % 1000),
            node: format!("n{}", seq % 3),
            check: "up".into(),
            status: 1,
            collector_id: "c".into(),
            seq,
            ..Default::default()
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_10000_reports");
    g.bench_function("baseline_hashmap_insert", |b| {
        b.iter_batched(
            || reports(10_000),
            |rs| {
                let mut m = HashMap::new();
                for r in rs {
                    m.insert((r.cluster.clone(), r.node.clone(), r.check.clone()), r);
                }
                black_box(m.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("ingest_no_subscribers", |b| {
        b.iter_batched(
            || (Cache::new(100, 1024), reports(10_000)),
            |(cache, rs)| {
                for r in rs {
                    cache.ingest(1, r);
                }
                black_box(cache.latest(&[]).len())
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("ingest_1000_subscribers", |b| {
        b.iter_batched(
            || {
                let cache = Cache::new(100, 16_384);
                let subs: Vec<_> = (0..1000).map(|_| cache.subscribe(&[]).0).collect();
                (cache, subs, reports(10_000))
            },
            |(cache, subs, rs)| {
                for r in rs {
                    cache.ingest(1, r);
                }
                // Returned, so that dropping 1,000 receivers (each walking
                // its unread slots) happens outside the measurement.
                (cache, subs)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// `n` fresh broadcast events (their encodings not made yet), as a
/// subscriber's task receives them.
fn events(n: u64) -> Vec<dbmon_server::cache::Event> {
    let cache = Cache::new(100, 1024);
    let (mut rx, _, _) = cache.subscribe_entries(&[]);
    for mut r in reports(n) {
        r.message = "disk 43% used (warn above 80%)".into();
        r.kind = "cockroachdb".into();
        r.value = Some(43.0);
        r.unit = "%".into();
        cache.ingest(1, r);
    }
    (0..n).filter_map(|_| rx.try_recv().ok()).collect()
}

fn watch_message(c: &mut Criterion) {
    use dbmon_server::wire::Outgoing;
    use prost::Message;
    for n in [1u64, 64] {
        let mut g = c.benchmark_group(format!("watch_message_{n}_reports_1000_subscribers"));
        g.bench_function("baseline_build_and_encode_per_subscriber", |b| {
            b.iter_batched(
                || (events(n), Vec::with_capacity(16 * 1024)),
                |(evs, mut buf)| {
                    for _ in 0..1000 {
                        buf.clear();
                        let m = Outgoing::Reports {
                            events: evs.clone(),
                            position: 9,
                        };
                        let _ = m.into_event().encode(&mut buf);
                    }
                    black_box(buf.len())
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("shared_encoding", |b| {
            b.iter_batched(
                || (events(n), Vec::with_capacity(16 * 1024)),
                |(evs, mut buf)| {
                    for _ in 0..1000 {
                        buf.clear();
                        Outgoing::Reports {
                            events: evs.clone(),
                            position: 9,
                        }
                        .encode(&mut buf);
                    }
                    black_box(buf.len())
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, ingest, watch_message);
criterion_main!(benches);
