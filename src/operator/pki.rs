//! `dbmon pki`: the deployment's CA, certificates, join tokens, and
//! probing a server with a certificate.

use super::{date, duration};
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use dbmon_pki::{Ca, Role};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Server,
    Collector,
}

#[derive(Subcommand)]
pub enum PkiCmd {
    /// Create the CA (ca.crt, ca.key) and a server certificate (server.crt, server.key).
    Init {
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
        /// Trust domain of every identity, spiffe://<trust-domain>/...
        #[arg(long, default_value = dbmon_pki::ca::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// DNS names and IP addresses the server is reached at (repeatable).
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
        /// Name of the server identity.
        #[arg(long, default_value = "server")]
        name: String,
        /// Replace an existing CA key (every certificate it signed stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate and its key: server.crt, or collector.NAME.crt.
    Issue {
        kind: Kind,
        #[arg(long)]
        name: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
        /// DNS names and IP addresses, for server certificates.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Lifetime, like 7d or 12h (defaults: collector 7d, server 365d).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Every certificate in the directory: identity, serial, expiry, days left.
    List {
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
    /// Show one certificate file.
    Inspect { file: PathBuf },
    /// Revoke a certificate by serial; servers refuse it once they reload (on change or SIGHUP).
    Revoke {
        serial: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
    /// One-time join tokens for enrolling collectors.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Check whether a server's collector endpoint accepts a certificate
    /// (or none), and say why not.
    Probe {
        /// Collector endpoint, https://HOST:PORT.
        url: String,
        /// CA certificate to verify the server with.
        #[arg(long)]
        ca: PathBuf,
        /// Certificate to present (with --key).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Print a join token for one collector, and the CA pin it must check.
    Create {
        #[arg(long)]
        collector: String,
        #[arg(long, default_value = "15m")]
        ttl: String,
        #[arg(long, env = "DBMON_PKI_DIR", default_value = "pki")]
        dir: PathBuf,
    },
}

pub fn pki(cmd: PkiCmd) -> Result<()> {
    match cmd {
        PkiCmd::Init {
            dir,
            trust_domain,
            hosts,
            name,
            force,
        } => {
            let ca = Ca::init(&dir, &trust_domain, force)?;
            let server = ca.issue(
                Role::Server,
                &name,
                None,
                &hosts,
                dbmon_pki::ca::SERVER_TTL,
                force,
            )?;
            println!(
                "CA:      {} (key {})",
                dir.join("ca.crt").display(),
                dir.join("ca.key").display()
            );
            println!("pin:     {}", ca.pin());
            println!(
                "server:  {} for {} ({})",
                server.cert_path.display(),
                server.identity,
                hosts.join(", ")
            );
            println!("revoked: {}", dir.join("ca.crl").display());
        }
        PkiCmd::Issue {
            kind,
            name,
            dir,
            hosts,
            ttl,
            force,
        } => {
            let ca = Ca::load(&dir)?;
            let (role, default_ttl) = match kind {
                Kind::Server => (Role::Server, dbmon_pki::ca::SERVER_TTL),
                Kind::Collector => (Role::Collector, dbmon_pki::ca::COLLECTOR_TTL),
            };
            let ttl = ttl
                .map(|t| duration(&t, "--ttl"))
                .transpose()?
                .unwrap_or(default_ttl);
            // A server's files are server.crt/.key (one server per directory);
            // collectors' are collector.NAME.crt/.key, made here and handed out.
            let file = match role {
                Role::Server => None,
                Role::Collector => Some(name.as_str()),
            };
            let issued = ca.issue(role, &name, file, &hosts, ttl, force)?;
            println!(
                "{} for {} (serial {}, valid until {})",
                issued.cert_path.display(),
                issued.identity,
                issued.serial,
                date(issued.not_after.unix_timestamp())
            );
        }
        PkiCmd::List { dir } => {
            let ca = Ca::load(&dir)?;
            let revoked: Vec<String> = ca.revoked()?.into_iter().map(|(s, _)| s).collect();
            let now = dbmon_proto::now_ms() / 1000;
            println!(
                "{:<28} {:<45} {:<34} {:<22} DAYS LEFT",
                "FILE", "IDENTITY", "SERIAL", "NOT AFTER"
            );
            for c in ca.list()? {
                let file = c
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let id = match &c.identity {
                    Ok(id) => id.to_string(),
                    Err(e) => e.clone(),
                };
                let days = if revoked.contains(&c.serial) {
                    "revoked".to_string()
                } else {
                    c.days_left(now).to_string()
                };
                println!(
                    "{file:<28} {id:<45} {:<34} {:<22} {days}",
                    c.serial,
                    date(c.not_after)
                );
            }
        }
        PkiCmd::Inspect { file } => {
            let c = dbmon_pki::ca::inspect(&file)?;
            let now = dbmon_proto::now_ms() / 1000;
            println!("file:       {}", c.path.display());
            println!("subject:    {}", c.subject);
            match &c.identity {
                Ok(id) => println!("identity:   {id}"),
                Err(e) => println!("identity:   none ({e})"),
            }
            println!("usage:      {}", c.usages.join(", "));
            println!("serial:     {}", c.serial);
            println!("not before: {}", date(c.not_before));
            println!(
                "not after:  {} ({} days left)",
                date(c.not_after),
                c.days_left(now)
            );
            println!("pin:        {}", c.pin);
        }
        PkiCmd::Revoke { serial, dir } => {
            let ca = Ca::load(&dir)?;
            ca.revoke(&serial)?;
            println!(
                "revoked {serial}; servers refuse it once they reload {} (on change, or SIGHUP)",
                dir.join("ca.crl").display()
            );
        }
        PkiCmd::Probe { .. } => unreachable!("handled with a runtime"),
        PkiCmd::Token {
            command:
                TokenCmd::Create {
                    collector,
                    ttl,
                    dir,
                },
        } => {
            let ca = Ca::load(&dir)?;
            let ttl = duration(&ttl, "--ttl")?;
            let token = dbmon_pki::tokens::TokenStore::new(&dir).create(&collector, ttl)?;
            println!("token:   {token}");
            println!("ca pin:  {}", ca.pin());
            println!(
                "expires: in {}, after one use",
                humantime::format_duration(ttl)
            );
            println!(
                "\nOn the collector's machine (the token is a secret: keep it out of shell history and argv):"
            );
            println!("  printf '%s' \"$TOKEN\" > join-token && chmod 600 join-token");
            println!(
                "  dbmon collector --config dbmon.yaml --join-token-file join-token --ca-pin {}",
                ca.pin()
            );
        }
    }
    Ok(())
}

/// Connects to a collector endpoint with (or without) a certificate and
/// makes one call; what the server thinks of the certificate.
pub async fn probe(
    url: &str,
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<String> {
    use dbmon_proto::v1::CertificateRequest;
    use dbmon_proto::v1::ingest_client::IngestClient;
    let td = dbmon_pki::trust_domain_of(ca)?;
    let trust = dbmon_pki::tls::Trust::load(ca, None, &td)?;
    let cfg = match (cert, key) {
        (Some(c), Some(k)) => {
            // Presented as is: probing is for finding out what the server refuses.
            let pem = dbmon_pki::read_identity(c, k)?;
            probe_config(&pem, trust)?
        }
        _ => dbmon_pki::tls::people_client(trust)?,
    };
    let channel =
        dbmon_pki::transport::channel(url, std::sync::Arc::new(cfg), Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    match IngestClient::new(channel)
        .renew(CertificateRequest {
            csr_pem: String::new(),
        })
        .await
    {
        Ok(_) => Ok("the call went through".into()),
        // The service itself answered (it wants a real request, or holds no
        // CA key): the TLS link and the certificate were accepted.
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            Ok(format!(
                "the server answered the call ({:?}: {})",
                s.code(),
                s.message()
            ))
        }
        Err(s) if s.code() == tonic::Code::PermissionDenied => Err(anyhow::anyhow!(
            "the TLS link was accepted but the service refused: {}",
            s.message()
        )),
        Err(s) => {
            let detail = std::error::Error::source(&s)
                .map(dbmon_pki::transport::describe_chain)
                .unwrap_or_else(|| s.message().to_string());
            Err(anyhow::anyhow!(
                "the server ended the connection at the TLS handshake: it does not accept this certificate, and its log says why ({detail})"
            ))
        }
    }
}

pub fn probe_config(
    identity_pem: &[u8],
    trust: std::sync::Arc<dbmon_pki::tls::Trust>,
) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_slice_iter(identity_pem)
            .collect::<Result<_, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity_pem)?;
    Ok(dbmon_pki::tls::probe_client(chain, key, trust)?)
}
