//! The deployment's certificate authority: issuing, signing enrollment
//! requests, revoking, listing and inspecting certificates.

use crate::files::{read, write_atomic};
use crate::identity::{Identity, Role, valid_name};
use crate::{PkiError, pin};
use ::time::OffsetDateTime;
use rcgen::PublicKeyData;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long the CA certificate is valid.
pub const CA_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Default lifetime of a server certificate.
pub const SERVER_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Default lifetime of a collector certificate: short, renewed automatically.
pub const COLLECTOR_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "dbmon.local";

/// A loaded CA: its certificate and key, and the directory it lives in.
pub struct Ca {
    dir: PathBuf,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    key: KeyPair,
    pub trust_domain: String,
}

/// A certificate written by [`Ca::issue`].
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub identity: Identity,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// What `dbmon pki list` and `inspect` show of a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub path: PathBuf,
    pub subject: String,
    /// The identity, or why there is none.
    pub identity: Result<Identity, String>,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub usages: Vec<&'static str>,
    pub pin: String,
}

impl CertInfo {
    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn ttl_after(from: OffsetDateTime, ttl: Duration) -> OffsetDateTime {
    from + ::time::Duration::seconds(ttl.as_secs() as i64)
}

/// Path of the files of a leaf of `role` named `name` (the init server is `server`).
pub fn leaf_paths(dir: &Path, role: Role, name: Option<&str>) -> (PathBuf, PathBuf) {
    let base = match name {
        Some(n) => format!("{}.{n}", role.as_str()),
        None => role.as_str().to_string(),
    };
    (
        dir.join(format!("{base}.crt")),
        dir.join(format!("{base}.key")),
    )
}

impl Ca {
    /// Creates the CA in `dir`, with an empty revocation list. Refuses to
    /// replace an existing key unless `force`.
    pub fn init(dir: &Path, trust_domain: &str, force: bool) -> Result<Ca, PkiError> {
        if trust_domain.is_empty() || trust_domain.contains('/') || trust_domain.contains(':') {
            return Err(PkiError::Invalid(format!(
                "trust domain {trust_domain:?} must be a plain domain name, like dbmon.local"
            )));
        }
        let key_path = dir.join("ca.key");
        if !force && key_path.exists() {
            return Err(PkiError::Exists(key_path));
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        // A name of its own, so that another deployment's CA is never
        // mistaken for this one by name.
        let tag = &hex::encode(sha2_digest(&key.subject_public_key_info()))[..8];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("dbmon CA {trust_domain} {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        params.serial_number = Some(random_serial());
        let start = now() - ::time::Duration::minutes(1);
        params.not_before = start;
        params.not_after = ttl_after(start, CA_TTL);
        let cert = params.self_signed(&key)?;
        write_atomic(&key_path, key.serialize_pem().as_bytes(), true, force)?;
        write_atomic(&dir.join("ca.crt"), cert.pem().as_bytes(), false, true)?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            trust_domain: trust_domain.to_string(),
        };
        write_atomic(&dir.join("revoked.json"), b"[]\n", false, true)?;
        ca.write_crl(&[])?;
        Ok(ca)
    }

    /// Loads the CA of `dir`; its key must be 0600.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let cert_pem = String::from_utf8(read(&cert_path)?)
            .map_err(|_| PkiError::Invalid(format!("{} is not PEM text", cert_path.display())))?;
        crate::check_key_permissions(&key_path)?;
        let key_pem = String::from_utf8(read(&key_path)?)
            .map_err(|_| PkiError::Invalid(format!("{} is not PEM text", key_path.display())))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| {
            PkiError::Invalid(format!("{}: not a private key ({e})", key_path.display()))
        })?;
        let der = first_der(&cert_pem).ok_or_else(|| PkiError::NoPem {
            path: cert_path.clone(),
            what: "CERTIFICATE",
        })?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", cert_path.display())))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::Invalid(format!(
                "{} does not match the key in {}; restore the pair or run `dbmon pki init --force`",
                key_path.display(),
                cert_path.display()
            )));
        }
        let trust_domain = uris(&cert)
            .into_iter()
            .find_map(|u| u.strip_prefix("spiffe://").map(str::to_string))
            .ok_or_else(|| {
                PkiError::Invalid(format!(
                    "{} names no spiffe:// trust domain; it was not made by dbmon pki init",
                    cert_path.display()
                ))
            })?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der: der,
            key,
            trust_domain,
        })
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert_der.clone().into(),
            &self.key,
        )?)
    }

    /// The `sha256:` pin of the CA certificate.
    pub fn pin(&self) -> String {
        pin(&self.cert_der)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn leaf_params(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
        ttl: Duration,
    ) -> Result<(CertificateParams, Identity), PkiError> {
        if !valid_name(name) {
            return Err(PkiError::Invalid(format!(
                "name {name:?}: expected letters, digits, '-', '_' or '.', 1 to 63 characters"
            )));
        }
        let identity = Identity::new(&self.trust_domain, role, name);
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| PkiError::Invalid(format!("host names {hosts:?}: {e}")))?;
        params
            .subject_alt_names
            .insert(0, SanType::URI(identity.to_string().try_into()?));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Collector => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        // Backdated a little for clocks that lag, never by more than a
        // quarter of the lifetime (renewal is planned from not_before).
        let now = now();
        let backdate = ::time::Duration::seconds((ttl.as_secs() / 4).min(60) as i64);
        params.not_before = now - backdate;
        params.not_after = ttl_after(now, ttl).min(self.not_after()?);
        Ok((params, identity))
    }

    fn not_after(&self) -> Result<OffsetDateTime, PkiError> {
        let (_, cert) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| PkiError::Invalid(e.to_string()))?;
        Ok(cert.validity().not_after.to_datetime())
    }

    /// Issues a certificate and key for `role` `name` into the CA's
    /// directory. `file_name` None writes `server.crt`/`server.key`.
    pub fn issue(
        &self,
        role: Role,
        name: &str,
        file_name: Option<&str>,
        hosts: &[String],
        ttl: Duration,
        force: bool,
    ) -> Result<Issued, PkiError> {
        let (cert_path, key_path) = leaf_paths(&self.dir, role, file_name);
        if !force && key_path.exists() {
            return Err(PkiError::Exists(key_path));
        }
        let (params, identity) = self.leaf_params(role, name, hosts, ttl)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        write_atomic(&key_path, key.serialize_pem().as_bytes(), true, force)?;
        write_atomic(
            &cert_path,
            format!("{}{}", cert.pem(), self.cert_pem).as_bytes(),
            false,
            true,
        )?;
        Ok(Issued {
            cert_path,
            key_path,
            identity,
            serial: serial_hex(params.serial_number.as_ref()),
            not_after: params.not_after,
        })
    }

    /// Signs a certificate request for `role` `name`. Only the request's key
    /// is used: names, usages and lifetime are the CA's choice. Returns the
    /// certificate followed by the CA certificate (PEM).
    pub fn sign_request(
        &self,
        csr_pem: &str,
        role: Role,
        name: &str,
        ttl: Duration,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            PkiError::Invalid(format!("certificate request is not valid PEM PKCS#10: {e}"))
        })?;
        let (params, _) = self.leaf_params(role, name, &[], ttl)?;
        let req = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = req.signed_by(&self.issuer()?)?;
        Ok(format!("{}{}", cert.pem(), self.cert_pem))
    }

    /// Adds `serial` (hex, as `dbmon pki list` shows it) to the revocation
    /// list and rewrites `ca.crl`.
    pub fn revoke(&self, serial: &str) -> Result<(), PkiError> {
        let serial = serial
            .trim()
            .trim_start_matches("0x")
            .to_ascii_lowercase()
            .replace(':', "");
        if serial.is_empty() || hex::decode(&serial).is_err() {
            return Err(PkiError::Invalid(format!(
                "serial {serial:?} is not hexadecimal; copy it from `dbmon pki list`"
            )));
        }
        let mut revoked = self.revoked()?;
        if !revoked.iter().any(|(s, _)| *s == serial) {
            revoked.push((serial, now().unix_timestamp()));
        }
        let json =
            serde_json::to_vec_pretty(&revoked).map_err(|e| PkiError::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("revoked.json"), &json, false, true)?;
        self.write_crl(&revoked)
    }

    /// Revoked serials and when.
    pub fn revoked(&self) -> Result<Vec<(String, i64)>, PkiError> {
        let path = self.dir.join("revoked.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(PkiError::Read { path, source }),
        }
    }

    fn write_crl(&self, revoked: &[(String, i64)]) -> Result<(), PkiError> {
        let number: [u8; 8] = (now().unix_timestamp_nanos() as u64).to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update: now() - ::time::Duration::minutes(1),
            next_update: now() + ::time::Duration::days(365),
            crl_number: SerialNumber::from_slice(&number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(s, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(s).unwrap_or_default()),
                    revocation_time: OffsetDateTime::from_unix_timestamp(*at)
                        .unwrap_or_else(|_| now()),
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        write_atomic(&self.dir.join("ca.crl"), crl.pem()?.as_bytes(), false, true)
    }

    /// Every certificate in the directory, sorted by file name.
    pub fn list(&self) -> Result<Vec<CertInfo>, PkiError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| PkiError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(inspect(&p)?);
        }
        Ok(out)
    }
}

