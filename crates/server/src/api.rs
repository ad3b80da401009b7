//! The key-value operations both front ends (HTTP/JSON and gRPC) call: validation against the
//! node's limits, keyspace lookup, routing to shards, and request metrics.

use std::sync::Arc;
use std::time::Instant;

use meridian_types::ids::group_id;
use meridian_types::limits::SCAN_LIMIT_DEFAULT;
use meridian_types::wire::{Command, CommandResult, ServedBy};
use meridian_types::{shard_for_key, KvError, ReadConsistency};

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
    offered: ReadConsistency,
    requested: Option<&str>,
) -> Result<ReadConsistency, KvError> {
    let Some(requested) = requested.filter(|s| !s.is_empty()) else {
        return Ok(offered);
    };
    let c: ReadConsistency = requested.parse()?;
    if c == ReadConsistency::Session {
        return Err(KvError::FailedPrecondition(
            "session consistency is not available in this version; use linearizable, bounded:<ms> or eventual".into(),
        ));
    }
    if !offered.allows(c) {
        return Err(KvError::FailedPrecondition(format!(
            "the keyspace offers {offered} reads at most; ask for {offered} or weaker"
        )));
    }
    Ok(c)
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
}

async fn write(
    node: &Arc<Node>,
    op: &'static str,
    keyspace: &str,
    cmd: Command,
) -> Result<OpReply, KvError> {
    let started = Instant::now();
    let result = async {
        check_key(node, cmd.key())?;
        let ks = node.keyspace(keyspace).await?;
        let group = group_id(ks.id, shard_for_key(cmd.key(), ks.policy.shards));
        node.execute(group, Op::Write(cmd), 0).await
    }
    .await;
    observe(
        node,
        op,
        keyspace,
        "linearizable",
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
) -> Result<(CommandResult, ServedBy), KvError> {
    check_value(node, &value)?;
    let r = write(node, "put", keyspace, Command::Put { key, value }).await?;
    Ok((r.result, r.served_by))
}

pub async fn delete(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
) -> Result<(CommandResult, ServedBy), KvError> {
    let r = write(node, "delete", keyspace, Command::Delete { key }).await?;
    Ok((r.result, r.served_by))
}

pub async fn cas(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    expected: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
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
    )
    .await?;
    Ok((r.result, r.served_by))
}

pub async fn get(
    node: &Arc<Node>,
    keyspace: &str,
    key: Vec<u8>,
    requested: Option<&str>,
) -> Result<(Option<Vec<u8>>, ServedBy), KvError> {
    let started = Instant::now();
    let mut label = requested.unwrap_or("default").to_string();
    let result = async {
        check_key(node, &key)?;
        let ks = node.keyspace(keyspace).await?;
        let c = consistency(ks.policy.read, requested)?;
        label = c.to_string();
        let group = group_id(ks.id, shard_for_key(&key, ks.policy.shards));
        node.execute(
            group,
            Op::Get {
                key,
                consistency: c.into(),
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
    Ok((r.value, r.served_by))
}

/// Keys starting with `prefix` across every shard, merged in key order, at most `limit`.
pub async fn scan(
    node: &Arc<Node>,
    keyspace: &str,
    prefix: Vec<u8>,
    limit: Option<usize>,
    requested: Option<&str>,
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
    let c = consistency(ks.policy.read, requested)?;
    let shards = (0..ks.policy.shards).map(|s| {
        let op = Op::Scan {
            prefix: prefix.clone(),
            limit,
            consistency: c.into(),
        };
        node.execute(group_id(ks.id, s), op, 0)
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
    let staleness_ms = replies
        .iter()
        .filter_map(|r| r.served_by.staleness_ms)
        .max();
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = replies.into_iter().flat_map(|r| r.rows).collect();
    rows.sort();
    rows.truncate(limit);
    Ok((rows, node.served(staleness_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: reads default to the keyspace's consistency and may only ask for weaker ones.
    #[test]
    fn requested_consistency_is_checked() {
        let bounded: ReadConsistency = "bounded:100".parse().unwrap();
        assert_eq!(consistency(bounded, None).unwrap(), bounded);
        assert!(consistency(bounded, Some("linearizable")).is_err());
        assert!(consistency(ReadConsistency::Linearizable, Some("bounded:5")).is_ok());
        assert!(consistency(ReadConsistency::Linearizable, Some("nonsense")).is_err());
    }
}
