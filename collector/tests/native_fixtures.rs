//! The Redis and PostgreSQL connectors' judgement on real captured answers
//! (tests/fixtures/PROVENANCE.md): Redis `INFO all` through the connector's
//! parser, and PostgreSQL values read from psql tables of real servers.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use dbmon_collector::connectors::{postgresql, redis};
use dbmon_collector::{Observation, Registry};
use dbmon_proto::Status;
use std::time::Duration;

const MASTER: &str = include_str!("fixtures/redis/info-all-master-7.4.4.txt");
const CLUSTER_REPLICA: &str = include_str!("fixtures/redis/info-all-cluster-replica-7.4.4.txt");

fn cluster(kind: &str, nodes: &[&str]) -> dbmon_config::ClusterConfig {
    let yaml = format!(
        "clusters:\n  - name: c\n    kind: {kind}\n    nodes: [{}]\n",
        nodes.join(", ")
    );
    let cfg = dbmon_config::Config::parse(&yaml, std::path::Path::new("t.yaml"), &Registry)
        .unwrap_or_else(|e| panic!("{e}"));
    cfg.clusters[0].clone()
}

fn find<'a>(obs: &'a [Observation], node: &str, check: &str) -> &'a Observation {
    obs.iter()
        .find(|o| o.node == node && o.check == check)
        .unwrap_or_else(|| panic!("no {check} for {node:?} in {obs:#?}"))
}

#[test]
fn a_real_redis_master_answer_with_crlf() {
    let info = redis::parse_info(MASTER);
    assert_eq!(info["role"], "master", "CRLF is not part of values");
    assert_eq!(info["redis_version"], "7.4.4");
    let c = cluster("redis", &["127.0.0.1:6379", "127.0.0.1:6380"]);
    let facts = redis::Facts {
        info,
        cluster: None,
    };
    let obs = redis::judge(&c, &[("127.0.0.1:6379".into(), Ok(facts), Duration::ZERO)]);
    let n = "127.0.0.1:6379";
    assert_eq!(find(&obs, n, "up").message, "master, Redis 7.4.4");
    let r = find(&obs, n, "replicas");
    assert_eq!(
        (r.status, r.message.as_str()),
        (
            Status::Ok,
            "1 of 1 replica(s) connected (172.18.0.3:6379 online)"
        )
    );
    // maxmemory:0: judged against the machine's memory.
    let m = find(&obs, n, "memory");
    assert_eq!(m.value, Some(0.33), "{m:?}");
    assert_eq!(
        m.message,
        "13.04 MiB of the machine's 3.88 GiB (no maxmemory set)"
    );
    let p = find(&obs, n, "persistence");
    assert_eq!(p.status, Status::Ok);
    assert!(p.message.contains("17972 change(s) since"), "{p:?}");
    assert_eq!(find(&obs, n, "master_link").status, Status::NotApplicable);
    assert_eq!(find(&obs, n, "evictions").value, Some(0.0));
    assert_eq!(
        find(&obs, "", "quorum").message,
        "one master, 127.0.0.1:6379"
    );
}

#[test]
fn a_real_redis_cluster_replica_answer() {
    let info = redis::parse_info(CLUSTER_REPLICA);
    // Command stats hold '|' and ':' in their keys and values.
    assert!(info["cmdstat_cluster|info"].starts_with("calls=1,"));
    let c = cluster("redis", &["127.0.0.1:7001"]);
    let n = "127.0.0.1:7001";
    let facts = redis::Facts {
        info: info.clone(),
        cluster: None,
    };
    let obs = redis::judge(&c, &[(n.into(), Ok(facts), Duration::ZERO)]);
    assert_eq!(
        find(&obs, n, "up").message,
        "replica (cluster mode), Redis 7.4.4"
    );
    let link = find(&obs, n, "master_link");
    assert_eq!(link.status, Status::Ok);
    assert_eq!(
        link.message,
        "linked to master 172.18.0.7:6379, heard from it 0 s ago"
    );
    // 52136264 of 52428800 bytes: 99.44 %, crit.
    let m = find(&obs, n, "memory");
    assert_eq!((m.status, m.value), (Status::Crit, Some(99.44)), "{m:?}");
    assert!(
        m.message
            .starts_with("49.72 MiB of maxmemory 50 MiB (crit: > 90%)"),
        "{m:?}"
    );
    // Its master is not among the nodes: nothing to compare with.
    assert_eq!(find(&obs, n, "replication_lag").status, Status::Unknown);
    // Cluster mode without a CLUSTER INFO answer is not called ok.
    let q = find(&obs, "", "quorum");
    assert_eq!(q.status, Status::Warn, "{q:?}");

    // Variant (a one-line edit of the real answer): the link is down.
    let down = CLUSTER_REPLICA.replace("master_link_status:up", "master_link_status:down");
    let facts = redis::Facts {
        info: redis::parse_info(&down),
        cluster: None,
    };
    let obs = redis::judge(&c, &[(n.into(), Ok(facts), Duration::ZERO)]);
    let link = find(&obs, n, "master_link");
    assert_eq!(link.status, Status::Crit);
    assert_eq!(link.message, "the link to master 172.18.0.7:6379 is down");
}

