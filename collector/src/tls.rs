//! TLS towards clusters: the settings made from a cluster's `tls:` section,
//! for the connectors that hold their own connections (PostgreSQL, and the
//! nodes' HTTP of CockroachDB).

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

use crate::connector::ConnectorError;
use dbmon_config::ClusterConfig;

/// The certificates a node's certificate is verified against when the
/// cluster names no `tls.ca_file`.
#[derive(Clone, Copy)]
pub enum Roots {
    /// None: a node can only be trusted through `tls.ca_file`.
    OnlyConfigured,
    /// The web's public certificate authorities (Mozilla's list, built in).
    Public,
}

/// The rustls settings for the cluster's nodes: verified against
/// `tls.ca_file` (or `roots` without one), not verified at all with
/// `tls.insecure_skip_verify` (the caller says so in its log), and with a
/// client certificate when `tls.cert_file` and `tls.key_file` are set.
pub fn client_config(
    cluster: &ClusterConfig,
    roots: Roots,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, ConnectorError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let t = &cluster.tls;
    let invalid = |what: String| ConnectorError::Tls(what);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut store = rustls::RootCertStore::empty();
        match (&t.ca_file, roots) {
            (Some(ca), _) => {
                let pem = dbmon_pki::read_certificates(ca)?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
                    store
                        .add(cert)
                        .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
                }
            }
            (None, Roots::Public) => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            (None, Roots::OnlyConfigured) => {}
        }
        builder.with_root_certificates(store)
    };
    let mut config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let pem = dbmon_pki::read_identity(cert, key)?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(format!("{} with {}: {e}", cert.display(), key.display())))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Accepts any certificate the node shows (`tls.insecure_skip_verify`):
/// the traffic is encrypted, but the node is not authenticated. The
/// handshake's signatures are still checked against that certificate.
#[derive(Debug)]
pub struct NoVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
