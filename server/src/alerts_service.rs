//! The Alerts and Silences gRPC services: what fires, where it went, and
//! people's silences, each limited to the clusters the caller's token
//! allows. Every silence added or expired leaves an audit line.

use crate::alerting::Alerting;
use crate::alerting::state::Silence;
use crate::auth::scoped;
use crate::peer::peer_of;
use dbmon_proto::v1::alerts_server::Alerts;
use dbmon_proto::v1::silences_server::Silences;
use dbmon_proto::v1::{
    AddSilenceRequest, ExpireSilenceRequest, ListAlertsRequest, ListAlertsResponse,
    ListSilencesRequest, ListSilencesResponse, ReceiverStatus,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Both services over one [`Alerting`].
#[derive(Clone)]
pub struct AlertServices {
    pub alerting: Arc<Alerting>,
}

fn to_proto(s: Silence) -> dbmon_proto::v1::Silence {
    dbmon_proto::v1::Silence {
        id: s.id,
        cluster: s.cluster,
        node: s.node,
        check: s.check,
        comment: s.comment,
        created_by: s.created_by,
        login: s.login,
        starts_at_ms: s.starts_at_ms,
        ends_at_ms: s.ends_at_ms,
        expired_at_ms: s.expired_at_ms.unwrap_or(0),
        expired_by: s.expired_by.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Alerts for AlertServices {
    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let grant = crate::auth::grant_of(&request)?;
        let clusters = scoped(&grant, &request.get_ref().clusters)?;
        let scope: Option<std::collections::BTreeSet<String>> = if clusters.is_empty() {
            None
        } else {
            Some(clusters.into_iter().collect())
        };
        let doc = self.alerting.snapshot().await;
        let alerts = self.alerting.alerts_in(&doc, scope.as_ref());
        let receivers = self
            .alerting
            .receivers_in(&doc)
            .into_iter()
            .map(|r| ReceiverStatus {
                name: r.name,
                kind: r.kind.to_string(),
                delivered: r.health.delivered,
                failed_attempts: r.health.failed_attempts,
                consecutive_failures: r.health.consecutive_failures,
                last_error: r.health.last_error.unwrap_or_default(),
                last_ok_ms: r.health.last_ok_ms.unwrap_or(0),
                queued: r.queued as u32,
                dropped: r.health.dropped,
            })
            .collect();
        Ok(Response::new(ListAlertsResponse {
            alerts,
            receivers,
            server_time_ms: dbmon_proto::now_ms(),
        }))
    }
}

#[tonic::async_trait]
impl Silences for AlertServices {
    async fn add_silence(
        &self,
        request: Request<AddSilenceRequest>,
    ) -> Result<Response<dbmon_proto::v1::Silence>, Status> {
        let grant = crate::auth::grant_of(&request)?;
        let peer = peer_of(&request);
        let req = request.into_inner();
        if req.cluster.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a silence names its cluster: give --cluster NAME",
            ));
        }
        if !grant.sees(&req.cluster) {
            return Err(Status::permission_denied(format!(
                "your token does not cover cluster {:?}; silence only clusters you may see",
                req.cluster
            )));
        }
        if req.comment.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a silence says why: give --comment TEXT",
            ));
        }
        let max = self.alerting.max_silence.as_millis() as i64;
        if req.duration_ms <= 0 || req.duration_ms > max {
            return Err(Status::invalid_argument(format!(
                "a silence lasts more than 0 and at most {} (server.max_silence); give --for DURATION",
                humantime_ms(max)
            )));
        }
        let now = dbmon_proto::now_ms();
        let s = self
            .alerting
            .add_silence(Silence {
                id: String::new(),
                cluster: req.cluster,
                node: req.node,
                check: req.check,
                comment: req.comment,
                created_by: grant.user.clone(),
                login: grant.login.clone(),
                starts_at_ms: now,
                ends_at_ms: now + req.duration_ms,
                expired_at_ms: None,
                expired_by: None,
            })
            .await
            .map_err(unavailable)?;
        dbmon_auth::audit(
            "silence",
            &grant.user,
            &grant.login,
            &peer,
            &format!(
                "add {} cluster={} node={} check={} for={} comment={:?}",
                s.id,
                s.cluster,
                s.node,
                s.check,
                humantime_ms(req.duration_ms),
                s.comment
            ),
        );
        Ok(Response::new(to_proto(s)))
    }

    async fn list_silences(
        &self,
        request: Request<ListSilencesRequest>,
    ) -> Result<Response<ListSilencesResponse>, Status> {
        let grant = crate::auth::grant_of(&request)?;
        let now = dbmon_proto::now_ms();
        let all = request.get_ref().include_ended;
        let silences = self
            .alerting
            .silences()
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|s| grant.sees(&s.cluster))
            .filter(|s| all || (s.expired_at_ms.is_none() && s.ends_at_ms > now))
            .map(to_proto)
            .collect();
        Ok(Response::new(ListSilencesResponse { silences }))
    }

    async fn expire_silence(
        &self,
        request: Request<ExpireSilenceRequest>,
    ) -> Result<Response<dbmon_proto::v1::Silence>, Status> {
        let grant = crate::auth::grant_of(&request)?;
        let peer = peer_of(&request);
        let id = request.into_inner().id;
        let Some(found) = self
            .alerting
            .silences()
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|s| s.id == id)
        else {
            return Err(Status::not_found(format!(
                "no silence {id:?}; `dbmon-client silence list` shows them"
            )));
        };
        if !grant.sees(&found.cluster) {
            return Err(Status::permission_denied(format!(
                "silence {id} is on cluster {:?}, which your token does not cover",
                found.cluster
            )));
        }
        let s = self
            .alerting
            .expire_silence(&id, &grant.user)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("no silence {id:?}")))?;
        dbmon_auth::audit(
            "silence",
            &grant.user,
            &grant.login,
            &peer,
            &format!("expire {} cluster={}", s.id, s.cluster),
        );
        Ok(Response::new(to_proto(s)))
    }
}

/// The shared store did not answer.
fn unavailable(why: String) -> Status {
    Status::unavailable(format!(
        "silences live in the shared store, which did not answer ({why}); try again"
    ))
}

fn humantime_ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}
