//! Fan-out under a slow subscriber: ingest and a fast subscriber go on at
//! full speed, and the slow one is told to resync instead of silently
//! missing reports.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use dbmon_config::Config;
use dbmon_proto::Report;
use dbmon_proto::v1::auth_client::AuthClient;
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::{
    Hello, PublishRequest, WatchEvent, WatchRequest, publish_request, watch_event,
};
use dbmon_proto::v1::{PollLoginRequest, StartLoginRequest};
use std::time::Duration;
use tokio_stream::StreamExt;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server in the plaintext development mode (TLS is tested end to end
/// elsewhere): returns the people endpoint, the collector endpoint, and the
/// shutdown switch.
async fn start(queue: usize) -> (String, String, tokio::sync::watch::Sender<bool>, String) {
    let mut cfg = Config::embedded_default().server;
    cfg.insecure_plaintext = true;
    cfg.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.collector_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let collectors = format!("http://{}", cfg.collector_listen);
    cfg.http_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.subscriber_queue = queue;
    let url = format!("http://{}", cfg.listen);
    let auth_dir = std::env::temp_dir().join(format!(
        "dbmon-fanout-auth-{}-{}",
        std::process::id(),
        cfg.listen.port()
    ));
    cfg.auth.dir = auth_dir.clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(dbmon_server::serve(cfg, rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        {
            drop(ch);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::task::yield_now().await;
    }
    let token = sign_in(&url, &auth_dir).await;
    (url, collectors, tx, token)
}

#[path = "../../tests/support/softlogin.rs"]
mod softlogin;

/// A viewer signed in the way people are: invited, a passkey registered on
/// the sign-in page's API, a login started and approved with it.
async fn sign_in(url: &str, auth_dir: &std::path::Path) -> String {
    let store = dbmon_auth::store::AuthStore::open(auth_dir).unwrap();
    let secret = store
        .add_user("tester", dbmon_auth::Role::Viewer, vec![], 60_000)
        .unwrap();
    let origin = url.replace("127.0.0.1", "localhost");
    let http = softlogin::http_client(None);
    let mut key = softlogin::register(&http, &format!("{origin}/invite#{secret}"))
        .await
        .unwrap();
    let mut auth = AuthClient::connect(url.to_string()).await.unwrap();
    let started = auth
        .start_login(StartLoginRequest {})
        .await
        .unwrap()
        .into_inner();
    softlogin::approve(&http, &started.url, "tester", &mut key)
        .await
        .unwrap();
    let poll = auth
        .poll_login(PollLoginRequest {
            device_code: started.device_code,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !poll.macaroon.is_empty(),
        "approved login hands out a token"
    );
    poll.macaroon
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(dbmon_auth::METADATA_KEY, token.parse().unwrap());
    r
}

fn report(seq: u64) -> PublishRequest {
    let mut r = Report {
        cluster: "c".into(),
        node: format!("n{}", seq % 3),
        check: "up".into(),
        // Large enough that the slow client's HTTP/2 windows fill up.
        message: "x".repeat(2000),
        seq,
        ..Default::default()
    };
    r.set_status(dbmon_proto::Status::Ok);
    PublishRequest {
        msg: Some(publish_request::Msg::Report(r)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_resynced_and_blocks_no_one() {
    const N: u64 = 5000;
    const BATCH: u64 = 100;
    // Far more than a batch, far less than N.
    let (url, collectors, _stop, token) = start(1024).await;
    let mut fast = MonitorClient::connect(url.clone())
        .await
        .unwrap()
        .watch(authed(WatchRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    // Subscribes, then reads nothing until ingest is over.
    let mut slow = MonitorClient::connect(url.clone())
        .await
        .unwrap()
        .watch(authed(WatchRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();

    // The fast subscriber reads as reports come and tells how far it got.
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0u64);
    let fast_task = tokio::spawn(async move {
        let mut seqs = Vec::new();
        'read: while let Some(Ok(e)) = fast.next().await {
            if let Some(watch_event::Event::Snapshot(s)) = &e.event {
                assert_eq!(s.reason, "initial", "fast subscriber resynced");
                continue;
            }
            for r in e.into_reports() {
                seqs.push(r.seq);
                let _ = seen_tx.send(r.seq);
                if r.seq == N {
                    break 'read;
                }
            }
        }
        seqs
    });

    let mut ingest = IngestClient::connect(collectors.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: "load".into(),
            epoch: 1,
            clusters: vec!["c".into()],
        })),
    })
    .unwrap();
    let mut acks = ingest
        .publish(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Batches paced by the fast subscriber, so only the slow one can fall behind.
    for start in (1..=N).step_by(BATCH as usize) {
        for seq in start..start + BATCH {
            tx.send(report(seq)).unwrap();
        }
        let end = start + BATCH - 1;
        tokio::time::timeout(Duration::from_secs(30), seen_rx.wait_for(|s| *s >= end))
            .await
            .unwrap_or_else(|_| panic!("fast subscriber stuck before {end}"))
            .unwrap();
    }
    let acked = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(a)) = acks.next().await {
            if a.acked_seq == N {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        acked,
        Ok(true),
        "every report acknowledged while a subscriber sleeps"
    );

    let seqs = tokio::time::timeout(Duration::from_secs(60), fast_task)
        .await
        .expect("fast subscriber done")
        .unwrap();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "the fast subscriber got every report, in order"
    );

    // The slow one gets what its buffers held, in order and without a gap,
    // and then is told to resync.
    let mut resynced = None;
    let mut last_seq = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(e)) = slow.next().await {
            if let Some(watch_event::Event::Snapshot(s)) = &e.event {
                if s.reason.starts_with("resync") {
                    resynced = Some((s.reason.clone(), s.latest.len()));
                    return;
                }
                continue;
            }
            for r in e.into_reports() {
                assert_eq!(
                    r.seq,
                    last_seq + 1,
                    "before a resync, no gap and no duplicate"
                );
                last_seq = r.seq;
                assert!(r.seq < N, "10 MB of reports never read, yet no resync");
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "slow subscriber stream stalled");
    let (reason, latest) = resynced.expect("a resync snapshot");
    assert!(reason.contains("behind"), "{reason}");
    assert_eq!(
        latest, 3,
        "the resync carries the latest state: one report per (node, check)"
    );
}

/// The Hello of collector `x`, epoch 1.
fn hello() -> PublishRequest {
    PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: "x".into(),
            epoch: 1,
            clusters: vec![],
        })),
    }
}

/// Publishes `msgs` to `collectors` and returns the error that ends the stream.
async fn refusal(collectors: String, msgs: Vec<PublishRequest>) -> tonic::Status {
    let mut acks = IngestClient::connect(collectors)
        .await
        .unwrap()
        .publish(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    loop {
        match acks.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    }
}

#[tokio::test]
async fn a_report_without_a_check_is_refused_by_name() {
    let (_, collectors, _stop, _) = start(16).await;
    let mut bad = report(1);
    if let Some(publish_request::Msg::Report(r)) = &mut bad.msg {
        r.check.clear();
    }
    let err = refusal(collectors, vec![hello(), bad]).await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "report seq 1 of c: field `check` is empty");
    // The collector learns which report to drop.
    assert_eq!(
        err.metadata()
            .get(dbmon_proto::REFUSED_SEQ_KEY)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );

    // An unnumbered report is refused too: it could not be told from a replay.
    let (_, collectors0, _stop0, _) = start(16).await;
    let err = refusal(collectors0, vec![hello(), report(0)]).await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("field `seq` is 0"),
        "{}",
        err.message()
    );

    // A stream must start with Hello.
    let (_, collectors2, _stop2, _) = start(16).await;
    let mut ingest = IngestClient::connect(collectors2).await.unwrap();
    let err = ingest
        .publish(tokio_stream::iter(vec![report(1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains("first message of Publish must be a Hello"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_its_last_position_without_gap_or_repeat() {
    let (url, collectors, _stop, token) = start(1024).await;
    let mut ingest = IngestClient::connect(collectors).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: "c".into(),
            epoch: 1,
            clusters: vec![],
        })),
    })
    .unwrap();
    let mut acks = ingest
        .publish(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let publish_until = |from: u64, to: u64| {
        for seq in from..=to {
            tx.send(report(seq)).unwrap();
        }
    };
    publish_until(1, 100);
    while let Some(Ok(a)) = acks.next().await {
        if a.acked_seq == 100 {
            break;
        }
    }

    // Resume after position 60 (one collector on a fresh server: position = seq).
    let mut watch = MonitorClient::connect(url.clone())
        .await
        .unwrap()
        .watch(authed(
            WatchRequest {
                clusters: vec![],
                after_position: 60,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    publish_until(101, 110);
    let mut seqs = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(e)) = watch.next().await {
            assert!(
                !matches!(e.event, Some(watch_event::Event::Snapshot(_))),
                "a resumable position gets no snapshot"
            );
            seqs.extend(e.into_reports().into_iter().map(|r| r.seq));
            if seqs.last() == Some(&110) {
                break;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "stalled after {seqs:?}");
    assert_eq!(
        seqs,
        (61..=110).collect::<Vec<_>>(),
        "everything after 60, once, in order, then live"
    );

    // A position this server never reached: told to resync, with why.
    let mut watch = MonitorClient::connect(url)
        .await
        .unwrap()
        .watch(authed(
            WatchRequest {
                clusters: vec![],
                after_position: 5_000,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    match watch.next().await {
        Some(Ok(WatchEvent {
            event: Some(watch_event::Event::Snapshot(s)),
            ..
        })) => {
            assert!(s.reason.contains("unknown to this server"), "{}", s.reason);
            assert_eq!(s.latest.len(), 3, "the current state comes with it");
        }
        other => panic!("expected a resync snapshot, got {other:?}"),
    }
}
