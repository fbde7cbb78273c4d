//! TLS under tonic: an incoming stream of TLS connections that carry the
//! peer's verified identity into every request, and channels that dial
//! through a rustls client configuration.

use crate::identity::Identity;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Who is on the other end of a connection; in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// The identity of the verified client certificate, if one was shown.
    pub identity: Option<Identity>,
}

/// A server-side TLS connection.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept
/// loop (a slow or hostile peer holds up nobody); refused handshakes are
/// logged with the peer's address and the reason.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    what: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(endpoint = what, error = %e, "accept failed");
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let identity = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| Identity::from_der(c).ok());
                        let info = PeerInfo { addr, identity };
                        let _ = tx.send(Ok(PeerStream { inner: tls, info })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(endpoint = what, peer = %addr, reason = %describe(&e), "TLS handshake refused")
                    }
                    Err(_) => {
                        tracing::warn!(endpoint = what, peer = %addr, "TLS handshake did not finish within 10s")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One line for a refused handshake: what was wrong and what to do, with
/// rustls's own name for it.
pub fn describe(e: &io::Error) -> String {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return e.to_string();
    };
    match tls {
        Error::NoCertificatesPresented => {
            "no client certificate: a collector must present its certificate (dbmon pki issue collector, or dbmon collector --join)".into()
        }
        Error::InvalidCertificate(CertificateError::Other(other)) => format!("invalid peer certificate: {}", other.0),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "invalid peer certificate: not signed by a CA in this server's trust bundle (UnknownIssuer)".into()
        }
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "invalid peer certificate: its signature does not verify, the chain was altered (BadSignature)".into()
        }
        Error::InvalidCertificate(CertificateError::Revoked) => {
            "invalid peer certificate: revoked by this deployment's CA (Revoked); issue a new one".into()
        }
        other => other.to_string(),
    }
}

/// One line for a connection error: the TLS reason when there is one,
/// otherwise every cause in order.
pub fn describe_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut src = Some(e);
    while let Some(x) = src {
        if let Some(io) = x.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|i| i.is::<rustls::Error>())
        {
            return describe(io);
        }
        let text = x.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        src = x.source();
    }
    parts.join(": ")
}

/// A gRPC channel to `url` (`https://host:port`) through `config`.
pub async fn channel(
    url: &str,
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?}: expected https://HOST:PORT"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("{host:?}: {e}"))?;
    let connector = TlsConnector::from(config);
    let dial = tower::service_fn(move |_: http::Uri| {
        let (host, connector, server_name) = (host.clone(), connector.clone(), server_name.clone());
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    // The scheme only tells tonic how to frame requests; TLS happens in `dial`.
    let endpoint = tonic::transport::Endpoint::from_shared(format!(
        "http://{}:{port}",
        uri.host().unwrap_or("localhost")
    ))
    .map_err(|e| e.to_string())?
    .connect_timeout(connect_timeout)
    .http2_keep_alive_interval(Duration::from_secs(10))
    .keep_alive_timeout(Duration::from_secs(10));
    endpoint
        .connect_with_connector(dial)
        .await
        .map_err(|e| describe_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_rustls_errors_found_in_io_errors() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert!(
            describe(&e).starts_with("no client certificate"),
            "{}",
            describe(&e)
        );
        let id = crate::IdentityError::SeveralUris(2);
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                std::sync::Arc::new(id),
            ))),
        );
        assert_eq!(
            describe(&e),
            "invalid peer certificate: certificate has 2 URI SANs; a dbmon certificate carries exactly one"
        );
    }
}
