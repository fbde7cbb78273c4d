//! The collector's buffer on disk: 1,000 reports written to the spill and
//! read back in order, against the same reports queued and read back in
//! memory as the baseline. What an outage costs per report beyond memory.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use dbmon_collector::spill::Spill;
use dbmon_proto::{Report, Status};
use std::collections::VecDeque;

const N: u64 = 1000;

/// A report the size of a real etcd `up` report.
fn report(seq: u64) -> Report {
    let mut r = Report {
        cluster: "orders-etcd".into(),
        node: "10.0.3.17:2379".into(),
        check: "up".into(),
        message: "no answer: request to http://10.0.3.17:2379/health: cannot connect: tcp connect error: Connection refused (os error 111)".into(),
        observed_at_ms: 1_795_000_000_000 + seq as i64,
        latency_us: 1234,
        collector_id: "collector-1".into(),
        seq,
        kind: "etcd".into(),
        stale_after_ms: 30_000,
        ..Default::default()
    };
    r.set_status(Status::Crit);
    r
}

fn spill(c: &mut Criterion) {
    let reports: Vec<Report> = (1..=N).map(report).collect();
    let mut g = c.benchmark_group("buffer_1000_reports");
    g.throughput(Throughput::Elements(N));
    g.bench_function("baseline_memory_queue", |b| {
        b.iter(|| {
            let mut q: VecDeque<Report> = VecDeque::new();
            for r in &reports {
                q.push_back(r.clone());
            }
            // Read back as the publisher does: owned copies, in order.
            let back: Vec<Report> = q.iter().filter(|r| r.seq > 0).cloned().collect();
            black_box(back.len())
        })
    });
    g.bench_function("spill_write_and_read_back", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let (mut s, _) = Spill::open(dir.path(), 64 << 20).expect("open spill");
                for r in &reports {
                    s.append(r).expect("append");
                }
                let (back, lost) = s.after(0, N as usize);
                assert!(lost.is_empty());
                black_box(back.len());
                s.ack(N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, spill);
criterion_main!(benches);
