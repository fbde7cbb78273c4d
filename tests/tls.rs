//! Mutual TLS between collectors and the server, over real sockets: every
//! way a certificate can be wrong is refused with its own reason, and the
//! right one gets in.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use dbmon_pki::Ca;
use dbmon_proto::v1::ingest_client::IngestClient;
use dbmon_proto::v1::{Hello, PublishRequest, Report, publish_request};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio_stream::StreamExt;

/// A leaf made by hand, signed by the CA in `pki` (or self-signed by
/// another CA), to build certificates `dbmon pki` would never issue.
struct Leaf {
    uris: Vec<String>,
    eku: ExtendedKeyUsagePurpose,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl Leaf {
    fn collector(name: &str) -> Leaf {
        Leaf {
            uris: vec![format!("spiffe://dbmon.local/collector/{name}")],
            eku: ExtendedKeyUsagePurpose::ClientAuth,
            not_before: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
            not_after: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        }
    }

    /// Chain PEM (leaf then CA) and key PEM, signed by the CA of `pki`.
    fn sign(&self, pki: &Path) -> (String, String) {
        let ca_pem = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "crafted");
        p.subject_alt_names = self
            .uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().unwrap()))
            .collect();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![self.eku.clone()];
        p.not_before = self.not_before;
        p.not_after = self.not_after;
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &issuer).unwrap();
        (format!("{}{ca_pem}", cert.pem()), key.serialize_pem())
    }
}

