//! What fires: a cluster's latest reports judged against the alert rules.
//! Pure: the same reports at the same time give the same conditions.

use dbmon_config::{AlertRule, AlertWhen, HealthState, Severity};
use dbmon_proto::health::{self, health_name, status_name};
use dbmon_proto::{Health, Report, Status};
use std::collections::BTreeMap;

/// A rule's condition holding for one (cluster, node, check) now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Stable identity: rule, cluster, node and check (not the severity,
    /// so a check going from warn to crit is the same alert, updated).
    pub fingerprint: String,
    pub rule: String,
    pub cluster: String,
    pub node: String,
    pub check: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The identity of an alert, as 16 hex digits (FNV-1a over its parts,
/// stable across versions and machines).
pub fn fingerprint(rule: &str, cluster: &str, node: &str, check: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [rule, cluster, node, check] {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Everything a rule needs to know about a cluster besides its reports.
pub struct ClusterFacts<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The conditions `rule` finds in one cluster's latest reports at `now_ms`.
pub fn evaluate(
    rule: &AlertRule,
    cluster: &ClusterFacts<'_>,
    reports: &[Report],
    now_ms: i64,
) -> Vec<Condition> {
    if !rule
        .matchers
        .cluster(cluster.name, cluster.kind, cluster.labels)
    {
        return Vec::new();
    }
    let base = |node: &str, check: &str, severity: &str| {
        let mut labels = cluster.labels.clone();
        labels.insert("alertname".into(), rule.name.clone());
        labels.insert("cluster".into(), cluster.name.to_string());
        if !cluster.kind.is_empty() {
            labels.insert("kind".into(), cluster.kind.to_string());
        }
        if !node.is_empty() {
            labels.insert("node".into(), node.to_string());
        }
        if !check.is_empty() {
            labels.insert("check".into(), check.to_string());
        }
        labels.insert("severity".into(), severity.to_string());
        labels
    };
    match &rule.when {
        AlertWhen::Health(states) => {
            let summary = health::summarize(reports.iter(), now_ms);
            let Some(s) = summary.first() else {
                return Vec::new();
            };
            let state = match s.health {
                Health::Degraded => HealthState::Degraded,
                Health::Unavailable => HealthState::Unavailable,
                Health::Unknown | Health::Unspecified => HealthState::Unknown,
                Health::Healthy => return Vec::new(),
            };
            if !states.contains(&state) {
                return Vec::new();
            }
            let severity = if s.health == Health::Unavailable {
                "critical"
            } else {
                "warning"
            };
            let mut annotations = BTreeMap::new();
            annotations.insert("health".into(), health_name(s.health).to_string());
            let nodes = if s.nodes_total > 0 {
                format!(": {} of {} nodes up", s.nodes_up, s.nodes_total)
            } else {
                String::new()
            };
            annotations.insert(
                "summary".into(),
                format!(
                    "cluster {} is {}{nodes}",
                    cluster.name,
                    health_name(s.health)
                ),
            );
            let worst: Vec<String> = s
                .worst
                .iter()
                .take(5)
                .map(|r| {
                    let at = if r.node.is_empty() {
                        String::new()
                    } else {
                        format!(" on {}", r.node)
                    };
                    format!("{} {}{at}: {}", r.check, status_name(r.status()), r.message)
                })
                .collect();
            if !worst.is_empty() {
                annotations.insert("description".into(), worst.join("\n"));
            }
            vec![Condition {
                fingerprint: fingerprint(&rule.name, cluster.name, "", ""),
                rule: rule.name.clone(),
                cluster: cluster.name.to_string(),
                node: String::new(),
                check: String::new(),
                labels: base("", "", severity),
                annotations,
            }]
        }
        AlertWhen::Check(levels) => reports
            .iter()
            .filter_map(|r| {
                let level = match health::effective_status(r, now_ms) {
                    Status::Warn => Severity::Warn,
                    Status::Crit => Severity::Crit,
                    _ => return None,
                };
                if !levels.contains(&level) || !rule.matchers.check(&r.node, &r.check) {
                    return None;
                }
                let severity = match level {
                    Severity::Warn => "warning",
                    Severity::Crit => "critical",
                };
                let at = if r.node.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", r.node)
                };
                let mut annotations = BTreeMap::new();
                annotations.insert(
                    "summary".into(),
                    format!(
                        "{} {}{at} in cluster {}",
                        r.check,
                        status_name(r.status()),
                        cluster.name
                    ),
                );
                annotations.insert("description".into(), r.message.clone());
                if let Some(v) = r.value {
                    annotations.insert("value".into(), format!("{v}{}", r.unit));
                }
                Some(Condition {
                    fingerprint: fingerprint(&rule.name, cluster.name, &r.node, &r.check),
                    rule: rule.name.clone(),
                    cluster: cluster.name.to_string(),
                    node: r.node.clone(),
                    check: r.check.clone(),
                    labels: base(&r.node, &r.check, severity),
                    annotations,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbmon_config::Matchers;
    use std::time::Duration;

    fn rule(when: AlertWhen) -> AlertRule {
        AlertRule {
            name: "r".into(),
            when,
            matchers: Matchers::default(),
            for_: Duration::ZERO,
            resolve_after: Duration::ZERO,
            repeat_interval: Duration::from_secs(3600),
            send_resolved: true,
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            receivers: vec!["x".into()],
        }
    }

    fn rep(node: &str, check: &str, status: Status) -> Report {
        let mut r = Report {
            cluster: "c".into(),
            node: node.into(),
            check: check.into(),
            kind: "etcd".into(),
            observed_at_ms: 1_000,
            stale_after_ms: 10_000,
            message: format!("{check} says so"),
            ..Default::default()
        };
        r.set_status(status);
        r
    }

    fn facts(labels: &BTreeMap<String, String>) -> ClusterFacts<'_> {
        ClusterFacts {
            name: "c",
            kind: "etcd",
            labels,
        }
    }

    #[test]
    fn a_degraded_cluster_fires_the_health_rule_once_with_its_labels() {
        let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let reports = [
            rep("n1", "up", Status::Ok),
            rep("n2", "up", Status::Ok),
            rep("n3", "up", Status::Crit),
        ];
        let r = rule(AlertWhen::Health(vec![
            HealthState::Degraded,
            HealthState::Unavailable,
        ]));
        let c = evaluate(&r, &facts(&labels), &reports, 2_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].labels["severity"], "warning");
        assert_eq!(c[0].labels["env"], "prod");
        assert_eq!(
            c[0].annotations["summary"],
            "cluster c is degraded: 2 of 3 nodes up"
        );
        assert!(c[0].annotations["description"].contains("up crit on n3"));
        // Healthy: nothing.
        let ok = [rep("n1", "up", Status::Ok)];
        assert!(evaluate(&r, &facts(&labels), &ok, 2_000).is_empty());
        // A matcher on another label: nothing.
        let mut other = r.clone();
        other.matchers.labels.insert("env".into(), "dev".into());
        assert!(evaluate(&other, &facts(&labels), &reports, 2_000).is_empty());
    }

    #[test]
    fn check_rules_fire_per_node_and_check_at_their_levels() {
        let labels = BTreeMap::new();
        let reports = [
            rep("n1", "db_size", Status::Warn),
            rep("n2", "db_size", Status::Crit),
            rep("n3", "db_size", Status::Ok),
        ];
        let r = rule(AlertWhen::Check(vec![Severity::Crit]));
        let c = evaluate(&r, &facts(&labels), &reports, 2_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].node, "n2");
        assert_eq!(c[0].labels["severity"], "critical");
        // Stale reports count as unknown, which no check rule fires on.
        assert!(evaluate(&r, &facts(&labels), &reports, 60_000).is_empty());
        assert_ne!(
            fingerprint("r", "c", "n1", "db_size"),
            fingerprint("r", "c", "n2", "db_size")
        );
    }
}
