//! Secrets by reference: a file path or an environment variable, never the
//! secret itself in the configuration.

use std::fmt;
use std::path::PathBuf;

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Env(v) => write!(f, "env:{v}"),
        }
    }
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}; check the path and its permissions")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret file {path} is readable by group or others (mode {mode:o}); run chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("environment variable {0} is not set; export it or use file: instead")]
    Env(String),
    #[error("secret from {0:?} is empty")]
    Empty(SecretRef),
}

impl SecretRef {
    /// Reads the secret, trimming one trailing newline. A file must not be
    /// readable by group or others.
    pub fn resolve(&self) -> Result<String, SecretError> {
        let value = match self {
            SecretRef::File(path) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let meta = std::fs::metadata(path).map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?;
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        return Err(SecretError::Permissions {
                            path: path.clone(),
                            mode,
                        });
                    }
                }
                std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?
            }
            SecretRef::Env(var) => std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?,
        };
        let value = value
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&value)
            .to_string();
        if value.is_empty() {
            return Err(SecretError::Empty(self.clone()));
        }
        Ok(value)
    }
}

/// A header value: plain text, or a secret by reference.
#[derive(Debug, Clone)]
pub enum HeaderValue {
    Plain(String),
    Secret(SecretRef),
}
