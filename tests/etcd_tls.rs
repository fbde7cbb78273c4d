//! A real 3-member etcd cluster serving TLS and requiring client
//! certificates (`--client-cert-auth`), watched by a collector that shows
//! its certificate; the same cluster without it gives a clear error
//! report, not a crash.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use dbmon_pki::{Ca, Role};
use std::time::Duration;
use support::*;

#[test]
fn etcd_with_client_certificate_auth() {
    let dir = tempfile::tempdir().unwrap();
    // The cluster's own CA, apart from dbmon's.
    let etcd_pki = dir.path().join("etcd-pki");
    let ca = Ca::init(&etcd_pki, "etcd.test", false).unwrap();
    let server = ca
        .issue(
            Role::Server,
            "etcd",
            None,
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(86_400),
            false,
        )
        .unwrap();
    let client = ca
        .issue(
            Role::Collector,
            "dbmon",
            Some("dbmon"),
            &[],
            Duration::from_secs(86_400),
            false,
        )
        .unwrap();
    let tls = dbmon::local::EtcdTls {
        ca_file: etcd_pki.join("ca.crt"),
        cert_file: server.cert_path,
        key_file: server.key_path,
    };
    let mut etcd = EtcdCluster::start_with(&dir.path().join("etcd"), 3, Some(tls))
        .expect("start etcd with TLS");
    etcd.wait_healthy(Duration::from_secs(30)).expect("etcd up");
    let nodes = etcd.client_urls().join(", ");
    assert!(nodes.starts_with("https://"), "{nodes}");

    let clusters = format!(
        "  - name: secure-etcd\n    kind: etcd\n    interval: 1s\n    timeout: 1s\n    nodes: [{nodes}]\n    tls:\n      ca_file: {ca}\n      cert_file: {cert}\n      key_file: {key}\n\
         \x20 - name: secure-etcd-no-cert\n    kind: etcd\n    interval: 1s\n    timeout: 1s\n    nodes: [{nodes}]\n    tls:\n      ca_file: {ca}\n",
        ca = etcd_pki.join("ca.crt").display(),
        cert = client.cert_path.display(),
        key = client.key_path.display(),
    );
    let mut stack = start_server(dir.path(), &clusters);
    let mut watch = stack.watch_json(&[]);
    stack.start_collector();

    watch.wait_for(
        Duration::from_secs(30),
        "the secure cluster healthy with 3/3 members",
        |v| {
            v["report"]["cluster"] == "secure-etcd"
                && v["cluster_health"] == "healthy"
                && v["nodes_up"] == 3
        },
    );
    let ev = watch.wait_for(
        Duration::from_secs(30),
        "the cluster without a client certificate: up crit",
        |v| v["report"]["cluster"] == "secure-etcd-no-cert" && report_is(v, None, "up", "crit"),
    );
    let msg = ev["report"]["message"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(
        msg.contains("badcertificate") && msg.contains("tls.cert_file"),
        "the reason names the certificate and what to set: {ev}"
    );
    assert!(
        stack
            .collector
            .as_mut()
            .unwrap()
            .child
            .try_wait()
            .unwrap()
            .is_none(),
        "the collector keeps running"
    );
}
