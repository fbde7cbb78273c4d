//! Alerting end to end with real parts: a real etcd cluster watched by the
//! real collector and server, notifications to a real Alertmanager
//! (Debian's), to an HTTP endpoint that checks the webhook body and its
//! signature, and to a real SMTP server over STARTTLS; silences by people
//! signed in with passkeys; a server killed with SIGKILL while an alert
//! fires.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use hmac::Mac;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use support::receivers::{Alertmanager, Answer, Hit, Hook, Smtp};
use support::*;

/// `dbmon-client silence add` as the holder of `token`.
fn silence_add(
    stack: &Stack,
    token: &str,
    cluster: &str,
    duration: &str,
    comment: Option<&str>,
) -> std::process::Output {
    let mut args = vec!["silence", "add", "--cluster", cluster, "--for", duration];
    if let Some(c) = comment {
        args.extend(["--comment", c]);
    }
    stack.client_as(token, &args)
}

fn status_of(h: &Hit) -> String {
    h.json()["status"].as_str().unwrap_or("").to_string()
}

/// The ids of the firing notifications the hook received (a retry of one
/// carries the same id).
fn firing_notifications(hook: &Hook) -> BTreeSet<String> {
    hook.hits()
        .iter()
        .filter(|h| status_of(h) == "firing")
        .map(|h| h.headers["x-dbmon-notification"].clone())
        .collect()
}

