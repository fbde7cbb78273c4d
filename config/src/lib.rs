//! Typed YAML configuration shared by dbmon's server, collector and client.
//!
//! One file describes the clusters to watch and how the parts find each
//! other. Loading goes in two passes: serde reads the YAML into raw structs
//! whose values keep their source location ([`serde_saphyr::Spanned`]), then
//! each section's validator turns them into the typed [`Config`], recording
//! *every* problem it finds with its file, line, column and field and going
//! on, instead of stopping at the first. Structural errors (an unknown
//! field, a mapping where a list belongs) are found by serde; each section
//! and each cluster entry is then read on its own so that one broken part
//! does not hide the errors of the others. A value of the wrong type (a
//! negative count, text where a flag belongs) is read leniently and reported
//! with its field and the type expected.
//!
//! One module per section, each with its types, defaults and checks:
//! [`server`], [`collector`], [`client`], [`cluster`]. Connector kinds and
//! their checks are not known here (they live in the collector, above this
//! crate): callers pass a [`Catalog`] describing them.

mod alerting;
mod client;
mod cluster;
mod collector;
mod error;
pub mod expr;
mod http;
mod presets;
mod raw;
mod secret;
mod server;
mod validate;

pub use alerting::{
    AlertRule, AlertWhen, AlertingConfig, EmailConfig, HealthState, MaintenanceWindow, Matchers,
    ReceiverConfig, ReceiverKind, Severity, SmtpTls, glob,
};
pub use client::ClientConfig;
pub use cluster::{
    AuthConfig, Catalog, CheckConfig, CheckSpec, ClusterConfig, Direction, Level, Protocol,
    Section, TlsConfig, valid_name as valid_cluster_name,
};
pub use collector::CollectorConfig;
pub use error::{ConfigError, ConfigErrors};
pub use http::{Aggregate, DefinedCheck, Definition, Format, Request, RequestBody};
pub use secret::{HeaderValue, SecretError, SecretRef};
pub use server::{
    AuthSettings, DEFAULT_COLLECTOR_ADDR, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, ServerConfig,
    ServerTls, SharedStore,
};

use std::path::Path;
use validate::Validator;

/// The whole configuration of one deployment.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub collector: CollectorConfig,
    pub client: ClientConfig,
    pub clusters: Vec<ClusterConfig>,
    /// Alert rules, receivers and maintenance windows.
    pub alerting: AlertingConfig,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path, catalog: &dyn Catalog) -> Result<Config, ConfigErrors> {
        Self::parse(&read_file(path)?, path, catalog)
    }

    /// Validates `text`; `file` names it in error messages.
    pub fn parse(text: &str, file: &Path, catalog: &dyn Catalog) -> Result<Config, ConfigErrors> {
        let mut v = Validator::new(file);
        let mut config = Config::embedded_default();
        if let Some(raw) = raw::read(text, &mut v) {
            if let Some((s, offset)) = raw.server {
                v.line_offset = offset;
                v.server(s, &mut config.server);
            }
            if let Some((c, offset)) = raw.collector {
                v.line_offset = offset;
                v.collector(c, &mut config.collector);
            }
            if let Some((c, offset)) = raw.client {
                v.line_offset = offset;
                v.client(c, &mut config.client);
            }
            v.line_offset = 0;
            config.clusters = v.clusters(raw.clusters, catalog);
            config.alerting = v.alerting(
                raw.receivers.into_iter().flatten().collect(),
                raw.alerts.into_iter().flatten().collect(),
                raw.maintenance.into_iter().flatten().collect(),
            );
        }
        let errors = v.into_errors();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads only the `client:` section of a file, for `dbmon-client`.
    /// Other sections are left to `dbmon config check`.
    pub fn load_client(path: &Path) -> Result<ClientConfig, ConfigErrors> {
        let text = read_file(path)?;
        let mut v = Validator::new(path);
        let mut client = ClientConfig::default();
        match serde_saphyr::from_str::<client::ClientOnly>(&text) {
            Ok(client::ClientOnly { client: Some(c) }) => v.client(c, &mut client),
            Ok(_) => {}
            Err(e) => v.serde_error(&e, "client", 0),
        }
        let errors = v.into_errors();
        if errors.is_empty() {
            Ok(client)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The configuration used when none is given: a server and collector on
    /// loopback and no clusters.
    pub fn embedded_default() -> Config {
        Config {
            server: ServerConfig::default(),
            collector: CollectorConfig::default(),
            client: ClientConfig::default(),
            clusters: Vec::new(),
            alerting: AlertingConfig::default(),
        }
    }
}

fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::whole_file(
            path,
            format!("cannot read the configuration file: {e}"),
        )])
    })
}

/// Bytes in a size written as a number and an optional unit (B, KB, MB,
/// GB, KiB, MiB, GiB).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}
