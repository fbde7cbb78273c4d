//! People's logins end to end: `dbmon user add`, a passkey registered over
//! HTTPS, `dbmon-client login`, and the macaroon checked on every call of
//! the real server over TLS, with the code each bad token gets.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use dbmon_proto::v1::auth_client::AuthClient;
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::sessions_client::SessionsClient;
use dbmon_proto::v1::{
    CertificateRequest, ListReportsRequest, ListSessionsRequest, StartLoginRequest, WatchRequest,
    WhoAmIRequest,
};
use macaroon::{ByteString, Format, Macaroon, MacaroonKey};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

/// Two cluster names over one real etcd member, so that scopes can differ.
fn two_clusters(dir: &std::path::Path) -> (EtcdCluster, String) {
    let etcd = EtcdCluster::start(&dir.join("etcd"), 1).expect("start etcd");
    let nodes = etcd.client_urls().join(", ");
    let yaml = format!(
        "  - name: a\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{nodes}]\n\
         \x20 - name: b\n    kind: etcd\n    interval: 1s\n    timeout: 500ms\n    nodes: [{nodes}]\n"
    );
    (etcd, yaml)
}

async fn people_channel(stack: &Stack) -> Channel {
    let ca = stack.pki.join("ca.crt");
    let td = dbmon_pki::trust_domain_of(&ca).unwrap();
    let trust = dbmon_pki::tls::Trust::load(&ca, None, &td).unwrap();
    let cfg = Arc::new(dbmon_pki::tls::people_client(trust).unwrap());
    dbmon_pki::transport::channel(&stack.grpc, cfg, Duration::from_secs(5))
        .await
        .unwrap()
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("macaroon", t.parse().expect("token fits in a header"));
    }
    r
}

/// ListReports with `token`: the clusters seen, or the refusal.
async fn list(
    ch: &Channel,
    token: Option<&str>,
    clusters: &[&str],
) -> Result<BTreeSet<String>, tonic::Status> {
    let req = ListReportsRequest {
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        include_history: true,
    };
    let resp = MonitorClient::new(ch.clone())
        .list_reports(with_token(req, token))
        .await?
        .into_inner();
    Ok(resp
        .latest
        .iter()
        .chain(resp.history.iter())
        .map(|r| r.cluster.clone())
        .collect())
}

/// A macaroon with the same identifier and caveats as `token`, plus
/// `extra`, signed from `key`: what someone without the root key can make.
fn forge(token: &str, key: [u8; 32], extra: &[&str]) -> String {
    let m = Macaroon::deserialize(token).unwrap();
    let mut f = Macaroon::create(None, &MacaroonKey::from(key), m.identifier()).unwrap();
    for c in m.first_party_caveats() {
        if let macaroon::Caveat::FirstParty(fp) = c {
            f.add_first_party_caveat(fp.predicate());
        }
    }
    for e in extra {
        f.add_first_party_caveat(ByteString::from(*e));
    }
    f.serialize(Format::V2).unwrap()
}

/// `token` with its first caveat's text replaced but its signature kept.
fn tamper(token: &str, to: &str) -> String {
    let m = Macaroon::deserialize(token).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&m.serialize(Format::V2JSON).unwrap()).unwrap();
    json["c"][0]["i"] = to.into();
    json["c"][0]["i64"] = serde_json::Value::Null;
    let edited = json.to_string();
    Macaroon::deserialize(edited.as_bytes())
        .unwrap()
        .serialize(Format::V2)
        .unwrap()
}

/// A caveat added with the macaroon library directly (any text).
fn raw_caveat(token: &str, caveat: &str) -> String {
    let mut m = Macaroon::deserialize(token).unwrap();
    m.add_first_party_caveat(ByteString::from(caveat));
    m.serialize(Format::V2).unwrap()
}

fn attenuate(stack: &Stack, token: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "attenuate"];
    all.extend_from_slice(args);
    let out = stack.client_as(token, &all);
    assert!(
        out.status.success(),
        "attenuate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn expect(code: Code, what: &str, got: Result<BTreeSet<String>, tonic::Status>, says: &str) {
    match got {
        Ok(seen) => panic!("{what}: expected {code:?}, got data of {seen:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(
                s.message().contains(says),
                "{what}: message {:?} should say {says:?}",
                s.message()
            );
        }
    }
}

