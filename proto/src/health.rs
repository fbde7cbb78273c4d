//! Cluster health, derived from the latest reports of one cluster.
//!
//! This is the one place that turns reports into a [`Health`]; the server
//! (its `/metrics` gauge), and the client (`status`, `watch`, `get`) all call
//! [`summarize`]. The rule, in order:
//!
//! 1. A report is *stale* once `stale_after_ms` has passed since it was
//!    observed; a stale report counts as `unknown`.
//! 2. No reports, or only unknown ones: **unknown**.
//! 3. Nodes are the distinct `node` values that have an [`UP_CHECK`] report.
//!    A node is up when that report is ok or warn. A cluster-wide
//!    [`QUORUM_CHECK`] crit: **unavailable**. Unless that report is ok, at
//!    most half of the nodes up (no majority): **unavailable**. A quorum
//!    that is ok outweighs the node count, since what keeps a cluster
//!    available is the connector's to say: a PostgreSQL primary with one of
//!    its two standbys down still takes writes. A quorum that only warns
//!    does not (etcd members that answer but cannot serve while they elect
//!    a leader).
//! 4. Any node down, or any crit or warn report: **degraded**.
//! 5. Any *essential* report (one the connector marks as needed to know the
//!    cluster's health: etcd's quorum and has_leader, CockroachDB's
//!    live_nodes and ranges_unavailable) unknown or stale: **unknown**, with
//!    those checks named in [`ClusterSummary::blind`]. dbmon never calls a
//!    cluster healthy while it cannot see what makes it so.
//! 6. Otherwise: **healthy**.
//!
//! Unknown reports of other checks (a metric missing from an answer, say)
//! do not change the health on their own; they show among the worst checks.
//! A *not applicable* report (a check the node's version does not have) is
//! left out entirely: it counts for nothing and is not among the worst.

use crate::v1::{Health, Report, Status};
use std::collections::BTreeMap;

/// Per-node reachability and readiness check every connector emits.
pub const UP_CHECK: &str = "up";
/// Cluster-wide check of what keeps the cluster available: a majority of
/// members answering (etcd), exactly one primary (PostgreSQL, Redis), the
/// cluster's own state (Redis cluster mode).
pub const QUORUM_CHECK: &str = "quorum";

/// Severity rank for sorting: crit > unknown > warn > ok > not applicable.
pub fn severity(status: Status) -> u8 {
    match status {
        Status::Crit => 4,
        Status::Unknown | Status::Unspecified => 3,
        Status::Warn => 2,
        Status::Ok => 1,
        Status::NotApplicable => 0,
    }
}

/// The status a report counts as at `now_ms`: unknown once stale.
pub fn effective_status(report: &Report, now_ms: i64) -> Status {
    if is_stale(report, now_ms) {
        Status::Unknown
    } else {
        report.status()
    }
}

/// Whether the report has outlived its `stale_after_ms`.
pub fn is_stale(report: &Report, now_ms: i64) -> bool {
    report.stale_after_ms > 0
        && now_ms > report.observed_at_ms.saturating_add(report.stale_after_ms)
}

/// What a person needs to know about one cluster at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSummary {
    pub cluster: String,
    pub kind: String,
    pub health: Health,
    pub nodes_up: usize,
    pub nodes_total: usize,
    /// Reports that are not ok, worst first (stale ones count as unknown),
    /// leaving out the unknown checks of a node that is down.
    pub worst: Vec<Report>,
    /// Observation time of the newest report.
    pub newest_ms: i64,
    /// Every report is stale: nothing has been heard from the cluster's
    /// collector for longer than its reports promised.
    pub stale: bool,
    /// Essential checks that are unknown or stale (`node check`, or `check`
    /// for cluster-wide ones): why the health is unknown.
    pub blind: Vec<String>,
}

/// Derives the health of one cluster from its latest reports.
pub fn derive<'a>(reports: impl IntoIterator<Item = &'a Report>, now_ms: i64) -> Health {
    summarize_one("", reports, now_ms).health
}

/// Groups reports by cluster and summarizes each (sorted by cluster name).
pub fn summarize<'a>(
    reports: impl IntoIterator<Item = &'a Report>,
    now_ms: i64,
) -> Vec<ClusterSummary> {
    let mut by_cluster: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        by_cluster.entry(r.cluster.as_str()).or_default().push(r);
    }
    by_cluster
        .into_iter()
        .map(|(cluster, rs)| summarize_one(cluster, rs, now_ms))
        .collect()
}

