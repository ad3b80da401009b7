//! Authentication, authorisation and the audit log on a node.
//!
//! A request's `Authorization: Bearer <token>` (HTTP header or gRPC metadata) names a
//! principal: `root` (the node's configured root token, cluster-admin; how the first tokens
//! are created), or a token recorded in the metadata group (`auth/token/<id>`, the secret's
//! SHA-256 only). What a principal may do is `meridian_control::auth::allows`. With
//! `[auth] enabled = false` (the default for now) every request is allowed as `anonymous`; the
//! audit log records administrative actions either way.
//!
//! Tokens are read from this node's replica of the metadata group (a token created or revoked
//! through another node is seen here once replicated, normally within a round trip to the
//! metadata leader); a token this replica does not know yet is looked up through the metadata
//! leader before the request is refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_consensus::state_machine;
use meridian_control::audit;
use meridian_control::auth::{self, Grant, Permission, Role, Token, TokenRecord};
use meridian_control::chain::GENESIS;
use meridian_types::wire::Command;
use meridian_types::{KvError, ReadConsistency, META_GROUP};
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::peer::{Op, ReadConsistencyWire};

pub const TOKEN_PREFIX_KEY: &str = "auth/token/";
pub const AUDIT_HEAD_KEY: &str = "audit/head";
pub const AUDIT_LOG_PREFIX: &str = "audit/log/";
/// Tokens on one cluster (creation fails beyond: revoke unused ones).
pub const TOKENS_MAX: usize = 10_000;
/// Attempts to append an audit entry while other nodes move the head.
const AUDIT_APPEND_ATTEMPTS: usize = 32;
/// Denied requests recorded per node per second; beyond, they are counted
/// (`meridian_audit_unrecorded_total`) so an anonymous flood cannot grow the log unboundedly.
pub const DENIED_RECORDS_PER_S: u64 = 20;

/// The `[auth]` section of a node's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a token on every endpoint and RPC (except those opened below).
    #[serde(default)]
    pub enabled: bool,
    /// A file holding the root token (`mrd_<id>_<secret>`, as `meridian auth root-token`
    /// prints); `MERIDIAN_ROOT_TOKEN` in the environment is used when this is unset.
    #[serde(default)]
    pub root_token_file: Option<std::path::PathBuf>,
    /// `/healthz` without a token (load balancers and probes expect it).
    #[serde(default = "yes")]
    pub open_healthz: bool,
    /// `/metrics` without a token (Prometheus scrapers expect it).
    #[serde(default = "yes")]
    pub open_metrics: bool,
}

fn yes() -> bool {
    true
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            root_token_file: None,
            open_healthz: true,
            open_metrics: true,
        }
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            grants: vec![Grant {
                role: Role::ClusterAdmin,
                keyspaces: "*".into(),
            }],
        }
    }

    fn describe_grants(&self) -> String {
        if self.grants.is_empty() {
            return "no roles".into();
        }
        self.grants
            .iter()
            .map(Grant::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a request was refused: 401 (no valid token) or 403 (a principal without the
/// permission). Messages name what was missing and never whether a key or keyspace exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    Unauthenticated(String),
    Forbidden(String),
}

impl Denied {
    pub fn message(&self) -> &str {
        match self {
            Denied::Unauthenticated(m) | Denied::Forbidden(m) => m,
        }
    }
}

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing (health, metrics when open, the console page itself).
    Open,
    /// Any valid token (cluster status, the failover status).
    Authenticated,
    /// `perm` on `keyspace`.
    Keyspace(Permission, String),
    /// cluster-admin.
    Cluster,
}

/// The node's authentication state: the root token's hash, and the audit log's rate bound.
pub struct AuthState {
    root: Option<Token>,
    denied_window: AtomicU64,
    denied_in_window: AtomicU64,
    audit_lock: tokio::sync::Mutex<()>,
    pending: Arc<tokio::sync::Semaphore>,
}

impl AuthState {
    /// Reads the root token from the configured file or `MERIDIAN_ROOT_TOKEN`.
    pub fn load(cfg: &AuthConfig) -> Result<AuthState, String> {
        let text = match &cfg.root_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read the root token file {}: {e}", p.display()))?,
            ),
            None => std::env::var("MERIDIAN_ROOT_TOKEN").ok(),
        };
        let root = match text {
            Some(t) => Some(Token::parse(t.trim()).map_err(|e| {
                format!("the root token is not valid: {e} (generate one with `meridian auth root-token`)")
            })?),
            None => None,
        };
        if cfg.enabled && root.is_none() {
            return Err("[auth] enabled = true needs a root token: set root_token_file or MERIDIAN_ROOT_TOKEN (generate one with `meridian auth root-token`)".into());
        }
        Ok(AuthState {
            root,
            denied_window: AtomicU64::new(0),
            denied_in_window: AtomicU64::new(0),
            audit_lock: Default::default(),
            pending: Arc::new(tokio::sync::Semaphore::new(AUDIT_PENDING_MAX)),
        })
    }
}