#[test]
fn every_call_needs_a_macaroon_that_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, clusters) = two_clusters(dir.path());
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();

    let admin = stack.person("alice", "admin", &[]);
    let viewer = stack.person("victor", "viewer", &["a"]);
    let operator = stack.person("olga", "operator", &[]);

    // `whoami` through the CLI, from the token file `login` wrote.
    let out = std::process::Command::new(CLIENT)
        .args(["--server", &stack.grpc, "--ca"])
        .arg(stack.pki.join("ca.crt"))
        .arg("whoami")
        .env("XDG_CONFIG_HOME", &viewer.home)
        .env_remove("DBMON_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "user:     victor",
        "role:     viewer",
        "ops:      read,watch",
        "clusters: a",
        "caveat:   user = victor",
        "caveat:   expires ",
    ] {
        assert!(text.contains(want), "whoami lacks {want:?}:\n{text}");
    }

    block_on(async {
        let ch = people_channel(&stack).await;
        // Both clusters have reports before the scope cases run.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = list(&ch, Some(&admin.token), &[]).await.unwrap();
            if seen.len() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no reports of a and b: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let a: BTreeSet<String> = ["a".to_string()].into();
        let ab: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let v = viewer.token.as_str();
        let past = "expires = 2020-01-01T00:00:00Z";

        // Valid tokens.
        assert_eq!(
            list(&ch, Some(&admin.token), &[]).await.unwrap(),
            ab,
            "1 admin sees all"
        );
        assert_eq!(
            list(&ch, Some(v), &[]).await.unwrap(),
            a,
            "2 viewer sees its scope only"
        );
        assert_eq!(
            list(&ch, Some(v), &["a"]).await.unwrap(),
            a,
            "3 viewer asks for its cluster"
        );
        assert_eq!(
            list(&ch, Some(&operator.token), &["b"]).await.unwrap(),
            ["b".to_string()].into(),
            "4 operator"
        );

        // Not a valid token: Unauthenticated.
        expect(
            Code::Unauthenticated,
            "5 missing",
            list(&ch, None, &[]).await,
            "dbmon-client login",
        );
        expect(
            Code::Unauthenticated,
            "6 garbage",
            list(&ch, Some("not-a-macaroon"), &[]).await,
            "not a macaroon",
        );
        expect(
            Code::Unauthenticated,
            "7 empty",
            list(&ch, Some(""), &[]).await,
            "no token",
        );
        expect(
            Code::Unauthenticated,
            "8 JSON form",
            list(&ch, Some(r#"{"v":2}"#), &[]).await,
            "JSON macaroons",
        );
        expect(
            Code::Unauthenticated,
            "9 truncated",
            list(&ch, Some(&v[..v.len() / 2]), &[]).await,
            "not a macaroon",
        );
        expect(
            Code::Unauthenticated,
            "10 tampered caveat",
            list(&ch, Some(&tamper(v, "user = alice")), &[]).await,
            "signature",
        );
        expect(
            Code::Unauthenticated,
            "11 wrong root key",
            list(&ch, Some(&forge(v, [7; 32], &[])), &[]).await,
            "signature",
        );
        let stranger = Macaroon::create(
            None,
            &MacaroonKey::from([9; 32]),
            ByteString::from("0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
        .serialize(Format::V2)
        .unwrap();
        expect(
            Code::Unauthenticated,
            "12 unknown login",
            list(&ch, Some(&stranger), &[]).await,
            "not issued by this server",
        );
        expect(
            Code::Unauthenticated,
            "13 expired",
            list(&ch, Some(&raw_caveat(v, past)), &[]).await,
            "expired at 2020-01-01T00:00:00Z; run `dbmon-client login`",
        );
        expect(
            Code::Unauthenticated,
            "14 unknown caveat",
            list(&ch, Some(&raw_caveat(v, "ip = 10.0.0.1")), &[]).await,
            "unknown caveat",
        );
        expect(
            Code::Unauthenticated,
            "15 bad caveat value",
            list(&ch, Some(&raw_caveat(v, "ops = write")), &[]).await,
            "unknown operation",
        );
        expect(
            Code::Unauthenticated,
            "16 another user's name",
            list(&ch, Some(&raw_caveat(v, "user = alice")), &[]).await,
            "issued to \"victor\"",
        );
        let mut third = Macaroon::deserialize(v).unwrap();
        third.add_third_party_caveat(
            "https://elsewhere",
            &MacaroonKey::from([1; 32]),
            ByteString::from("x"),
        );
        expect(
            Code::Unauthenticated,
            "17 third-party caveat",
            list(&ch, Some(&third.serialize(Format::V2).unwrap()), &[]).await,
            "third-party",
        );

        // Valid tokens that do not allow the call: PermissionDenied.
        expect(
            Code::PermissionDenied,
            "18 cluster outside scope",
            list(&ch, Some(v), &["b"]).await,
            "outside this token's scope",
        );
        let widened = attenuate(&stack, v, &["--cluster", "a", "--cluster", "b"]);
        expect(
            Code::PermissionDenied,
            "19 attenuation cannot widen clusters",
            list(&ch, Some(&widened), &["b"]).await,
            "outside",
        );
        assert_eq!(
            list(&ch, Some(&widened), &[]).await.unwrap(),
            a,
            "19b still only a"
        );
        let disjoint = attenuate(&stack, v, &["--cluster", "b"]);
        expect(
            Code::PermissionDenied,
            "20 disjoint scope",
            list(&ch, Some(&disjoint), &[]).await,
            "scope is empty",
        );
        let watch_only = attenuate(&stack, &admin.token, &["--ops", "watch"]);
        expect(
            Code::PermissionDenied,
            "21 wrong operation",
            list(&ch, Some(&watch_only), &[]).await,
            "needs the read operation",
        );
        let rewidened = attenuate(&stack, &watch_only, &["--ops", "read,watch"]);
        expect(
            Code::PermissionDenied,
            "22 attenuation cannot widen ops",
            list(&ch, Some(&rewidened), &[]).await,
            "needs the read operation",
        );
        let scoped_admin = attenuate(&stack, &admin.token, &["--cluster", "b", "--ttl", "1h"]);
        assert_eq!(
            list(&ch, Some(&scoped_admin), &[]).await.unwrap(),
            ["b".to_string()].into(),
            "23 attenuated admin"
        );
        let s = SessionsClient::new(ch.clone())
            .list_sessions(with_token(ListSessionsRequest {}, Some(v)))
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "24 viewer lists sessions: {}",
            s.message()
        );
        let s = SessionsClient::new(ch.clone())
            .list_sessions(with_token(ListSessionsRequest {}, Some(&operator.token)))
            .await
            .unwrap();
        assert!(
            s.into_inner().sessions.iter().any(|s| s.user == "victor"),
            "25 operator lists sessions"
        );
        let s = IngestClient::new(ch.clone())
            .renew(with_token(
                CertificateRequest::default(),
                Some(&admin.token),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "26 collector method on the people endpoint: {}",
            s.message()
        );
        assert!(s.message().contains("collectors only"), "{}", s.message());
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.unwrap();
        let s = grpc
            .unary::<WhoAmIRequest, WhoAmIRequest, _>(
                with_token(WhoAmIRequest {}, Some(&admin.token)),
                http::uri::PathAndQuery::from_static("/dbmon.v1.Monitor/Delete"),
                tonic_prost::ProstCodec::<WhoAmIRequest, WhoAmIRequest>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "27 a method outside the table: {}",
            s.message()
        );

        // Watch: the viewer never receives a report of b.
        let mut stream = MonitorClient::new(ch.clone())
            .watch(with_token(WatchRequest::default(), Some(v)))
            .await
            .unwrap()
            .into_inner();
        let mut seen = BTreeSet::new();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Ok(Ok(Some(e))) => seen.extend(e.into_reports().into_iter().map(|r| r.cluster)),
                Ok(other) => panic!("watch ended: {other:?}"),
                Err(_) => {}
            }
        }
        assert_eq!(seen, a, "28 the viewer's watch carries a only");
        let s = MonitorClient::new(ch.clone())
            .watch(with_token(
                WatchRequest {
                    clusters: vec!["b".into()],
                    after_position: 0,
                },
                Some(v),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "29 watch of b: {}",
            s.message()
        );
        let s = MonitorClient::new(ch.clone())
            .watch(with_token(
                WatchRequest::default(),
                Some(&attenuate(&stack, v, &["--ops", "read"])),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            Code::PermissionDenied,
            "30 watch with a read-only token: {}",
            s.message()
        );

        // whoami over gRPC reports the narrowed grant.
        let me = AuthClient::new(ch.clone())
            .who_am_i(with_token(WhoAmIRequest {}, Some(&scoped_admin)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (me.user.as_str(), me.clusters.clone()),
            ("alice", vec!["b".to_string()])
        );
        assert!(
            me.expires_at_ms < dbmon_proto::now_ms() + 3_600_500,
            "the 1h caveat counts"
        );
    });

    // `dbmon user list` on the server's host.
    let config = dir.path().join("dbmon.yaml");
    let listed = dbmon(&["user", "list", "--config", config.to_str().unwrap()]);
    assert!(
        listed.contains("victor  role: viewer  clusters: a  passkeys: 1  logins: 1"),
        "{listed}"
    );
    // An operator may revoke a viewer's logins, not an admin's.
    let out = stack.client_as(&operator.token, &["sessions", "revoke", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("only an admin"),
        "{err}"
    );
    let out = stack.client_as(&operator.token, &["sessions", "revoke", "--user", "victor"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("revoked "),
        "{out:?}"
    );
    let out = stack.client_as(&viewer.token, &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked at"),
        "{out:?}"
    );
    let out = stack.client_as(&admin.token, &["status"]);
    assert!(out.status.success(), "the admin is unaffected: {out:?}");

    // The audit log names user, login and peer.
    let log = stack.server_log();
    for want in [
        "event=\"mint\" user=\"victor\"",
        "event=\"register\" user=\"victor\"",
        "event=\"denied\" user=\"victor\"",
        "peer=\"127.0.0.1:",
    ] {
        assert!(log.contains(want), "audit log lacks {want}:\n{log}");
    }
    assert!(!log.contains(&viewer.token), "a token was logged");
}

#[test]
fn revocation_closes_open_watches_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, clusters) = two_clusters(dir.path());
    let mut stack = start_server(dir.path(), &clusters);
    stack.start_collector();
    let bob = stack.person("bob", "viewer", &[]);
    let carol = stack.person("carol", "operator", &[]);
    let derived = attenuate(&stack, &bob.token, &["--ops", "watch"]);

    // Two watches on bob's login (one with a derived token), one on carol's.
    let mut w1 = stack.watch_json_as(&bob.token, &[]);
    let mut w2 = stack.watch_json_as(&derived, &[]);
    let mut w3 = stack.watch_json_as(&carol.token, &[]);
    for w in [&mut w1, &mut w2, &mut w3] {
        w.wait_for(Duration::from_secs(20), "a report", |v| {
            v["type"] == "report"
        });
    }

    // bob logs out from his CLI: his login is revoked and his token forgotten.
    let out = std::process::Command::new(CLIENT)
        .args(["--server", &stack.grpc, "--ca"])
        .arg(stack.pki.join("ca.crt"))
        .arg("logout")
        .env("XDG_CONFIG_HOME", &bob.home)
        .env_remove("DBMON_TOKEN")
        .output()
        .unwrap();
    let logged_out = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err1 = w1.wait_exit(Duration::from_secs(1));
    let err2 = w2.wait_exit(Duration::from_secs(1));
    eprintln!("watches closed {:?} after logout", logged_out.elapsed());
    for e in [&err1, &err2] {
        assert!(
            e.contains("Unauthenticated") && e.contains("revoked"),
            "{e}"
        );
    }
    assert!(
        std::fs::read_dir(bob.home.join("dbmon/tokens"))
            .unwrap()
            .next()
            .is_none(),
        "token forgotten"
    );
    // carol's watch goes on.
    w3.wait_for(Duration::from_secs(10), "carol still receives", |v| {
        v["type"] == "report"
    });
    let out = stack.client_as(&bob.token, &["status"]);
    assert_eq!(out.status.code(), Some(2));

    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An operator revokes nothing of an admin's; removing a user from the
    // command line ends their streams too (the server notices the file).
    let config = dir.path().join("dbmon.yaml");
    dbmon(&[
        "user",
        "remove",
        "carol",
        "--config",
        config.to_str().unwrap(),
    ]);
    let removed = Instant::now();
    let err3 = w3.wait_exit(Duration::from_secs(2));
    eprintln!(
        "watch closed {:?} after `dbmon user remove`",
        removed.elapsed()
    );
    assert!(err3.contains("no longer exists"), "{err3}");
    let log = stack.server_log();
    assert!(log.contains("event=\"revoke\" user=\"bob\""), "{log}");
    assert!(
        log.contains("event=\"watch_closed\" user=\"carol\""),
        "{log}"
    );
}

#[test]
fn login_attempts_and_invites_are_rate_limited_and_invites_work_once() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_server(dir.path(), "");
    let invite = stack.add_user("dora", "viewer", &[]);
    let _key = stack.register(&invite);
    let again = block_on(support::softlogin::register(&stack.http(), &invite));
    assert!(
        matches!(&again, Err(e) if e.contains("invite is unknown, used or expired")),
        "{:?}",
        again.err()
    );

    block_on(async {
        let ch = people_channel(&stack).await;
        let mut refused = None;
        for i in 0..40 {
            if let Err(s) = AuthClient::new(ch.clone())
                .start_login(StartLoginRequest {})
                .await
            {
                refused = Some((i, s));
                break;
            }
        }
        let (i, s) = refused.expect("40 logins in a row were all accepted");
        assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
        assert!((15..=25).contains(&i), "refused after {i}");
    });
    assert!(stack.server_log().contains("event=\"rate_limited\""));
}

#[test]
fn the_table_names_every_method_of_the_proto() {
    let proto = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proto/proto/dbmon/v1/dbmon.proto"
    ))
    .unwrap();
    let mut methods = BTreeSet::new();
    let mut service = None;
    for line in proto.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            service = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let name = rest.split('(').next().unwrap().trim();
            methods.insert(format!("/dbmon.v1.{}/{name}", service.as_ref().unwrap()));
        }
    }
    assert!(methods.len() >= 11, "{methods:?}");
    let table: BTreeSet<String> = dbmon_auth::perms::METHODS
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    let missing: Vec<_> = methods.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "methods with no entry in dbmon_auth::perms::METHODS: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&methods).collect();
    assert!(
        stale.is_empty(),
        "entries for methods the proto does not have: {stale:?}"
    );
}

#[test]
fn a_collector_certificate_cannot_read_client_apis() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_server(dir.path(), "");
    block_on(async {
        let ca = stack.pki.join("ca.crt");
        let td = dbmon_pki::trust_domain_of(&ca).unwrap();
        let trust = dbmon_pki::tls::Trust::load(&ca, None, &td).unwrap();
        let id = dbmon_pki::tls::ReloadingIdentity::load(
            &stack.pki.join("collector.test-collector.crt"),
            &stack.pki.join("collector.test-collector.key"),
            dbmon_pki::Role::Collector,
        )
        .unwrap();
        let cfg = Arc::new(dbmon_pki::tls::collector_client(id, trust).unwrap());
        // On the collector endpoint the client services do not exist.
        let ch = dbmon_pki::transport::channel(&stack.collector_grpc, cfg, Duration::from_secs(5))
            .await
            .unwrap();
        let s = MonitorClient::new(ch)
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::Unimplemented, "{}", s.message());
        // On the people endpoint a certificate is no token.
        let ch = people_channel(&stack).await;
        let s = MonitorClient::new(ch)
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    });
}
