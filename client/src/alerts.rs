//! `dbmon-client alerts` and `dbmon-client silence`: what fires, who was
//! told, and muting notifications for a while.

use crate::{Format, Target, channel, print_structured, rpc_error, session, view};
use anyhow::{Context, Result};
use clap::Subcommand;
use dbmon_proto::v1::alerts_client::AlertsClient;
use dbmon_proto::v1::silences_client::SilencesClient;
use dbmon_proto::v1::{
    AddSilenceRequest, Alert, ExpireSilenceRequest, ListAlertsRequest, ListSilencesRequest, Silence,
};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum SilenceWhat {
    /// Mute notifications of a cluster (or one node or check of it) for a
    /// while; alerts are still evaluated and shown. Operators and admins.
    Add {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        check: Option<String>,
        /// How long, like 30m or 2h (at most the server's max_silence).
        #[arg(long = "for")]
        duration: String,
        /// Why: shown with every muted alert.
        #[arg(long)]
        comment: String,
    },
    /// Silences in force (with --all, also those ended in the last day).
    List {
        #[arg(long)]
        all: bool,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// End a silence now.
    Expire { id: String },
}

/// An alert as `-o json|yaml` prints it.
#[derive(Serialize)]
struct AlertView<'a> {
    rule: &'a str,
    cluster: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    node: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    check: &'a str,
    state: &'a str,
    severity: &'a str,
    since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    firing_since: Option<String>,
    summary: &'a str,
    receivers: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    muted_by: &'a str,
    deliveries: BTreeMap<&'a str, String>,
    fingerprint: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
}

fn delivery_text(a: &Alert) -> BTreeMap<&str, String> {
    a.deliveries
        .iter()
        .map(|d| {
            let text = if d.ok {
                format!("delivered {}", view::timestamp(d.at_ms))
            } else {
                format!(
                    "failed {} after {} attempt(s): {}",
                    view::timestamp(d.at_ms),
                    d.attempts,
                    d.error
                )
            };
            (d.receiver.as_str(), text)
        })
        .collect()
}

/// `dbmon-client alerts`.
pub async fn alerts(target: &Target, clusters: Vec<String>, output: Format) -> Result<()> {
    let server = target.server.as_str();
    let mut client =
        AlertsClient::with_interceptor(channel(target).await?, session::interceptor(server)?);
    let resp = client
        .list_alerts(ListAlertsRequest { clusters })
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    let mut alerts = resp.alerts;
    alerts.sort_by(|a, b| {
        (a.state != "firing", &a.cluster, &a.rule, &a.node, &a.check).cmp(&(
            b.state != "firing",
            &b.cluster,
            &b.rule,
            &b.node,
            &b.check,
        ))
    });
    if output != Format::Table {
        let views: Vec<AlertView> = alerts
            .iter()
            .map(|a| AlertView {
                rule: &a.rule,
                cluster: &a.cluster,
                node: &a.node,
                check: &a.check,
                state: &a.state,
                severity: &a.severity,
                since: view::timestamp(a.active_since_ms),
                firing_since: (a.fired_at_ms > 0).then(|| view::timestamp(a.fired_at_ms)),
                summary: a
                    .annotations
                    .get("summary")
                    .map(String::as_str)
                    .unwrap_or(""),
                receivers: &a.receivers,
                muted_by: &a.muted_by,
                deliveries: delivery_text(a),
                fingerprint: &a.fingerprint,
                labels: a
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            })
            .collect();
        return print_structured(&views, output);
    }
    if alerts.is_empty() {
        println!("no alerts");
    } else {
        let mut rows = vec![vec![
            "STATE".to_string(),
            "CLUSTER".into(),
            "ALERT".into(),
            "WHERE".into(),
            "SEVERITY".into(),
            "SINCE".into(),
            "RECEIVERS".into(),
            "LAST DELIVERY".into(),
            "NOTE".into(),
        ]];
        for a in &alerts {
            let place = match (a.node.as_str(), a.check.as_str()) {
                ("", "") => "-".to_string(),
                ("", c) => c.to_string(),
                (n, c) => format!("{c} on {n}"),
            };
            let last = a
                .deliveries
                .iter()
                .max_by_key(|d| d.at_ms)
                .map(|d| {
                    if d.ok {
                        format!("{} ok", d.receiver)
                    } else {
                        format!("{} failed: {}", d.receiver, d.error)
                    }
                })
                .unwrap_or_else(|| "-".into());
            let note = if a.muted_by.is_empty() {
                a.annotations.get("summary").cloned().unwrap_or_default()
            } else {
                a.muted_by.clone()
            };
            rows.push(vec![
                a.state.clone(),
                a.cluster.clone(),
                a.rule.clone(),
                place,
                a.severity.clone(),
                view::age(resp.server_time_ms - a.active_since_ms),
                a.receivers.join(","),
                last,
                note,
            ]);
        }
        print!("{}", view::table(&rows));
    }
    let failing: Vec<_> = resp
        .receivers
        .iter()
        .filter(|r| r.consecutive_failures > 0 || r.queued > 0)
        .collect();
    for r in failing {
        println!(
            "receiver {} ({}): {} queued, {} failed attempt(s) in a row{}",
            r.name,
            r.kind,
            r.queued,
            r.consecutive_failures,
            if r.last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {}", r.last_error)
            }
        );
    }
    Ok(())
}

