//! The gRPC service `meridian.v1.Kv`, over the same operations as the HTTP mirror.

use std::sync::Arc;

use meridian_types::wire::ServedBy;
use meridian_types::KvError;
use tonic::{Request, Response, Status};

use crate::api;
use crate::node::Node;
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

fn version(h: Option<&meridian_crdt::Hlc>) -> String {
    h.map(crate::http::version_text).unwrap_or_default()
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let (res, s) = api::put(&self.node, &r.keyspace, r.key, r.value, &mut session)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutResponse {
            existed: res.existed,
            served_by: served(s),
            session: session.encode(),
            version: version(res.hlc.as_ref()),
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
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
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let (res, s) = api::delete(&self.node, &r.keyspace, r.key, &mut session)
            .await
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
        let r = req.into_inner();
        let mut session = session_in(&r.session)?;
        let (res, s) = api::cas(
            &self.node,
            &r.keyspace,
            r.key,
            r.expected,
            r.value,
            &mut session,
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
}
