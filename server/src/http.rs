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
    let mut out = match s.store.problem() {
        None => "ok\n".to_string(),
        Some(p) => format!("ok, but {p}\n"),
    };
    // Receivers that cannot deliver: the server serves, but nobody is told.
    let doc = s.alerting.local();
    for r in s.alerting.receivers_in(&doc) {
        if r.health.consecutive_failures > 0 {
            let _ = writeln!(
                out,
                "receiver {} ({}) failing: {} attempt(s) in a row, {} notification(s) waiting; last error: {}",
                r.name,
                r.kind,
                r.health.consecutive_failures,
                r.queued,
                r.health.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    if let Some(e) = s.alerting.state_saved_error() {
        let _ = writeln!(out, "alerting state not saved: {e}");
    }
    if let Some(reload) = s.reload.lock().unwrap_or_else(|e| e.into_inner()).line() {
        let _ = writeln!(out, "{reload}");
    }
    out
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
    let doc = s.alerting.local();
    alerting_metrics(&mut out, &s.alerting, &doc);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Alerts by state and each receiver's deliveries.
fn alerting_metrics(
    out: &mut String,
    alerting: &crate::alerting::Alerting,
    doc: &crate::alerting::state::Doc,
) {
    let _ = writeln!(
        out,
        "# HELP dbmon_alerts Alerts by state (muted: firing but silenced or in maintenance).\n# TYPE dbmon_alerts gauge"
    );
    for (state, n) in crate::alerting::Alerting::counts_in(doc) {
        let _ = writeln!(out, "dbmon_alerts{{state=\"{state}\"}} {n}");
    }
    let receivers = alerting.receivers_in(doc);
    for (name, kind, help, value) in [
        (
            "dbmon_notifications_delivered_total",
            "counter",
            "Notifications delivered, by receiver.",
            &(|r: &crate::alerting::ReceiverView| r.health.delivered)
                as &dyn Fn(&crate::alerting::ReceiverView) -> u64,
        ),
        (
            "dbmon_notifications_failed_total",
            "counter",
            "Failed delivery attempts, by receiver.",
            &|r| r.health.failed_attempts,
        ),
        (
            "dbmon_notifications_dropped_total",
            "counter",
            "Notifications dropped from a full outbox, by receiver.",
            &|r| r.health.dropped,
        ),
        (
            "dbmon_notifications_queued",
            "gauge",
            "Notifications waiting for delivery, by receiver.",
            &|r| r.queued as u64,
        ),
        (
            "dbmon_receiver_up",
            "gauge",
            "1 while the receiver's last delivery attempt succeeded (or none was made), else 0.",
            &|r| u64::from(r.health.consecutive_failures == 0),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in &receivers {
            let _ = writeln!(
                out,
                "{name}{{receiver=\"{}\"}} {}",
                escape(&r.name),
                value(r)
            );
        }
    }
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