fn summarize_one<'a>(
    cluster: &str,
    reports: impl IntoIterator<Item = &'a Report>,
    now_ms: i64,
) -> ClusterSummary {
    let mut total = 0usize;
    let mut known = 0usize;
    let mut any_bad = false;
    let mut quorum_lost = false;
    let mut quorum_ok = false;
    let mut nodes: BTreeMap<&str, bool> = BTreeMap::new();
    let mut worst: Vec<(Status, &Report)> = Vec::new();
    let mut newest_ms = 0;
    let mut kind = String::new();
    let mut stale = 0usize;
    let mut blind: Vec<String> = Vec::new();
    for r in reports {
        if r.status() == Status::NotApplicable {
            continue;
        }
        total += 1;
        if is_stale(r, now_ms) {
            stale += 1;
        }
        newest_ms = newest_ms.max(r.observed_at_ms);
        if kind.is_empty() {
            kind.clone_from(&r.kind);
        }
        let status = effective_status(r, now_ms);
        if !matches!(status, Status::Unknown | Status::Unspecified) {
            known += 1;
        }
        if matches!(status, Status::Crit | Status::Warn) {
            any_bad = true;
        }
        if r.check == UP_CHECK && !r.node.is_empty() {
            let up = matches!(status, Status::Ok | Status::Warn);
            nodes.insert(r.node.as_str(), up);
        }
        if r.check == QUORUM_CHECK && r.node.is_empty() {
            quorum_lost |= status == Status::Crit;
            quorum_ok |= status == Status::Ok;
        }
        if r.essential && matches!(status, Status::Unknown | Status::Unspecified) {
            blind.push(if r.node.is_empty() {
                r.check.clone()
            } else {
                format!("{} {}", r.node, r.check)
            });
        }
        if status != Status::Ok {
            worst.push((status, r));
        }
    }
    let nodes_total = nodes.len();
    let nodes_up = nodes.values().filter(|up| **up).count();
    let health = if total == 0 || known == 0 {
        Health::Unknown
    } else if quorum_lost || (!quorum_ok && nodes_total > 0 && nodes_up * 2 <= nodes_total) {
        Health::Unavailable
    } else if any_bad || nodes_up < nodes_total {
        Health::Degraded
    } else if !blind.is_empty() {
        Health::Unknown
    } else {
        Health::Healthy
    };
    blind.sort();
    // A node that is down says why in its `up` report; its other checks,
    // unknown for that reason, would only crowd out what else is wrong.
    worst.retain(|(status, r)| {
        !(matches!(status, Status::Unknown | Status::Unspecified)
            && r.check != UP_CHECK
            && nodes.get(r.node.as_str()) == Some(&false))
    });
    worst.sort_by(|(sa, a), (sb, b)| {
        severity(*sb)
            .cmp(&severity(*sa))
            .then_with(|| a.node.cmp(&b.node))
            .then_with(|| a.check.cmp(&b.check))
    });
    let worst = worst
        .into_iter()
        .map(|(status, r)| {
            let mut r = r.clone();
            r.set_status(status);
            r
        })
        .collect();
    ClusterSummary {
        cluster: cluster.to_string(),
        kind,
        health,
        nodes_up,
        nodes_total,
        worst,
        newest_ms,
        stale: total > 0 && stale == total,
        blind,
    }
}

/// Lower-case name of a status, as shown to people and in JSON.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warn => "warn",
        Status::Crit => "crit",
        Status::Unknown | Status::Unspecified => "unknown",
        Status::NotApplicable => "not_applicable",
    }
}

