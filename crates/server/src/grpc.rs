//! The gRPC service `meridian.v1.Kv`, over the same operations as the HTTP mirror.

use std::sync::Arc;

use meridian_types::wire::ServedBy;
use meridian_types::KvError;
use tonic::{Request, Response, Status};

use crate::api;
use crate::auth::{self, Denied, Need, Principal};
use crate::node::Node;
use meridian_control::auth::Permission;
use meridian_georep::SessionToken;

pub mod pb {
    tonic::include_proto!("meridian.v1");
}

pub use pb::kv_server::KvServer;

pub struct KvService {
    pub node: Arc<Node>,
}

fn status(e: KvError) -> Status {
    match e {
        KvError::InvalidArgument(m) => Status::invalid_argument(m),
        KvError::NotFound(m) => Status::not_found(m),
        KvError::FailedPrecondition(m) => Status::failed_precondition(m),
        KvError::Unavailable(m) => Status::unavailable(m),
        KvError::Internal(m) => Status::internal(m),
    }
}

fn denied(d: Denied) -> Status {
    match d {
        Denied::Unauthenticated(m) => Status::unauthenticated(m),
        Denied::Forbidden(m) => Status::permission_denied(m),
    }
}

/// The principal a request's verified client certificate stands for, if any.
fn cert_of<T>(req: &Request<T>) -> Option<Arc<Principal>> {
    req.extensions()
        .get::<crate::conn_limit::ConnInfo>()
        .and_then(|c| c.cert.clone())
}

/// The principal behind a request's `authorization` metadata, if it may do what `need` says.
#[allow(clippy::result_large_err)]
async fn allow<T>(node: &Arc<Node>, req: &Request<T>, need: Need) -> Result<Principal, Status> {
    let header = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let cert = cert_of(req);
    auth::check(node, header, cert.as_deref(), &need)
        .await
        .map_err(|d| {
            metrics::counter!("meridian_auth_refused_total", "status" => match d {
                Denied::Unauthenticated(_) => "401",
                Denied::Forbidden(_) => "403",
            })
            .increment(1);
            denied(d)
        })
}

/// As [`allow`] for cluster-admin actions, recording a refusal in the audit log.
#[allow(clippy::result_large_err)]
async fn allow_audited<T>(
    node: &Arc<Node>,
    req: &Request<T>,
    action: &str,
    target: &str,
) -> Result<Principal, Status> {
    match allow(node, req, Need::Cluster).await {
        Ok(p) => Ok(p),
        Err(st) => {
            let header = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let cert = cert_of(req);
            let principal = auth::authenticate(node, header, cert.as_deref())
                .await
                .map_or_else(|_| "anonymous".to_string(), |p| p.name);
            auth::record_later(
                node,
                auth::Record {
                    principal,
                    action: action.to_string(),
                    target: target.to_string(),
                    outcome: "denied",
                    detail: st.message().to_string(),
                },
            );
            Err(st)
        }
    }
}

fn audit_outcome<T>(
    node: &Arc<Node>,
    principal: Principal,
    action: &str,
    target: &str,
    result: &Result<T, KvError>,
) {
    auth::record_later(
        node,
        auth::Record {
            principal: principal.name,
            action: action.to_string(),
            target: target.to_string(),
            outcome: if result.is_ok() { "allowed" } else { "failed" },
            detail: match result {
                Ok(_) => "gRPC: ok".into(),
                Err(e) => format!("gRPC: {e}"),
            },
        },
    );
}

fn served(s: ServedBy) -> Option<pb::ServedBy> {
    Some(pb::ServedBy {
        region: s.region,
        node: s.node,
        staleness_ms: s.staleness_ms,
    })
}

// tonic handlers return `Status` as their error; this feeds one with `?`.
#[allow(clippy::result_large_err)]
fn session_in(text: &str) -> Result<SessionToken, Status> {
    SessionToken::parse(text).map_err(|e| status(KvError::InvalidArgument(e)))
}

#[allow(clippy::result_large_err)]
fn context_in(text: &str) -> Result<Option<meridian_crdt::VersionVector>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    meridian_crdt::row::parse_context_token(text)
        .map(Some)
        .map_err(|e| status(KvError::InvalidArgument(format!("context: {e}"))))
}