/// Publishes one report to the collector endpoint with `identity` (chain
/// and key PEM), trusting the CA of `pki`. Ok(acked seq) or the error.
async fn publish(
    stack_collector_url: &str,
    pki: &Path,
    identity: Option<(String, String)>,
    hello_name: &str,
    cluster: &str,
) -> Result<u64, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(dbmon_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((chain, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let channel =
        dbmon_pki::transport::channel(stack_collector_url, Arc::new(cfg), Duration::from_secs(5))
            .await?;
    let hello = PublishRequest {
        msg: Some(publish_request::Msg::Hello(Hello {
            collector_id: hello_name.into(),
            epoch: next_epoch(),
            clusters: vec![],
        })),
    };
    let mut report = Report {
        cluster: cluster.into(),
        check: "up".into(),
        seq: 1,
        ..Default::default()
    };
    report.set_status(dbmon_proto::Status::Ok);
    let msgs = vec![
        hello,
        PublishRequest {
            msg: Some(publish_request::Msg::Report(report)),
        },
    ];
    let attempt = async {
        let mut acks = IngestClient::new(channel)
            .publish(tokio_stream::iter(msgs))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        while let Some(a) = acks.next().await {
            match a {
                Ok(a) if a.acked_seq >= 1 => return Ok(a.acked_seq),
                Ok(_) => continue,
                Err(s) => return Err(s.message().to_string()),
            }
        }
        Err("stream ended without an ack".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer within 10s".to_string())?
}

/// A new collector epoch per attempt, so no attempt sees another's ack.
fn next_epoch() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn tamper(chain_pem: &str) -> String {
    // Flip one bit near the end of the leaf's DER: inside its signature.
    let mut ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect();
    let n = ders[0].len();
    ders[0][n - 5] ^= 0x01;
    ders.iter()
        .map(|d| rustls::pki_types::CertificateDer::from(d.clone()))
        .map(|c| {
            let b64 = base64_encode(&c);
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
        })
        .collect()
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A certificate chain and its key, PEM.
type Pair = (String, String);

fn read_pair(pki: &Path, base: &str) -> (String, String) {
    (
        std::fs::read_to_string(pki.join(format!("{base}.crt"))).unwrap(),
        std::fs::read_to_string(pki.join(format!("{base}.key"))).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_certificate_is_refused_with_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_server_with(
        dir.path(),
        "",
        "  assignments:\n    test-collector: [allowed]\n",
    );
    let pki = stack.pki.clone();
    let url = stack.collector_grpc.clone();
    let p = pki.to_str().unwrap();

    // Another deployment's CA, with the same trust domain.
    let other = dir.path().join("other-pki");
    Ca::init(&other, "dbmon.local", false).unwrap();
    let other_ca = Ca::load(&other).unwrap();
    let stranger = other_ca
        .issue(
            dbmon_pki::Role::Collector,
            "test-collector",
            Some("stranger"),
            &[],
            Duration::from_secs(3600),
            false,
        )
        .unwrap();
    let stranger_pair = (
        std::fs::read_to_string(&stranger.cert_path).unwrap(),
        std::fs::read_to_string(&stranger.key_path).unwrap(),
    );

    let now = time::OffsetDateTime::now_utc();
    let good = read_pair(&pki, "collector.test-collector");
    let server_pair = read_pair(&pki, "server");
    let expired = Leaf {
        not_before: now - time::Duration::days(2),
        not_after: now - time::Duration::days(1),
        ..Leaf::collector("test-collector")
    }
    .sign(&pki);
    let not_yet = Leaf {
        not_before: now + time::Duration::days(1),
        not_after: now + time::Duration::days(2),
        ..Leaf::collector("test-collector")
    }
    .sign(&pki);
    let foreign_domain = Leaf {
        uris: vec!["spiffe://evil.local/collector/test-collector".into()],
        ..Leaf::collector("x")
    }
    .sign(&pki);
    let two_uris = Leaf {
        uris: vec![
            "spiffe://dbmon.local/collector/test-collector".into(),
            "spiffe://dbmon.local/collector/other".into(),
        ],
        ..Leaf::collector("x")
    }
    .sign(&pki);
    let no_uri = Leaf {
        uris: vec![],
        ..Leaf::collector("x")
    }
    .sign(&pki);
    let server_role = Leaf {
        uris: vec!["spiffe://dbmon.local/server/test-collector".into()],
        ..Leaf::collector("x")
    }
    .sign(&pki);
    let tampered = (tamper(&good.0), good.1.clone());

    // Revoked: a valid certificate, then revoked and the list reloaded.
    issue_collector(&pki, "test-collector", None);
    let revoked_pair = read_pair(&pki, "collector.test-collector");
    let serial = dbmon_pki::ca::inspect(&pki.join("collector.test-collector.crt"))
        .unwrap()
        .serial;
    assert!(
        publish(
            &url,
            &pki,
            Some(revoked_pair.clone()),
            "test-collector",
            "allowed"
        )
        .await
        .is_ok(),
        "valid before revocation"
    );
    dbmon(&["pki", "revoke", &serial, "--dir", p]);

    let cases: Vec<(&str, Option<Pair>, &str)> = vec![
        ("no client certificate", None, "no client certificate"),
        (
            "certificate of another CA",
            Some(stranger_pair.clone()),
            "UnknownIssuer",
        ),
        ("expired certificate", Some(expired), "expired"),
        ("certificate not yet valid", Some(not_yet), "not valid yet"),
        (
            "server certificate used by a collector",
            Some(server_pair),
            "extended key usage for client authentication",
        ),
        (
            "collector identity with a server role",
            Some(server_role),
            "is a server, expected a collector",
        ),
        (
            "identity of another trust domain",
            Some(foreign_domain),
            "belongs to trust domain \"evil.local\", expected \"dbmon.local\"",
        ),
        ("two URI SANs", Some(two_uris), "has 2 URI SANs"),
        ("no URI SAN", Some(no_uri), "has no URI SAN"),
        ("tampered chain", Some(tampered), "BadSignature"),
        ("revoked certificate", Some(revoked_pair), "Revoked"),
    ];
    let mut failures = Vec::new();
    for (what, identity, reason) in cases {
        let before = stack.server_log().matches("TLS handshake refused").count();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // The revocation list is reloaded within a second of its change.
        let result = loop {
            let r = publish(&url, &pki, identity.clone(), "test-collector", "allowed").await;
            if r.is_err() || std::time::Instant::now() > deadline {
                break r;
            }
            tokio::task::yield_now().await;
        };
        if let Ok(seq) = result {
            failures.push(format!("{what}: accepted (ack {seq})"));
            continue;
        }
        let logged = (0..100).any(|_| {
            let log = stack.server_log();
            let refusals: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("TLS handshake refused"))
                .collect();
            let found =
                refusals.len() > before && refusals[before..].iter().any(|l| l.contains(reason));
            if !found {
                std::thread::park_timeout(Duration::from_millis(50));
            }
            found
        });
        if !logged {
            let log = stack.server_log();
            let last: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
            failures.push(format!(
                "{what}: refused, but the server log does not say {reason:?}; refusals: {:?}",
                &last[before.min(last.len())..]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The right certificate gets in, for its assigned cluster only, under its own name.
    issue_collector(&pki, "test-collector", None);
    let good = read_pair(&pki, "collector.test-collector");
    assert_eq!(
        publish(&url, &pki, Some(good.clone()), "test-collector", "allowed").await,
        Ok(1)
    );
    let e = publish(&url, &pki, Some(good.clone()), "test-collector", "other")
        .await
        .unwrap_err();
    assert!(e.contains("may not publish cluster \"other\""), "{e}");
    let e = publish(&url, &pki, Some(good), "someone-else", "allowed")
        .await
        .unwrap_err();
    assert!(
        e.contains(
            "certificate names collector \"test-collector\" but Hello says \"someone-else\""
        ),
        "{e}"
    );

    // CA rotation: once the server's bundle also holds the other CA, its
    // certificates are trusted (reloaded without a restart).
    let mut bundle = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    bundle.push_str(&std::fs::read_to_string(other.join("ca.crt")).unwrap());
    std::fs::write(pki.join("ca.crt.new"), bundle).unwrap();
    std::fs::rename(pki.join("ca.crt.new"), pki.join("ca.crt")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match publish(
            &url,
            &pki,
            Some(stranger_pair.clone()),
            "test-collector",
            "allowed",
        )
        .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "new CA in the bundle still refused: {e}"
            ),
        }
        tokio::task::yield_now().await;
    }
}
