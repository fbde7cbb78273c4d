//! `dbmon config check` on bad files: each error names the file, line,
//! column and field, and says what is expected.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::process::Command;
use support::DBMON;

fn check(yaml: &str) -> (i32, String, String) {
    support::config_check(yaml)
}

const GOOD: &str = "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n";

/// (what, file, the exact error line expected, FILE standing for the path)
const CASES: &[(&str, &str, &str)] = &[
    (
        "unknown top-level field",
        "severs:\n  listen: 127.0.0.1:7070\n",
        "FILE:1:1: unknown field `severs`, expected one of server, collector, client, clusters, receivers, alerts, maintenance",
    ),
    (
        "unknown cluster field",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    intervl: 5s\n",
        "FILE:5:5: clusters[0]: unknown field `intervl`, expected one of name, kind, preset, nodes, interval, timeout, max_backoff, tls, auth, requests, checks, labels, public",
    ),
    (
        "not a duration",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    interval: ten\n",
        "FILE:5:15: clusters[0].interval: \"ten\" is not a duration; expected a number and a unit, like 500ms, 10s or 1m",
    ),
    (
        "too short an interval",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    interval: 10ms\n",
        "FILE:5:15: clusters[0].interval: \"10ms\" is too short; expected at least 100ms",
    ),
    (
        "unknown kind",
        "clusters:\n  - name: a\n    kind: mongo\n    nodes: [127.0.0.1:2379]\n",
        "FILE:3:11: clusters[0].kind: unknown connector kind \"mongo\"; expected one of: cockroachdb, etcd, http, postgresql, redis",
    ),
    (
        "inline secret",
        "clusters:\n  - name: a\n    kind: cockroachdb\n    nodes: [127.0.0.1:8080]\n    auth:\n      username: dbmon\n      password: hunter2\n",
        "FILE:7:17: clusters[0].auth.password: secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
    ),
    (
        "secret by file and env at once",
        "clusters:\n  - name: a\n    kind: cockroachdb\n    nodes: [127.0.0.1:8080]\n    auth:\n      username: dbmon\n      password: {file: /p, env: P}\n",
        "FILE:7:17: clusters[0].auth.password: expected exactly one of file: PATH or env: VARIABLE",
    ),
    (
        "no nodes",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: []\n",
        "FILE:4:12: clusters[0].nodes: expected at least one node address",
    ),
    (
        "node address with a path",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes:\n      - http://10.0.0.1:2379/v2\n",
        "FILE:5:9: clusters[0].nodes[0]: \"http://10.0.0.1:2379/v2\" is not a node address; expected HOST:PORT or http(s)://HOST:PORT without a path",
    ),
    (
        "nodes not a list",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: 127.0.0.1:2379\n",
        "FILE:4:12: clusters[0]: expected a list",
    ),
    (
        "timeout longer than interval",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    interval: 5s\n    timeout: 10s\n",
        "FILE:6:14: clusters[0].timeout: timeout 10s is longer than the interval 5s; expected timeout <= interval",
    ),
    (
        "inverted thresholds",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    checks:\n      db_size: {warn: 99, crit: 90}\n",
        "FILE:6:16: clusters[0].checks.db_size: warn 99 and crit 90 are inverted: db_size is bad when higher, so expected warn <= crit",
    ),
    (
        "unknown check of the kind",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    checks:\n      clock_offset: {crit: 300}\n",
        "FILE:6:21: clusters[0].checks.clock_offset: unknown check \"clock_offset\" for kind \"etcd\"; expected one of: up, quorum, has_leader, leader_changes, db_size, proposals_failed",
    ),
    (
        "duplicate cluster names",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2380]\n",
        "FILE:5:11: clusters[1].name: duplicate cluster name \"a\" (first defined at line 2); names must be unique",
    ),
    (
        "server address not IP:PORT",
        "server:\n  listen: localhost\n",
        "FILE:2:11: server.listen: \"localhost\" is not an address; expected IP:PORT such as 127.0.0.1:7070",
    ),
    (
        "client certificate without its key",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    tls:\n      cert_file: /etc/dbmon/etcd.crt\n",
        "FILE:6:18: clusters[0].tls: cert_file and key_file go together; give both or neither",
    ),
    (
        "missing kind",
        "clusters:\n  - name: a\n    nodes: [127.0.0.1:2379]\n",
        "FILE:2:11: clusters[0].kind: expected kind: one of cockroachdb, etcd, http, postgresql, redis, or preset: one of envoy, istio, nats",
    ),
    (
        "broken YAML",
        "clusters: [\n",
        "FILE:1:11: unclosed bracket '['",
    ),
    (
        "plaintext beyond loopback",
        "server:\n  listen: 0.0.0.0:7070\n  insecure_plaintext: true\n",
        "FILE:3:23: server.insecure_plaintext: plaintext is for development on loopback only, but server.listen is 0.0.0.0:7070; remove insecure_plaintext and configure tls",
    ),
    (
        "plaintext collector link without the flag",
        "collector:\n  server: http://127.0.0.1:7072\n",
        "FILE:2:11: collector.server: plaintext http:// needs collector.insecure_plaintext: true (development on loopback only); expected https://HOST:PORT",
    ),
    (
        "bad cluster name",
        "clusters:\n  - name: \"prod cluster!\"\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n",
        "FILE:2:11: clusters[0].name: expected a name of letters, digits, '-', '_' or '.', 1 to 63 characters",
    ),
    (
        "sign-in origin on an IP address",
        "server:\n  auth:\n    origin: https://10.0.0.5:7070\n",
        "FILE:3:13: server.auth.origin: \"https://10.0.0.5:7070\": expected a DNS name: browsers refuse passkeys for IP addresses; use the name people type, or localhost",
    ),
    (
        "plain http sign-in origin",
        "server:\n  auth:\n    origin: http://dbmon.example.com\n",
        "FILE:3:13: server.auth.origin: \"http://dbmon.example.com\": expected https:// (plain http:// only for localhost)",
    ),
    (
        "sign-in origin with a path",
        "server:\n  auth:\n    origin: https://dbmon.example.com/dbmon\n",
        "FILE:3:13: server.auth.origin: \"https://dbmon.example.com/dbmon\": expected scheme, name and port only, without a path",
    ),
    (
        "login lifetime too short",
        "server:\n  auth:\n    session_ttl: 5s\n",
        "FILE:3:18: server.auth.session_ttl: expected at least 1m",
    ),
    (
        "spill size without a unit it knows",
        "collector:\n  spill_max_size: 10 parsecs\n",
        "FILE:2:19: collector.spill_max_size: \"10 parsecs\" is not a size; expected a number and a unit, like 64MiB, 1GiB or 500MB",
    ),
    (
        "spill too small to hold a segment",
        "collector:\n  spill_max_size: 1KiB\n",
        "FILE:2:19: collector.spill_max_size: \"1KiB\" is too small; expected at least 64KiB",
    ),
    (
        "empty spill directory",
        "collector:\n  spill_dir: \"\"\n",
        "FILE:2:14: collector.spill_dir: expected a directory, or `none` to buffer in memory only",
    ),
    (
        "history kept for less than a minute",
        "server:\n  history_max_age: 10s\n",
        "FILE:2:20: server.history_max_age: expected at least 1m",
    ),
    (
        "a password in the shared store's URL",
        "server:\n  store: postgresql://dbmon:hunter2@db.example.com/dbmon\n",
        "FILE:2:10: server.store: secrets are never written inline; remove the password from the URL and give it as server.store_password: {file: PATH} or {env: VARIABLE}",
    ),
    (
        "a shared store without a database",
        "server:\n  store: postgresql://dbmon@db.example.com\n",
        "FILE:2:10: server.store: \"postgresql://dbmon@db.example.com\": expected postgresql://USER@HOST:PORT/DATABASE",
    ),
    (
        "a database on another host without TLS",
        "server:\n  store: postgresql://dbmon@db.example.com:5432/dbmon\n",
        "FILE:2:10: server.store: a database on another host is reached over TLS only: set server.store_ca_file to the CA certificate that signed the database's certificate",
    ),
    (
        "a CA file for the embedded store",
        "server:\n  store_ca_file: /etc/ssl/db-ca.crt\n",
        "FILE:2:18: server.store_ca_file: only a postgresql:// server.store takes a CA file",
    ),
    (
        "a password for the embedded store",
        "server:\n  store_password: {env: PGPASSWORD}\n",
        "FILE:2:19: server.store_password: only a postgresql:// server.store takes a password",
    ),
    (
        "unknown auth field",
        "server:\n  auth:\n    dirr: /auth\n",
        "FILE:3:5: server: unknown field `dirr`, expected one of dir, origin, session_ttl, invite_ttl, service_token_max_ttl",
    ),
    (
        "a negative count",
        "collector:\n  buffer_reports: -5\n",
        "FILE:2:19: collector.buffer_reports: expected a whole number greater than 0, found -5",
    ),
    (
        "text where a flag belongs",
        "server:\n  insecure_plaintext: yes please\n",
        "FILE:2:23: server.insecure_plaintext: expected true or false, found the text \"yes please\"",
    ),
    (
        "a threshold that is not a number",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    checks:\n      db_size: {warn: lots}\n",
        "FILE:6:23: clusters[0].checks.db_size.warn: expected a number, found the text \"lots\"",
    ),
    (
        "a login on a kind that takes none",
        "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    auth:\n      username: dbmon\n      password: {env: P}\n",
        "FILE:6:7: clusters[0].auth: kind \"etcd\" does not use auth; remove it (this kind accepts: tls, tls.cert_file)",
    ),
    (
        "a client certificate on a kind that takes none",
        "clusters:\n  - name: a\n    kind: cockroachdb\n    nodes: [127.0.0.1:8080]\n    tls:\n      ca_file: /ca.crt\n      cert_file: /c.crt\n      key_file: /c.key\n",
        "FILE:7:18: clusters[0].tls.cert_file: kind \"cockroachdb\" does not use tls.cert_file; remove it (this kind accepts: tls, auth)",
    ),
    (
        "an alert naming an unknown receiver",
        "receivers:\n  - name: ops\n    webhook: {url: https://hooks.example.com/x}\nalerts:\n  - receivers: [pager]\n",
        "FILE:5:17: alerts[0].receivers[0]: unknown receiver \"pager\"; expected one of the names under receivers: (ops)",
    ),
    (
        "an alert with a bad duration",
        "receivers:\n  - name: ops\n    webhook: {url: https://hooks.example.com/x}\nalerts:\n  - for: soon\n    receivers: [ops]\n",
        "FILE:5:10: alerts[0].for: \"soon\" is not a duration; expected a number and a unit, like 500ms, 10s or 1m",
    ),
    (
        "a maintenance window in an unknown time zone",
        "maintenance:\n  - name: w\n    start: \"02:00\"\n    duration: 2h\n    time_zone: Mars/Olympus\n",
        "FILE:5:16: maintenance[0].time_zone: \"Mars/Olympus\" is not a known time zone; expected an IANA name such as Europe/Paris or UTC",
    ),
    (
        "a maintenance window starting at no time of day",
        "maintenance:\n  - name: w\n    start: \"25:00\"\n    duration: 2h\n",
        "FILE:3:12: maintenance[0].start: \"25:00\": expected a time of day HH:MM, like 02:30",
    ),
    (
        "a webhook secret written inline",
        "receivers:\n  - name: ops\n    webhook: {url: https://hooks.example.com/x, secret: hunter2}\n",
        "FILE:3:57: receivers[0].webhook.secret: secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
    ),
    (
        "a credential header written inline",
        "receivers:\n  - name: ops\n    webhook:\n      url: https://hooks.example.com/x\n      headers: {Authorization: Bearer abc}\n",
        "FILE:5:32: receivers[0].webhook.headers.Authorization: secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
    ),
    (
        "a webhook URL that is not http(s)",
        "receivers:\n  - name: ops\n    webhook: {url: ftp://hooks.example.com/x}\n",
        "FILE:3:20: receivers[0].webhook.url: \"ftp://hooks.example.com/x\" is not an http(s) URL; expected https://HOST[:PORT]/PATH",
    ),
    (
        "a receiver of two kinds",
        "receivers:\n  - name: ops\n    webhook: {url: https://a.example.com/x}\n    alertmanager: {url: https://b.example.com}\n",
        "FILE:2:11: receivers[0]: expected exactly one of webhook, alertmanager, slack or email, found 2",
    ),
    (
        "mail without TLS to another host",
        "receivers:\n  - name: m\n    email: {smarthost: smtp.example.com, tls: none, from: a@example.com, to: [b@example.com]}\n",
        "FILE:3:47: receivers[0].email.tls: tls: none is only for a relay on this host (loopback); use starttls or implicit",
    ),
    (
        "a health rule with a check's severity",
        "receivers:\n  - name: ops\n    webhook: {url: https://hooks.example.com/x}\nalerts:\n  - severity: [crit]\n    receivers: [ops]\n",
        "FILE:5:15: alerts[0].severity: severity is for `when: check` rules; a health rule takes `health:`",
    ),
    (
        "two rules with the default name",
        "receivers:\n  - name: ops\n    webhook: {url: https://hooks.example.com/x}\nalerts:\n  - receivers: [ops]\n  - receivers: [ops]\n",
        "FILE:6:16: alerts[1].name: duplicate alert name \"ClusterUnhealthy\" (first defined at line 5); give each rule its own `name:`",
    ),
];