/// Lower-case name of a health, as shown to people and in JSON.
pub fn health_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unavailable => "unavailable",
        Health::Unknown | Health::Unspecified => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(node: &str, check: &str, status: Status) -> Report {
        let mut r = Report {
            cluster: "c".into(),
            node: node.into(),
            check: check.into(),
            observed_at_ms: 1_000,
            stale_after_ms: 10_000,
            ..Default::default()
        };
        r.set_status(status);
        r
    }

    fn nodes(up: &[Status]) -> Vec<Report> {
        up.iter()
            .enumerate()
            .map(|(i, s)| rep(&format!("n{i}"), UP_CHECK, *s))
            .collect()
    }

    #[test]
    fn no_reports_is_unknown() {
        assert_eq!(derive([], 0), Health::Unknown);
    }

    #[test]
    fn all_up_and_ok_is_healthy() {
        let rs = nodes(&[Status::Ok, Status::Ok, Status::Ok]);
        assert_eq!(derive(&rs, 2_000), Health::Healthy);
    }

    #[test]
    fn one_of_three_down_is_degraded() {
        let rs = nodes(&[Status::Ok, Status::Crit, Status::Ok]);
        let s = &summarize(&rs, 2_000)[0];
        assert_eq!(s.health, Health::Degraded);
        assert_eq!((s.nodes_up, s.nodes_total), (2, 3));
        assert_eq!(s.worst[0].node, "n1");
    }

    #[test]
    fn two_of_three_down_is_unavailable() {
        let rs = nodes(&[Status::Crit, Status::Crit, Status::Ok]);
        assert_eq!(derive(&rs, 2_000), Health::Unavailable);
    }

    #[test]
    fn half_of_four_down_is_unavailable() {
        let rs = nodes(&[Status::Crit, Status::Crit, Status::Ok, Status::Ok]);
        assert_eq!(derive(&rs, 2_000), Health::Unavailable);
    }

    #[test]
    fn quorum_crit_is_unavailable_even_with_nodes_up() {
        let mut rs = nodes(&[Status::Ok, Status::Ok, Status::Ok]);
        rs.push(rep("", QUORUM_CHECK, Status::Crit));
        assert_eq!(derive(&rs, 2_000), Health::Unavailable);
    }

    #[test]
    fn a_quorum_that_is_ok_outweighs_the_node_majority() {
        // A primary and one of two standbys down: still takes writes.
        let mut rs = nodes(&[Status::Ok, Status::Crit]);
        rs.push(rep("", QUORUM_CHECK, Status::Ok));
        assert_eq!(derive(&rs, 2_000), Health::Degraded);
        // An unknown or warning quorum does not: the majority rule applies.
        for q in [Status::Unknown, Status::Warn] {
            rs.pop();
            rs.push(rep("", QUORUM_CHECK, q));
            assert_eq!(derive(&rs, 2_000), Health::Unavailable, "{q:?}");
        }
    }

    #[test]
    fn a_down_nodes_unknown_checks_do_not_crowd_the_worst() {
        let mut rs = nodes(&[Status::Ok, Status::Crit, Status::Ok]);
        rs.push(rep("n1", "connections", Status::Unknown));
        rs.push(rep("n0", "memory", Status::Unknown));
        let s = &summarize(&rs, 2_000)[0];
        let worst: Vec<(&str, &str)> = s
            .worst
            .iter()
            .map(|r| (r.node.as_str(), r.check.as_str()))
            .collect();
        assert_eq!(worst, [("n1", "up"), ("n0", "memory")]);
    }

    #[test]
    fn a_warn_check_degrades() {
        let mut rs = nodes(&[Status::Ok, Status::Ok, Status::Ok]);
        rs.push(rep("", "ranges_underreplicated", Status::Warn));
        assert_eq!(derive(&rs, 2_000), Health::Degraded);
    }

    #[test]
    fn stale_reports_count_as_unknown() {
        let rs = nodes(&[Status::Ok, Status::Ok, Status::Ok]);
        assert_eq!(derive(&rs, 20_000), Health::Unknown);
        let s = &summarize(&rs, 20_000)[0];
        assert_eq!(s.worst[0].status(), Status::Unknown);
        assert!(s.stale);
        assert!(!summarize(&rs, 2_000)[0].stale);
    }

    #[test]
    fn unknown_other_check_keeps_healthy_but_is_listed() {
        let mut rs = nodes(&[Status::Ok, Status::Ok, Status::Ok]);
        rs.push(rep("n0", "clock_offset", Status::Unknown));
        let s = &summarize(&rs, 2_000)[0];
        assert_eq!(s.health, Health::Healthy);
        assert_eq!(s.worst.len(), 1);
    }

    #[test]
    fn unknown_up_means_node_not_up() {
        let rs = nodes(&[Status::Ok, Status::Unknown, Status::Ok]);
        assert_eq!(derive(&rs, 2_000), Health::Degraded);
    }

    #[test]
    fn an_essential_check_unknown_means_the_health_is_unknown() {
        let mut rs: Vec<Report> = (0..3)
            .map(|i| rep(&format!("n{i}"), UP_CHECK, Status::Ok))
            .collect();
        let mut live = rep("", "live_nodes", Status::Unknown);
        live.essential = true;
        rs.push(live);
        let s = summarize(&rs, 2_000).remove(0);
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.blind, vec!["live_nodes".to_string()]);
        // A known problem still wins: a node down is degraded.
        rs[0].set_status(Status::Crit);
        assert_eq!(derive(&rs, 2_000), Health::Degraded);
        rs[0].set_status(Status::Ok);
        // Seen again: healthy.
        rs[3].set_status(Status::Ok);
        assert_eq!(derive(&rs, 2_000), Health::Healthy);
        // Stale counts as unknown.
        rs[3].observed_at_ms = -20_000;
        let s = summarize(&rs, 2_000).remove(0);
        assert_eq!((s.health, s.blind.len()), (Health::Unknown, 1));
        // Not essential: unknown does not change the health.
        rs[3].essential = false;
        assert_eq!(derive(&rs, 2_000), Health::Healthy);
    }

    #[test]
    fn not_applicable_counts_for_nothing() {
        let mut rs: Vec<Report> = (0..3)
            .map(|i| rep(&format!("n{i}"), UP_CHECK, Status::Ok))
            .collect();
        rs.push(rep("n0", "cert_expiry", Status::NotApplicable));
        let s = summarize(&rs, 2_000).remove(0);
        assert_eq!(s.health, Health::Healthy);
        assert!(s.worst.is_empty(), "{:?}", s.worst);
        // Only not-applicable reports: nothing is known.
        let only = [rep("n0", "cert_expiry", Status::NotApplicable)];
        assert_eq!(derive(&only, 2_000), Health::Unknown);
    }
}
