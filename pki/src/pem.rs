//! Reading PEM material given to dbmon (a cluster's CA bundle, a client
//! certificate and its key) with errors that name the file and say what to do.

use std::path::{Path, PathBuf};

/// A certificate or key file is missing, unreadable, malformed or exposed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what} block; expected a file with -----BEGIN {what}-----")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("key file {path} is readable by group or others (mode {mode:o}); run chmod 600 {path}")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{0} exists; pass --force to replace it (the old key is lost)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Invalid(format!("certificate operation failed: {e}"))
    }
}

/// Reads a PEM file holding one or more certificates (a CA bundle).
pub fn read_certificates(path: &Path) -> Result<Vec<u8>, PkiError> {
    let pem = read(path)?;
    if !contains_block(&pem, "CERTIFICATE") {
        return Err(PkiError::NoPem {
            path: path.to_path_buf(),
            what: "CERTIFICATE",
        });
    }
    Ok(pem)
}

/// Reads a client certificate and its private key, refusing a key that
/// group or others can read. Returns certificate and key PEM concatenated.
pub fn read_identity(cert: &Path, key: &Path) -> Result<Vec<u8>, PkiError> {
    let mut pem = read_certificates(cert)?;
    check_key_permissions(key)?;
    let key_pem = read(key)?;
    if !contains_block(&key_pem, "PRIVATE KEY") {
        return Err(PkiError::NoPem {
            path: key.to_path_buf(),
            what: "PRIVATE KEY",
        });
    }
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    Ok(pem)
}

/// Fails when `path` is readable or writable by group or others.
pub fn check_key_permissions(path: &Path) -> Result<(), PkiError> {
    // Without file modes (Windows) the key's directory ACL decides.
    #[cfg(not(unix))]
    let _ = path;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| PkiError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PkiError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `pem` has a `-----BEGIN ...<what>-----` line (e.g. "EC PRIVATE KEY").
fn contains_block(pem: &[u8], what: &str) -> bool {
    String::from_utf8_lossy(pem).lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with(&format!("{what}-----"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_blocks() {
        assert!(contains_block(
            b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n",
            "CERTIFICATE"
        ));
        assert!(contains_block(
            b"-----BEGIN EC PRIVATE KEY-----\n",
            "PRIVATE KEY"
        ));
        assert!(!contains_block(b"hello", "CERTIFICATE"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read_certificates(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.crt"), "{e}");
    }
}
