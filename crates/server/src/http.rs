//! The HTTP/JSON API: the key-value mirror of the gRPC service, keyspaces, cluster state,
//! metrics, health, and fault injection.

use openraft::async_runtime::WatchReceiver;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_crdt::Hlc;
use meridian_georep::SessionToken;
use meridian_types::limits::HTTP_BODY_BYTES_MAX;
use meridian_types::wire::ServedBy;
use meridian_types::{KeyspacePolicy, KvError, NodeId, META_GROUP};
use serde::Deserialize;
use serde_json::json;

use crate::api;
use crate::node::Node;
use crate::transport::Faults;

type AppState = Arc<Node>;

/// A JSON error with its status: `{"error": {"code": "...", "message": "..."}}`.
pub struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    pub fn bad_request(message: String) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        let (status, code) = match &e {
            KvError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            KvError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            KvError::FailedPrecondition(_) => (StatusCode::CONFLICT, "failed_precondition"),
            KvError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            KvError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"code": self.1, "message": self.2}})),
        )
            .into_response()
    }
}

fn bad_json(rejection: JsonRejection, what: &str) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        format!(
            "the request body is not a valid {what}: {}",
            rejection.body_text()
        ),
    )
}

/// The session token a request carries in `meridian-session` (absent: a new session).
fn session_in(headers: &HeaderMap) -> Result<SessionToken, ApiError> {
    let Some(v) = headers.get(SESSION_HEADER) else {
        return Ok(SessionToken::default());
    };
    let text = v.to_str().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "the meridian-session header is not text; send back the value an earlier response gave"
                .into(),
        )
    })?;
    SessionToken::parse(text).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_argument", e))
}

pub const SESSION_HEADER: &str = "meridian-session";

/// A write's request id: a retry with the same id within the window returns the first
/// outcome and is not applied again.
pub const REQUEST_ID_HEADER: &str = "meridian-request-id";

fn request_id_in(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get(REQUEST_ID_HEADER)
        .map(|v| v.as_bytes().to_vec())
}

/// The causal context a register write carries: the `context` a read of the key returned.
pub const CONTEXT_HEADER: &str = "meridian-context";

fn context_in(headers: &HeaderMap) -> Result<Option<meridian_crdt::VersionVector>, ApiError> {
    let Some(v) = headers.get(CONTEXT_HEADER) else {
        return Ok(None);
    };
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, "invalid_argument", m);
    let text = v.to_str().map_err(|_| {
        bad("the meridian-context header is not text; send back the context a read returned".into())
    })?;
    meridian_crdt::row::parse_context_token(text)
        .map(Some)
        .map_err(|e| bad(format!("meridian-context: {e}")))
}

/// An HLC as headers and JSON show it: `physical_ms.logical.origin` (origin in hex).
pub fn version_text(h: &Hlc) -> String {
    format!("{}.{}.{:x}", h.physical_ms, h.logical, h.origin.0)
}

/// Marks a response to a retried request id (`meridian-request-replayed: true`).
fn replayed(mut headers: HeaderMap, r: &meridian_types::wire::CommandResult) -> HeaderMap {
    if r.replayed {
        headers.insert(
            "meridian-request-replayed",
            HeaderValue::from_static("true"),
        );
    }
    headers
}

fn reply_headers(s: &ServedBy, session: &SessionToken, version: Option<&Hlc>) -> HeaderMap {
    let mut h = served_headers(s);
    if let Ok(v) = HeaderValue::from_str(&session.encode()) {
        h.insert(SESSION_HEADER, v);
    }
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&version_text(v)).ok()) {
        h.insert("x-meridian-version", v);
    }
    h
}

