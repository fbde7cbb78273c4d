//! One HTTP/1 connection to one node for the requests of one poll.
//!
//! A connector that asks a node several things per poll (CockroachDB's
//! `/health?ready=1`, then `/_status/vars`) sends them one after the other
//! on one connection, closed when the poll is done: one TCP connect (and,
//! with TLS, one resumed handshake) per node and poll instead of one per
//! request, and nothing held between polls. A kept HTTP/1 connection holds
//! the read buffer its last answer grew (up to ~400 KB for a 175 KB metrics
//! page); closing it after the poll is what keeps a collector of 1,000
//! nodes in tens of megabytes (docs/benchmarks.md).
//!
//! Nodes are reached directly: HTTP proxies named in the environment are
//! not used for them.

use super::{Answer, chain, hint, no_answer_within};
use crate::connector::ConnectorError;
use bytes::Bytes;
use dbmon_config::ClusterConfig;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

/// The size of each read from a node's connection: a TLS record's
/// plaintext at most, so a 175 KB page is a dozen reads.
const READ_BUFFER: usize = 16 * 1024;

/// How one cluster's nodes are reached: TLS settings made once, the
/// cluster's timeout for each request.
pub struct Dialer {
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl Dialer {
    /// TLS as the cluster's `tls:` section says, for the nodes whose
    /// address is `https://`; verified against the public authorities when
    /// no `tls.ca_file` is named.
    pub fn for_cluster(cluster: &ClusterConfig) -> Result<Dialer, ConnectorError> {
        let tls = if cluster.nodes.iter().any(|u| u.scheme() == "https") {
            let config =
                crate::tls::client_config(cluster, crate::tls::Roots::Public, &[b"http/1.1"])?;
            Some(tokio_rustls::TlsConnector::from(config))
        } else {
            None
        };
        Ok(Dialer {
            tls,
            timeout: cluster.timeout,
            user_agent: HeaderValue::from_static(concat!("dbmon/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// A connection to the node at `base`, opened at its first request.
    pub fn node(&self, base: &url::Url) -> Conn<'_> {
        Conn {
            dialer: self,
            base: base.clone(),
            send: None,
        }
    }
}

/// The requests of one poll to one node; the connection closes when this
/// is dropped.
pub struct Conn<'d> {
    dialer: &'d Dialer,
    base: url::Url,
    send: Option<SendRequest<Empty<Bytes>>>,
}

impl Conn<'_> {
    /// `GET path` (relative to the node's address, with its query): the
    /// status and the whole body. A failure is one line a person can act
    /// on: no answer (refused, timed out, TLS refused), or cut short.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let mut body = Vec::new();
        let (status, latency) = self
            .get_with(path, headers, |chunk| body.extend_from_slice(chunk))
            .await?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            latency,
        })
    }

    /// `GET path`, the body handed to `sink` piece by piece as it arrives
    /// and never held whole; the status and how long the answer took
    /// (connecting included), or the failure in one line as [`Conn::get`].
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(u16, Duration), String> {
        let started = Instant::now();
        let timeout = self.dialer.timeout;
        let exchange = async {
            let req = self.request(path, headers)?;
            let send = self.ready().await?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("no answer: {}", chain(&e)))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("answer cut short: {}", chain(&e)))?;
                if let Some(data) = frame.data_ref() {
                    sink(data);
                }
            }
            Ok((status, started.elapsed()))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        match outcome {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => {
                self.send = None;
                Err(e)
            }
            Err(_) => {
                self.send = None;
                Err(no_answer_within(timeout))
            }
        }
    }

    fn request(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Request<Empty<Bytes>>, String> {
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let mut url = super::join(&self.base, path);
        url.set_query(query);
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let mut req =
            http::Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
                .header(HOST, host)
                .header(USER_AGENT, self.dialer.user_agent.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Empty::new())
            .map_err(|e| format!("request {path}: {e}"))
    }

    /// The connection, opened when there is none or the node closed the
    /// last one (after an answer with `Connection: close`, say).
    async fn ready(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, String> {
        if let Some(send) = &mut self.send
            && send.ready().await.is_err()
        {
            self.send = None;
        }
        if self.send.is_none() {
            self.send = Some(self.open().await?);
        }
        self.send
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    async fn open(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let host = match self.base.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("{} names no host", self.base)),
        };
        let port = self
            .base
            .port_or_known_default()
            .ok_or_else(|| format!("{} names no port", self.base))?;
        let cannot =
            |e: &dyn std::error::Error| format!("no answer: cannot connect to {host}:{port}: {e}");
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| cannot(&e))?;
        let _ = tcp.set_nodelay(true);
        let send = match (&self.dialer.tls, self.base.scheme()) {
            (Some(tls), "https") => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host}: {e}"))?;
                let stream = tls.connect(name, tcp).await.map_err(|e| {
                    let text = chain(&e);
                    format!("no answer: TLS with {host}:{port}: {text}{}", hint(&text))
                })?;
                http1(stream).await
            }
            _ => http1(tcp).await,
        };
        send.map_err(|e| cannot(&e))
    }
}

/// HTTP/1 over `io`, its connection driven by a task of its own that ends
/// when the returned sender is dropped.
async fn http1<T>(io: T) -> Result<SendRequest<Empty<Bytes>>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .read_buf_exact_size(Some(READ_BUFFER))
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(conn);
    Ok(send)
}
