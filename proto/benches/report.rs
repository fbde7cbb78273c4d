//! Report encoding and decoding (prost), with JSON of the same fields as
//! the baseline, and health derivation for one cluster and for 1,000.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use dbmon_proto::health::summarize;
use dbmon_proto::{Report, Status};
use prost::Message;

fn report(cluster: usize, node: usize, check: &str) -> Report {
    let mut r = Report {
        cluster: format!("cluster-{cluster}"),
        node: format!("10.0.{}.{}:2379", cluster % 250, node),
        check: check.into(),
        value: Some(42.5),
        unit: "%".into(),
        message: "database 42 MiB of quota 2 GiB (2.05%)".into(),
        observed_at_ms: 1_795_000_000_000,
        latency_us: 1200,
        collector_id: "collector-1".into(),
        seq: 123_456,
        kind: "etcd".into(),
        stale_after_ms: 40_000,
        status: 0,
        essential: false,
    };
    r.set_status(Status::Ok);
    r
}

fn json(r: &Report) -> String {
    format!(
        "{{\"cluster\":{:?},\"node\":{:?},\"check\":{:?},\"status\":{},\"value\":{},\"unit\":{:?},\"message\":{:?},\"observed_at_ms\":{},\"latency_us\":{},\"collector_id\":{:?},\"seq\":{},\"kind\":{:?},\"stale_after_ms\":{}}}",
        r.cluster,
        r.node,
        r.check,
        r.status,
        r.value.unwrap_or(0.0),
        r.unit,
        r.message,
        r.observed_at_ms,
        r.latency_us,
        r.collector_id,
        r.seq,
        r.kind,
        r.stale_after_ms
    )
}

fn codec(c: &mut Criterion) {
    let r = report(1, 1, "db_size");
    let bytes = r.encode_to_vec();
    let text = json(&r);
    let mut g = c.benchmark_group("report");
    g.bench_function("encode_prost", |b| b.iter(|| black_box(&r).encode_to_vec()));
    g.bench_function("encode_json_baseline", |b| b.iter(|| json(black_box(&r))));
    g.bench_function("decode_prost", |b| {
        b.iter(|| Report::decode(black_box(&bytes[..])))
    });
    g.bench_function("decode_json_baseline", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)))
    });
    g.finish();
}

fn health(c: &mut Criterion) {
    const CHECKS: [&str; 5] = [
        "up",
        "has_leader",
        "leader_changes",
        "db_size",
        "proposals_failed",
    ];
    let cluster = |cl: usize| -> Vec<Report> {
        (0..3)
            .flat_map(|n| CHECKS.iter().map(move |c| report(cl, n, c)))
            .collect()
    };
    let one = cluster(0);
    let many: Vec<Report> = (0..1000).flat_map(cluster).collect();
    let mut g = c.benchmark_group("health");
    g.bench_function("one_cluster_15_reports", |b| {
        b.iter(|| summarize(black_box(&one), 1_795_000_001_000))
    });
    g.bench_function("1000_clusters_15000_reports", |b| {
        b.iter(|| summarize(black_box(&many), 1_795_000_001_000))
    });
    g.finish();
}

criterion_group!(benches, codec, health);
criterion_main!(benches);
