//! The `client:` section: where `dbmon-client` finds the server.

use crate::server::DEFAULT_GRPC_ADDR;
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::PathBuf;

/// Where `dbmon-client` finds the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    /// CA certificate(s) that the server's certificate chains to.
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: format!("https://{DEFAULT_GRPC_ADDR}"),
            ca_file: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    server: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
}

/// The `client:` section alone; the rest of the file is not looked at.
#[derive(Deserialize)]
pub(crate) struct ClientOnly {
    pub client: Option<RawClient>,
}

impl Validator<'_> {
    /// Applies the `client:` section over the defaults in `out`.
    pub(crate) fn client(&mut self, c: RawClient, out: &mut ClientConfig) {
        if let Some(s) = c
            .server
            .as_ref()
            .and_then(|s| self.endpoint(s, "client.server"))
        {
            out.server = s;
        }
        out.ca_file = c.ca_file.map(|p| p.value);
    }
}