fn request_id(id: Vec<u8>) -> Option<Vec<u8>> {
    (!id.is_empty()).then_some(id)
}

fn conflict_side(
    s: &meridian_consensus::ledger::RecordedSide,
    regions: &[String],
) -> pb::ConflictSide {
    pb::ConflictSide {
        value: s.value.clone(),
        deleted: s.deleted,
        size: s.size,
        hash: s.hash,
        version: crate::http::version_text(&s.hlc),
        origin: crate::observe::region_name(regions, s.hlc.origin),
    }
}

fn version(h: Option<&meridian_crdt::Hlc>) -> String {
    h.map(crate::http::version_text).unwrap_or_default()
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Write, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let id = request_id(r.request_id);
        let (res, s) = match context_in(&r.context)? {
            Some(c) => {
                let v = Some(r.value);
                api::put_mv(&self.node, &r.keyspace, r.key, v, Some(c), &mut session, id).await
            }
            None => api::put(&self.node, &r.keyspace, r.key, r.value, &mut session, id).await,
        }
        .map_err(status)?;
        Ok(Response::new(pb::PutResponse {
            existed: res.existed,
            served_by: served(s),
            session: session.encode(),
            version: version(res.hlc.as_ref()),
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Read, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let g = api::get(
            &self.node,
            &r.keyspace,
            r.key,
            Some(&r.consistency),
            &mut session,
        )
        .await
        .map_err(status)?;
        Ok(Response::new(pb::GetResponse {
            found: g.value.is_some(),
            value: g.value.unwrap_or_default(),
            served_by: served(g.served_by),
            session: session.encode(),
            version: version(g.version.as_ref()),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Write, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let id = request_id(r.request_id);
        let (res, s) = match context_in(&r.context)? {
            Some(c) => {
                api::put_mv(
                    &self.node,
                    &r.keyspace,
                    r.key,
                    None,
                    Some(c),
                    &mut session,
                    id,
                )
                .await
            }
            None => api::delete(&self.node, &r.keyspace, r.key, &mut session, id).await,
        }
        .map_err(status)?;
        Ok(Response::new(pb::DeleteResponse {
            existed: res.existed,
            served_by: served(s),
            session: session.encode(),
            version: version(res.hlc.as_ref()),
        }))
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Read, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let limit = Some(r.limit as usize);
        let (rows, s) = api::scan(
            &self.node,
            &r.keyspace,
            r.prefix,
            limit,
            Some(&r.consistency),
            &mut session,
        )
        .await
        .map_err(status)?;
        let items = rows
            .into_iter()
            .map(|(key, value)| pb::KeyValue { key, value })
            .collect();
        Ok(Response::new(pb::ScanResponse {
            items,
            served_by: served(s),
            session: session.encode(),
        }))
    }

    async fn compare_and_swap(
        &self,
        req: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Write, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let (res, s) = api::cas(
            &self.node,
            &r.keyspace,
            r.key,
            r.expected,
            r.value,
            &mut session,
            request_id(r.request_id),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(pb::CompareAndSwapResponse {
            succeeded: res.succeeded,
            current: res.current,
            served_by: served(s),
            session: session.encode(),
        }))
    }

    async fn incr(
        &self,
        req: Request<pb::IncrRequest>,
    ) -> Result<Response<pb::IncrResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Write, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let id = request_id(r.request_id);
        let (res, s) = api::incr(&self.node, &r.keyspace, r.key, r.by, &mut session, id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IncrResponse {
            value: String::from_utf8_lossy(&res.current.unwrap_or_default()).into_owned(),
            served_by: served(s),
            session: session.encode(),
            replayed: res.replayed,
        }))
    }

    async fn update_set(
        &self,
        req: Request<pb::UpdateSetRequest>,
    ) -> Result<Response<pb::UpdateSetResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Write, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let bytes = |v: Vec<String>| v.into_iter().map(String::into_bytes).collect();
        let (res, s) = api::set_update(
            &self.node,
            &r.keyspace,
            r.key,
            bytes(r.add),
            bytes(r.remove),
            &mut session,
            request_id(r.request_id),
        )
        .await
        .map_err(status)?;
        let members = res
            .current
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_default();
        Ok(Response::new(pb::UpdateSetResponse {
            members,
            served_by: served(s),
            session: session.encode(),
            replayed: res.replayed,
        }))
    }

    async fn conflicts(
        &self,
        req: Request<pb::ConflictsRequest>,
    ) -> Result<Response<pb::ConflictsResponse>, Status> {
        allow(
            &self.node,
            &req,
            Need::Keyspace(Permission::Read, req.get_ref().keyspace.clone()),
        )
        .await?;
        let r = req.into_inner();
        let key = (!r.key.is_empty()).then_some(r.key.as_slice());
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let c = api::conflicts(&self.node, &r.keyspace, key, r.since_ms, limit)
            .await
            .map_err(status)?;
        let conflicts = c
            .entries
            .iter()
            .map(|e| pb::Conflict {
                id: e.id,
                key: e.key.clone(),
                rule: e.rule.as_str().into(),
                a: Some(conflict_side(&e.a, &c.regions)),
                b: Some(conflict_side(&e.b, &c.regions)),
                outcome: serde_json::to_value(e.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                detected_region: c.region.clone(),
                detected_at_ms: e.detected.physical_ms,
            })
            .collect();
        Ok(Response::new(pb::ConflictsResponse {
            conflicts,
            dropped: c.dropped,
            region: c.region,
        }))
    }
}

/// The gRPC service `meridian.v1.Failover`: the operations of `/v1/failover*`.
pub struct FailoverService {
    pub node: Arc<Node>,
}

pub use pb::failover_server::FailoverServer;

fn log_entry(e: &meridian_control::failover::Entry) -> pb::LogEntry {
    let json = serde_json::to_value(e).unwrap_or_default();
    let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
    pb::LogEntry {
        seq: e.seq,
        at_ms: e.at_ms,
        action: e.action.name().to_string(),
        region: text("region"),
        reason: e.reason.clone(),
        by: e.by.clone(),
        prev: e.prev.clone(),
        hash: e.hash.clone(),
        json: json.to_string(),
    }
}

/// Who asks and why, checked as the HTTP body is: `by` 1-128 bytes ("unnamed" when empty over
/// gRPC, where an empty string is the default), `reason` at most 1024.
#[allow(clippy::result_large_err)]
fn operator_args(r: &pb::OperatorRequest) -> Result<(String, String), Status> {
    let by = if r.by.is_empty() {
        "unnamed".to_string()
    } else {
        r.by.clone()
    };
    if by.len() > 128 || r.reason.len() > 1024 {
        return Err(Status::invalid_argument(
            "\"by\" must be at most 128 bytes and \"reason\" at most 1024",
        ));
    }
    Ok((by, r.reason.clone()))
}

impl FailoverService {
    async fn act(
        &self,
        req: Request<pb::OperatorRequest>,
        what: impl FnOnce(u64) -> crate::failover::OperatorAction,
    ) -> Result<Response<pb::OperatorResponse>, Status> {
        let action = what(req.get_ref().id);
        let audit_name = match &action {
            crate::failover::OperatorAction::Pause => "failover.pause",
            crate::failover::OperatorAction::Resume => "failover.resume",
            crate::failover::OperatorAction::Approve(_) => "failover.approve",
            crate::failover::OperatorAction::Reject(_) => "failover.reject",
        };
        let target = match &action {
            crate::failover::OperatorAction::Approve(id)
            | crate::failover::OperatorAction::Reject(id) => id.to_string(),
            _ => String::new(),
        };
        let principal = allow_audited(&self.node, &req, audit_name, &target).await?;
        let r = req.into_inner();
        let (by, reason) = operator_args(&r)?;
        let result = crate::failover::operator(&self.node, &by, &reason, action).await;
        audit_outcome(&self.node, principal, audit_name, &target, &result);
        let entry = result.map_err(status)?;
        Ok(Response::new(pb::OperatorResponse {
            entry: Some(log_entry(&entry)),
        }))
    }
}

#[tonic::async_trait]
impl pb::failover_server::Failover for FailoverService {
    async fn status(
        &self,
        req: Request<pb::FailoverStatusRequest>,
    ) -> Result<Response<pb::FailoverStatusResponse>, Status> {
        allow(&self.node, &req, Need::Authenticated).await?;
        let doc = crate::failover::status(&self.node);
        let state = crate::failover::local_state(&self.node);
        let health = crate::failover::views(&self.node)
            .into_iter()
            .map(|(region, v)| pb::RegionHealth {
                region,
                state: v.health.as_str().to_string(),
                json: serde_json::to_string(&v).unwrap_or_default(),
            })
            .collect();
        let pending = state
            .pending
            .iter()
            .map(|(id, a)| {
                let json = serde_json::to_value(a).unwrap_or_default();
                pb::PendingDecision {
                    id: *id,
                    action: a.name().to_string(),
                    region: json["region"].as_str().unwrap_or_default().to_string(),
                    json: json.to_string(),
                }
            })
            .collect();
        let (head_seq, head_hash) = state.head.clone().unwrap_or_default();
        Ok(Response::new(pb::FailoverStatusResponse {
            paused: state.paused,
            health,
            evacuated: state.evacuated.keys().cloned().collect(),
            pending,
            head_seq,
            head_hash,
            json: doc.to_string(),
        }))
    }

    async fn log(
        &self,
        req: Request<pb::FailoverLogRequest>,
    ) -> Result<Response<pb::FailoverLogResponse>, Status> {
        allow(&self.node, &req, Need::Authenticated).await?;
        let entries = crate::failover::read_log(&self.node)
            .await
            .map_err(status)?;
        let verified = meridian_control::failover::verify(&entries);
        Ok(Response::new(pb::FailoverLogResponse {
            entries: entries.iter().map(log_entry).collect(),
            verified: verified.is_ok(),
            problem: verified.err().unwrap_or_default(),
        }))
    }

    async fn pause(
        &self,
        req: Request<pb::OperatorRequest>,
    ) -> Result<Response<pb::OperatorResponse>, Status> {
        self.act(req, |_| crate::failover::OperatorAction::Pause)
            .await
    }

    async fn resume(
        &self,
        req: Request<pb::OperatorRequest>,
    ) -> Result<Response<pb::OperatorResponse>, Status> {
        self.act(req, |_| crate::failover::OperatorAction::Resume)
            .await
    }

    async fn approve(
        &self,
        req: Request<pb::OperatorRequest>,
    ) -> Result<Response<pb::OperatorResponse>, Status> {
        self.act(req, crate::failover::OperatorAction::Approve)
            .await
    }

    async fn reject(
        &self,
        req: Request<pb::OperatorRequest>,
    ) -> Result<Response<pb::OperatorResponse>, Status> {
        self.act(req, crate::failover::OperatorAction::Reject).await
    }

    async fn switchover(
        &self,
        req: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::SwitchoverResponse>, Status> {
        let target = req.get_ref().keyspace.clone();
        let principal = allow_audited(&self.node, &req, "failover.switchover", &target).await?;
        let r = req.into_inner();
        let (by, reason) = operator_args(&pb::OperatorRequest {
            id: 0,
            by: r.by,
            reason: r.reason,
        })?;
        let result =
            crate::switchover::switchover(&self.node, &by, &reason, &r.keyspace, &r.to).await;
        audit_outcome(
            &self.node,
            principal,
            "failover.switchover",
            &target,
            &result,
        );
        let report = result.map_err(status)?;
        Ok(Response::new(pb::SwitchoverResponse {
            keyspace: report.keyspace,
            from: report.from,
            to: report.to,
            decision: report.decision,
            shards: report
                .shards
                .into_iter()
                .map(|s| pb::ShardSwitch {
                    shard: u32::from(s.shard),
                    leader: s.leader,
                    pause_ms: s.pause_ms,
                    voters: s.voters,
                })
                .collect(),
            pause_ms_max: report.pause_ms_max,
            took_ms: report.took_ms,
        }))
    }
}