fn alertnames(h: &Hit) -> BTreeSet<String> {
    h.json()["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["labels"]["alertname"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn alerts_json(stack: &Stack) -> Vec<Value> {
    let out = stack.client(&["alerts", "-o", "json"]);
    assert!(
        out.status.success(),
        "dbmon-client alerts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("alerts json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(alerts: &'a [Value], rule: &str, cluster: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["rule"] == rule && a["cluster"] == cluster)
}

#[test]
fn a_killed_etcd_member_reaches_alertmanager_and_a_signed_webhook_and_the_resolve_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).expect("start etcd");
    etcd.wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    // The first delivery is refused twice: it must come again.
    let hook = Hook::start(&[Answer::Status(500), Answer::Status(500)]);
    let am = Alertmanager::start(&dir.path().join("alertmanager"));
    let key = "hook-signing-key";
    let secret = secret_file(dir.path(), "hook.secret", key);
    let yaml = format!(
        "  - name: e1\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{nodes}]\n    labels: {{env: test}}\n\
         receivers:\n\
         \x20 - name: hook\n    webhook:\n      url: {hook}\n      secret: {{file: {secret}}}\n      headers: {{X-Team: ops}}\n\
         \x20 - name: am\n    alertmanager: {{url: {am}, resend_interval: 2s}}\n\
         alerts:\n\
         \x20 - name: EtcdDegraded\n    for: 1s\n    group_wait: 0s\n    group_interval: 1s\n    repeat_interval: 1h\n    receivers: [hook, am]\n\
         \x20 - name: FlapGuard\n    for: 1h\n    receivers: [hook]\n",
        nodes = etcd.client_urls().join(", "),
        hook = hook.url,
        secret = secret.display(),
        am = am.url,
    );
    let mut stack = start_server_with(
        dir.path(),
        &yaml,
        "  external_url: https://dbmon.example.com\n",
    );
    stack.start_collector();
    wait_until(Duration::from_secs(30), "cluster e1 seen", || {
        String::from_utf8_lossy(&stack.client(&["status"]).stdout).contains("healthy")
    });
    assert!(hook.hits().is_empty(), "a healthy cluster notifies nobody");

    etcd.kill(0);
    let firing = hook.wait_for(Duration::from_secs(30), "firing delivered", |h| {
        h.answered == Some(200) && status_of(h) == "firing"
    });
    // The two refusals and the success carry the same notification id.
    let id = firing.headers["x-dbmon-notification"].clone();
    let attempts: Vec<Option<u16>> = hook
        .hits()
        .iter()
        .filter(|h| h.headers.get("x-dbmon-notification") == Some(&id))
        .map(|h| h.answered)
        .collect();
    assert_eq!(attempts, [Some(500), Some(500), Some(200)]);

    // The signature is HMAC-SHA256 over the exact body.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(&firing.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(firing.headers["x-dbmon-signature"], expected);
    assert_eq!(firing.headers["x-team"], "ops");
    assert_eq!(firing.headers["content-type"], "application/json");

    // The Alertmanager webhook body, version 4.
    let body = firing.json();
    assert_eq!(body["version"], "4");
    assert_eq!(body["receiver"], "hook");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["groupLabels"]["alertname"], "EtcdDegraded");
    assert_eq!(body["groupLabels"]["cluster"], "e1");
    assert_eq!(body["commonLabels"]["env"], "test");
    assert_eq!(body["externalURL"], "https://dbmon.example.com");
    let alert = &body["alerts"][0];
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "EtcdDegraded");
    assert_eq!(alert["labels"]["cluster"], "e1");
    assert_eq!(alert["labels"]["kind"], "etcd");
    // Killing the leader makes the others say unhealthy while they elect
    // a new one: the cluster may be unavailable (critical) for a moment.
    let (severity, summary) = (
        alert["labels"]["severity"].as_str().unwrap_or(""),
        alert["annotations"]["summary"].as_str().unwrap_or(""),
    );
    assert!(
        (severity == "warning" && summary == "cluster e1 is degraded: 2 of 3 nodes up")
            || (severity == "critical" && summary.starts_with("cluster e1 is unavailable: ")),
        "{alert}"
    );
    assert!(
        alert["startsAt"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("https://dbmon.example.com/"),
        "{alert}"
    );

    // Alertmanager has it, read back through its own API.
    wait_until(Duration::from_secs(20), "the alert in Alertmanager", || {
        am.alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == "EtcdDegraded" && a["labels"]["cluster"] == "e1")
    });

    // `dbmon-client alerts` shows it firing and delivered; the rule with a
    // long `for` is pending and has told nobody.
    // (The hook holds the request before the server reads its answer.)
    let mut list = Vec::new();
    wait_until(Duration::from_secs(10), "the delivery recorded", || {
        list = alerts_json(&stack);
        find(&list, "EtcdDegraded", "e1").is_some_and(|a| {
            a["deliveries"]["hook"]
                .as_str()
                .is_some_and(|d| d.starts_with("delivered"))
        })
    });
    let a = find(&list, "EtcdDegraded", "e1").expect("EtcdDegraded listed");
    assert_eq!(a["state"], "firing");
    let fired_at = a["firing_since"].clone();
    assert_eq!(
        find(&list, "FlapGuard", "e1").expect("FlapGuard listed")["state"],
        "pending"
    );

    // The server dies without a chance to write anything; restarted, it
    // knows the alert already fired and says nothing new. (Before the crash
    // there may be two firing notifications: killing the leader can make
    // the cluster unavailable for a moment, and a severity change is news.)
    let told_before_crash = firing_notifications(&hook);
    stack.crash_and_restart_server();
    wait_until(Duration::from_secs(30), "the alert restored", || {
        let out = stack.client(&["alerts", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array().is_some_and(|l| {
            find(l, "EtcdDegraded", "e1")
                .is_some_and(|a| a["state"] == "firing" && a["firing_since"] == fired_at)
        })
    });

    // The member returns: the resolve arrives.
    etcd.restart(0).expect("restart member");
    let resolved = hook.wait_for(Duration::from_secs(60), "resolve delivered", |h| {
        h.answered == Some(200) && status_of(h) == "resolved"
    });
    let r = resolved.json();
    assert_eq!(r["alerts"][0]["status"], "resolved");
    assert_ne!(r["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        firing_notifications(&hook),
        told_before_crash,
        "no firing notification after the crash"
    );
    assert!(
        hook.hits()
            .iter()
            .all(|h| !alertnames(h).contains("FlapGuard")),
        "an outage shorter than `for` notifies nobody"
    );
    // Alertmanager learns the end too.
    wait_until(
        Duration::from_secs(20),
        "the alert resolved in Alertmanager",
        || {
            !am.alerts()
                .iter()
                .any(|a| a["labels"]["alertname"] == "EtcdDegraded")
        },
    );
    wait_until(Duration::from_secs(20), "no alert left", || {
        alerts_json(&stack).is_empty()
    });
}

#[test]
fn three_nodes_down_together_make_one_notification_and_a_reminder() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).expect("start etcd");
    etcd.wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    let hook = Hook::start(&[]);
    let yaml = format!(
        "  - name: e2\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{nodes}]\n\
         receivers:\n  - name: hook\n    webhook: {{url: {hook}}}\n\
         alerts:\n\
         \x20 - name: NodeDown\n    when: check\n    match: {{check: [up]}}\n    severity: [crit]\n    for: 2s\n    group_wait: 5s\n    group_interval: 1s\n    repeat_interval: 6s\n    receivers: [hook]\n",
        nodes = etcd.client_urls().join(", "),
        hook = hook.url,
    );
    let mut stack = start_server(dir.path(), &yaml);
    stack.start_collector();
    wait_until(Duration::from_secs(30), "cluster e2 healthy", || {
        String::from_utf8_lossy(&stack.client(&["status"]).stdout).contains("healthy")
    });
    for i in 0..3 {
        etcd.kill(i);
    }
    let first = hook.wait_for(Duration::from_secs(30), "NodeDown notified", |h| {
        alertnames(h).contains("NodeDown")
    });
    let body = first.json();
    let nodes: BTreeSet<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "the three nodes in one notification: {body}"
    );
    assert_eq!(body["alerts"][0]["labels"]["check"], "up");
    assert_eq!(body["alerts"][0]["labels"]["severity"], "critical");
    // Nothing changes: a reminder with the same three comes at repeat_interval.
    let reminder = hook.wait_for(Duration::from_secs(30), "a reminder", |h| {
        h.headers["x-dbmon-notification"] != first.headers["x-dbmon-notification"]
    });
    assert_eq!(reminder.json()["alerts"].as_array().unwrap().len(), 3);
    assert_eq!(reminder.json()["status"], "firing");
    assert_eq!(
        hook.hits().len(),
        2,
        "one notification and one reminder, nothing per node"
    );
}

