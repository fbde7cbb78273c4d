//! One reloader of certificates for the server and the collector: it
//! watches a certificate with its key and a trust bundle (with its
//! revocation list), reloads them when their files change (checked every
//! second) or at once on SIGHUP, and publishes every reload through a
//! `tokio::sync::watch` channel. The rustls configurations read the current
//! material on each handshake, so open connections stay up and new ones use
//! the new files; a broken new file is refused and the old one kept.

use crate::tls::{ReloadingIdentity, Trust};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the files' modification times are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What was reloaded, as published to subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reloads {
    /// Times the certificate was reloaded.
    pub certificate: u64,
    /// Times the trust bundle or revocation list was reloaded.
    pub trust: u64,
}

/// Watches one identity and one trust bundle.
pub struct CertificateReloader {
    identity: Arc<ReloadingIdentity>,
    trust: Arc<Trust>,
    /// Names the owner in logs: "server", "collector".
    owner: &'static str,
}

impl CertificateReloader {
    pub fn new(
        identity: Arc<ReloadingIdentity>,
        trust: Arc<Trust>,
        owner: &'static str,
    ) -> CertificateReloader {
        CertificateReloader {
            identity,
            trust,
            owner,
        }
    }

    /// Runs until `shutdown` turns true; the receiver sees every reload.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<Reloads> {
        let (tx, rx) = watch::channel(Reloads::default());
        tokio::spawn(async move {
            let mut hup = hangups();
            while let Some(forced) = tick(&mut hup, &mut shutdown).await {
                let mut now = *tx.borrow();
                if self.check(forced, &mut now) {
                    tx.send_replace(now);
                }
            }
        });
        rx
    }

    /// Reloads what changed (everything when `forced`); true when anything
    /// was reloaded.
    fn check(&self, forced: bool, counts: &mut Reloads) -> bool {
        let owner = self.owner;
        let mut any = false;
        let id = if forced {
            self.identity.reload().map(|_| true)
        } else {
            self.identity.reload_if_changed()
        };
        match id {
            Ok(true) => {
                counts.certificate += 1;
                any = true;
                tracing::info!(owner, certificate = %self.identity.cert_path().display(), identity = %self.identity.identity(), "{owner} certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(owner, error = %e, "new {owner} certificate refused; keeping the current one")
            }
        }
        match self.trust.reload_if_changed() {
            Ok(true) => {
                counts.trust += 1;
                any = true;
                tracing::info!(owner, "trust bundle or revocation list reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(owner, error = %e, "new trust bundle or revocation list refused; keeping the current one")
            }
        }
        any
    }
}

/// Wakes when a file's modification time changes (looked at every second)
/// or on SIGHUP: what reloads a configuration file waits on.
pub struct Trigger {
    path: std::path::PathBuf,
    seen: Option<std::time::SystemTime>,
    hup: Option<Hangups>,
}

/// SIGHUP's stream where there is one; elsewhere (Windows) there is none,
/// and only the file changing wakes a reload.
#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = std::convert::Infallible;

/// Why a [`Trigger`] woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Hangup,
    FileChanged,
}

impl Cause {
    pub fn describe(self) -> &'static str {
        match self {
            Cause::Hangup => "SIGHUP",
            Cause::FileChanged => "the file changed",
        }
    }
}

impl Trigger {
    pub fn new(path: std::path::PathBuf) -> Trigger {
        let seen = modified(&path);
        Trigger {
            path,
            seen,
            hup: hangups(),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The next cause to reload; None once `shutdown` turns true.
    pub async fn next(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Cause> {
        loop {
            let forced = tick(&mut self.hup, shutdown).await?;
            let now = modified(&self.path);
            let changed = now != self.seen;
            self.seen = now;
            if forced {
                return Some(Cause::Hangup);
            }
            if changed {
                return Some(Cause::FileChanged);
            }
        }
    }
}

/// SIGHUP, when this process can listen for it.
#[cfg(unix)]
fn hangups() -> Option<Hangups> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Option<Hangups> {
    None
}

#[cfg(unix)]
async fn hangup(h: &mut Hangups) {
    h.recv().await;
}

#[cfg(not(unix))]
async fn hangup(h: &mut Hangups) {
    match *h {}
}

/// Waits a second or for SIGHUP: Some(true) on the signal, Some(false) on
/// the second, None once `shutdown` turns true.
async fn tick(hup: &mut Option<Hangups>, shutdown: &mut watch::Receiver<bool>) -> Option<bool> {
    tokio::select! {
        _ = tokio::time::sleep(CHECK_EVERY) => Some(false),
        _ = async {
            match hup.as_mut() {
                Some(h) => hangup(h).await,
                None => std::future::pending().await,
            }
        } => Some(true),
        _ = shutdown.wait_for(|s| *s) => None,
    }
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The outcome of the last reload, for `/healthz` and logs.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Unix milliseconds of the last attempt; 0 before any.
    pub at_ms: i64,
    pub ok: bool,
    /// What changed, or why the file was refused.
    pub detail: String,
    /// Reloads applied since the start.
    pub applied: u64,
}

impl ReloadStatus {
    /// A reload applied: what changed.
    pub fn applied(detail: String) -> ReloadStatus {
        ReloadStatus {
            ok: true,
            detail,
            ..ReloadStatus::default()
        }
    }

    /// A reload refused: why (the first `shown` problems and how many more).
    pub fn refused(problems: &[String], shown: usize) -> ReloadStatus {
        let first = problems[..problems.len().min(shown)].join("; ");
        let more = problems.len().saturating_sub(shown);
        ReloadStatus {
            ok: false,
            detail: if more > 0 {
                format!("{first} (and {more} more)")
            } else {
                first
            },
            ..ReloadStatus::default()
        }
    }

    /// Records `outcome` as the last attempt, now.
    pub fn record(&mut self, outcome: ReloadStatus, now_ms: i64) {
        let applied = self.applied + u64::from(outcome.ok);
        *self = ReloadStatus {
            at_ms: now_ms,
            applied,
            ..outcome
        };
    }

    /// One line for `/healthz`, once a reload was tried (None before).
    pub fn line(&self) -> Option<String> {
        if self.at_ms == 0 {
            return None;
        }
        let when = humantime::format_rfc3339_seconds(
            std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(self.at_ms.max(0) as u64),
        );
        Some(if self.ok {
            format!("configuration reloaded at {when}: {}", self.detail)
        } else {
            format!(
                "configuration reload refused at {when}, the running one stays: {}",
                self.detail
            )
        })
    }
}
