//! Ingesting into the cache (latest state, history, fan-out), against a
//! plain HashMap insert of the same keys as the baseline.

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

criterion_group!(benches, ingest);
criterion_main!(benches);