fn served_headers(s: &ServedBy) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-meridian-region",
        HeaderValue::from_str(&s.region).unwrap_or(HeaderValue::from_static("?")),
    );
    h.insert("x-meridian-node", HeaderValue::from(s.node));
    if let Some(ms) = s.staleness_ms {
        h.insert("x-meridian-staleness-ms", HeaderValue::from(ms));
    }
    h
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/cluster", get(cluster))
        .route("/v1/keyspaces", post(create_keyspace).get(list_keyspaces))
        .route("/v1/keyspaces/{name}", get(describe_keyspace))
        .route("/v1/kv/{keyspace}", get(scan))
        .route(
            "/v1/kv/{keyspace}/{key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/kv/{keyspace}/{key}/cas", post(cas))
        .route("/v1/kv/{keyspace}/{key}/incr", post(incr))
        .route("/v1/kv/{keyspace}/{key}/set", post(set_update))
        .route("/v1/conflicts/{keyspace}", get(conflicts))
        .route("/v1/admin/faults", post(set_faults).get(get_faults))
        .route("/v1/admin/failback", post(set_failback))
        .route("/v1/admin/disk", post(set_disk_fault))
        .route("/v1/admin/rotate-key", post(rotate_key))
        .route("/v1/admin/encryption", get(encryption_status))
        .route("/v1/failover", get(failover_status))
        .route("/v1/failover/log", get(failover_log))
        .route("/v1/failover/pause", post(failover_pause))
        .route("/v1/failover/resume", post(failover_resume))
        .route("/v1/failover/approve/{id}", post(failover_approve))
        .route("/v1/failover/reject/{id}", post(failover_reject))
        .route(
            "/v1/failover/switchover/{keyspace}",
            post(failover_switchover),
        )
        .route("/v1/failover/lost-tail/{keyspace}", get(failover_lost_tail))
        .route("/v1/auth/whoami", get(crate::http_auth::whoami))
        .route(
            "/v1/auth/tokens",
            post(crate::http_auth::create_token).get(crate::http_auth::list_tokens),
        )
        .route(
            "/v1/auth/tokens/{id}",
            axum::routing::delete(crate::http_auth::revoke_token),
        )
        .route("/v1/audit/log", get(crate::http_auth::audit_log))
        .route("/", get(crate::console::page))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::http_auth::layer,
        ))
        .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see README.md for the HTTP API".into(),
    )
}

async fn wrong_method(method: axum::http::Method) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on this endpoint; see README.md for the methods it accepts"
        ),
    )
}

async fn healthz(State(node): State<AppState>) -> impl IntoResponse {
    Json(json!({"status": "ok", "node": node.id(), "region": node.cfg.region}))
}

async fn metrics_text() -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

#[derive(Deserialize)]
struct ReadParams {
    consistency: Option<String>,
    prefix: Option<String>,
    limit: Option<usize>,
}

async fn get_key(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    Query(q): Query<ReadParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let r = api::get(
        &node,
        &keyspace,
        key.into_bytes(),
        q.consistency.as_deref(),
        &mut session,
    )
    .await?;
    let headers = reply_headers(&r.served_by, &session, r.version.as_ref());
    Ok(match r.value {
        Some(v) => (headers, v).into_response(),
        None => {
            let e = ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("key not found in keyspace {keyspace:?}"),
            );
            (headers, e).into_response()
        }
    })
}

fn write_reply(
    r: &meridian_types::wire::CommandResult,
    served: &ServedBy,
    session: &SessionToken,
) -> Response {
    let mut body = json!({"existed": r.existed});
    if let Some(h) = &r.hlc {
        body["version"] = json!(version_text(h));
    }
    let headers = replayed(reply_headers(served, session, r.hlc.as_ref()), r);
    (headers, Json(body)).into_response()
}

async fn put_key(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let (r, served) = match context_in(&headers)? {
        Some(context) => {
            api::put_mv(
                &node,
                &keyspace,
                key.into_bytes(),
                Some(body.to_vec()),
                Some(context),
                &mut session,
                request_id_in(&headers),
            )
            .await?
        }
        None => {
            api::put(
                &node,
                &keyspace,
                key.into_bytes(),
                body.to_vec(),
                &mut session,
                request_id_in(&headers),
            )
            .await?
        }
    };
    Ok(write_reply(&r, &served, &session))
}

