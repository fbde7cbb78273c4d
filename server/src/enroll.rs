//! Certificates for collectors: joining with a one-time token, and renewing
//! over the mutual TLS link.

use dbmon_pki::tokens::{TokenError, TokenStore};
use dbmon_pki::{Ca, Role};
use dbmon_proto::v1::enroll_server::Enroll;
use dbmon_proto::v1::{CertificateResponse, JoinRequest};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The CA and token store the server signs with.
pub struct Signer {
    pub ca: Ca,
    pub tokens: TokenStore,
    pub ttl: Duration,
    /// The trust bundle handed to collectors.
    pub bundle_pem: String,
}

impl Signer {
    pub fn sign(&self, csr_pem: &str, name: &str) -> Result<CertificateResponse, Status> {
        let certificate_pem = self
            .ca
            .sign_request(csr_pem, Role::Collector, name, self.ttl)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(CertificateResponse {
            certificate_pem,
            ca_pem: self.bundle_pem.clone(),
            collector: name.to_string(),
        })
    }
}

/// The `Enroll` service; without a signer it refuses every join.
#[derive(Clone)]
pub struct Enrollment {
    pub signer: Option<Arc<Signer>>,
}

#[tonic::async_trait]
impl Enroll for Enrollment {
    async fn join(
        &self,
        request: Request<JoinRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let peer = crate::peer::peer_of(&request);
        let Some(signer) = &self.signer else {
            return Err(Status::failed_precondition(
                "this server does not enroll collectors: set server.pki_dir to a directory holding ca.key",
            ));
        };
        let req = request.into_inner();
        let name = signer.tokens.redeem(&req.token).map_err(|e| {
            tracing::warn!(%peer, reason = %e, "join refused");
            match e {
                TokenError::Store(_) => Status::internal(e.to_string()),
                _ => Status::unauthenticated(e.to_string()),
            }
        })?;
        let resp = signer.sign(&req.csr_pem, &name)?;
        tracing::info!(%peer, collector = %name, "collector joined");
        Ok(Response::new(resp))
    }
}
