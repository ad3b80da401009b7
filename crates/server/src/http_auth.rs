//! The HTTP API's authentication layer: every request passes [`layer`], which decides from
//! the method and path what the request needs (deny by default: an endpoint not listed here
//! needs cluster-admin), answers 401 or 403 itself, and records administrative requests in the
//! audit log with their outcome. The token and audit endpoints live here too.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use meridian_control::auth::Permission;
use meridian_types::limits::HTTP_BODY_BYTES_MAX;
use serde_json::json;

use crate::auth::{self, Denied, Need, Principal, Record};
use crate::node::Node;

/// An administrative action: its audit name and target.
struct Audited {
    action: &'static str,
    target: String,
}

/// Percent-decodes a path segment as the router does (an undecodable one stays as is, and
/// then matches no grant pattern, which allows only `[A-Za-z0-9_.*-]`).
pub fn decode(seg: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| seg.to_string())
}

/// What `method path` needs, and whether it is an administrative action to audit. `body_name`:
/// the `name` field of the body, for the endpoints whose target is in it.
fn classify(
    node: &Node,
    method: &Method,
    path: &str,
    body_name: Option<String>,
) -> (Need, Option<Audited>) {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let ks = |p: Permission, name: &str| Need::Keyspace(p, name.to_string());
    let audited = |action: &'static str, target: &str| {
        Some(Audited {
            action,
            target: target.to_string(),
        })
    };
    let open_if = |open: bool| {
        if open {
            Need::Open
        } else {
            Need::Authenticated
        }
    };
    match s.as_slice() {
        [""] => (Need::Open, None),
        ["healthz"] => (open_if(node.cfg.auth.open_healthz), None),
        ["metrics"] => (open_if(node.cfg.auth.open_metrics), None),
        ["v1", "cluster"] | ["v1", "failover"] | ["v1", "failover", "log"] if get => {
            (Need::Authenticated, None)
        }
        ["v1", "auth", "whoami"] if get => (Need::Authenticated, None),
        ["v1", "keyspaces"] if get => (Need::Authenticated, None),
        ["v1", "keyspaces"] if *method == Method::POST => {
            let name = body_name.unwrap_or_default();
            (
                ks(Permission::Admin, &name),
                audited("keyspace.create", &name),
            )
        }
        ["v1", "keyspaces", name] if get => (ks(Permission::Read, name), None),
        ["v1", "kv", name] | ["v1", "kv", name, _] if get => (ks(Permission::Read, name), None),
        ["v1", "kv", name, _] | ["v1", "kv", name, _, _] => (ks(Permission::Write, name), None),
        ["v1", "conflicts", name] if get => (ks(Permission::Read, name), None),
        ["v1", "failover", "lost-tail", name] if get => (ks(Permission::Read, name), None),
        ["v1", "admin", "faults"] | ["v1", "admin", "encryption"] if get => (Need::Cluster, None),
        ["v1", "admin", what] => (
            Need::Cluster,
            audited(
                match *what {
                    "faults" => "admin.faults",
                    "failback" => "admin.failback",
                    "disk" => "admin.disk",
                    "rotate-key" => "admin.rotate_key",
                    _ => "admin.other",
                },
                "",
            ),
        ),
        ["v1", "failover", action, rest @ ..] if !get => (
            Need::Cluster,
            audited(
                match *action {
                    "pause" => "failover.pause",
                    "resume" => "failover.resume",
                    "approve" => "failover.approve",
                    "reject" => "failover.reject",
                    "switchover" => "failover.switchover",
                    _ => "failover.other",
                },
                rest.first().copied().unwrap_or_default(),
            ),
        ),
        ["v1", "auth", "tokens"] if *method == Method::POST => (
            Need::Cluster,
            audited("auth.token.create", &body_name.unwrap_or_default()),
        ),
        ["v1", "auth", "tokens", id] if *method == Method::DELETE => {
            (Need::Cluster, audited("auth.token.revoke", id))
        }
        _ => (Need::Cluster, None),
    }
}

fn refusal(d: &Denied) -> Response {
    let (status, code) = match d {
        Denied::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Denied::Forbidden(_) => (StatusCode::FORBIDDEN, "permission_denied"),
    };
    let mut r = (
        status,
        Json(json!({"error": {"code": code, "message": d.message()}})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer realm=\"meridian\""),
        );
    }
    r
}