#[test]
fn every_bad_config_gets_its_own_located_error() {
    assert!(CASES.len() >= 12);
    let mut failures = Vec::new();
    for (what, yaml, expected) in CASES {
        let (code, stdout, stderr) = check(yaml);
        if code != 1 || !stdout.lines().any(|l| l == *expected) {
            failures.push(format!(
                "{what}: exit {code}\n  expected: {expected}\n  got:      {}\n  stderr: {stderr}",
                stdout.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_in_several_clusters_are_all_reported_in_file_order() {
    let yaml = "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    bogus: 1\n  - name: b\n    kind: nope\n    nodes: [127.0.0.1:2379]\n  - name: c\n    kind: etcd\n    nodes: [127.0.0.1:2379]\n    interval: soon\n";
    let (code, stdout, stderr) = check(yaml);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("FILE:5:5: clusters[0]: unknown field `bogus`"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("FILE:7:11: clusters[1].kind: unknown connector kind \"nope\""),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("FILE:12:15: clusters[2].interval: \"soon\" is not a duration"),
        "{stdout}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

/// A wrong type in one section does not hide the errors of the others, nor
/// the other errors of its own section.
#[test]
fn a_type_error_is_named_and_the_other_errors_still_show() {
    let yaml = "server:\n  listen: nowhere\n  history_per_cluster: many\ncollector:\n  buffer_reports: -5\nclusters:\n  - name: a\n    kind: cockroachdb\n    nodes: []\n    auth:\n      username: dbmon\n      password: hunter2\n";
    let (code, stdout, stderr) = check(yaml);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "FILE:2:11: server.listen: \"nowhere\" is not an address; expected IP:PORT such as 127.0.0.1:7070",
            "FILE:3:24: server.history_per_cluster: expected a whole number greater than 0, found the text \"many\"",
            "FILE:5:19: collector.buffer_reports: expected a whole number greater than 0, found -5",
            "FILE:9:12: clusters[0].nodes: expected at least one node address",
            "FILE:12:17: clusters[0].auth.password: secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
        ],
        "{stdout}"
    );
    assert!(stderr.contains("5 error(s)"), "{stderr}");
}

/// A structural error in one section (a list where a mapping belongs) is
/// reported under that section, and the other sections are still checked.
#[test]
fn a_broken_section_does_not_hide_the_others() {
    let yaml = "server:\n  tls: [a, b]\ncollector:\n  spill_dir: \"\"\n";
    let (code, stdout, _) = check(yaml);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("FILE:2:8: server: "), "{stdout}");
    assert_eq!(
        lines[1],
        "FILE:4:14: collector.spill_dir: expected a directory, or `none` to buffer in memory only"
    );
}

#[test]
fn a_good_config_and_the_shipped_example_pass() {
    let (code, stdout, _) = check(GOOD);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok (1 clusters, 0 alert rules"), "{stdout}");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/dbmon.example.yaml");
    let out = Command::new(DBMON)
        .args(["config", "check", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sections_left_empty_are_empty() {
    let (code, stdout, _) = check("clusters:\nreceivers:\nalerts:\nmaintenance:\n");
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok (0 clusters, 0 alert rules"), "{stdout}");
}

#[test]
fn a_missing_file_is_named() {
    let out = Command::new(DBMON)
        .args(["config", "check", "/nonexistent/dbmon.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/nonexistent/dbmon.yaml:0:0: cannot read the configuration file"),
        "{stdout}"
    );
}
