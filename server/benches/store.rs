//! Making 1,000 collector reports safe (what a collector waits for before
//! it frees them): in the embedded store (redb, group commits) and in the
//! shared store (a PostgreSQL server from Debian's packages, started here,
//! syncing to disk), against the cache alone (no store) as the baseline.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dbmon_proto::Report;
use dbmon_server::cache::Cache;
use dbmon_server::report_store::ReportStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const N: u64 = 1000;

fn reports() -> Vec<Report> {
    (1..=N)
        .map(|seq| Report {
            cluster: format!("cluster-{}", seq % 100),
            node: format!("n{}", seq % 3),
            check: "up".into(),
            status: 1,
            message: "answered /health in 2 ms".into(),
            collector_id: "bench".into(),
            seq,
            kind: "etcd".into(),
            ..Default::default()
        })
        .collect()
}

/// Accepts every report of a fresh collector epoch and waits until the
/// store says the last one is safe.
async fn make_safe(store: &dyn ReportStore, cache: &Cache, epoch: u64, reports: &[Report]) {
    let mut last = 0;
    for r in reports {
        last = store.accept(cache, epoch, r.clone());
    }
    let mut durable = store.durable();
    durable
        .wait_for(|d| *d >= last)
        .await
        .expect("the store stays up");
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reports = reports();
    // Every iteration is a new collector epoch, so nothing is a duplicate.
    let epoch = AtomicU64::new(1);
    let mut g = c.benchmark_group("safe_1000_reports");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);

    let memory = dbmon_server::report_store::MemoryOnly::new(None);
    let cache = Cache::new(100, 1024);
    g.bench_function("baseline_memory_only", |b| {
        b.iter(|| {
            rt.block_on(make_safe(
                &memory,
                &cache,
                epoch.fetch_add(1, Ordering::Relaxed),
                &reports,
            ))
        })
    });

    let (persist, records) =
        dbmon_server::store::Persist::open(&dir.path().join("reports.redb")).unwrap();
    let cache = Arc::new(Cache::restored(100, 1024, persist.clone(), records));
    dbmon_server::store::spawn_writer(persist.clone(), Arc::downgrade(&cache));
    g.bench_function("embedded_redb", |b| {
        b.iter(|| {
            rt.block_on(make_safe(
                persist.as_ref(),
                &cache,
                epoch.fetch_add(1, Ordering::Relaxed),
                &reports,
            ))
        })
    });

    let pg = postgres::Postgres::start_durable(dir.path());
    let mut pg_cfg: tokio_postgres::Config = pg.url().parse().unwrap();
    pg_cfg.connect_timeout(Duration::from_secs(10));
    let cfg = dbmon_server::shared::SharedConfig {
        pg: pg_cfg,
        tls: None,
        target: pg.url(),
        history_per_cluster: 100,
        max_age: Duration::from_secs(86_400),
    };
    let (shared, records) = rt.block_on(dbmon_server::shared::open(cfg)).unwrap();
    let cache = Arc::new(Cache::from_records(100, 1024, records));
    rt.block_on(async { dbmon_server::shared::start_tail(&shared, &cache) });
    g.bench_function("shared_postgresql", |b| {
        b.iter(|| {
            rt.block_on(make_safe(
                shared.as_ref(),
                &cache,
                epoch.fetch_add(1, Ordering::Relaxed),
                &reports,
            ))
        })
    });
    g.finish();
    drop(pg);
}

criterion_group!(benches, stores);
criterion_main!(benches);