/// The `name` field of a JSON body (keyspace policies and token requests carry their target
/// there).
fn name_in(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

pub async fn layer(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The endpoints whose target is in the body: read it (bounded) and put it back.
    let needs_body =
        method == Method::POST && (path == "/v1/keyspaces" || path == "/v1/auth/tokens");
    let (req, body_name) = if needs_body {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, HTTP_BODY_BYTES_MAX).await {
            Ok(b) => b,
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(json!({"error": {"code": "invalid_argument", "message": format!("the request body is over {HTTP_BODY_BYTES_MAX} bytes or was cut off")}})),
                )
                    .into_response()
            }
        };
        let name = name_in(&bytes);
        (Request::from_parts(parts, Body::from(bytes)), name)
    } else {
        (req, None)
    };
    let (need, audited) = classify(&node, &method, &path, body_name);
    let cert = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::conn_limit::ConnInfo>>()
        .and_then(|c| c.0.cert.clone());
    let principal = match auth::check(&node, header.as_deref(), cert.as_deref(), &need).await {
        Ok(p) => p,
        Err(d) => {
            metrics::counter!("meridian_auth_refused_total", "status" => match d {
                Denied::Unauthenticated(_) => "401",
                Denied::Forbidden(_) => "403",
            })
            .increment(1);
            if let Some(a) = audited {
                let principal = match &d {
                    Denied::Forbidden(_) => {
                        auth::authenticate(&node, header.as_deref(), cert.as_deref())
                            .await
                            .map(|p| p.name)
                            .unwrap_or_else(|_| "anonymous".into())
                    }
                    Denied::Unauthenticated(_) => "anonymous".into(),
                };
                auth::record_later(
                    &node,
                    Record {
                        principal,
                        action: a.action.into(),
                        target: a.target,
                        outcome: "denied",
                        detail: d.message().to_string(),
                    },
                );
            }
            return refusal(&d);
        }
    };
    let mut req = req;
    req.extensions_mut().insert(principal.clone());
    let resp = next.run(req).await;
    if let Some(a) = audited {
        let status = resp.status();
        auth::record_later(
            &node,
            Record {
                principal: principal.name,
                action: a.action.into(),
                target: a.target,
                outcome: if status.is_success() {
                    "allowed"
                } else {
                    "failed"
                },
                detail: format!("{method} {path}: {status}"),
            },
        );
    }
    resp
}

// ---- endpoints ----

pub async fn whoami(Extension(p): Extension<Principal>) -> Response {
    Json(json!({
        "principal": p.name,
        "grants": p.grants,
    }))
    .into_response()
}

pub async fn create_token(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<auth::CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, crate::http::ApiError> {
    let Json(req) = body.map_err(|r| {
        crate::http::ApiError::bad_request(format!(
            "the request body is not a token request {{\"name\": ..., \"grants\": [\"reader:orders*\", ...]}}: {}",
            r.body_text()
        ))
    })?;
    let (token, rec) = auth::create_token(&node, &p, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "id": rec.id,
            "name": rec.name,
            "grants": rec.grants,
            "created_ms": rec.created_ms,
            "note": "the token is shown only now; keep it secret",
        })),
    )
        .into_response())
}

pub async fn list_tokens(State(node): State<Arc<Node>>) -> Result<Response, crate::http::ApiError> {
    let list = auth::list_tokens(&node).await?;
    Ok(Json(json!({"tokens": list.iter().map(|r| json!({
        "id": r.id, "name": r.name, "grants": r.grants, "created_ms": r.created_ms,
        "created_by": r.created_by, "revoked_ms": r.revoked_ms,
    })).collect::<Vec<_>>()}))
    .into_response())
}

pub async fn revoke_token(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, crate::http::ApiError> {
    let rec = auth::revoke_token(&node, &id).await?;
    Ok(Json(json!({"id": rec.id, "name": rec.name, "revoked_ms": rec.revoked_ms})).into_response())
}

pub async fn audit_log(State(node): State<Arc<Node>>) -> Result<Response, crate::http::ApiError> {
    let entries = auth::read_log(&node).await?;
    let verified = meridian_control::audit::verify(&entries);
    Ok(Json(json!({
        "entries": entries,
        "verified": verified.is_ok(),
        "problem": verified.err(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_like_the_router() {
        assert_eq!(decode("ord%65rs"), "orders");
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%é1"), "%é1");
        assert_eq!(decode("%4"), "%4");
    }
}
