//! Verifying a macaroon, as every people RPC does, against decoding the
//! same token (the least any check must do) as the baseline.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use dbmon_auth::caveat::Caveat;
use dbmon_auth::store::{AuthStore, now_ms};
use dbmon_auth::{Role, Verifier};

fn verify(c: &mut Criterion) {
    dbmon_auth::init();
    let dir = std::env::temp_dir().join(format!("dbmon-bench-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = AuthStore::open(&dir).unwrap();
    store
        .add_user("bench", Role::Operator, vec![], 60_000)
        .unwrap();
    // A thousand logins, as a busy server holds.
    let v = Verifier::new(store);
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        tokens.push(
            v.new_login("bench", "cred", "127.0.0.1:1", 3_600_000)
                .unwrap()
                .1,
        );
    }
    let token = tokens[500].clone();
    let narrowed = dbmon_auth::token::attenuate(
        &token,
        &[
            Caveat::Clusters(["a".to_string(), "b".to_string()].into()),
            Caveat::Ops([dbmon_auth::Op::Watch].into()),
            Caveat::Expires(now_ms() + 600_000),
        ],
    )
    .unwrap();
    let mut g = c.benchmark_group("macaroon");
    g.bench_function("baseline_decode", |b| {
        b.iter(|| black_box(dbmon_auth::token::inspect(black_box(&token)).unwrap()))
    });
    g.bench_function("verify_2_caveats", |b| {
        b.iter(|| black_box(v.verify(black_box(&token), now_ms()).unwrap()))
    });
    g.bench_function("verify_5_caveats", |b| {
        b.iter(|| black_box(v.verify(black_box(&narrowed), now_ms()).unwrap()))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, verify);
criterion_main!(benches);
