//! dbmon's own public key infrastructure.
//!
//! - [`Ca`]: the deployment's certificate authority (`dbmon pki init`), which
//!   issues server and collector certificates, signs enrollment requests and
//!   keeps the revocation list.
//! - [`Identity`]: who a certificate names. Every leaf carries exactly one
//!   SPIFFE-style URI SAN, `spiffe://<trust-domain>/<server|collector>/<name>`.
//! - [`tokens`]: one-time join tokens for enrolling collectors without copying keys.
//! - [`tls`]: rustls configurations for the server and the collector, with
//!   certificates reloaded from disk while connections stay up.
//! - [`reload`]: one reloader of certificate and trust for server and
//!   collector, on file change or SIGHUP, publishing each reload.
//! - [`pem`]: reading PEM material given to dbmon, with errors that say what to do.
//!
//! File names in a PKI directory (as CockroachDB's `cockroach cert`):
//! `ca.crt`, `ca.key`, `ca.crl`, `server.crt`/`server.key`,
//! `collector.NAME.crt`/`collector.NAME.key`,
//! `revoked.json` and `tokens.json`. Keys are written 0600 and never
//! overwritten without `force`.

pub mod ca;
pub mod files;
pub mod identity;
pub mod pem;
pub mod reload;
pub mod tls;
pub mod tokens;
pub mod transport;

pub use ca::{Ca, CertInfo, Issued};
pub use identity::{Identity, IdentityError, Role};
pub use pem::{PkiError, check_key_permissions, read_certificates, read_identity};

/// SHA-256 pin of a certificate, `sha256:<hex>`, over its DER encoding.
pub fn pin(der: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

/// The trust domain named by the first dbmon CA certificate in a bundle.
pub fn trust_domain_of(ca_bundle: &std::path::Path) -> Result<String, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let text = files::read(ca_bundle)?;
    let text = String::from_utf8_lossy(&text);
    for der in ca::all_der(&text) {
        if let Ok((_, cert)) = X509Certificate::from_der(&der)
            && let Ok(Some(san)) = cert.subject_alternative_name()
        {
            for g in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(u) = g
                    && let Some(td) = u.strip_prefix("spiffe://")
                    && !td.is_empty()
                    && !td.contains('/')
                {
                    return Ok(td.to_string());
                }
            }
        }
    }
    Err(PkiError::Invalid(format!(
        "{} holds no dbmon CA (no spiffe://<trust-domain> URI); use the ca.crt made by dbmon pki init",
        ca_bundle.display()
    )))
}