fn sha2_digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn serial_hex(s: Option<&SerialNumber>) -> String {
    s.map(|s| hex::encode(s.to_bytes())).unwrap_or_default()
}

/// The DER of the first certificate in a PEM text.
pub fn first_der(pem: &str) -> Option<Vec<u8>> {
    all_der(pem).into_iter().next()
}

/// The DER of every certificate in a PEM text, in order.
pub fn all_der(pem: &str) -> Vec<Vec<u8>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads the first certificate of a PEM file.
pub fn inspect(path: &Path) -> Result<CertInfo, PkiError> {
    let pem = String::from_utf8(read(path)?)
        .map_err(|_| PkiError::Invalid(format!("{} is not PEM text", path.display())))?;
    let der = first_der(&pem).ok_or_else(|| PkiError::NoPem {
        path: path.to_path_buf(),
        what: "CERTIFICATE",
    })?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display())))?;
    let is_ca = cert.is_ca();
    let identity = if is_ca {
        Err(format!(
            "CA of trust domain {}",
            uris(&cert)
                .first()
                .map(|u| u.trim_start_matches("spiffe://"))
                .unwrap_or("?")
        ))
    } else {
        Identity::from_der(&der).map_err(|e| e.to_string())
    };
    let mut usages = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.push("server auth");
        }
        if eku.value.client_auth {
            usages.push("client auth");
        }
    }
    if is_ca {
        usages.push("CA");
    }
    Ok(CertInfo {
        path: path.to_path_buf(),
        subject: cert.subject().to_string(),
        identity,
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca,
        usages,
        pin: pin(&der),
    })
}