fn token_key(id: &str) -> Vec<u8> {
    format!("{TOKEN_PREFIX_KEY}{id}").into_bytes()
}

fn parse_record(bytes: &[u8]) -> Result<TokenRecord, KvError> {
    serde_json::from_slice(bytes)
        .map_err(|e| KvError::Internal(format!("a token record does not decode: {e}")))
}

/// The record of token `id`: from this replica, else through the metadata leader.
async fn find_record(node: &Arc<Node>, id: &str) -> Result<Option<TokenRecord>, KvError> {
    let local = state_machine::read(node.committer.engine(), META_GROUP, &token_key(id))
        .map_err(|e| KvError::Internal(format!("reading a token record: {e}")))?;
    let bytes = match local {
        Some(b) => Some(b),
        None => {
            node.execute(
                META_GROUP,
                Op::get(token_key(id), ReadConsistency::Linearizable),
                0,
            )
            .await?
            .value
        }
    };
    bytes.map(|b| parse_record(&b)).transpose()
}

const HOW_TO: &str =
    "send `Authorization: Bearer <token>` (create a token with `meridian auth token create`)";

/// The principal behind an `Authorization` header value (None: no header), else behind the
/// connection's verified client certificate (`cert`, see `crate::tls::cert_principal`).
pub async fn authenticate(
    node: &Arc<Node>,
    header: Option<&str>,
    cert: Option<&Principal>,
) -> Result<Principal, Denied> {
    if !node.cfg.auth.enabled {
        return Ok(Principal::anonymous());
    }
    let Some(header) = header else {
        if let Some(p) = cert {
            return Ok(p.clone());
        }
        let certs = node
            .cfg
            .tls
            .as_ref()
            .is_some_and(|t| t.client_certs != crate::tls::ClientCerts::None);
        return Err(Denied::Unauthenticated(format!(
            "this endpoint needs a token{}: {HOW_TO}",
            if certs {
                " or a client certificate from the cluster CA"
            } else {
                ""
            }
        )));
    };
    let text = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            Denied::Unauthenticated(format!(
                "the Authorization header is not a bearer token: {HOW_TO}"
            ))
        })?
        .trim();
    let token =
        Token::parse(text).map_err(|e| Denied::Unauthenticated(format!("{e}; {HOW_TO}")))?;
    let invalid = || {
        Denied::Unauthenticated(format!(
            "the token is not valid (unknown or revoked): {HOW_TO}"
        ))
    };
    let hash = token.secret_sha256();
    if let Some(root) = &node.auth.root {
        if root.id == token.id {
            return if auth::secret_matches(&hash, &root.secret_sha256()) {
                Ok(Principal {
                    name: "root".into(),
                    grants: vec![Grant {
                        role: Role::ClusterAdmin,
                        keyspaces: "*".into(),
                    }],
                })
            } else {
                Err(invalid())
            };
        }
    }
    let record = find_record(node, &token.id).await.map_err(|e| {
        Denied::Unauthenticated(format!("the token cannot be checked now ({e}); retry"))
    })?;
    match record {
        Some(r) if r.revoked_ms.is_none() && auth::secret_matches(&hash, &r.secret_sha256) => {
            Ok(Principal {
                name: format!("token:{}", r.name),
                grants: r.grants,
            })
        }
        _ => Err(invalid()),
    }
}

/// Whether `principal` may do what `need` says.
pub fn authorize(principal: &Principal, need: &Need) -> Result<(), Denied> {
    let ok = match need {
        Need::Open | Need::Authenticated => true,
        Need::Keyspace(p, ks) => auth::allows(&principal.grants, *p, Some(ks)),
        Need::Cluster => auth::allows(&principal.grants, Permission::ClusterAdmin, None),
    };
    if ok {
        return Ok(());
    }
    let what = match need {
        Need::Keyspace(p, ks) => format!("`{}` on keyspace {ks:?}", p.as_str()),
        _ => "`cluster-admin`".to_string(),
    };
    Err(Denied::Forbidden(format!(
        "{} ({}) lacks {what}; ask a cluster admin for a token that grants it",
        principal.name,
        principal.describe_grants()
    )))
}

/// Authenticates and authorises in one step.
pub async fn check(
    node: &Arc<Node>,
    header: Option<&str>,
    cert: Option<&Principal>,
    need: &Need,
) -> Result<Principal, Denied> {
    if *need == Need::Open {
        return Ok(Principal::anonymous());
    }
    let p = authenticate(node, header, cert).await?;
    authorize(&p, need)?;
    Ok(p)
}