/// A cluster whose only node address answers nothing: the real collector
/// reports it down at every poll.
fn dead_cluster(name: &str) -> String {
    format!(
        "  - name: {name}\n    kind: etcd\n    interval: 1s\n    timeout: 300ms\n    nodes: [127.0.0.1:{}]\n",
        free_port()
    )
}

#[test]
fn silences_are_for_operators_within_their_clusters_and_maintenance_follows_its_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start(&[]);
    // Never answers, however often it is tried.
    let slow = Hook::start(&[Answer::Hang; 64]);
    // A window that began 30 minutes ago, local time in Kolkata (UTC+05:30).
    let start = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .checked_sub(jiff::SignedDuration::from_mins(30))
        .unwrap();
    let day = format!("{:?}", start.weekday()).to_lowercase();
    let yaml = format!(
        "{a}{b}{c}\
         receivers:\n  - name: hook\n    webhook: {{url: {hook}}}\n  - name: slow\n    timeout: 1s\n    webhook: {{url: {slow}}}\n\
         alerts:\n\
         \x20 - name: Down\n    for: 0s\n    group_wait: 0s\n    group_interval: 1s\n    receivers: [hook]\n\
         \x20 - name: DownSlow\n    match: {{cluster: [b]}}\n    for: 0s\n    group_wait: 0s\n    receivers: [slow]\n\
         maintenance:\n  - name: patch-window\n    clusters: [c]\n    days: [{day}]\n    start: \"{hm}\"\n    duration: 2h\n    time_zone: Asia/Kolkata\n",
        a = dead_cluster("a"),
        b = dead_cluster("b"),
        c = dead_cluster("c"),
        hook = hook.url,
        slow = slow.url,
        hm = start.strftime("%H:%M"),
    );
    let mut stack = start_server(dir.path(), &yaml);
    let viewer = stack.person("vera", "viewer", &[]);
    let operator = stack.person("oscar", "operator", &["a"]);

    let out = silence_add(&stack, &viewer.token, "a", "1h", Some("x"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = silence_add(&stack, &operator.token, "b", "1h", Some("x"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("\"b\""),
        "{err}"
    );
    let out = silence_add(&stack, &operator.token, "a", "1h", None);
    assert!(!out.status.success(), "a silence needs a comment");
    let out = silence_add(&stack, &operator.token, "a", "30d", Some("x"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.max_silence"),
        "longer than the maximum: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = silence_add(&stack, &operator.token, "a", "1h", Some("disk swap"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let id = said
        .split_whitespace()
        .nth(1)
        .expect("silence id")
        .to_string();

    stack.start_collector();
    // b is told; a (silenced) and c (in maintenance) are recorded only.
    hook.wait_for(Duration::from_secs(30), "b notified", |h| {
        h.json()["groupLabels"]["cluster"] == "b"
    });
    wait_until(Duration::from_secs(30), "a and c firing but muted", || {
        let l = alerts_json(&stack);
        let muted = |c: &str, by: &str| {
            find(&l, "Down", c).is_some_and(|a| {
                a["state"] == "firing" && a["muted_by"].as_str().unwrap_or("").starts_with(by)
            })
        };
        muted("a", "silenced by oscar") && muted("c", "in maintenance patch-window until")
    });
    let told: BTreeSet<String> = hook
        .hits()
        .iter()
        .map(|h| {
            h.json()["groupLabels"]["cluster"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(told, BTreeSet::from(["b".to_string()]));
    let table = String::from_utf8_lossy(&stack.client(&["alerts"]).stdout).to_string();
    assert!(table.contains("silenced by oscar"), "{table}");
    assert!(table.contains("disk swap"), "{table}");
    // `status` and `get cluster` say so too.
    let status = String::from_utf8_lossy(&stack.client(&["status"]).stdout).to_string();
    let line_a = status
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_default();
    assert!(
        line_a.contains("1 firing: Down; silenced by oscar"),
        "{status}"
    );
    let get_c = String::from_utf8_lossy(&stack.client(&["get", "cluster", "c"]).stdout).to_string();
    assert!(
        get_c.contains("alerts: 1 firing: Down; in maintenance patch-window until"),
        "{get_c}"
    );

    // A receiver that never answers fails visibly, alone: b's hook was
    // served, and reports keep coming in.
    wait_until(
        Duration::from_secs(30),
        "the hanging receiver's failure shown",
        || {
            find(&alerts_json(&stack), "DownSlow", "b").is_some_and(|a| {
                a["deliveries"]["slow"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("failed") && d.contains("no answer within 1s"))
            })
        },
    );
    let ingested = |s: &Stack| -> u64 {
        s.http_get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("dbmon_reports_ingested_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = ingested(&stack);
    wait_until(Duration::from_secs(10), "ingest goes on", || {
        ingested(&stack) > before
    });
    let metrics = stack.http_get("/metrics");
    assert!(
        metrics.contains("dbmon_notifications_failed_total{receiver=\"slow\"}"),
        "{metrics}"
    );
    assert!(stack.http_get("/healthz").contains("receiver slow"));

    // The viewer may look but not touch.
    let out = stack.client_as(&viewer.token, &["silence", "list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = stack.client_as(&viewer.token, &["silence", "expire", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"));

    // The silence ends while a is still down: a is told then.
    let out = stack.client_as(&operator.token, &["silence", "expire", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hook.wait_for(Duration::from_secs(30), "a notified once unmuted", |h| {
        h.json()["groupLabels"]["cluster"] == "a"
    });
    let log = stack.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("silence") && l.contains("oscar") && l.contains("add")),
        "audit line for the silence:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("silence") && l.contains("expire"))
    );
}

#[test]
fn mail_over_starttls_with_auth_and_slack_name_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pki = dir.path().join("pki");
    // Slack's incoming webhook is an HTTPS POST of {"text": ...}; its URL
    // is the secret, given by file.
    let slack = Hook::start(&[]);
    let slack_url = secret_file(dir.path(), "slack-url", &slack.url);
    // The SMTP server requires AUTH over TLS; the password is by reference.
    let smtp_password = secret_file(dir.path(), "smtp-password", "mail-secret-42");
    let wrong_password = secret_file(dir.path(), "smtp-wrong", "not-it");
    let yaml = format!(
        "{x}\
         receivers:\n  - name: mail\n    email:\n      smarthost: 127.0.0.1:{port}\n      tls: starttls\n      ca_file: {ca}\n      from: dbmon@example.com\n      to: [oncall@example.com]\n      username: dbmon\n      password: {{file: {smtp_password}}}\n\
         \x20 - name: mail-wrong\n    email:\n      smarthost: 127.0.0.1:{port}\n      ca_file: {ca}\n      from: dbmon@example.com\n      to: [oncall@example.com]\n      username: dbmon\n      password: {{file: {wrong_password}}}\n\
         \x20 - name: chat\n    slack: {{url: {{file: {slack_url}}}}}\n\
         alerts:\n  - for: 0s\n    group_wait: 0s\n    receivers: [mail, mail-wrong, chat]\n",
        x = dead_cluster("mailtest"),
        ca = pki.join("ca.crt").display(),
        slack_url = slack_url.display(),
        smtp_password = smtp_password.display(),
        wrong_password = wrong_password.display(),
    );
    let mut stack = start_server(dir.path(), &yaml);
    let smtp = Smtp::start(
        &dir.path().join("smtp"),
        port,
        (&pki.join("server.crt"), &pki.join("server.key")),
        Some(("dbmon", &smtp_password)),
    );
    stack.start_collector();
    wait_until(Duration::from_secs(40), "a mail arrives", || {
        !smtp.mail().is_empty()
    });
    let mail = smtp.mail().remove(0);
    let subject = mail
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        subject.contains("ClusterUnhealthy") && subject.contains("mailtest"),
        "{mail}"
    );
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("cluster mailtest is unavailable"), "{mail}");
    let text = slack
        .wait_for(Duration::from_secs(20), "the Slack message", |_| true)
        .json();
    let text = text["text"].as_str().unwrap_or_default().to_string();
    assert!(
        text.starts_with("*[FIRING] ClusterUnhealthy on cluster mailtest (1 firing)*"),
        "{text}"
    );
    assert!(
        text.contains("cluster mailtest is unavailable: 0 of 1 nodes up"),
        "{text}"
    );
    assert!(
        text.contains("up crit on 127.0.0.1:"),
        "the worst check's sentence: {text}"
    );
    assert!(
        !stack.server_log().contains(&slack.url),
        "the Slack URL is a secret and never logged"
    );
    // The server refuses a wrong password: that delivery fails, visibly,
    // and delivers nothing.
    wait_until(
        Duration::from_secs(30),
        "the wrong password refused",
        || {
            find(&alerts_json(&stack), "ClusterUnhealthy", "mailtest").is_some_and(|a| {
                a["deliveries"]["mail-wrong"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("failed"))
            })
        },
    );
    assert_eq!(smtp.mail().len(), 1, "one mail: the right password's");
    assert!(!stack.server_log().contains("mail-secret-42"));
}

/// `dbmon-client` against any server of the deployment.
fn client_at(stack: &Stack, grpc: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(CLIENT)
        .arg("--server")
        .arg(grpc)
        .arg("--ca")
        .arg(stack.pki.join("ca.crt"))
        .args(args)
        .env("DBMON_TOKEN", stack.admin_token())
        .output()
        .expect("run dbmon-client")
}

/// A collector publishing to the server whose configuration is `server_config`.
fn collector_to(stack: &Stack, server_config: &Path) -> Proc {
    let server_yaml = std::fs::read_to_string(server_config).unwrap();
    let port = server_yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("collector_listen: 127.0.0.1:"))
        .expect("collector_listen")
        .to_string();
    let mut in_collector = false;
    let mut out = String::new();
    for line in std::fs::read_to_string(stack.dir.join("dbmon.yaml"))
        .unwrap()
        .lines()
    {
        if !line.starts_with(' ') {
            in_collector = line == "collector:";
        }
        if in_collector && line.trim_start().starts_with("server:") {
            out.push_str(&format!("  server: https://127.0.0.1:{port}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = stack.dir.join("collector-to-other.yaml");
    std::fs::write(&path, out).unwrap();
    Proc::spawn(
        std::process::Command::new(DBMON)
            .arg("collector")
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::null()),
        stack.dir.join("collector-other.log"),
    )
}

#[test]
fn two_servers_on_one_postgresql_notify_once_and_the_survivor_sends_the_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let pg = support::postgres::Postgres::start(dir.path());
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 1).expect("start etcd");
    etcd.wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    let hook = Hook::start(&[]);
    let yaml = format!(
        "  - name: s1\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{nodes}]\n\
         receivers:\n  - name: hook\n    webhook: {{url: {hook}}}\n\
         alerts:\n  - name: Down\n    for: 0s\n    group_wait: 0s\n    group_interval: 1s\n    repeat_interval: 1h\n    receivers: [hook]\n",
        nodes = etcd.client_urls().join(", "),
        hook = hook.url,
    );
    let mut a = start_server_with(dir.path(), &yaml, &format!("  store: {}\n", pg.url()));
    let b_auth = dir.path().join("auth-b");
    let mut b = a.start_replica("b", &format!("  auth:\n    dir: {}\n", b_auth.display()));
    let sends = "this server now sends the notifications";
    wait_until(Duration::from_secs(20), "one server sends", || {
        a.server_log().contains(sends) || b.server.log_text().contains(sends)
    });
    let a_sends = a.server_log().contains(sends);
    assert_ne!(
        a_sends,
        b.server.log_text().contains(sends),
        "exactly one sender"
    );
    // Reports reach the deployment through the server that does not send.
    let a_config = a.dir.join("dbmon.yaml");
    let (other_grpc, other_config) = if a_sends {
        (b.grpc.clone(), b.config.clone())
    } else {
        (a.grpc.clone(), a_config)
    };
    let _collector = collector_to(&a, &other_config);
    wait_until(Duration::from_secs(30), "s1 healthy", || {
        String::from_utf8_lossy(&client_at(&a, &other_grpc, &["status"]).stdout).contains("healthy")
    });

    etcd.kill(0);
    let firing = hook.wait_for(Duration::from_secs(30), "firing sent once", |h| {
        status_of(h) == "firing"
    });
    // The server that does not send shows the sender's state, delivery included.
    wait_until(
        Duration::from_secs(20),
        "the state visible on the other server",
        || {
            let out = client_at(&a, &other_grpc, &["alerts", "-o", "json"]);
            let l: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            l.as_array().is_some_and(|l| {
                find(l, "Down", "s1").is_some_and(|x| {
                    x["state"] == "firing"
                        && x["deliveries"]["hook"]
                            .as_str()
                            .is_some_and(|d| d.starts_with("delivered"))
                })
            })
        },
    );

    // The sender dies; the other takes over and sends the resolve.
    if a_sends {
        let _ = a.server.child.kill();
        let _ = a.server.child.wait();
    } else {
        let _ = b.server.child.kill();
        let _ = b.server.child.wait();
    }
    let other_log = || {
        if a_sends {
            b.server.log_text()
        } else {
            a.server_log()
        }
    };
    wait_until(
        Duration::from_secs(20),
        "the other server takes over",
        || other_log().contains(sends),
    );
    etcd.restart(0).expect("restart etcd");
    let resolved = hook.wait_for(Duration::from_secs(60), "resolve sent", |h| {
        status_of(h) == "resolved"
    });
    assert_eq!(
        resolved.json()["alerts"][0]["fingerprint"],
        firing.json()["alerts"][0]["fingerprint"]
    );
    let firing_ids = firing_notifications(&hook);
    assert_eq!(
        firing_ids.len(),
        1,
        "one firing notification from two servers"
    );
    // The hook holds the request before the sender reads its answer.
    wait_until(
        Duration::from_secs(10),
        "the survivor logs the delivery",
        || other_log().contains("notification delivered"),
    );
}

#[test]
fn a_webhook_over_tls_is_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/hook");
    let yaml = format!(
        "{x}\
         receivers:\n\
         \x20 - name: trusted\n    webhook: {{url: {url}, ca_file: {ca}}}\n\
         \x20 - name: untrusted\n    webhook: {{url: {url}}}\n\
         alerts:\n  - for: 0s\n    group_wait: 0s\n    receivers: [trusted, untrusted]\n",
        x = dead_cluster("tlstest"),
        ca = pki.join("ca.crt").display(),
    );
    let mut stack = start_server(dir.path(), &yaml);
    // The hook serves the deployment's own server certificate (its CA is
    // in no system store).
    let hook = Hook::start_tls(port, &pki.join("server.crt"), &pki.join("server.key"), &[]);
    stack.start_collector();
    let got = hook.wait_for(Duration::from_secs(30), "a notification over TLS", |h| {
        status_of(h) == "firing"
    });
    assert_eq!(got.json()["receiver"], "trusted");
    // Without the CA, the same endpoint is refused, and says why.
    wait_until(
        Duration::from_secs(30),
        "the untrusted delivery fails visibly",
        || {
            find(&alerts_json(&stack), "ClusterUnhealthy", "tlstest").is_some_and(|a| {
                a["deliveries"]["untrusted"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("failed") && d.contains("certificate"))
            })
        },
    );
    assert!(
        hook.hits()
            .iter()
            .all(|h| h.json()["receiver"] == "trusted"),
        "nothing reaches the hook without verifying it"
    );
}
