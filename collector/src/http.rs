//! The HTTP client a connector uses to reach a cluster's nodes: TLS verified
//! against the configured CA, a client certificate when configured, and every
//! failure turned into a sentence a person can act on.

pub mod conn;

use crate::connector::ConnectorError;
use dbmon_config::ClusterConfig;
use std::time::{Duration, Instant};

/// Builds the client for one cluster. Certificate verification is skipped
/// only when the cluster says so, and that is logged at every start.
pub fn client_for(cluster: &ClusterConfig) -> Result<reqwest::Client, ConnectorError> {
    builder_for(cluster)?
        .build()
        .map_err(|e| ConnectorError::Http(format!("{e}")))
}

/// The client's builder, for a connector that adds settings of its own.
pub fn builder_for(cluster: &ClusterConfig) -> Result<reqwest::ClientBuilder, ConnectorError> {
    let mut b = reqwest::Client::builder()
        .timeout(cluster.timeout)
        .connect_timeout(cluster.timeout)
        .user_agent(concat!("dbmon/", env!("CARGO_PKG_VERSION")))
        // No connection is kept between polls. A kept HTTP/1 connection
        // keeps the read buffer its last answer grew (up to ~400 KB for a
        // 175 KB metrics page), which the client offers no way to bound:
        // with 1,000 nodes that was 260 MB of a collector's 270. A new
        // connection per poll costs a TCP connect and, with TLS, a resumed
        // handshake (rustls keeps the session): 36 MB instead, for some
        // 15 % more CPU per poll (docs/benchmarks.md).
        .pool_max_idle_per_host(0);
    let tls = &cluster.tls;
    if let Some(ca) = &tls.ca_file {
        let pem = dbmon_pki::read_certificates(ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ConnectorError::Http(format!("CA file {}: {e}", ca.display())))?;
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let pem = dbmon_pki::read_identity(cert, key)?;
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            ConnectorError::Http(format!(
                "client certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        tracing::warn!(
            cluster = %cluster.name,
            "tls.insecure_skip_verify is set: the cluster's certificates are NOT verified"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// A successful answer: status code and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub latency: Duration,
}

/// Sends `req`, reads the whole body, and describes any failure in one line
/// (refused, timed out, TLS, closed mid-body).
pub async fn fetch(req: reqwest::RequestBuilder, timeout: Duration) -> Result<Answer, String> {
    let started = Instant::now();
    let resp = req.send().await.map_err(|e| describe(&e, timeout))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| describe(&e, timeout))?;
    Ok(Answer {
        status,
        body,
        latency: started.elapsed(),
    })
}

/// Sends `req` and hands the body to `sink` piece by piece as it arrives,
/// never holding it whole; the status and how long the answer took, or
/// the failure in one line, as [`fetch`].
pub async fn fetch_with(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    mut sink: impl FnMut(&[u8]),
) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let mut resp = req.send().await.map_err(|e| describe(&e, timeout))?;
    let status = resp.status().as_u16();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, timeout))? {
        sink(&chunk);
    }
    Ok((status, started.elapsed()))
}

/// One line for a request error, without the URL's credentials.
pub fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return no_answer_within(timeout);
    }
    let text = chain(e)
        .replace("error sending request for url ", "request to ")
        .replace("client error (Connect)", "cannot connect");
    let text = format!("{text}{}", hint(&text));
    if e.is_connect() {
        format!("no answer: {text}")
    } else if e.is_body() || e.is_decode() {
        format!("answer cut short: {text}")
    } else {
        text
    }
}

fn no_answer_within(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

/// An error and its sources in one line, each said once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !chain.iter().any(|c: &String| c.contains(&text)) {
            chain.push(text);
        }
        source = s.source();
    }
    chain.join(": ")
}

/// What to do about a TLS failure, from its text ("" for other failures).
fn hint(text: &str) -> &'static str {
    if text.contains("BadCertificate") || text.contains("CertificateRequired") {
        "; the node refused our client certificate or wants one: check tls.cert_file and tls.key_file"
    } else if text.contains("UnknownIssuer") {
        "; the node's certificate is not signed by tls.ca_file: point tls.ca_file at the cluster's CA"
    } else if text.contains("NotValidForName") {
        "; the node's certificate does not name this address: use the name or IP it was issued for"
    } else if text.contains("certificate expired") || text.contains("Expired") {
        "; the node's certificate has expired: renew it on the cluster"
    } else {
        ""
    }
}

/// Shortens a body for a message: first line, at most 80 characters.
pub fn excerpt(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("");
    let mut s: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".into()
    } else {
        format!("{s:?}")
    }
}

/// `base` joined with a path, keeping any path prefix of the base URL.
pub fn join(base: &url::Url, path: &str) -> url::Url {
    let mut u = base.clone();
    let prefix = u.path().trim_end_matches('/').to_string();
    u.set_path(&format!("{prefix}/{path}"));
    u
}
