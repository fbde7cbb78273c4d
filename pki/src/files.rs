//! Writing certificates and keys: keys 0600, never overwritten by
//! accident, replaced atomically so a reader never sees half a file.

use crate::PkiError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `data` to `path` through a temporary file and a rename. With
/// `private`, the file is 0600. Without `overwrite`, an existing file is an
/// error that says how to proceed.
pub fn write_atomic(
    path: &Path,
    data: &[u8],
    private: bool,
    overwrite: bool,
) -> Result<(), PkiError> {
    // Without file modes (Windows) the file takes its directory's ACL.
    #[cfg(not(unix))]
    let _ = private;
    if !overwrite && path.exists() {
        return Err(PkiError::Exists(path.to_path_buf()));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let werr = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp).map_err(werr)?;
        f.write_all(data).map_err(werr)?;
        f.sync_all().map_err(werr)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(werr)?;
    }
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Reads a whole file, naming it on error.
pub fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}
