//! The client's token: where it is kept, how it rides on calls, and the
//! commands that get, show, narrow and end it.
//!
//! A token comes from `DBMON_TOKEN` when set, else from the file `login`
//! wrote for that server: `$XDG_CONFIG_HOME/dbmon/tokens/<server>` (or
//! `~/.config/...`), mode 0600 in a 0700 directory.

use anyhow::{Context, Result, bail};
use dbmon_auth::caveat::{Caveat, format_ms};
use dbmon_auth::perms::Op;
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

pub const TOKEN_ENV: &str = "DBMON_TOKEN";

/// Adds the token to every call.
#[derive(Clone)]
pub struct WithToken(pub Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert(dbmon_auth::METADATA_KEY, t.clone());
        }
        Ok(req)
    }
}

/// Adds `token` to a metadata map (for callers that build requests).
pub fn attach(md: &mut MetadataMap, token: &str) -> Result<()> {
    md.insert(
        dbmon_auth::METADATA_KEY,
        token
            .parse()
            .context("the token has characters a header cannot carry")?,
    );
    Ok(())
}

fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    // Windows: the user's roaming profile, private to them.
    #[cfg(windows)]
    if let Some(d) = std::env::var_os("APPDATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config")),
        None => bail!(
            "neither XDG_CONFIG_HOME nor HOME is set: no place to keep the token; set {TOKEN_ENV} instead"
        ),
    }
}

/// The file holding the token for `server`.
pub fn token_path(server: &str) -> Result<PathBuf> {
    let name: String = server
        .trim_end_matches('/')
        .split("://")
        .last()
        .unwrap_or(server)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(config_dir()?.join("dbmon").join("tokens").join(name))
}

/// Where the token came from, for messages.
pub enum Source {
    Env,
    File(PathBuf),
}

/// The token for `server`, if there is one.
pub fn load(server: &str) -> Result<Option<(String, Source)>> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(Some((t, Source::Env)));
        }
    }
    let path = match token_path(server) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            // On Windows the file sits in the user's profile, whose ACL
            // keeps other users out; there are no mode bits to check.
            #[cfg(unix)]
            {
                let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    bail!(
                        "{} has mode {mode:o}; a token is a secret: run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
            Ok(Some((t.trim().to_string(), Source::File(path))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The interceptor for calls to `server`.
pub fn interceptor(server: &str) -> Result<WithToken> {
    match load(server)? {
        Some((t, src)) => WithToken::new(&t, &src),
        None => Ok(WithToken(None)),
    }
}

impl WithToken {
    /// `token` (from `src`, for the message) on every call.
    pub fn new(token: &str, src: &Source) -> Result<WithToken> {
        let v = token.parse().map_err(|_| {
            anyhow::anyhow!(
                "the token from {} has characters a header cannot carry; run `dbmon-client login`",
                describe(src)
            )
        })?;
        Ok(WithToken(Some(v)))
    }
}

pub fn describe(src: &Source) -> String {
    match src {
        Source::Env => TOKEN_ENV.to_string(),
        Source::File(p) => p.display().to_string(),
    }
}

/// Writes the token for `server` (0600, directories 0700, atomically).
pub fn save(server: &str, token: &str) -> Result<PathBuf> {
    let path = token_path(server)?;
    let dir = path.parent().expect("a token path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    for d in [dir, dir.parent().unwrap_or(dir)] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(true).write(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Removes the stored token of `server`; true if there was one.
pub fn forget(server: &str) -> Result<bool> {
    let path = token_path(server)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// The caveats of `token attenuate`.
pub fn caveats(clusters: &[String], ttl: Option<&str>, ops: &[String]) -> Result<Vec<Caveat>> {
    let mut out = Vec::new();
    if !clusters.is_empty() {
        out.push(Caveat::Clusters(clusters.iter().cloned().collect()));
    }
    if let Some(ttl) = ttl {
        let d: Duration = humantime::parse_duration(ttl)
            .with_context(|| format!("--ttl {ttl:?}: expected a duration like 30m or 1h"))?;
        out.push(Caveat::Expires(
            dbmon_proto::now_ms() + d.as_millis() as i64,
        ));
    }
    if !ops.is_empty() {
        let mut set = std::collections::BTreeSet::new();
        for o in ops.iter().flat_map(|o| o.split(',')) {
            set.insert(
                Op::parse(o.trim()).ok_or_else(|| {
                    anyhow::anyhow!("--ops {o:?}: expected read, watch or sessions")
                })?,
            );
        }
        out.push(Caveat::Ops(set));
    }
    if out.is_empty() {
        bail!(
            "give at least one of --cluster, --ttl or --ops: a token is only narrowed, never widened"
        );
    }
    Ok(out)
}

/// One line per caveat, for people.
pub fn explain(caveat: &str) -> String {
    match Caveat::parse(caveat) {
        Ok(Caveat::Expires(ms)) => format!("expires {}", format_ms(ms)),
        Ok(c) => c.to_text(),
        Err(e) => format!("{caveat} ({e})"),
    }
}