async fn delete_key(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let (r, served) = match context_in(&headers)? {
        Some(context) => {
            let key = key.into_bytes();
            let id = request_id_in(&headers);
            api::put_mv(&node, &keyspace, key, None, Some(context), &mut session, id).await?
        }
        None => {
            let id = request_id_in(&headers);
            api::delete(&node, &keyspace, key.into_bytes(), &mut session, id).await?
        }
    };
    Ok(write_reply(&r, &served, &session))
}

fn text_or_hex(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => json!({"hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()}),
    }
}

async fn scan(
    State(node): State<AppState>,
    Path(keyspace): Path<String>,
    Query(q): Query<ReadParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let prefix = q.prefix.unwrap_or_default().into_bytes();
    let (rows, served) = api::scan(
        &node,
        &keyspace,
        prefix,
        q.limit,
        q.consistency.as_deref(),
        &mut session,
    )
    .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|(k, v)| json!({"key": text_or_hex(k), "value": text_or_hex(v)}))
        .collect();
    Ok((
        reply_headers(&served, &session, None),
        Json(json!({"items": items})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    expected: Option<String>,
    value: Option<String>,
}

async fn cas(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<CasBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let Json(b) = body.map_err(|r| {
        bad_json(
            r,
            r#"compare-and-swap body {"expected": ..., "value": ...}"#,
        )
    })?;
    let (r, served) = api::cas(
        &node,
        &keyspace,
        key.into_bytes(),
        b.expected.map(String::into_bytes),
        b.value.map(String::into_bytes),
        &mut session,
        request_id_in(&headers),
    )
    .await?;
    let current = r.current.as_deref().map(text_or_hex);
    Ok((
        replayed(reply_headers(&served, &session, None), &r),
        Json(json!({"succeeded": r.succeeded, "current": current})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrBody {
    by: i64,
}

async fn incr(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<IncrBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let Json(b) =
        body.map_err(|r| bad_json(r, r#"counter update {"by": n} (n a signed 64-bit integer)"#))?;
    let id = request_id_in(&headers);
    let (r, served) = api::incr(&node, &keyspace, key.into_bytes(), b.by, &mut session, id).await?;
    let value = r
        .current
        .as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Ok((
        replayed(reply_headers(&served, &session, r.hlc.as_ref()), &r),
        Json(json!({"value": value})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn set_update(
    State(node): State<AppState>,
    Path((keyspace, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<SetBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut session = session_in(&headers)?;
    let Json(b) = body.map_err(|r| {
        bad_json(
            r,
            r#"set update {"add": ["..."], "remove": ["..."]} (arrays of strings)"#,
        )
    })?;
    let bytes = |v: Vec<String>| v.into_iter().map(String::into_bytes).collect();
    let (r, served) = api::set_update(
        &node,
        &keyspace,
        key.into_bytes(),
        bytes(b.add),
        bytes(b.remove),
        &mut session,
        request_id_in(&headers),
    )
    .await?;
    let members: serde_json::Value = r
        .current
        .as_deref()
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or(json!([]));
    Ok((
        replayed(reply_headers(&served, &session, r.hlc.as_ref()), &r),
        Json(json!({"members": members})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictParams {
    key: Option<String>,
    /// Milliseconds since the Unix epoch: entries detected at or after.
    since: Option<u64>,
    limit: Option<usize>,
}

fn side_json(
    s: &meridian_consensus::ledger::RecordedSide,
    regions: &[String],
) -> serde_json::Value {
    json!({
        "value": s.value.as_deref().map(text_or_hex),
        "deleted": s.deleted,
        "size": s.size,
        "hash": s.hash.map(|h| format!("{h:016x}")),
        "version": version_text(&s.hlc),
        "origin": crate::observe::region_name(regions, s.hlc.origin),
    })
}

async fn conflicts(
    State(node): State<AppState>,
    Path(keyspace): Path<String>,
    q: Result<Query<ConflictParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!(
                "{}; the parameters are key, since (ms since the epoch) and limit",
                e.body_text()
            ),
        )
    })?;
    let r = api::conflicts(
        &node,
        &keyspace,
        q.key.as_deref().map(str::as_bytes),
        q.since.unwrap_or(0),
        q.limit.unwrap_or(100),
    )
    .await?;
    let entries: Vec<_> = r
        .entries
        .iter()
        .map(|e| {
            let winner = match e.outcome {
                meridian_crdt::Outcome::AWon => json!("a"),
                meridian_crdt::Outcome::BWon => json!("b"),
                _ => serde_json::Value::Null,
            };
            json!({
                "id": format!("{:016x}", e.id),
                "key": text_or_hex(&e.key),
                "rule": e.rule.as_str(),
                "a": side_json(&e.a, &r.regions),
                "b": side_json(&e.b, &r.regions),
                "outcome": e.outcome,
                "winner": winner,
                "detected_region": r.region,
                "detected_at_ms": e.detected.physical_ms,
                "seq": e.seq,
            })
        })
        .collect();
    Ok(Json(json!({
        "keyspace": keyspace,
        "region": r.region,
        "conflicts": entries,
        "dropped": r.dropped,
    }))
    .into_response())
}

async fn create_keyspace(
    State(node): State<AppState>,
    body: Result<Json<KeyspacePolicy>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(policy) = body.map_err(|r| bad_json(r, "keyspace policy"))?;
    let record = node.create_keyspace(policy).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

async fn list_keyspaces(State(node): State<AppState>) -> Result<Response, ApiError> {
    let list = node.list_keyspaces().await?;
    Ok(Json(json!({"keyspaces": list})).into_response())
}

async fn describe_keyspace(
    State(node): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let record = node.keyspace(&name).await?;
    let witness_ids = node.witness_ids();
    let leaders: Vec<_> = record
        .shards
        .iter()
        .map(|s| {
            let leader = node.group(s.group).and_then(|g| g.raft.metrics().borrow_watched().current_leader);
            let witnesses: Vec<_> = s.voters.iter().filter(|v| witness_ids.contains(v)).collect();
            json!({"shard": s.shard, "group": s.group, "leader": leader, "voters": s.voters, "learners": s.learners, "witnesses": witnesses})
        })
        .collect();
    Ok(Json(json!({"keyspace": &*record, "shards": leaders})).into_response())
}

/// Nodes with health, and the leader of every group this node runs.
pub fn cluster_state(node: &Node) -> serde_json::Value {
    let regions = node.regions_by_node();
    let nodes: Vec<_> = node
        .catalog_nodes()
        .into_iter()
        .map(|n| {
            let healthy = n.id == node.id()
                || node
                    .transport
                    .last_heard(n.id)
                    .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3));
            json!({"id": n.id, "region": n.region, "zone": n.zone, "role": n.role, "http_addr": n.http_addr,
                   "grpc_addr": n.grpc_addr, "peer_addr": n.peer_addr, "healthy": healthy})
        })
        .collect();
    let mut shards = Vec::new();
    for ks in node.catalog_keyspaces() {
        for s in &ks.shards {
            let metrics = node
                .group(s.group)
                .map(|g| g.raft.metrics().borrow_watched().clone());
            let leader = metrics.as_ref().and_then(|m| m.current_leader);
            // The voters as this node's replica knows them (the catalogue's `voters` are where
            // a switchover is taking them); absent where this node holds no replica.
            let raft_voters: Option<Vec<NodeId>> = metrics
                .as_ref()
                .map(|m| m.membership_config.membership().voter_ids().collect());
            // Log compaction on this replica: the last index in its snapshot, and the last
            // index purged from its log (absent: none yet, or no replica here).
            let snapshot_index = metrics
                .as_ref()
                .and_then(|m| m.snapshot.as_ref().map(|l| l.index()));
            let purged_index = metrics
                .as_ref()
                .and_then(|m| m.purged.as_ref().map(|l| l.index()));
            shards.push(json!({
                "keyspace": ks.policy.name, "shard": s.shard, "group": s.group,
                "home_region": ks.policy.home_region, "region": s.region,
                "replication": ks.policy.replication,
                "leader": leader, "leader_region": leader.and_then(|l| regions.get(&l).cloned()),
                "voters": s.voters, "raft_voters": raft_voters,
                "snapshot_index": snapshot_index, "purged_index": purged_index,
            }));
        }
    }
    let (meta_leader, meta_voters) = node
        .group(META_GROUP)
        .map(|g| {
            let m = g.raft.metrics().borrow_watched().clone();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (m.current_leader, voters)
        })
        .unwrap_or_default();
    // Whether the catalogue survives the loss of any one region (see
    // `meridian_control::meta_voters`): the demos wait for it before they take a region down.
    let meta_spread = {
        let set: std::collections::BTreeSet<NodeId> = meta_voters.iter().copied().collect();
        set.len() > 1 && meridian_control::meta_voters_spread_ok(&set, &node.catalog_nodes())
    };
    json!({
        "observed_by": {"node": node.id(), "region": node.cfg.region},
        "regions": node.cluster_regions(),
        "nodes": nodes,
        "meta_leader": meta_leader,
        "meta_voters": meta_voters,
        "meta_spread": meta_spread,
        "shards": shards,
        "events": node.events(),
        "lost_tails": crate::promotion::local_summary(node),
        "lag": crate::observe::lag_matrix(node),
        "async_lag": crate::observe::async_lag_matrix(node),
        "async_lag_local": crate::observe::async_lag_own(node),
        "delivery_local": crate::observe::delivery_local(node),
        "hlc_skew_alarms": node.observations.skew_alarms.load(Ordering::Relaxed),
        "antientropy": node.antientropy_report(),
        "conflicts": crate::observe::conflicts_summary(node),
        "peers": node.observations.peers(),
        "region_requests": crate::observe::region_requests(node),
        "region_rtt": crate::observe::region_rtt(node),
        "failover": crate::failover::status(node),
    })
}

async fn cluster(State(node): State<AppState>) -> impl IntoResponse {
    Json(cluster_state(&node))
}

async fn set_faults(
    State(node): State<AppState>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(faults) = body.map_err(|r| {
        bad_json(
            r,
            r#"fault set {"cut_regions": [["a","b"]], "isolate_nodes": [1]}"#,
        )
    })?;
    tracing::warn!(?faults, "fault injection changed");
    node.transport.set_faults(faults.clone());
    Ok(Json(faults).into_response())
}

async fn get_faults(State(node): State<AppState>) -> impl IntoResponse {
    Json(node.transport.faults())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Failback {
    paused: bool,
}

/// The older per-node failback switch, now the cluster-wide failover pause.
async fn set_failback(
    State(node): State<AppState>,
    body: Result<Json<Failback>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(f) = body.map_err(|r| bad_json(r, r#"failback setting {"paused": true}"#))?;
    let what = if f.paused {
        crate::failover::OperatorAction::Pause
    } else {
        crate::failover::OperatorAction::Resume
    };
    match crate::failover::operator(&node, "admin", "POST /v1/admin/failback", what).await {
        Ok(_) | Err(KvError::FailedPrecondition(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(json!({"paused": f.paused})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskFault {
    delay_ms: u64,
}

/// Fault injection: every durable commit on this node takes `delay_ms` longer (a stalling
/// disk, for gray-failure drills); 0 ends it.
async fn set_disk_fault(
    State(node): State<AppState>,
    body: Result<Json<DiskFault>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(f) = body.map_err(|r| bad_json(r, r#"disk fault {"delay_ms": 100}"#))?;
    if f.delay_ms > 10_000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!(
                "delay_ms {} is above the 10000 ms this drill allows",
                f.delay_ms
            ),
        ));
    }
    node.committer
        .disk()
        .injected_delay_ms
        .store(f.delay_ms, Ordering::Relaxed);
    tracing::warn!(delay_ms = f.delay_ms, "disk fault injection changed");
    Ok(Json(json!({"delay_ms": f.delay_ms})).into_response())
}

/// `POST /v1/admin/rotate-key`: this node seals with a new data key from now on and
/// re-encrypts older values in the background (`GET /v1/admin/encryption` follows it).
async fn rotate_key(State(node): State<AppState>) -> Result<Response, ApiError> {
    let Some(enc) = node.encryption.get() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "failed_precondition",
            format!(
                "node {} does not encrypt at rest: configure [encryption] (a new data directory) first",
                node.id()
            ),
        ));
    };
    let id = enc
        .rotate()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    tracing::warn!(key = id, "data key rotated");
    let mut status = enc.status();
    status["node"] = json!(node.id());
    Ok(Json(status).into_response())
}

/// `GET /v1/admin/encryption`: this node's keyring and re-encryption progress.
async fn encryption_status(State(node): State<AppState>) -> Json<serde_json::Value> {
    let mut status = match node.encryption.get() {
        Some(e) => e.status(),
        None => json!({"enabled": false}),
    };
    status["node"] = json!(node.id());
    Json(status)
}

/// Who asks and why, for the decision log (both optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OperatorBody {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn operator_body(body: axum::body::Bytes) -> Result<(String, String), ApiError> {
    let b: OperatorBody = if body.iter().all(u8::is_ascii_whitespace) {
        OperatorBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                format!("{e}; expected an empty body or {{\"by\": \"alice\", \"reason\": \"maintenance\"}}"),
            )
        })?
    };
    operator_fields(b.by, b.reason)
}

/// Who asks and why, defaulted and bounded.
fn operator_fields(
    by: Option<String>,
    reason: Option<String>,
) -> Result<(String, String), ApiError> {
    let by = by.unwrap_or_else(|| "unnamed".into());
    let reason = reason.unwrap_or_default();
    if by.is_empty() || by.len() > 128 || reason.len() > 1024 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "\"by\" must be 1 to 128 bytes and \"reason\" at most 1024".into(),
        ));
    }
    Ok((by, reason))
}

async fn failover_status(State(node): State<AppState>) -> impl IntoResponse {
    Json(crate::failover::status(&node))
}

async fn failover_log(State(node): State<AppState>) -> Result<Response, ApiError> {
    let entries = crate::failover::read_log(&node).await?;
    let verified = meridian_control::failover::verify(&entries);
    Ok(Json(json!({
        "entries": entries,
        "verified": verified.is_ok(),
        "problem": verified.err(),
    }))
    .into_response())
}

async fn failover_act(
    node: AppState,
    body: axum::body::Bytes,
    what: crate::failover::OperatorAction,
) -> Result<Response, ApiError> {
    let (by, reason) = operator_body(body)?;
    let entry = crate::failover::operator(&node, &by, &reason, what).await?;
    Ok(Json(entry).into_response())
}

async fn failover_pause(
    State(node): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    failover_act(node, body, crate::failover::OperatorAction::Pause).await
}

async fn failover_resume(
    State(node): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    failover_act(node, body, crate::failover::OperatorAction::Resume).await
}

async fn failover_approve(
    State(node): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = decision_id(&id)?;
    failover_act(node, body, crate::failover::OperatorAction::Approve(id)).await
}

async fn failover_reject(
    State(node): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = decision_id(&id)?;
    failover_act(node, body, crate::failover::OperatorAction::Reject(id)).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    to: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/failover/switchover/{keyspace}` with `{"to": REGION}`: a planned move of the
/// keyspace's home region with RPO 0; answers when every shard has moved, with the pauses.
async fn failover_switchover(
    State(node): State<AppState>,
    Path(keyspace): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: SwitchoverBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("{e}; expected {{\"to\": \"us-west-2\", \"by\": \"alice\", \"reason\": \"maintenance\"}} (by and reason optional)"),
        )
    })?;
    let (by, reason) = operator_fields(b.by, b.reason)?;
    let report = crate::switchover::switchover(&node, &by, &reason, &keyspace, &b.to).await?;
    Ok(Json(report).into_response())
}

/// `GET /v1/failover/lost-tail/{keyspace}`: what each promotion of the keyspace lost.
async fn failover_lost_tail(
    State(node): State<AppState>,
    Path(keyspace): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(crate::promotion::lost_tail_report(&node, &keyspace).await?).into_response())
}

fn decision_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("decision id {id:?} is not a number; `meridian failover status` lists the pending ones"),
        )
    })
}