fn silence_rows(list: &[Silence], now: i64) -> String {
    let mut rows = vec![vec![
        "ID".to_string(),
        "CLUSTER".into(),
        "NODE".into(),
        "CHECK".into(),
        "BY".into(),
        "UNTIL".into(),
        "COMMENT".into(),
    ]];
    for s in list {
        let until = if s.expired_at_ms > 0 {
            format!(
                "expired {} by {}",
                view::timestamp(s.expired_at_ms),
                s.expired_by
            )
        } else if s.ends_at_ms <= now {
            format!("ended {}", view::timestamp(s.ends_at_ms))
        } else {
            view::timestamp(s.ends_at_ms)
        };
        let or_all = |v: &str| {
            if v.is_empty() {
                "*".to_string()
            } else {
                v.to_string()
            }
        };
        rows.push(vec![
            s.id.clone(),
            s.cluster.clone(),
            or_all(&s.node),
            or_all(&s.check),
            s.created_by.clone(),
            until,
            s.comment.clone(),
        ]);
    }
    view::table(&rows)
}

/// `dbmon-client silence ...`.
pub async fn silence(target: &Target, what: SilenceWhat) -> Result<()> {
    let server = target.server.as_str();
    let mut client =
        SilencesClient::with_interceptor(channel(target).await?, session::interceptor(server)?);
    match what {
        SilenceWhat::Add {
            cluster,
            node,
            check,
            duration,
            comment,
        } => {
            let d = humantime::parse_duration(&duration).with_context(|| {
                format!("--for {duration:?}: expected a duration like 30m, 2h or 1d")
            })?;
            let s = client
                .add_silence(AddSilenceRequest {
                    cluster,
                    node: node.unwrap_or_default(),
                    check: check.unwrap_or_default(),
                    duration_ms: d.as_millis() as i64,
                    comment,
                })
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner();
            println!(
                "silence {} on {} until {}",
                s.id,
                s.cluster,
                view::timestamp(s.ends_at_ms)
            );
        }
        SilenceWhat::List { all, output } => {
            let list = client
                .list_silences(ListSilencesRequest { include_ended: all })
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner()
                .silences;
            match output {
                Format::Table if list.is_empty() => println!("no silences"),
                Format::Table => print!("{}", silence_rows(&list, dbmon_proto::now_ms())),
                f => print_structured(
                    &list
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "id": s.id, "cluster": s.cluster, "node": s.node, "check": s.check,
                                "comment": s.comment, "created_by": s.created_by, "login": s.login,
                                "starts_at": view::timestamp(s.starts_at_ms),
                                "ends_at": view::timestamp(s.ends_at_ms),
                                "expired_at": (s.expired_at_ms > 0).then(|| view::timestamp(s.expired_at_ms)),
                                "expired_by": (!s.expired_by.is_empty()).then_some(&s.expired_by),
                            })
                        })
                        .collect::<Vec<_>>(),
                    f,
                )?,
            }
        }
        SilenceWhat::Expire { id } => {
            let s = client
                .expire_silence(ExpireSilenceRequest { id })
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner();
            println!("silence {} on {} expired", s.id, s.cluster);
        }
    }
    Ok(())
}

/// One phrase per cluster with alerts: what fires and what mutes it
/// ("2 firing: ClusterUnhealthy, CheckFailing; silenced by alice (s-…) until …").
/// Empty when the server has no alerting or the token may not read it.
pub async fn notes(target: &Target, clusters: Vec<String>) -> BTreeMap<String, String> {
    let Ok(channel) = channel(target).await else {
        return BTreeMap::new();
    };
    let Ok(interceptor) = session::interceptor(&target.server) else {
        return BTreeMap::new();
    };
    let mut client = AlertsClient::with_interceptor(channel, interceptor);
    let Ok(resp) = client.list_alerts(ListAlertsRequest { clusters }).await else {
        return BTreeMap::new();
    };
    notes_of(&resp.into_inner().alerts)
}

/// The phrase of each cluster, from its alerts.
pub fn notes_of(alerts: &[Alert]) -> BTreeMap<String, String> {
    let mut by: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.state == "firing") {
        by.entry(&a.cluster).or_default().push(a);
    }
    by.into_iter()
        .map(|(cluster, list)| {
            let mut names: Vec<&str> = list.iter().map(|a| a.rule.as_str()).collect();
            names.sort();
            names.dedup();
            let mut note = format!("{} firing: {}", list.len(), names.join(", "));
            if let Some(m) = list.iter().find(|a| !a.muted_by.is_empty()) {
                note.push_str("; ");
                note.push_str(&m.muted_by);
            }
            (cluster.to_string(), note)
        })
        .collect()
}