// ---- tokens ----

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// `role` or `role:pattern` each.
    pub grants: Vec<String>,
}

/// Creates a token; the answer holds its text, the only time it is shown.
pub async fn create_token(
    node: &Arc<Node>,
    by: &Principal,
    req: &CreateToken,
) -> Result<(String, TokenRecord), KvError> {
    auth::validate_name(&req.name).map_err(KvError::InvalidArgument)?;
    if req.grants.is_empty() || req.grants.len() > auth::GRANTS_MAX {
        return Err(KvError::InvalidArgument(format!(
            "a token needs 1 to {} grants such as \"reader\" or \"writer:orders*\"",
            auth::GRANTS_MAX
        )));
    }
    let grants = req
        .grants
        .iter()
        .map(|g| Grant::parse(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(KvError::InvalidArgument)?;
    if list_tokens(node).await?.len() >= TOKENS_MAX {
        return Err(KvError::FailedPrecondition(format!(
            "the cluster holds {TOKENS_MAX} tokens, the most it keeps; revoke unused ones"
        )));
    }
    use rand::RngCore;
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = Token::from_random(id, secret);
    let record = TokenRecord {
        id: token.id.clone(),
        name: req.name.clone(),
        grants,
        secret_sha256: token.secret_sha256(),
        created_ms: node.clock.now_ms(),
        created_by: by.name.clone(),
        revoked_ms: None,
    };
    // Create-only: a (2^-48) id collision fails rather than replacing another token.
    let r = node
        .execute(
            META_GROUP,
            Op::Write(Command::Cas {
                key: token_key(&token.id),
                expected: None,
                value: Some(serde_json::to_vec(&record).expect("records encode")),
            }),
            0,
        )
        .await?;
    if !r.result.succeeded {
        return Err(KvError::Unavailable("token id collision; retry".into()));
    }
    Ok((token.text(), record))
}

pub async fn list_tokens(node: &Arc<Node>) -> Result<Vec<TokenRecord>, KvError> {
    let rows = node
        .execute(
            META_GROUP,
            Op::Scan {
                prefix: TOKEN_PREFIX_KEY.as_bytes().to_vec(),
                limit: TOKENS_MAX + 1,
                consistency: ReadConsistencyWire::Linearizable,
                needs: Vec::new(),
            },
            0,
        )
        .await?
        .rows;
    rows.iter().map(|(_, v)| parse_record(v)).collect()
}

/// Marks token `id` revoked (kept, so the audit log's references stay readable).
pub async fn revoke_token(node: &Arc<Node>, id: &str) -> Result<TokenRecord, KvError> {
    for _ in 0..8 {
        let old = node
            .execute(
                META_GROUP,
                Op::get(token_key(id), ReadConsistency::Linearizable),
                0,
            )
            .await?
            .value
            .ok_or_else(|| {
                KvError::NotFound(format!(
                    "no token {id:?}; `meridian auth token list` shows the ids"
                ))
            })?;
        let mut rec = parse_record(&old)?;
        if rec.revoked_ms.is_some() {
            return Ok(rec);
        }
        rec.revoked_ms = Some(node.clock.now_ms());
        let r = node
            .execute(
                META_GROUP,
                Op::Write(Command::Cas {
                    key: token_key(id),
                    expected: Some(old),
                    value: Some(serde_json::to_vec(&rec).expect("records encode")),
                }),
                0,
            )
            .await?;
        if r.result.succeeded {
            return Ok(rec);
        }
    }
    Err(KvError::Unavailable(
        "the token record kept changing; retry".into(),
    ))
}

// ---- the audit log ----

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Head {
    seq: u64,
    hash: String,
}

fn entry_key(seq: u64, hash: &str) -> Vec<u8> {
    format!("{AUDIT_LOG_PREFIX}{seq:020}/{hash}").into_bytes()
}

/// What is recorded about one administrative request.
#[derive(Clone, Debug)]
pub struct Record {
    pub principal: String,
    pub action: String,
    pub target: String,
    /// `allowed`, `denied` or `failed`.
    pub outcome: &'static str,
    pub detail: String,
}

/// Appends `rec` to the audit log (waits until it is committed). A denied request beyond
/// [`DENIED_RECORDS_PER_S`] on this node is counted instead.
pub async fn record(node: &Arc<Node>, rec: Record) -> Result<(), KvError> {
    if rec.outcome == "denied" {
        let second = node.clock.now_ms() / 1000;
        if node.auth.denied_window.swap(second, Ordering::Relaxed) != second {
            node.auth.denied_in_window.store(0, Ordering::Relaxed);
        }
        if node.auth.denied_in_window.fetch_add(1, Ordering::Relaxed) >= DENIED_RECORDS_PER_S {
            metrics::counter!("meridian_audit_unrecorded_total").increment(1);
            return Ok(());
        }
    }
    // One append at a time from this node: they would only race each other for the head.
    let _one = node.auth.audit_lock.lock().await;
    for _ in 0..AUDIT_APPEND_ATTEMPTS {
        let (old, head) = read_head(node).await?;
        let (seq, prev) = match &head {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (0, GENESIS.to_string()),
        };
        let entry = audit::Entry {
            seq,
            at_ms: node.clock.now_ms(),
            principal: audit::bounded(&rec.principal),
            action: audit::bounded(&rec.action),
            target: audit::bounded(&rec.target),
            outcome: rec.outcome.to_string(),
            detail: audit::bounded(&rec.detail),
            node: node.id(),
            prev: String::new(),
            hash: String::new(),
        }
        .seal(&prev);
        node.execute(
            META_GROUP,
            Op::Write(Command::Put {
                key: entry_key(seq, &entry.hash),
                value: serde_json::to_vec(&entry).expect("entries encode"),
            }),
            0,
        )
        .await?;
        let new = Head {
            seq,
            hash: entry.hash.clone(),
        };
        let r = node
            .execute(
                META_GROUP,
                Op::Write(Command::Cas {
                    key: AUDIT_HEAD_KEY.as_bytes().to_vec(),
                    expected: old,
                    value: Some(serde_json::to_vec(&new).expect("heads encode")),
                }),
                0,
            )
            .await?;
        if r.result.succeeded {
            metrics::counter!("meridian_audit_entries_total", "outcome" => rec.outcome)
                .increment(1);
            return Ok(());
        }
        // Another node appended first; the entry written above is an orphan no head reaches.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(KvError::Unavailable(format!(
        "the audit log moved under {AUDIT_APPEND_ATTEMPTS} attempts to append"
    )))
}

