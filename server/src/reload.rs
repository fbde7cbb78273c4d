//! Reloading what the server can without a restart, on SIGHUP or when its
//! configuration file changes: which collector may publish which clusters
//! (`server.assignments`), the lifetime of new logins
//! (`server.auth.session_ttl`), and the alerting sections (`receivers:`,
//! `alerts:`, `maintenance:`, and the clusters' labels they match). A file
//! with errors, or a receiver that cannot be built, is refused with the
//! errors logged, and the running configuration stays. Other server
//! settings (addresses, TLS, stores) need a restart; a change to them is
//! logged as such. The outcome is on `/healthz`.

use crate::service::Services;
use dbmon_config::{Config, ConfigErrors, ServerConfig};
use dbmon_pki::reload::{ReloadStatus, Trigger};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Loads and checks a configuration file.
pub type Loader = dyn Fn(&Path) -> Result<Config, ConfigErrors> + Send + Sync;

/// Reads the configuration again: the file, and how to load it (the
/// binary knows the connector kinds the file's clusters are checked against).
pub struct Reloader {
    pub file: PathBuf,
    pub load: Arc<Loader>,
}

/// The server settings a reload cannot apply, as text to compare.
fn restart_only(s: &ServerConfig) -> String {
    let mut s = s.clone();
    s.assignments.clear();
    s.auth.session_ttl = std::time::Duration::ZERO;
    format!("{s:?}")
}

pub(crate) async fn watch_file(
    r: Reloader,
    started: ServerConfig,
    services: Services,
    passkeys: Arc<dbmon_auth::passkey::Passkeys>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut trigger = Trigger::new(r.file.clone());
    let mut fixed = restart_only(&started);
    while let Some(cause) = trigger.next(&mut shutdown).await {
        let why = cause.describe();
        let file = r.file.display().to_string();
        let outcome = match (r.load)(&r.file) {
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("{e}");
                }
                tracing::error!(%file, errors = errors.0.len(), "configuration not reloaded ({why}): the running one stays");
                let problems: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                ReloadStatus::refused(&problems, 3)
            }
            Ok(cfg) => match services.alerting.reconfigure(
                &cfg.alerting,
                &cfg.clusters,
                &services.cache,
                &shutdown,
            ) {
                Err(e) => {
                    tracing::error!(%file, error = %e, "configuration not reloaded ({why}): the running one stays");
                    ReloadStatus::refused(&[e.to_string()], 1)
                }
                Ok(alerting) => {
                    *services
                        .assignments
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = cfg.server.assignments.clone();
                    passkeys.set_session_ttl(cfg.server.auth.session_ttl.as_millis() as i64);
                    *services.public.write().unwrap_or_else(|e| e.into_inner()) =
                        crate::public_clusters(&cfg.clusters);
                    let now = restart_only(&cfg.server);
                    if now != fixed {
                        tracing::warn!(%file, "server settings other than assignments and auth.session_ttl changed; restart the server to apply them");
                        fixed = now;
                    }
                    let detail = format!(
                        "assignments for {} collector(s), {} public badge(s), session_ttl {}, alerting: {alerting}",
                        cfg.server.assignments.len(),
                        crate::public_clusters(&cfg.clusters).len(),
                        humantime::format_duration(cfg.server.auth.session_ttl)
                    );
                    tracing::info!(%file, "configuration reloaded ({why}): {detail}");
                    ReloadStatus::applied(detail)
                }
            },
        };
        services
            .reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(outcome, dbmon_proto::now_ms());
    }
}
