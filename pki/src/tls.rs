//! rustls configurations for dbmon's links, with certificates and trust
//! reloaded from disk while connections stay up.
//!
//! - collector → server: mutual TLS; the server requires a certificate
//!   chained to the trust bundle, not revoked, with a collector identity of
//!   its trust domain; the collector requires a server identity.
//! - client → server: the server shows its certificate; people authenticate
//!   with tokens, not certificates.
//! - enrollment: the collector trusts the server only if the CA it presents
//!   matches a `sha256:` pin, checked before anything is sent.

use crate::ca::all_der;
use crate::identity::{Identity, IdentityError, Role};
use crate::{PkiError, pin};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The crypto provider every dbmon TLS configuration uses (made once).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// Handshake signature checks shared by every verifier here.
fn tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    String::from_utf8(crate::files::read(path)?)
        .map_err(|_| PkiError::Invalid(format!("{} is not PEM text", path.display())))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Checks a leaf certificate before it is used, with one actionable line per
/// problem: expired, not yet valid, no identity, wrong role or domain.
pub fn check_leaf(
    path: &Path,
    der: &[u8],
    role: Role,
    trust_domain: Option<&str>,
) -> Result<Identity, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::Invalid(format!("{}: not a certificate ({e})", path.display())))?;
    let now = time_now();
    let v = cert.validity();
    if v.not_after.timestamp() < now {
        return Err(PkiError::Invalid(format!(
            "certificate {} expired at {}; issue a new one (dbmon pki issue {role} --name NAME) or join again with a token",
            path.display(),
            v.not_after
        )));
    }
    if v.not_before.timestamp() > now {
        return Err(PkiError::Invalid(format!(
            "certificate {} is not valid before {}; check this machine's clock",
            path.display(),
            v.not_before
        )));
    }
    let id = Identity::from_der(der)
        .map_err(|e| PkiError::Invalid(format!("certificate {}: {e}", path.display())))?;
    if id.role != role {
        return Err(PkiError::Invalid(format!(
            "certificate {} names {id}, a {} identity; a {role} needs a {role} certificate (dbmon pki issue {role} --name NAME)",
            path.display(),
            id.role
        )));
    }
    if let Some(td) = trust_domain
        && id.trust_domain != td
    {
        return Err(PkiError::Invalid(format!(
            "certificate {} names trust domain {:?}, expected {td:?}; it comes from another dbmon PKI",
            path.display(),
            id.trust_domain
        )));
    }
    Ok(id)
}

fn time_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A certificate chain and key loaded from files, swapped in place when the
/// files change ([`ReloadingIdentity::reload_if_changed`]) so that new
/// handshakes use the new pair and open connections carry on.
pub struct ReloadingIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    role: Role,
    current: RwLock<Arc<CertifiedKey>>,
    identity: RwLock<Identity>,
    not_after: RwLock<(i64, i64)>,
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingIdentity {
    /// Loads and checks the pair: key mode 0600, key matching the
    /// certificate, certificate valid now and naming a `role` identity.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        role: Role,
    ) -> Result<Arc<ReloadingIdentity>, PkiError> {
        let (ck, id, validity) = Self::read(cert_path, key_path, role)?;
        Ok(Arc::new(ReloadingIdentity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            role,
            current: RwLock::new(ck),
            identity: RwLock::new(id),
            not_after: RwLock::new(validity),
            stamp: Mutex::new((mtime(cert_path), mtime(key_path))),
        }))
    }

    #[allow(clippy::type_complexity)]
    fn read(
        cert_path: &Path,
        key_path: &Path,
        role: Role,
    ) -> Result<(Arc<CertifiedKey>, Identity, (i64, i64)), PkiError> {
        let chain: Vec<CertificateDer<'static>> = all_der(&read_text(cert_path)?)
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let Some(leaf) = chain.first() else {
            return Err(PkiError::NoPem {
                path: cert_path.to_path_buf(),
                what: "CERTIFICATE",
            });
        };
        let id = check_leaf(cert_path, leaf, role, None)?;
        crate::check_key_permissions(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&crate::files::read(key_path)?).map_err(|e| {
            PkiError::Invalid(format!("{}: no private key ({e})", key_path.display()))
        })?;
        let ck = CertifiedKey::from_der(chain.clone(), key, &provider()).map_err(|e| match e {
            Error::InconsistentKeys(_) => PkiError::Invalid(format!(
                "key {} does not belong to certificate {}; put the matching pair in place",
                key_path.display(),
                cert_path.display()
            )),
            e => PkiError::Invalid(format!("{}: {e}", key_path.display())),
        })?;
        let (_, cert) =
            X509Certificate::from_der(leaf).map_err(|e| PkiError::Invalid(e.to_string()))?;
        let validity = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        Ok((Arc::new(ck), id, validity))
    }

    /// Reloads if either file changed since the last load. A broken new
    /// pair is refused and the old one kept.
    pub fn reload_if_changed(&self) -> Result<bool, PkiError> {
        let now = (mtime(&self.cert_path), mtime(&self.key_path));
        {
            let stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *stamp == now {
                return Ok(false);
            }
        }
        self.reload()?;
        Ok(true)
    }

    /// Reads the files again and swaps the pair in.
    pub fn reload(&self) -> Result<(), PkiError> {
        let stamp_now = (mtime(&self.cert_path), mtime(&self.key_path));
        let (ck, id, validity) = Self::read(&self.cert_path, &self.key_path, self.role)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = ck;
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = id;
        *self.not_after.write().unwrap_or_else(|p| p.into_inner()) = validity;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = stamp_now;
        Ok(())
    }

    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (not before, not after), Unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        *self.not_after.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReloadingIdentity({})", self.cert_path.display())
    }
}

