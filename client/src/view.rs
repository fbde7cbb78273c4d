//! What the client shows: serializable views of reports and cluster
//! summaries, and the plain-text table.

use dbmon_proto::health::{ClusterSummary, health_name, status_name};
use dbmon_proto::{Report, Status};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Serialize)]
pub struct ReportView {
    pub cluster: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub check: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unit: String,
    pub message: String,
    pub observed_at: String,
    pub latency_ms: f64,
    pub collector: String,
    pub seq: u64,
    /// Outlived its promise: counts as unknown (`status` is what it said).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl ReportView {
    /// The report as of `now_ms`: marked stale once it has outlived its promise.
    pub fn at(r: &Report, now_ms: i64) -> Self {
        ReportView {
            stale: dbmon_proto::health::is_stale(r, now_ms),
            ..ReportView::new(r)
        }
    }

    pub fn new(r: &Report) -> Self {
        ReportView {
            cluster: r.cluster.clone(),
            node: r.node.clone(),
            check: r.check.clone(),
            status: status_name(r.status()),
            value: r.value,
            unit: r.unit.clone(),
            message: r.message.clone(),
            observed_at: timestamp(r.observed_at_ms),
            latency_ms: r.latency_us as f64 / 1000.0,
            collector: r.collector_id.clone(),
            seq: r.seq,
            stale: false,
        }
    }
}

#[derive(Serialize)]
pub struct ClusterView {
    pub cluster: String,
    pub kind: String,
    pub health: &'static str,
    pub nodes_up: usize,
    pub nodes_total: usize,
    /// Nothing heard from the cluster's collector for longer than promised.
    pub stale: bool,
    /// Essential checks that are unknown: why the health is unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blind: Vec<String>,
    /// Seconds since the newest report was observed.
    pub age_s: f64,
    pub worst: Vec<ReportView>,
    /// Firing alerts and what mutes them, when any fire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<String>,
}

impl ClusterView {
    pub fn new(s: &ClusterSummary, now_ms: i64) -> Self {
        ClusterView {
            cluster: s.cluster.clone(),
            kind: s.kind.clone(),
            health: health_name(s.health),
            nodes_up: s.nodes_up,
            nodes_total: s.nodes_total,
            stale: s.stale,
            blind: s.blind.clone(),
            age_s: (now_ms - s.newest_ms).max(0) as f64 / 1000.0,
            worst: s.worst.iter().map(ReportView::new).collect(),
            alerts: None,
        }
    }
}

/// RFC 3339 time of a Unix-milliseconds timestamp.
pub fn timestamp(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A short age: 3s, 2m, 1h.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// One short phrase for a not-ok report: "n1 up: crit".
pub fn short(r: &Report) -> String {
    let who = if r.node.is_empty() {
        String::new()
    } else {
        format!("{} ", r.node)
    };
    format!("{who}{} {}", r.check, status_name(r.status()))
}

/// The status table of `dbmon-client status`; `notes` says, per cluster,
/// which alerts fire and what mutes them.
pub fn status_table(
    summaries: &[ClusterSummary],
    now_ms: i64,
    notes: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut rows = vec![vec![
        "CLUSTER".to_string(),
        "KIND".into(),
        "HEALTH".into(),
        "NODES".into(),
        "AGE".into(),
        "WORST CHECKS".into(),
    ]];
    if !notes.is_empty() {
        rows[0].push("ALERTS".into());
    }
    for s in summaries {
        let worst: Vec<String> = s.worst.iter().take(3).map(short).collect();
        let more = s.worst.len().saturating_sub(3);
        let mut worst = if worst.is_empty() {
            "-".to_string()
        } else {
            worst.join(", ")
        };
        if more > 0 {
            worst.push_str(&format!(" (+{more})"));
        }
        rows.push(vec![
            s.cluster.clone(),
            s.kind.clone(),
            health_text(s),
            format!("{}/{}", s.nodes_up, s.nodes_total),
            age(now_ms - s.newest_ms),
            worst,
        ]);
        if !notes.is_empty() {
            let note = notes.get(&s.cluster).cloned().unwrap_or_else(|| "-".into());
            rows.last_mut().expect("pushed above").push(note);
        }
    }
    table(&rows)
}

/// A cluster's health with why it is not known, when it is not.
pub fn health_text(s: &ClusterSummary) -> String {
    if s.stale {
        format!("{} (stale)", health_name(s.health))
    } else if !s.blind.is_empty() {
        format!(
            "{} (blind: {} unknown)",
            health_name(s.health),
            s.blind.join(", ")
        )
    } else {
        health_name(s.health).to_string()
    }
}

/// The per-check table of `dbmon-client get cluster` at `now_ms`: a report
/// that outlived its promise shows as stale with what it last said.
pub fn reports_table(reports: &[Report], now_ms: i64) -> String {
    let mut rows = vec![vec![
        "NODE".to_string(),
        "CHECK".into(),
        "STATUS".into(),
        "VALUE".into(),
        "MESSAGE".into(),
    ]];
    for r in reports {
        rows.push(vec![
            if r.node.is_empty() {
                "(cluster)".into()
            } else {
                r.node.clone()
            },
            r.check.clone(),
            if dbmon_proto::health::is_stale(r, now_ms) {
                format!("stale (was {})", status_name(r.status()))
            } else {
                status_name(r.status()).to_string()
            },
            r.value
                .map(|v| {
                    format!(
                        "{}{}",
                        trim(v),
                        if r.unit.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", r.unit)
                        }
                    )
                })
                .unwrap_or_else(|| "-".into()),
            r.message.clone(),
        ]);
    }
    table(&rows)
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == r.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Whether a status deserves attention in a stream of events.
pub fn notable(s: Status) -> bool {
    !matches!(s, Status::Ok | Status::NotApplicable)
}
