//! Where notifications go: each receiver renders a [`Notification`] in its
//! own format and sends it, bounded by its timeout. Secrets (signing keys,
//! Slack URLs, SMTP passwords, credential headers) are read once at start
//! and never logged; a receiver's `Debug` names it only.

use super::state::{AlertState, Notification, SentAlert};
use dbmon_config::{EmailConfig, HeaderValue, ReceiverConfig, ReceiverKind, SmtpTls};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::time::Duration;

/// Header carrying `sha256=<hex>` of HMAC-SHA256 over the body, keyed
/// with the webhook's secret.
pub const SIGNATURE_HEADER: &str = "X-Dbmon-Signature";
/// Header carrying the notification's id: the same id on a retry, so a
/// receiver can drop a duplicate (delivery is at least once).
pub const NOTIFICATION_HEADER: &str = "X-Dbmon-Notification";

/// A receiver could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("receiver {name:?}: {why}")]
pub struct ReceiverError {
    pub name: String,
    pub why: String,
}

/// A built receiver, ready to send.
pub struct Receiver {
    pub name: String,
    timeout: Duration,
    target: Target,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or headers: they may hold secrets.
        write!(f, "Receiver({} {})", self.kind(), self.name)
    }
}

enum Target {
    Webhook {
        client: reqwest::Client,
        url: url::Url,
        secret: Option<Vec<u8>>,
        headers: Vec<(String, String)>,
    },
    Alertmanager {
        client: reqwest::Client,
        url: url::Url,
        resend_interval: Duration,
    },
    Slack {
        client: reqwest::Client,
        url: String,
    },
    Email {
        transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        from: lettre::message::Mailbox,
        to: Vec<lettre::message::Mailbox>,
    },
}