impl ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The trust bundle (one or more CA certificates: old and new during a CA
/// rotation) and, on the server, the revocation list; reloaded on change.
pub struct Trust {
    ca_path: PathBuf,
    crl_path: Option<PathBuf>,
    pub trust_domain: String,
    roots: RwLock<Arc<RootCertStore>>,
    crls: RwLock<Vec<CertificateRevocationListDer<'static>>>,
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Trust {
    pub fn load(
        ca_path: &Path,
        crl_path: Option<&Path>,
        trust_domain: &str,
    ) -> Result<Arc<Trust>, PkiError> {
        let (roots, crls) = Self::read(ca_path, crl_path)?;
        Ok(Arc::new(Trust {
            ca_path: ca_path.to_path_buf(),
            crl_path: crl_path.map(Path::to_path_buf),
            trust_domain: trust_domain.to_string(),
            roots: RwLock::new(roots),
            crls: RwLock::new(crls),
            stamp: Mutex::new((mtime(ca_path), crl_path.and_then(mtime))),
        }))
    }

    #[allow(clippy::type_complexity)]
    fn read(
        ca_path: &Path,
        crl_path: Option<&Path>,
    ) -> Result<
        (
            Arc<RootCertStore>,
            Vec<CertificateRevocationListDer<'static>>,
        ),
        PkiError,
    > {
        let mut roots = RootCertStore::empty();
        let certs = all_der(&read_text(ca_path)?);
        if certs.is_empty() {
            return Err(PkiError::NoPem {
                path: ca_path.to_path_buf(),
                what: "CERTIFICATE",
            });
        }
        for der in certs {
            roots.add(CertificateDer::from(der)).map_err(|e| {
                PkiError::Invalid(format!(
                    "{}: not a usable CA certificate ({e})",
                    ca_path.display()
                ))
            })?;
        }
        let crls = match crl_path {
            Some(p) => {
                let text = crate::files::read(p)?;
                let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&text)
                    .filter_map(Result::ok)
                    .collect();
                if crls.is_empty() {
                    return Err(PkiError::NoPem {
                        path: p.to_path_buf(),
                        what: "X509 CRL",
                    });
                }
                crls
            }
            None => Vec::new(),
        };
        Ok((Arc::new(roots), crls))
    }

    /// Reloads if the bundle or the revocation list changed.
    pub fn reload_if_changed(&self) -> Result<bool, PkiError> {
        let now = (
            mtime(&self.ca_path),
            self.crl_path.as_deref().and_then(mtime),
        );
        if *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return Ok(false);
        }
        let (roots, crls) = Self::read(&self.ca_path, self.crl_path.as_deref())?;
        *self.roots.write().unwrap_or_else(|p| p.into_inner()) = roots;
        *self.crls.write().unwrap_or_else(|p| p.into_inner()) = crls;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(true)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        self.roots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn crls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.crls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn identity_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

#[derive(thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Requires a client certificate chained to the trust bundle, not revoked,
/// with exactly one identity: a collector of the trust domain.
#[derive(Debug)]
struct CollectorVerifier {
    trust: Arc<Trust>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trust({})", self.ca_path.display())
    }
}

impl CollectorVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        WebPkiClientVerifier::builder_with_provider(self.trust.roots(), provider())
            .with_crls(self.trust.crls())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| Error::General(format!("trust bundle unusable: {e}")))
    }
}