/// Audit records waiting in the background on one node; beyond, they are counted
/// (`meridian_audit_unrecorded_total`) instead of queued.
pub const AUDIT_PENDING_MAX: usize = 256;
/// Attempts of a background record while the metadata group is unreachable (backing off from
/// 250 ms, doubling: about 16 s in all).
const AUDIT_RETRIES: u32 = 7;

/// Records in the background, so the request is answered at once (a fault injection that cuts
/// this node off must not wait on the metadata group it cut off), retrying while the metadata
/// group is unreachable. A crash of this node before the append commits loses the record.
pub fn record_later(node: &Arc<Node>, rec: Record) {
    let Ok(permit) = node.auth.pending.clone().try_acquire_owned() else {
        metrics::counter!("meridian_audit_unrecorded_total").increment(1);
        tracing::warn!(action = %rec.action, "audit queue full; an entry was not recorded");
        return;
    };
    let node = node.clone();
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=AUDIT_RETRIES {
            match record(&node, rec.clone()).await {
                Ok(()) => break,
                Err(e) if attempt == AUDIT_RETRIES => {
                    metrics::counter!("meridian_audit_unrecorded_total").increment(1);
                    tracing::warn!(error = %e, action = %rec.action, "an audit entry was not recorded");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        drop(permit);
    });
}

/// The audit log in order, read through the metadata leader: the chain from the head back to
/// entry 0 (entries of appends that lost the race for the head are not part of it).
/// The audit log's head, read linearizably: its stored bytes (for a compare-and-swap) and its
/// decoded form (`None`: an empty log).
async fn read_head(node: &Arc<Node>) -> Result<(Option<Vec<u8>>, Option<Head>), KvError> {
    let raw = node
        .execute(
            META_GROUP,
            Op::get(
                AUDIT_HEAD_KEY.as_bytes().to_vec(),
                ReadConsistency::Linearizable,
            ),
            0,
        )
        .await?
        .value;
    let head = raw
        .as_ref()
        .map(|b| serde_json::from_slice(b))
        .transpose()
        .map_err(|e| KvError::Internal(format!("the audit log's head: {e}")))?;
    Ok((raw, head))
}

pub async fn read_log(node: &Arc<Node>) -> Result<Vec<audit::Entry>, KvError> {
    let Some(head) = read_head(node).await?.1 else {
        return Ok(Vec::new());
    };
    let rows = node
        .execute(
            META_GROUP,
            Op::Scan {
                prefix: AUDIT_LOG_PREFIX.as_bytes().to_vec(),
                limit: usize::MAX,
                consistency: ReadConsistencyWire::Linearizable,
                needs: Vec::new(),
            },
            0,
        )
        .await?
        .rows;
    let by_hash: std::collections::BTreeMap<String, audit::Entry> = rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<audit::Entry>(v).ok())
        .map(|e| (e.hash.clone(), e))
        .collect();
    meridian_control::chain::walk_back(&by_hash, &head.hash, head.seq, "the audit log")
        .map_err(KvError::Internal)
}