fn http_client(
    name: &str,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, ReceiverError> {
    let bad = |why: String| ReceiverError {
        name: name.to_string(),
        why,
    };
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dbmon/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            bad(format!(
                "cannot read ca_file {}: {e}; check the path",
                ca.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            bad(format!(
                "ca_file {} holds no PEM certificate ({e})",
                ca.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(bad(format!(
                "ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))
}

impl Receiver {
    /// Builds the receiver, reading its secrets now.
    pub fn build(cfg: &ReceiverConfig) -> Result<Receiver, ReceiverError> {
        let name = cfg.name.clone();
        let bad = |why: String| ReceiverError {
            name: name.clone(),
            why,
        };
        let target = match &cfg.kind {
            ReceiverKind::Webhook {
                url,
                secret,
                headers,
                ca_file,
            } => {
                let secret = match secret {
                    Some(s) => Some(
                        s.resolve()
                            .map_err(|e| bad(format!("webhook.secret: {e}")))?
                            .into_bytes(),
                    ),
                    None => None,
                };
                let mut hs = Vec::new();
                for (k, v) in headers {
                    let value = match v {
                        HeaderValue::Plain(p) => p.clone(),
                        HeaderValue::Secret(s) => s
                            .resolve()
                            .map_err(|e| bad(format!("webhook.headers.{k}: {e}")))?,
                    };
                    if reqwest::header::HeaderValue::from_str(&value).is_err() {
                        return Err(bad(format!(
                            "webhook.headers.{k}: the value is not a valid HTTP header value"
                        )));
                    }
                    hs.push((k.clone(), value));
                }
                Target::Webhook {
                    client: http_client(&name, cfg.timeout, ca_file.as_deref())?,
                    url: url.clone(),
                    secret,
                    headers: hs,
                }
            }
            ReceiverKind::Alertmanager {
                url,
                ca_file,
                resend_interval,
            } => {
                let mut url = url.clone();
                let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
                url.set_path(&path);
                Target::Alertmanager {
                    client: http_client(&name, cfg.timeout, ca_file.as_deref())?,
                    url,
                    resend_interval: *resend_interval,
                }
            }
            ReceiverKind::Slack { url, ca_file } => {
                let url = url.resolve().map_err(|e| bad(format!("slack.url: {e}")))?;
                match url::Url::parse(url.trim()) {
                    Ok(u) if matches!(u.scheme(), "https" | "http") => {}
                    _ => {
                        return Err(bad(
                            "slack.url: the secret is not an http(s) URL; expected the incoming webhook's https://hooks.slack.com/... address".into(),
                        ));
                    }
                }
                Target::Slack {
                    client: http_client(&name, cfg.timeout, ca_file.as_deref())?,
                    url: url.trim().to_string(),
                }
            }
            ReceiverKind::Email(e) => email_target(&name, cfg.timeout, e)?,
        };
        Ok(Receiver {
            name: cfg.name.clone(),
            timeout: cfg.timeout,
            target,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Webhook { .. } => "webhook",
            Target::Alertmanager { .. } => "alertmanager",
            Target::Slack { .. } => "slack",
            Target::Email { .. } => "email",
        }
    }

    /// For an Alertmanager receiver, how often firing alerts are sent again.
    pub fn resend_interval(&self) -> Option<Duration> {
        match self.target {
            Target::Alertmanager {
                resend_interval, ..
            } => Some(resend_interval),
            _ => None,
        }
    }

    /// Sends one notification; the error says what went wrong, for people.
    pub async fn send(&self, n: &Notification, external_url: &str) -> Result<(), String> {
        let work = self.send_inner(n, external_url);
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}", humantime_secs(self.timeout))),
        }
    }

    async fn send_inner(&self, n: &Notification, external_url: &str) -> Result<(), String> {
        match &self.target {
            Target::Webhook {
                client,
                url,
                secret,
                headers,
            } => {
                let body = serde_json::to_vec(&webhook_body(&self.name, n, external_url))
                    .map_err(|e| e.to_string())?;
                let mut req = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(NOTIFICATION_HEADER, n.id.to_string());
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                if let Some(key) = secret {
                    req = req.header(SIGNATURE_HEADER, sign(key, &body));
                }
                check(req.body(body).send().await, self.timeout).await
            }
            Target::Alertmanager {
                client,
                url,
                resend_interval,
            } => {
                let body = alertmanager_body(&n.alerts, external_url, *resend_interval);
                check(
                    client.post(url.clone()).json(&body).send().await,
                    self.timeout,
                )
                .await
            }
            Target::Slack { client, url } => {
                let body = json!({ "text": slack_text(n, external_url) });
                check(
                    client.post(url.as_str()).json(&body).send().await,
                    self.timeout,
                )
                .await
            }
            Target::Email {
                transport,
                from,
                to,
            } => {
                use lettre::AsyncTransport;
                let (subject, text) = email_text(n, external_url);
                let mut b = lettre::Message::builder()
                    .from(from.clone())
                    .subject(subject)
                    .header(lettre::message::header::ContentType::TEXT_PLAIN);
                for t in to {
                    b = b.to(t.clone());
                }
                let msg = b.body(text).map_err(|e| e.to_string())?;
                transport
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SMTP: {e}"))
            }
        }
    }

    /// Sends firing alerts again to an Alertmanager (which forgets alerts
    /// that are not re-sent).
    pub async fn resend(&self, alerts: &[SentAlert], external_url: &str) -> Result<(), String> {
        match &self.target {
            Target::Alertmanager {
                client,
                url,
                resend_interval,
            } => {
                let body = alertmanager_body(alerts, external_url, *resend_interval);
                check(
                    client.post(url.clone()).json(&body).send().await,
                    self.timeout,
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The outcome of one HTTP delivery, said for people. Never the URL: a
/// Slack webhook's URL is its secret.
async fn check(r: reqwest::Result<reqwest::Response>, timeout: Duration) -> Result<(), String> {
    let resp = r.map_err(|e| {
        if e.is_timeout() {
            return format!("no answer within {}", humantime_secs(timeout));
        }
        let e = e.without_url();
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    Err(format!("HTTP {status}: {}", body.trim()))
}

/// `sha256=<hex of HMAC-SHA256(key, body)>`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

/// Labels every alert of the notification shares.
fn common<'a>(
    alerts: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut it = alerts;
    let Some(first) = it.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in it {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// The Alertmanager webhook body, version "4".
pub fn webhook_body(receiver: &str, n: &Notification, external_url: &str) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status.as_str(),
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": a.ends_at_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "generatorURL": generator_url(external_url, a),
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key(),
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": receiver,
        "groupLabels": { "alertname": n.rule, "cluster": n.cluster },
        "commonLabels": common(n.alerts.iter().map(|a| &a.labels)),
        "commonAnnotations": common(n.alerts.iter().map(|a| &a.annotations)),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

fn generator_url(external_url: &str, a: &SentAlert) -> String {
    let cluster = a.labels.get("cluster").map(String::as_str).unwrap_or("");
    format!("{external_url}/#cluster={cluster}")
}

/// The body of `POST /api/v2/alerts`: firing alerts end at four resend
/// intervals from now unless sent again, as Alertmanager's clients do.
pub fn alertmanager_body(alerts: &[SentAlert], external_url: &str, resend: Duration) -> Value {
    let now = dbmon_proto::now_ms();
    let horizon = now + 4 * resend.as_millis() as i64;
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at_ms),
                    "endsAt": rfc3339(match a.status {
                        AlertState::Resolved => a.ends_at_ms.unwrap_or(now),
                        _ => horizon,
                    }),
                    "generatorURL": generator_url(external_url, a),
                })
            })
            .collect(),
    )
}

fn headline(n: &Notification) -> String {
    let firing = n
        .alerts
        .iter()
        .filter(|a| a.status == AlertState::Firing)
        .count();
    let resolved = n.alerts.len() - firing;
    let mut parts = Vec::new();
    if firing > 0 {
        parts.push(format!("{firing} firing"));
    }
    if resolved > 0 {
        parts.push(format!("{resolved} resolved"));
    }
    format!(
        "[{}] {} on cluster {} ({})",
        n.status.as_str().to_uppercase(),
        n.rule,
        n.cluster,
        parts.join(", ")
    )
}

fn alert_lines(n: &Notification) -> Vec<String> {
    n.alerts
        .iter()
        .map(|a| {
            let summary = a
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_else(|| a.fingerprint.clone());
            let mut line = format!("{}: {summary}", a.status.as_str());
            if let Some(d) = a.annotations.get("description") {
                for l in d.lines() {
                    line.push_str("\n    ");
                    line.push_str(l);
                }
            }
            line
        })
        .collect()
}

fn slack_text(n: &Notification, external_url: &str) -> String {
    let mut out = format!("*{}*", headline(n));
    for l in alert_lines(n) {
        out.push_str("\n• ");
        out.push_str(&l);
    }
    out.push_str(&format!("\n<{external_url}|dbmon>"));
    out
}

/// Subject and plain-text body of a mail.
pub fn email_text(n: &Notification, external_url: &str) -> (String, String) {
    let mut body = headline(n);
    body.push_str("\n\n");
    for l in alert_lines(n) {
        body.push_str("- ");
        body.push_str(&l);
        body.push('\n');
    }
    body.push_str(&format!("\n{external_url}\n"));
    (headline(n), body)
}

fn email_target(name: &str, timeout: Duration, e: &EmailConfig) -> Result<Target, ReceiverError> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let bad = |why: String| ReceiverError {
        name: name.to_string(),
        why,
    };
    let tls_params = || -> Result<TlsParameters, ReceiverError> {
        let mut b = TlsParameters::builder(e.host.clone());
        if let Some(ca) = &e.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|err| bad(format!("email.ca_file {}: {err}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|err| bad(format!("email.ca_file {}: {err}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|err| bad(format!("email TLS: {err}")))
    };
    let tls = match e.tls {
        SmtpTls::Starttls => Tls::Required(tls_params()?),
        SmtpTls::Implicit => Tls::Wrapper(tls_params()?),
        SmtpTls::None => Tls::None,
    };
    let mut b =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(e.host.clone())
            .port(e.port)
            .timeout(Some(timeout))
            .tls(tls);
    if let (Some(user), Some(pass)) = (&e.username, &e.password) {
        let pass = pass
            .resolve()
            .map_err(|err| bad(format!("email.password: {err}")))?;
        b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            pass,
        ));
    }
    let parse = |a: &str, field: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|err| bad(format!("email.{field} {a:?}: {err}")))
    };
    Ok(Target::Email {
        transport: b.build(),
        from: parse(&e.from, "from")?,
        to: e
            .to
            .iter()
            .map(|t| parse(t, "to"))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_receivers_debug_names_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slack-url");
        std::fs::write(&path, "https://hooks.example.com/T000/SECRETPART\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = ReceiverConfig {
            name: "chat".into(),
            timeout: Duration::from_secs(1),
            kind: ReceiverKind::Slack {
                url: dbmon_config::SecretRef::File(path),
                ca_file: None,
            },
        };
        let r = Receiver::build(&cfg).unwrap();
        let shown = format!("{r:?}");
        assert_eq!(shown, "Receiver(slack chat)");
        assert!(!shown.contains("SECRETPART"));
    }
}
