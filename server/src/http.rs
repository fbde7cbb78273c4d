//! `/healthz`, and `/metrics` (OpenMetrics text, through the
//! prometheus-client library) of dbmon itself and of every check it holds.

use crate::service::Services;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
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
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Scrape(s)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "cannot encode /metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

/// Everything `/metrics` says, read from the server's state at each scrape.
struct Scrape(Services);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

/// Writes one metric family: its descriptor, then each labelled value.
fn family<M: EncodeMetric + TypedMetric, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(e.encode_family(&labels)?)?;
    }
    Ok(())
}

impl EncodeMetric for &crate::cache::Latencies {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

impl TypedMetric for &crate::cache::Latencies {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

/// Writes one metric without labels.
fn single<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, M::TYPE)?)
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

/// A whole-number gauge.
fn level(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// A check's status as a number: documented in its HELP line.
fn status_code(s: dbmon_proto::Status) -> i64 {
    use dbmon_proto::Status::*;
    match s {
        Ok => 0,
        Warn => 1,
        Crit => 2,
        Unknown | Unspecified => 3,
        NotApplicable => -1,
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let c = &s.cache;
        if let Some(counters) = s.store.counters() {
            single(
                &mut enc,
                "dbmon_store_written",
                "Reports written to the store since start.",
                counter(counters.written),
            )?;
            single(
                &mut enc,
                "dbmon_store_write_errors",
                "Failed store commits since start.",
                counter(counters.write_errors),
            )?;
            if let Some(pruned) = counters.pruned {
                single(
                    &mut enc,
                    "dbmon_store_pruned",
                    "Reports deleted by retention since start.",
                    counter(pruned),
                )?;
            }
        }
        single(
            &mut enc,
            "dbmon_reports_ingested",
            "Reports stored since start.",
            counter(c.ingested.load(Ordering::Relaxed)),
        )?;
        single(
            &mut enc,
            "dbmon_reports_duplicate",
            "Reports dropped as already seen (replays).",
            counter(c.duplicates.load(Ordering::Relaxed)),
        )?;
        single(
            &mut enc,
            "dbmon_watch_subscribers",
            "Open Watch streams.",
            level(c.watch_streams.count() as i64),
        )?;
        single(
            &mut enc,
            "dbmon_dashboard_live_pages",
            "Open dashboard pages on the live channel.",
            level(c.live_pages.count() as i64),
        )?;
        single(
            &mut enc,
            "dbmon_watch_fanout_seconds",
            "From a report's arrival to its message being written to a subscriber's stream, per message and subscriber (the oldest report of a batch).",
            &c.fanout,
        )?;
        single(
            &mut enc,
            "dbmon_watch_dispatch_seconds",
            "From a report's arrival to its message being handed to a subscriber's stream queue, per message and subscriber (the oldest report of a batch): the server's scheduling, before any wait for room on the subscriber's connection.",
            &c.dispatch,
        )?;
        single(
            &mut enc,
            "dbmon_collectors_connected",
            "Open collector streams.",
            level(s.collectors.load(Ordering::Relaxed) as i64),
        )?;

        let now = dbmon_proto::now_ms();
        let latest = c.latest(&[]);
        let summaries = dbmon_proto::health::summarize(&latest, now);
        family(
            &mut enc,
            "dbmon_cluster_health",
            "Derived cluster health: 0 healthy, 1 degraded, 2 unavailable, 3 unknown.",
            summaries.iter().map(|sum| {
                (
                    [
                        ("cluster", sum.cluster.as_str()),
                        ("kind", sum.kind.as_str()),
                    ],
                    level(i64::from(health_code(sum.health))),
                )
            }),
        )?;
        family(
            &mut enc,
            "dbmon_check_status",
            "Each check's latest status: 0 ok, 1 warn, 2 crit, 3 unknown (or stale), -1 not applicable.",
            latest.iter().map(|r| {
                (
                    [
                        ("cluster", r.cluster.as_str()),
                        ("node", r.node.as_str()),
                        ("check", r.check.as_str()),
                        ("kind", r.kind.as_str()),
                    ],
                    level(status_code(dbmon_proto::health::effective_status(r, now))),
                )
            }),
        )?;
        family(
            &mut enc,
            "dbmon_check_value",
            "Each check's latest value, in the unit of its label (when it has one).",
            latest.iter().filter_map(|r| {
                let v = r.value.filter(|v| v.is_finite())?;
                Some((
                    [
                        ("cluster", r.cluster.as_str()),
                        ("node", r.node.as_str()),
                        ("check", r.check.as_str()),
                        ("kind", r.kind.as_str()),
                        ("unit", r.unit.as_str()),
                    ],
                    gauge(v),
                ))
            }),
        )?;

        // Alerts by state and each receiver's deliveries.
        let doc = s.alerting.local();
        family(
            &mut enc,
            "dbmon_alerts",
            "Alerts by state (muted: firing but silenced or in maintenance).",
            crate::alerting::Alerting::counts_in(&doc)
                .into_iter()
                .map(|(state, n)| ([("state", state)], level(n as i64))),
        )?;
        let receivers = s.alerting.receivers_in(&doc);
        let by_receiver = |f: &dyn Fn(&crate::alerting::ReceiverView) -> u64| {
            receivers
                .iter()
                .map(|r| ([("receiver", r.name.clone())], f(r)))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "dbmon_notifications_delivered",
            "Notifications delivered, by receiver.",
            by_receiver(&|r| r.health.delivered)
                .into_iter()
                .map(|(l, v)| (l, counter(v))),
        )?;
        family(
            &mut enc,
            "dbmon_notifications_failed",
            "Failed delivery attempts, by receiver.",
            by_receiver(&|r| r.health.failed_attempts)
                .into_iter()
                .map(|(l, v)| (l, counter(v))),
        )?;
        family(
            &mut enc,
            "dbmon_notifications_dropped",
            "Notifications dropped from a full outbox, by receiver.",
            by_receiver(&|r| r.health.dropped)
                .into_iter()
                .map(|(l, v)| (l, counter(v))),
        )?;
        family(
            &mut enc,
            "dbmon_notifications_queued",
            "Notifications waiting for delivery, by receiver.",
            by_receiver(&|r| r.queued as u64)
                .into_iter()
                .map(|(l, v)| (l, level(v as i64))),
        )?;
        family(
            &mut enc,
            "dbmon_receiver_up",
            "1 while the receiver's last delivery attempt succeeded (or none was made), else 0.",
            by_receiver(&|r| u64::from(r.health.consecutive_failures == 0))
                .into_iter()
                .map(|(l, v)| (l, level(v as i64))),
        )?;
        Ok(())
    }
}