/// The value of a one-row psql aligned table's column.
fn psql_value(table: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').map(str::trim).collect();
    let _dashes = lines.next().unwrap();
    let row: Vec<&str> = lines.next().unwrap().split('|').map(str::trim).collect();
    let i = header.iter().position(|h| *h == column).unwrap();
    row[i].to_string()
}

#[test]
fn real_postgresql_values_are_judged_as_the_connector_judges_its_rows() {
    let pg = |f: &str| std::fs::read_to_string(format!("tests/fixtures/postgres/{f}")).unwrap();
    let standby = psql_value(&pg("v14.4-pg_is_in_recovery-true.txt"), "pg_is_in_recovery") == "t";
    let facts = postgresql::Facts {
        standby,
        version: format!(
            "{}.{}",
            psql_value(&pg("v14.4-server_version_num.txt"), "server_version_num")
                .parse::<u32>()
                .unwrap()
                / 10000,
            psql_value(&pg("v14.4-server_version_num.txt"), "server_version_num")
                .parse::<u32>()
                .unwrap()
                % 10000
        ),
        max_connections: psql_value(&pg("v14.4-settings_max_connections.txt"), "current_setting")
            .parse()
            .unwrap(),
        connections: psql_value(&pg("v14.4-server_current_connections.txt"), "sum")
            .parse()
            .unwrap(),
        xid_age: psql_value(&pg("v14.4-txid_wraparound.txt"), "oldest_current_xid")
            .parse()
            .unwrap(),
        oldest_transaction: None,
        primary: None,
        standby_facts: Some(postgresql::StandbyFacts {
            replay_position: None,
            caught_up: true,
            replay_age: None,
            paused: false,
            receiver: Some("streaming".into()),
        }),
    };
    let n = "127.0.0.1:5433";
    let c = cluster("postgresql", &[n]);
    let obs = postgresql::judge(&c, &[(n.into(), Ok(facts), Duration::ZERO)]);
    assert_eq!(find(&obs, n, "up").message, "standby, PostgreSQL 14.4");
    let conns = find(&obs, n, "connections");
    assert_eq!((conns.status, conns.value), (Status::Ok, Some(3.0)));
    assert_eq!(conns.message, "3 of max_connections 100 in use");
    let xid = find(&obs, n, "xid_wraparound");
    assert_eq!((xid.status, xid.value), (Status::Ok, Some(0.0)));
    assert_eq!(find(&obs, n, "replay_lag").value, Some(0.0));
    assert_eq!(
        find(&obs, n, "replication_slots").status,
        Status::NotApplicable
    );
    // Only a standby answers: no primary, so the cluster takes no writes.
    let q = find(&obs, "", "quorum");
    assert_eq!(q.status, Status::Crit);
    assert_eq!(
        q.message,
        "no primary: the 1 answering node(s) are all standbys"
    );

    // The slot table's slot, inactive on a primary.
    let slot = psql_value(&pg("v14.4-replication_slot_files.txt"), "slot_name");
    let primary = postgresql::Facts {
        standby: false,
        version: "14.4".into(),
        max_connections: 100,
        connections: 3,
        primary: Some(postgresql::PrimaryFacts {
            wal_position: 0.0,
            standbys: Vec::new(),
            slots: vec![(slot, false, Some(0.0))],
        }),
        ..Default::default()
    };
    let obs = postgresql::judge(&c, &[(n.into(), Ok(primary), Duration::ZERO)]);
    let s = find(&obs, n, "replication_slots");
    assert_eq!(s.status, Status::Warn);
    assert!(s.message.contains("inactive: ocean (retains 0 B)"), "{s:?}");
}