/// A new private key (PEM) and a certificate request for it (PEM). The
/// request carries no names: the CA decides them.
pub fn new_key_and_request() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "test.local", false).unwrap();
        assert!(
            matches!(
                Ca::init(dir.path(), "test.local", false),
                Err(PkiError::Exists(_))
            ),
            "no overwrite without force"
        );
        let s = ca
            .issue(
                Role::Server,
                "srv",
                None,
                &["localhost".into(), "127.0.0.1".into()],
                SERVER_TTL,
                false,
            )
            .unwrap();
        assert_eq!(s.identity.to_string(), "spiffe://test.local/server/srv");
        let c = ca
            .issue(Role::Collector, "c1", Some("c1"), &[], COLLECTOR_TTL, false)
            .unwrap();
        assert_eq!(c.cert_path, dir.path().join("collector.c1.crt"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&c.key_path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Ca::load(dir.path()).unwrap();
        assert_eq!(loaded.trust_domain, "test.local");
        let list = loaded.list().unwrap();
        assert_eq!(list.len(), 3, "ca, collector, server");
        let info = list.iter().find(|i| i.path == c.cert_path).unwrap();
        assert_eq!(info.serial, c.serial);
        assert_eq!(info.usages, vec!["client auth"]);
        assert!((6..=7).contains(&info.days_left(now().unix_timestamp())));
        loaded.revoke(&c.serial).unwrap();
        assert_eq!(loaded.revoked().unwrap().len(), 1);
        assert!(loaded.revoke("xyz").is_err());
    }

    #[test]
    fn signs_a_request_with_its_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "test.local", false).unwrap();
        let key = KeyPair::generate().unwrap();
        // The request asks for a server identity; the CA gives what it decides.
        let mut p = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        p.subject_alt_names.push(SanType::URI(
            "spiffe://test.local/server/evil".try_into().unwrap(),
        ));
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let pem = ca
            .sign_request(&csr, Role::Collector, "c2", COLLECTOR_TTL)
            .unwrap();
        let der = first_der(&pem).unwrap();
        assert_eq!(
            Identity::from_der(&der).unwrap().to_string(),
            "spiffe://test.local/collector/c2"
        );
        assert_eq!(all_der(&pem).len(), 2, "certificate then CA");
    }
}
