//! Identities carried by dbmon certificates: exactly one URI SAN of the
//! form `spiffe://<trust-domain>/<role>/<name>`.

use std::fmt;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Server,
    Collector,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Collector => "collector",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of a dbmon peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub trust_domain: String,
    pub role: Role,
    pub name: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.trust_domain, self.role, self.name
        )
    }
}

/// A certificate does not carry a usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("certificate has no URI SAN; issue it with `dbmon pki issue`")]
    MissingUri,
    #[error("certificate has {0} URI SANs; a dbmon certificate carries exactly one")]
    SeveralUris(usize),
    #[error("URI SAN {0:?} is not spiffe://<trust-domain>/<server|collector>/<name>")]
    Malformed(String),
    #[error("identity {got} belongs to trust domain {:?}, expected {expected:?}", got.trust_domain)]
    WrongTrustDomain { got: Identity, expected: String },
    #[error("identity {got} is a {}, expected a {expected}", got.role)]
    WrongRole { got: Identity, expected: Role },
}

/// A valid name: what `dbmon pki issue --name` accepts.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

impl Identity {
    pub fn new(trust_domain: &str, role: Role, name: &str) -> Identity {
        Identity {
            trust_domain: trust_domain.to_string(),
            role,
            name: name.to_string(),
        }
    }

    /// Parses `spiffe://td/role/name`.
    pub fn parse(uri: &str) -> Result<Identity, IdentityError> {
        let bad = || IdentityError::Malformed(uri.to_string());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(td), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let role = match role {
            "server" => Role::Server,
            "collector" => Role::Collector,
            _ => return Err(bad()),
        };
        if td.is_empty() || !valid_name(name) {
            return Err(bad());
        }
        Ok(Identity::new(td, role, name))
    }

    /// The identity of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        let uris: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(IdentityError::Parse(e.to_string())),
        };
        match uris.as_slice() {
            [] => Err(IdentityError::MissingUri),
            [one] => Identity::parse(one),
            many => Err(IdentityError::SeveralUris(many.len())),
        }
    }

    /// This identity, if it has the expected trust domain and role.
    pub fn expect(self, trust_domain: &str, role: Role) -> Result<Identity, IdentityError> {
        if self.trust_domain != trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                got: self,
                expected: trust_domain.to_string(),
            });
        }
        if self.role != role {
            return Err(IdentityError::WrongRole {
                got: self,
                expected: role,
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let id = Identity::parse("spiffe://dbmon.local/collector/c1").unwrap();
        assert_eq!(id, Identity::new("dbmon.local", Role::Collector, "c1"));
        assert_eq!(id.to_string(), "spiffe://dbmon.local/collector/c1");
        for bad in [
            "https://x/collector/c1",
            "spiffe://x/admin/c1",
            "spiffe://x/collector",
            "spiffe://x/collector/a/b",
            "spiffe:///server/s",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
        let err = id.clone().expect("dbmon.local", Role::Server).unwrap_err();
        assert_eq!(
            err.to_string(),
            "identity spiffe://dbmon.local/collector/c1 is a collector, expected a server"
        );
    }
}
