//! `/healthz` and `/metrics` (Prometheus text) of dbmon itself.

use crate::service::Services;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub fn router(services: Services) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(services)
}

/// Cluster health as a number for the gauge: documented in its HELP line.
fn health_code(h: dbmon_proto::Health) -> u8 {
    use dbmon_proto::Health::*;
    match h {
        Healthy => 0,
        Degraded => 1,
        Unavailable => 2,
        Unknown | Unspecified => 3,
    }
}

/// 200 while the server serves, which it does from memory even when its
/// store cannot be written; the body says so.
async fn healthz(State(s): State<Services>) -> String {
    match s.store.problem() {
        None => "ok\n".into(),
        Some(p) => format!("ok, but {p}\n"),
    }
}

async fn metrics(State(s): State<Services>) -> impl IntoResponse {
    let mut out = String::new();
    let c = &s.cache;
    if let Some(counters) = s.store.counters() {
        metric(
            &mut out,
            "dbmon_store_written_total",
            "counter",
            "Reports written to the store since start.",
            counters.written,
        );
        metric(
            &mut out,
            "dbmon_store_write_errors_total",
            "counter",
            "Failed store commits since start.",
            counters.write_errors,
        );
        if let Some(pruned) = counters.pruned {
            metric(
                &mut out,
                "dbmon_store_pruned_total",
                "counter",
                "Reports deleted by retention since start.",
                pruned,
            );
        }
    }
    metric(
        &mut out,
        "dbmon_reports_ingested_total",
        "counter",
        "Reports stored since start.",
        c.ingested.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "dbmon_reports_duplicate_total",
        "counter",
        "Reports dropped as already seen (replays).",
        c.duplicates.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "dbmon_watch_subscribers",
        "gauge",
        "Open Watch streams.",
        c.subscribers(),
    );
    metric(
        &mut out,
        "dbmon_collectors_connected",
        "gauge",
        "Open collector streams.",
        s.collectors.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP dbmon_cluster_health Derived cluster health: 0 healthy, 1 degraded, 2 unavailable, 3 unknown.\n# TYPE dbmon_cluster_health gauge"
    );
    let latest = c.latest(&[]);
    for sum in dbmon_proto::health::summarize(&latest, dbmon_proto::now_ms()) {
        let _ = writeln!(
            out,
            "dbmon_cluster_health{{cluster=\"{}\"}} {}",
            escape(&sum.cluster),
            health_code(sum.health)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// One metric with its HELP and TYPE lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
