//! The key-value operations both front ends (HTTP/JSON and gRPC) call: validation against the
//! node's limits, keyspace lookup, routing to shards, and request metrics.

use std::sync::Arc;
use std::time::Instant;

use meridian_crdt::{Hlc, Op as MergeOp};
use meridian_georep::SessionToken;
use meridian_types::catalog::KeyspaceRecord;
use meridian_types::ids::{group_keyspace, group_shard, is_async_group, sync_group_id};
use meridian_types::limits::SCAN_LIMIT_DEFAULT;
use meridian_types::wire::{Command, CommandResult, ServedBy};
use meridian_types::{shard_for_key, Conflict, GroupId, KvError, ReadConsistency};

use crate::node::Node;
use crate::peer::{Op, OpReply};

fn check_key(node: &Node, key: &[u8]) -> Result<(), KvError> {
    let max = node.cfg.limits.key_bytes_max;
    if key.is_empty() {
        return Err(KvError::InvalidArgument(
            "the key is empty; keys are 1 or more bytes".into(),
        ));
    }
    if key.len() > max {
        return Err(KvError::InvalidArgument(format!(
            "the key is {} bytes, over the limit of {max} bytes; use a shorter key",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(node: &Node, value: &[u8]) -> Result<(), KvError> {
    let max = node.cfg.limits.value_bytes_max;
    if value.len() > max {
        return Err(KvError::InvalidArgument(format!(
            "the value is {} bytes, over the limit of {max} bytes; split it or store it elsewhere",
            value.len()
        )));
    }
    Ok(())
}

/// The consistency a read asked for (empty: the keyspace's default), checked against what the
/// keyspace offers.
fn consistency(
    policy: &meridian_types::KeyspacePolicy,
    requested: Option<&str>,
) -> Result<ReadConsistency, KvError> {
    let Some(requested) = requested.filter(|s| !s.is_empty()) else {
        return Ok(policy.default_read());
    };
    let c: ReadConsistency = requested.parse()?;
    policy.allows_read(c)?;
    Ok(c)
}

/// The group that serves `shard` of `ks` for this node: for an async keyspace, the group of
/// this node's region, or of the nearest listed region when this region is not listed (the
/// request passes through; nothing is stored here).
fn group_for(node: &Node, ks: &KeyspaceRecord, shard: u16) -> GroupId {
    if !ks.is_async() {
        // The group of the keyspace's current epoch (a promotion replaces every shard's group).
        let g = ks.shards[usize::from(shard)].group;
        debug_assert_eq!(
            g,
            sync_group_id(ks.id, shard, ks.epoch),
            "shards are in order"
        );
        return g;
    }
    let here = &node.cfg.region;
    let region = if ks.policy.regions.contains(here) {
        here.clone()
    } else {
        ks.policy
            .regions
            .iter()
            .min_by_key(|r| ((node.matrix.rtt_ms(here, r) * 1000.0) as u64, (*r).clone()))
            .cloned()
            .expect("an async keyspace lists at least 2 regions")
    };
    ks.region_group(&region, shard)
        .expect("the region is one of the keyspace's")
}

/// The session positions a read of `group` must respect: the entries of every group of the
/// same shard (an async keyspace's regions), or of the group itself.
fn needs_for(session: &SessionToken, group: GroupId) -> Vec<(GroupId, u64)> {
    session.select(|g| {
        g == group
            || (is_async_group(g)
                && is_async_group(group)
                && group_keyspace(g) == group_keyspace(group)
                && group_shard(g) == group_shard(group))
    })
}

fn observe(
    node: &Node,
    op: &'static str,
    keyspace: &str,
    consistency: &str,
    started: Instant,
    served: Option<&ServedBy>,
) {
    let region = served
        .map(|s| s.region.clone())
        .unwrap_or_else(|| "none".into());
    metrics::histogram!(
        "meridian_request_duration_seconds",
        "op" => op,
        "keyspace" => keyspace.to_string(),
        "consistency" => consistency.to_string(),
        "serving_region" => region,
        "node" => node.id().to_string(),
        "outcome" => if served.is_some() { "ok" } else { "error" },
    )
    .record(started.elapsed().as_secs_f64());
    node.requests.record(op, started.elapsed());
}

/// Request ids are 1 to 128 bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

pub fn check_request_id(id: &[u8]) -> Result<(), KvError> {
    if id.is_empty() || id.len() > REQUEST_ID_BYTES_MAX {
        return Err(KvError::InvalidArgument(format!(
            "the request id is {} bytes; give 1 to {REQUEST_ID_BYTES_MAX} bytes (a UUID is typical), the same on every retry of one write",
            id.len()
        )));
    }
    Ok(())
}

/// A write as the keyspace's type takes it: puts and deletes of an async `lww` keyspace are
/// stamped writes; a register's put is an `mv` update; a counter takes only `incr` and a set
/// only `set`. An operation that does not fit the type is refused naming it.
fn typed_command(keyspace: &str, ks: &KeyspaceRecord, cmd: Command) -> Result<Command, KvError> {
    let conflict = ks.policy.conflict;
    let wrong = |what: &str| {
        let hint = match conflict {
            Conflict::Lww => "use put, delete and get (and compare-and-set on a sync keyspace)",
            Conflict::Counter => "use POST /v1/kv/{keyspace}/{key}/incr with {\"by\": n} (`meridian incr`)",
            Conflict::Set => "use POST /v1/kv/{keyspace}/{key}/set with {\"add\": [...], \"remove\": [...]} (`meridian set`)",
            Conflict::Mv => "use put (with the meridian-context a get returned) and delete",
        };
        Err(KvError::FailedPrecondition(format!(
            "keyspace {keyspace:?} holds {} values (conflict = \"{}\"), so {what} does not apply; {hint}",
            conflict.as_str(),
            conflict.as_str()
        )))
    };
    match (cmd, conflict, ks.is_async()) {
        (Command::Update { op, .. }, _, _) if op.type_name() != conflict.as_str() => {
            wrong(match op {
                MergeOp::Incr(_) => "incr",
                MergeOp::Set { .. } => "a set update",
                MergeOp::Mv { .. } => "a register write",
            })
        }
        (cmd @ Command::Update { .. }, _, _) => Ok(cmd),
        (Command::Put { key, value }, Conflict::Lww, true) => Ok(Command::Write {
            key,
            value: Some(value),
            hlc: Hlc::default(),
            seen: Default::default(),
        }),
        (Command::Delete { key }, Conflict::Lww, true) => Ok(Command::Write {
            key,
            value: None,
            hlc: Hlc::default(),
            seen: Default::default(),
        }),
        (Command::Cas { .. }, Conflict::Lww, true) => Err(KvError::FailedPrecondition(format!(
            "keyspace {keyspace:?} is async (every region accepts writes and they merge last-writer-wins), so compare-and-set has no single order of writes to compare against; use put and delete, or a sync keyspace"
        ))),
        (cmd, Conflict::Lww, false) => Ok(cmd),
        (Command::Put { key, value }, Conflict::Mv, true) => Ok(Command::Update {
            key,
            op: MergeOp::Mv {
                value: Some(value),
                context: None,
            },
            hlc: None,
        }),
        (Command::Delete { key }, Conflict::Mv, true) => Ok(Command::Update {
            key,
            op: MergeOp::Mv {
                value: None,
                context: None,
            },
            hlc: None,
        }),
        (Command::Put { .. }, _, _) => wrong("a plain put"),
        (Command::Delete { .. }, _, _) => wrong("delete"),
        (Command::Cas { .. }, _, _) => wrong("compare-and-set"),
        (other, _, _) => Err(KvError::Internal(format!("{other} is not a client write"))),
    }
}

/// A register's put or delete carrying the causal context its client read (`None`: replace
/// what this region holds).
pub async fn put_mv(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    context: Option<meridian_crdt::VersionVector>,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    if let Some(v) = &value {
        check_value(node, v)?;
    }
    let op = if value.is_some() { "put" } else { "delete" };
    let r = write(
        node,
        op,
        keyspace,
        Command::Update {
            key,
            op: MergeOp::Mv { value, context },
            hlc: None,
        },
        session,
        request_id,
    )
    .await?;
    Ok((r.result, r.served_by))
}

/// Adds `by` to a counter.
pub async fn incr(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    by: i64,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    let cmd = Command::Update {
        key,
        op: MergeOp::Incr(by),
        hlc: None,
    };
    let r = write(node, "incr", keyspace, cmd, session, request_id).await?;
    Ok((r.result, r.served_by))
}

/// Adds and removes members of a set.
pub async fn set_update(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    add: Vec<Vec<u8>>,
    remove: Vec<Vec<u8>>,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    if add.is_empty() && remove.is_empty() {
        return Err(KvError::InvalidArgument(
            "the set update adds and removes nothing; give \"add\" or \"remove\" (arrays of strings)".into(),
        ));
    }
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        return Err(KvError::InvalidArgument(format!(
            "{:?} is both added and removed in one update; send one or the other",
            String::from_utf8_lossy(both)
        )));
    }
    let size: usize = add.iter().chain(&remove).map(|e| e.len() + 1).sum();
    check_value(
        node,
        &vec![0; size.min(node.cfg.limits.value_bytes_max + 1)],
    )?;
    let cmd = Command::Update {
        key,
        op: MergeOp::Set { add, remove },
        hlc: None,
    };
    let r = write(node, "set", keyspace, cmd, session, request_id).await?;
    Ok((r.result, r.served_by))
}

async fn write(
    node: &Arc<Node>,
    op: &'static str,
    keyspace: &str,
    cmd: Command,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<OpReply, KvError> {
    let started = Instant::now();
    // A sync write is linearizable; an async one is accepted by its region and merged later.
    let mut replication = "linearizable";
    let result = async {
        check_key(node, cmd.key())?;
        let ks = node.keyspace(keyspace).await?;
        let group = group_for(node, &ks, shard_for_key(cmd.key(), ks.policy.shards));
        if ks.is_async() {
            replication = "async";
        }
        let mut cmd = typed_command(keyspace, &ks, cmd)?;
        if let Some(id) = request_id {
            check_request_id(&id)?;
            cmd = Command::Idempotent {
                id,
                at_ms: 0,
                window_ms: node.cfg.request_id_window_s.saturating_mul(1000),
                cmd: Box::new(cmd),
            };
        }
        let r = node.execute(group, Op::Write(cmd), 0).await?;
        for (g, i) in &r.positions {
            session.observe(*g, *i);
        }
        if let Some(why) = &r.result.refused {
            return Err(KvError::FailedPrecondition(format!(
                "{why}; nothing was applied"
            )));
        }
        Ok(r)
    }
    .await;
    observe(
        node,
        op,
        keyspace,
        replication,
        started,
        result.as_ref().ok().map(|r| &r.served_by),
    );
    result
}

pub async fn put(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    value: Vec<u8>,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    check_value(node, &value)?;
    let r = write(
        node,
        "put",
        keyspace,
        Command::Put { key, value },
        session,
        request_id,
    )
    .await?;
    Ok((r.result, r.served_by))
}

pub async fn delete(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    let r = write(
        node,
        "delete",
        keyspace,
        Command::Delete { key },
        session,
        request_id,
    )
    .await?;
    Ok((r.result, r.served_by))
}

pub async fn cas(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    expected: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    session: &mut SessionToken,
    request_id: Option<Vec<u8>>,
) -> Result<(CommandResult, ServedBy), KvError> {
    if let Some(v) = &value {
        check_value(node, v)?;
    }
    let r = write(
        node,
        "cas",
        keyspace,
        Command::Cas {
            key,
            expected,
            value,
        },
        session,
        request_id,
    )
    .await?;
    Ok((r.result, r.served_by))
}

/// What a get found: the value, where it was served, and for an async keyspace the HLC of
/// the version read (a delete's too).
pub struct GetReply {
    pub value: Option<Vec<u8>>,
    pub served_by: ServedBy,
    pub version: Option<Hlc>,
}

pub async fn get(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    requested: Option<&str>,
    session: &mut SessionToken,
) -> Result<GetReply, KvError> {
    let started = Instant::now();
    let mut label = requested.unwrap_or("default").to_string();
    let result = async {
        check_key(node, &key)?;
        let ks = node.keyspace(keyspace).await?;
        let c = consistency(&ks.policy, requested)?;
        label = c.to_string();
        let group = group_for(node, &ks, shard_for_key(&key, ks.policy.shards));
        let needs = match c {
            ReadConsistency::Session => needs_for(session, group),
            _ => Vec::new(),
        };
        let consistency = c.into();
        node.execute(
            group,
            Op::Get {
                key,
                consistency,
                needs,
            },
            0,
        )
        .await
    }
    .await;
    observe(
        node,
        "get",
        keyspace,
        &label,
        started,
        result.as_ref().ok().map(|r| &r.served_by),
    );
    let r = result?;
    for (g, i) in &r.positions {
        session.observe(*g, *i);
    }
    Ok(GetReply {
        value: r.value,
        served_by: r.served_by,
        version: r.version,
    })
}

/// Keys starting with `prefix` across every shard, merged in key order, at most `limit`.
pub async fn scan(
    node: &Arc<Node>,
    keyspace: &str,
    prefix: Vec<u8>,
    limit: Option<usize>,
    requested: Option<&str>,
    session: &mut SessionToken,
) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, ServedBy), KvError> {
    let started = Instant::now();
    let max = node.cfg.limits.scan_limit_max;
    let limit = limit.filter(|l| *l > 0).unwrap_or(SCAN_LIMIT_DEFAULT);
    if limit > max {
        return Err(KvError::InvalidArgument(format!(
            "limit {limit} is over the maximum of {max}; page with a narrower prefix"
        )));
    }
    let ks = node.keyspace(keyspace).await?;
    let c = consistency(&ks.policy, requested)?;
    let shards = (0..ks.policy.shards).map(|s| {
        let group = group_for(node, &ks, s);
        let needs = match c {
            ReadConsistency::Session => needs_for(session, group),
            _ => Vec::new(),
        };
        let op = Op::Scan {
            prefix: prefix.clone(),
            limit,
            consistency: c.into(),
            needs,
        };
        node.execute(group, op, 0)
    });
    let replies = futures::future::try_join_all(shards).await;
    let served = replies.as_ref().ok().map(|_| node.served(None));
    observe(
        node,
        "scan",
        keyspace,
        &c.to_string(),
        started,
        served.as_ref(),
    );
    let replies = replies?;
    for r in &replies {
        for (g, i) in &r.positions {
            session.observe(*g, *i);
        }
    }
    let staleness_ms = replies
        .iter()
        .filter_map(|r| r.served_by.staleness_ms)
        .max();
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = replies.into_iter().flat_map(|r| r.rows).collect();
    rows.sort();
    rows.truncate(limit);
    Ok((rows, node.served(staleness_ms)))
}

/// What `conflicts` found: this region's ledger entries of a keyspace and how many entries
/// retention has dropped.
pub struct ConflictsReply {
    pub region: String,
    pub entries: Vec<meridian_consensus::ledger::Entry>,
    pub dropped: u64,
    pub regions: Vec<String>,
}

/// The conflict ledger of keyspace `keyspace` as this node's region recorded it (every shard
/// whose group has a replica here), oldest first: entries for `key` only when given, detected
/// at or after `since_ms`, at most `limit` (the newest kept when more match).
pub async fn conflicts(
    node: &Arc<Node>,
    keyspace: &str,
    key: Option<&[u8]>,
    since_ms: u64,
    limit: usize,
) -> Result<ConflictsReply, KvError> {
    let max = node.cfg.limits.scan_limit_max;
    if limit > max {
        return Err(KvError::InvalidArgument(format!(
            "limit {limit} is over the maximum of {max}; narrow it with since or key"
        )));
    }
    let ks = node.keyspace(keyspace).await?;
    let region = node.cfg.region.clone();
    let mut entries = Vec::new();
    let mut dropped = 0;
    if ks.is_async() {
        let engine = node.committer.engine();
        let max_age_ms = node.cfg.conflict_ledger_max_age_s.saturating_mul(1000);
        let oldest = node.clock.now_ms().saturating_sub(max_age_ms);
        for shard in 0..ks.policy.shards {
            let Some(group) = ks.region_group(&region, shard) else {
                break;
            };
            if node.group(group).is_none() {
                continue;
            }
            let internal = |e: meridian_storage::StorageError| {
                KvError::Internal(format!("reading the conflict ledger: {e}"))
            };
            let (next, d) =
                meridian_consensus::ledger::position(engine, group).map_err(internal)?;
            dropped += d;
            // Page through this group's ledger (bounded by its retention).
            let mut from = next.saturating_sub(node.cfg.conflict_ledger_max);
            loop {
                let page = meridian_consensus::ledger::entries(engine, group, from, 1024)
                    .map_err(internal)?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                entries.extend(page.into_iter().filter(|e| {
                    e.detected.physical_ms >= since_ms.max(oldest) && key.is_none_or(|k| e.key == k)
                }));
                from = last + 1;
            }
        }
    }
    entries.sort_by_key(|e| (e.detected, e.seq));
    if entries.len() > limit {
        entries.drain(..entries.len() - limit);
    }
    Ok(ConflictsReply {
        region,
        entries,
        dropped,
        regions: ks.policy.regions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(read: &str) -> meridian_types::KeyspacePolicy {
        serde_json::from_str(&format!(
            r#"{{"name":"k","home_region":"a","regions":["a"],"survive":"zone","read":"{read}"}}"#
        ))
        .unwrap()
    }

    // Goal: reads default to the keyspace's consistency and may only ask for weaker ones;
    // session reads are open to sync keyspaces too.
    #[test]
    fn requested_consistency_is_checked() {
        let bounded: ReadConsistency = "bounded:100".parse().unwrap();
        assert_eq!(consistency(&policy("bounded:100"), None).unwrap(), bounded);
        assert!(consistency(&policy("bounded:100"), Some("linearizable")).is_err());
        assert!(consistency(&policy("linearizable"), Some("bounded:5")).is_ok());
        assert!(consistency(&policy("linearizable"), Some("session")).is_ok());
        assert!(consistency(&policy("linearizable"), Some("nonsense")).is_err());
    }
}
