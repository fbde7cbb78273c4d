//! Parsing a real CockroachDB `/_status/vars` answer (175 KB, 405 metric
//! families), against a raw line scan of the same text as the baseline.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use dbmon_collector::prom::Metrics;

const STATUS_VARS: &str = include_str!("../tests/fixtures/cockroachdb/status-vars.txt");

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("status_vars");
    g.throughput(Throughput::Bytes(STATUS_VARS.len() as u64));
    g.bench_function("baseline_line_scan", |b| {
        b.iter(|| {
            black_box(STATUS_VARS)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count()
        })
    });
    g.bench_function("parse_all", |b| {
        b.iter(|| Metrics::parse(black_box(STATUS_VARS)).map(|m| m.has("sys_uptime")))
    });
    g.bench_function("parse_only_wanted", |b| {
        b.iter(|| {
            Metrics::parse_only(
                black_box(STATUS_VARS),
                dbmon_collector::connectors::cockroachdb::VARS,
            )
            .map(|m| m.has("sys_uptime"))
        })
    });
    // The line filter alone: every line's name looked at, none kept.
    g.bench_function("filter_lines_keep_none", |b| {
        b.iter(|| Metrics::parse_only(black_box(STATUS_VARS), &["no_such_family"]).is_ok())
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
