//! Who is on the other end of a request: the address from the TLS or TCP
//! connection, for logs and audit lines.

use dbmon_pki::transport::PeerInfo;
use tonic::Request;

/// The peer's address, from TLS or plain TCP connection info.
pub fn peer_of<T>(request: &Request<T>) -> String {
    peer_from(request.extensions())
}

/// The peer's address from a request's extensions.
pub fn peer_from(ext: &http::Extensions) -> String {
    ext.get::<PeerInfo>()
        .map(|p| p.addr)
        .or_else(|| {
            ext.get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr())
        })
        .map_or_else(|| "unknown".into(), |a| a.to_string())
}
