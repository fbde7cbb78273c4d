//! `kind: http`: judging a cluster's checks against one poll's answers,
//! against reading (parsing) those answers, in the same run. The Istio
//! preset on Istio 1.5.0's real `/metrics` (the parse reads only the
//! families the checks name, as the connector does), and the NATS preset
//! on nats-server 2.10.24's real `/varz` and `/healthz` (JSON), three nodes
//! each.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use dbmon_collector::Registry;
use dbmon_collector::connectors::http::{Answers, Rates, Reply, judge};
use dbmon_collector::prom::Metrics;
use dbmon_config::{Config, Definition};
use std::time::{Duration, Instant};

const ISTIOD: &str = include_str!("../tests/fixtures/istio/istiod-1.5.0.txt");
const VARZ: &str = include_str!("../tests/fixtures/nats/varz-v2.10.24-jetstream.json");
const HEALTHZ: &str = include_str!("../tests/fixtures/nats/healthz-ok-v2.10.24.json");

fn definition(preset: &str) -> Definition {
    let yaml =
        format!("clusters:\n  - name: p\n    preset: {preset}\n    nodes: [a:1, b:1, c:1]\n");
    let cfg = Config::parse(&yaml, std::path::Path::new("bench.yaml"), &Registry).unwrap();
    cfg.clusters[0].definition.clone().unwrap()
}

fn reply(body: &str, json: bool, metrics: Option<&[&str]>) -> Reply {
    Reply {
        status: 200,
        latency: Duration::from_millis(2),
        body: body.to_string(),
        json: json.then(|| serde_json::from_str(body).map_err(|e| e.to_string())),
        metrics: metrics.map(|m| Metrics::parse_only(body, m)),
        cert_not_after: None,
    }
}

fn three(answers: impl Fn() -> Answers) -> Vec<(String, Answers)> {
    (0..3).map(|i| (format!("node-{i}:1"), answers())).collect()
}

fn bench(c: &mut Criterion) {
    let istio = definition("istio");
    let wanted: Vec<String> = istio.requests["metrics"].metrics.clone();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("http_checks_istio");
    g.bench_function("parse_3_answers", |b| {
        b.iter(|| {
            for _ in 0..3 {
                black_box(Metrics::parse_only(black_box(ISTIOD), &wanted).unwrap());
            }
        })
    });
    let per_node = three(|| {
        Answers::from([(
            "metrics".to_string(),
            Ok(reply(ISTIOD, false, Some(&wanted))),
        )])
    });
    let rates = Rates::default();
    let start = Instant::now();
    let mut polls = 0u64;
    g.bench_function("judge_3_answers", |b| {
        b.iter(|| {
            polls += 1;
            // Polls 15 s apart, as the preset's interval.
            let at = start + Duration::from_secs(15 * polls);
            black_box(judge(&istio, black_box(&per_node), &rates, 1.8e9, at))
        })
    });
    g.finish();

    let nats = definition("nats");
    let mut g = c.benchmark_group("http_checks_nats");
    g.bench_function("parse_3_answers", |b| {
        b.iter(|| {
            for _ in 0..3 {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(VARZ)).unwrap());
                black_box(serde_json::from_str::<serde_json::Value>(black_box(HEALTHZ)).unwrap());
            }
        })
    });
    let per_node = three(|| {
        Answers::from([
            ("varz".to_string(), Ok(reply(VARZ, true, None))),
            ("healthz".to_string(), Ok(reply(HEALTHZ, true, None))),
        ])
    });
    let rates = Rates::default();
    let mut polls = 0u64;
    g.bench_function("judge_3_answers", |b| {
        b.iter(|| {
            polls += 1;
            let at = start + Duration::from_secs(15 * polls);
            black_box(judge(&nats, black_box(&per_node), &rates, 1.8e9, at))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