impl ClientCertVerifier for CollectorVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner()?
            .verify_client_cert(end_entity, intermediates, now)?;
        Identity::from_der(end_entity)
            .and_then(|id| id.expect(&self.trust.trust_domain, Role::Collector))
            .map_err(identity_error)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Verifies the server's chain and host name against the trust bundle, and
/// requires a server identity of the trust domain.
#[derive(Debug)]
struct ServerVerifier {
    trust: Arc<Trust>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(self.trust.roots(), provider())
            .build()
            .map_err(|e| Error::General(format!("trust bundle unusable: {e}")))?;
        let verified =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        Identity::from_der(end_entity)
            .and_then(|id| id.expect(&self.trust.trust_domain, Role::Server))
            .map_err(identity_error)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Trusts the server only if its chain carries a CA whose SHA-256 matches
/// the pin, and the leaf is a server identity signed by that CA.
#[derive(Debug)]
struct PinnedVerifier {
    pin: String,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ca = intermediates.iter().find(|c| pin(c) == self.pin).ok_or_else(|| {
            identity_error(Refusal(format!(
                "the server's CA does not match the pin {}; check the pin printed by `dbmon pki token create` and the server address",
                self.pin
            )))
        })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| Error::General(e.to_string()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        let verified = inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        let id = Identity::from_der(end_entity).map_err(identity_error)?;
        if id.role != Role::Server {
            return Err(identity_error(IdentityError::WrongRole {
                got: id,
                expected: Role::Server,
            }));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

const H2: &[u8] = b"h2";

/// The server's endpoint for collectors: a collector certificate is required
/// at the handshake.
pub fn collector_facing(
    identity: Arc<ReloadingIdentity>,
    trust: Arc<Trust>,
) -> Result<rustls::ServerConfig, PkiError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .with_client_cert_verifier(Arc::new(CollectorVerifier { trust }))
        .with_cert_resolver(identity);
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// The server's endpoint for people and enrollment: server certificate only.
pub fn client_facing(identity: Arc<ReloadingIdentity>) -> Result<rustls::ServerConfig, PkiError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(identity);
    // HTTP/1.1 too: browsers open the sign-in pages on this endpoint.
    cfg.alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A collector's side of the mutual TLS link.
pub fn collector_client(
    identity: Arc<ReloadingIdentity>,
    trust: Arc<Trust>,
) -> Result<rustls::ClientConfig, PkiError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier { trust }))
        .with_client_cert_resolver(identity);
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// A person's client (or a collector before it has a certificate, when it
/// trusts the bundle): verifies the server, shows no certificate.
pub fn people_client(trust: Arc<Trust>) -> Result<rustls::ClientConfig, PkiError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier { trust }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// Enrollment: trusts the server only through the CA pin.
pub fn pinned_client(ca_pin: &str) -> Result<rustls::ClientConfig, PkiError> {
    let p = ca_pin.trim();
    let valid = p
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && hex::decode(h).is_ok());
    if !valid {
        return Err(PkiError::Invalid(format!(
            "CA pin {p:?} is not sha256:<64 hex digits>; copy it from `dbmon pki token create`"
        )));
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
            pin: p.to_ascii_lowercase(),
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// A client presenting exactly the given chain and key (no checks of our
/// own: `dbmon pki probe` uses it to see what a server refuses).
pub fn probe_client(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    trust: Arc<Trust>,
) -> Result<rustls::ClientConfig, PkiError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier { trust }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| PkiError::Invalid(format!("certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}
