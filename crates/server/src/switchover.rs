//! Planned switchover: moves a sync keyspace's home region to another of its regions with
//! RPO 0 (`POST /v1/failover/switchover`, gRPC `Failover.Switchover`,
//! `meridian failover switchover KEYSPACE --to REGION`).
//!
//! The node that takes the request records a `switchover` decision in the failover log, moves
//! the catalogue's home (and, for `survive = "zone"`, the voters) with one compare-and-swap, and
//! then drives every shard to match:
//! - `survive = "zone"`: the new region's learners become voters once caught up (openraft's
//!   joint consensus: every write meanwhile needs a majority of both regions), leadership moves
//!   to one of them, and the old region's voters become learners. Writes pause only for the
//!   hand-over.
//! - `survive = "region"`: the voters already span the regions; leadership moves to a voter in
//!   the new home (the reconcile loop keeps it there, as it keeps leaders in any home region).
//!
//! Nothing acknowledged can be lost: every step is a Raft membership change or a leader
//! transfer, which never drops a committed entry. The write pause of each shard is measured by
//! the node that takes leadership, on its own monotonic clock, from the moment it asks the old
//! leader to hand over until its first entry of the new term has committed, so the measure
//! includes the request's trip to the old leader and never understates the pause.
//! The command is idempotent: after an interruption, running it again finishes the moves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use meridian_control::failover::Action;
use meridian_types::catalog::{self, KeyspaceRecord, ShardPlacement};
use meridian_types::{GroupId, KvError, NodeId, ReadConsistency, Replication, Survive, META_GROUP};

use crate::node::{Node, REQUEST_TIMEOUT};
use crate::peer::{Op, PeerRequest, PeerResponse, VoterChange};
use crate::transport::Endpoint;

/// How long one shard's moves may take in all (catching up included).
pub const SHARD_WAIT: Duration = Duration::from_secs(60);
/// How long a new voter may take to catch up before it is made a voter.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// How long the new leader waits for its election and first commit after asking.
const HAND_OVER_WAIT: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(50);

/// One shard's switchover.
#[derive(Clone, Debug, Serialize)]
pub struct ShardSwitch {
    pub shard: u16,
    pub group: GroupId,
    /// The leader after the move.
    pub leader: NodeId,
    /// Milliseconds in which the shard accepted no write (0 when its leader was there already).
    pub pause_ms: u64,
    /// Where the pause went (see [`HandOver`]).
    pub hand_over: HandOver,
    pub voters: Vec<NodeId>,
}

/// What `switchover` did.
#[derive(Clone, Debug, Serialize)]
pub struct SwitchoverReport {
    pub keyspace: String,
    pub from: String,
    pub to: String,
    pub survive: Survive,
    /// The decision log entry that records the switchover (none when the catalogue already
    /// had this home: a repeated command that only finished the moves).
    pub decision: Option<u64>,
    pub shards: Vec<ShardSwitch>,
    /// The longest write pause of any shard.
    pub pause_ms_max: u64,
    pub took_ms: u64,
}

/// Moves `keyspace`'s home region to `to` (see the module documentation).
pub async fn switchover(
    node: &Arc<Node>,
    by: &str,
    reason: &str,
    keyspace: &str,
    to: &str,
) -> Result<SwitchoverReport, KvError> {
    let started = Instant::now();
    let (record, bytes) = read_record(node, keyspace).await?;
    let from = record.policy.home_region.clone().unwrap_or_default();
    let target = planned(node, &record, to).await?;
    let decision = if from == to {
        None
    } else {
        let state = crate::failover::local_state(node);
        if let Some(ev) = state.evacuated.get(to) {
            return Err(KvError::FailedPrecondition(format!(
                "region {to:?} was evacuated by failover decision #{}; fail it back first (`meridian failover status`)",
                ev.decision
            )));
        }
        let action = Action::Switchover {
            keyspace: keyspace.to_string(),
            from: from.clone(),
            to: to.to_string(),
        };
        let entry = crate::failover::append(
            node,
            &format!("operator:{by}"),
            reason,
            crate::failover::views(node),
            |_| Ok(action.clone()),
        )
        .await?;
        commit_record(node, &bytes, &target).await?;
        Some(entry.seq)
    };
    tracing::info!(keyspace, %from, to, ?decision, "switchover: moving the shards");
    let moves = target.shards.iter().map(|shard| {
        let old = record.placement(shard.group).cloned();
        move_shard(node, shard.clone(), old, to.to_string())
    });
    let shards = futures::future::try_join_all(moves).await?;
    let pause_ms_max = shards.iter().map(|s| s.pause_ms).max().unwrap_or(0);
    Ok(SwitchoverReport {
        keyspace: keyspace.to_string(),
        from,
        to: to.to_string(),
        survive: record.policy.survive,
        decision,
        shards,
        pause_ms_max,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// Keyspace `name`'s catalogue record, read linearizably, with its bytes (for a CAS).
pub(crate) async fn read_record(
    node: &Arc<Node>,
    name: &str,
) -> Result<(KeyspaceRecord, Vec<u8>), KvError> {
    let key = catalog::keyspace_key(name).into_bytes();
    let op = Op::get(key, ReadConsistency::Linearizable);
    let Some(bytes) = node.execute(META_GROUP, op, 0).await?.value else {
        return Err(KvError::NotFound(format!(
            "keyspace {name:?} does not exist; `meridian keyspace list` shows the keyspaces"
        )));
    };
    let record = serde_json::from_slice(&bytes)
        .map_err(|e| KvError::Internal(format!("catalogue record of {name:?}: {e}")))?;
    Ok((record, bytes))
}

/// The record after the switchover: the new home and, for `survive = "zone"`, the voters
/// placed in it (over the same replicas: nothing moves to a node that holds no copy).
async fn planned(
    node: &Arc<Node>,
    record: &KeyspaceRecord,
    to: &str,
) -> Result<KeyspaceRecord, KvError> {
    let name = &record.policy.name;
    if record.policy.replication == Replication::Async {
        return Err(KvError::FailedPrecondition(format!(
            "keyspace {name:?} is async: every region in its `regions` accepts writes already, so it has no home region to move"
        )));
    }
    if !record.policy.regions.iter().any(|r| r == to) {
        return Err(KvError::InvalidArgument(format!(
            "--to {to:?} is not one of keyspace {name:?}'s regions {:?}; a switchover keeps the data where its policy allows",
            record.policy.regions
        )));
    }
    if record.policy.witness_region.as_deref() == Some(to) {
        return Err(KvError::InvalidArgument(format!(
            "--to {to:?} is keyspace {name:?}'s witness region: its voter holds no data and never leads; choose a data region"
        )));
    }
    let mut target = record.clone();
    target.policy.home_region = Some(to.to_string());
    let regions = node.regions_by_node();
    match record.policy.survive {
        Survive::Region => {
            for s in &record.shards {
                if !s
                    .voters
                    .iter()
                    .any(|v| regions.get(v).is_some_and(|r| r == to))
                {
                    return Err(KvError::FailedPrecondition(format!(
                        "shard {} of {name:?} has no voter in {to:?}, so leadership cannot move there; choose a region that holds voters",
                        s.shard
                    )));
                }
            }
        }
        Survive::Zone => {
            let replicas: BTreeSet<NodeId> =
                record.shards.iter().flat_map(|s| s.replicas()).collect();
            let nodes: Vec<_> = node
                .catalog_nodes_linearizable()
                .await?
                .into_iter()
                .filter(|n| replicas.contains(&n.id))
                .collect();
            let mut placed =
                meridian_control::place_keyspace(&target.policy, &nodes, &node.matrix)?;
            for (new, old) in placed.iter_mut().zip(&record.shards) {
                assert_eq!(new.shard, old.shard, "shards are placed in order");
                // The group of the current epoch (placement names epoch 0's).
                new.group = old.group;
                new.seed = old.seed.clone();
                new.initialiser = old.initialiser();
                debug_assert_eq!(
                    new.replicas().collect::<BTreeSet<_>>(),
                    old.replicas().collect::<BTreeSet<_>>(),
                    "a switchover keeps every shard's replicas"
                );
            }
            target.shards = placed;
        }
    }
    Ok(target)
}

async fn commit_record(
    node: &Arc<Node>,
    expected: &[u8],
    target: &KeyspaceRecord,
) -> Result<(), KvError> {
    let key = catalog::keyspace_key(&target.policy.name).into_bytes();
    let value = serde_json::to_vec(target).expect("records encode");
    if !node.meta_cas(key, expected.to_vec(), value).await? {
        return Err(KvError::FailedPrecondition(format!(
            "keyspace {:?} changed while the switchover was being planned; run the switchover again",
            target.policy.name
        )));
    }
    Ok(())
}

/// Moves one shard: new voters in (zone), leadership over, old voters out (zone).
async fn move_shard(
    node: &Arc<Node>,
    target: ShardPlacement,
    old: Option<ShardPlacement>,
    to: String,
) -> Result<ShardSwitch, KvError> {
    let deadline = Instant::now() + SHARD_WAIT;
    let regions = node.regions_by_node();
    let in_to = |id: &NodeId| regions.get(id).is_some_and(|r| *r == to);
    let new_voters: Vec<NodeId> = target.voters.clone();
    let leaving: Vec<NodeId> = old
        .as_ref()
        .map(|o| {
            o.voters
                .iter()
                .filter(|v| !new_voters.contains(v))
                .copied()
                .collect()
        })
        .unwrap_or_default();
    if !leaving.is_empty() || new_voters.iter().any(|v| !in_to(v)) {
        reconfigure(
            node,
            target.group,
            VoterChange::AddVoters(new_voters.clone()),
            deadline,
        )
        .await?;
    }
    if !leaving.is_empty() {
        // Every old voter but the leader stops voting first, so that the new region's voters
        // alone are a quorum of what remains (n new voters and the old leader): the hand-over's
        // election and first commit then need no WAN round trip, and only the hand-over
        // message crosses the WAN while writes pause. With all old voters still in, both
        // would wait for an old-region vote, and for the new leader to find, by binary search
        // over the WAN, where an old-region follower's log matches.
        let others = VoterChange::RemoveVotersButLeader(leaving.clone());
        reconfigure(node, target.group, others, deadline).await?;
    }
    let Some(&taker) = new_voters.iter().find(|v| in_to(v)) else {
        return Err(KvError::FailedPrecondition(format!(
            "shard {} has no voter in {to:?} to lead it",
            target.shard
        )));
    };
    let (leader, hand_over) = take_leadership(node, target.group, taker, deadline).await?;
    if !leaving.is_empty() {
        reconfigure(
            node,
            target.group,
            VoterChange::RemoveVoters(leaving),
            deadline,
        )
        .await?;
    }
    Ok(ShardSwitch {
        shard: target.shard,
        group: target.group,
        leader,
        pause_ms: hand_over.pause_ms,
        hand_over,
        voters: new_voters,
    })
}

/// Asks node `taker` to take the group's leadership; returns the leader after the hand-over
/// and the pause it measured.
async fn take_leadership(
    node: &Arc<Node>,
    group: GroupId,
    taker: NodeId,
    deadline: Instant,
) -> Result<(NodeId, HandOver), KvError> {
    loop {
        let req = PeerRequest::TakeLeadership { group };
        let answer = match call(node, taker, req, deadline).await {
            Ok(PeerResponse::TookLeadership(r)) => r,
            Ok(_) => return Err(wrong_reply()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(hand_over) => return Ok((taker, hand_over)),
            Err(e) if Instant::now() < deadline && e.is_retriable() => {
                tracing::debug!(group, taker, error = %e, "hand-over retried");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends `change` to the group's leader, following leader hints, until it is done or the
/// deadline passes.
async fn reconfigure(
    node: &Arc<Node>,
    group: GroupId,
    change: VoterChange,
    deadline: Instant,
) -> Result<(), KvError> {
    let mut guess = leader_guess(node, group);
    loop {
        let answer = match guess {
            Some(leader) => {
                let req = PeerRequest::Reconfigure {
                    group,
                    change: change.clone(),
                };
                match call(node, leader, req, deadline).await {
                    Ok(PeerResponse::Reconfigure(r)) => r,
                    Ok(_) => return Err(wrong_reply()),
                    Err(e) => Err(e),
                }
            }
            None => Err(KvError::Unavailable(format!(
                "group {group} has no known leader"
            ))),
        };
        match answer {
            Ok(None) => return Ok(()),
            Ok(Some(hint)) => guess = Some(hint),
            Err(e) if Instant::now() < deadline && e.is_retriable() => {
                tracing::debug!(group, ?change, error = %e, "switchover step retried");
                tokio::time::sleep(RETRY).await;
                guess = leader_guess(node, group).or(guess);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where this node thinks the group's leader is: its own replica's view, else the last leader
/// the reconcile loop saw, else the first voter the catalogue lists.
fn leader_guess(node: &Node, group: GroupId) -> Option<NodeId> {
    if let Some(g) = node.group(group) {
        if let Some(l) = g.raft.metrics().borrow_watched().current_leader {
            return Some(l);
        }
    }
    if let Some(l) = node
        .last_leaders
        .lock()
        .unwrap()
        .get(&group)
        .copied()
        .flatten()
    {
        return Some(l);
    }
    node.catalog_keyspaces()
        .iter()
        .find_map(|k| k.placement(group).and_then(|s| s.voters.first().copied()))
}

async fn call(
    node: &Arc<Node>,
    to: NodeId,
    req: PeerRequest,
    deadline: Instant,
) -> Result<PeerResponse, KvError> {
    let Some((addr, region)) = node.node_addr(to) else {
        return Err(KvError::Unavailable(format!(
            "node {to} is not in this node's catalogue yet"
        )));
    };
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(SHARD_WAIT)
        .max(REQUEST_TIMEOUT);
    node.transport
        .call(&Endpoint { node: to, region }, &addr, req, wait)
        .await
        .map_err(|e| KvError::Unavailable(format!("node {to}: {e}")))
}

fn wrong_reply() -> KvError {
    KvError::Internal("peer answered with the wrong message type".into())
}

// ---- the steps, on the nodes that carry them out ----

/// A hand-over as the node taking leadership measured it, each figure in milliseconds since
/// it asked the old leader to hand over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOver {
    /// Until its first entry of the new term committed: the write pause (an upper bound: the
    /// old leader stopped accepting writes only when the request reached it).
    pub pause_ms: u64,
    /// Until the old leader answered that it had started the hand-over.
    pub answered_ms: u64,
    /// Until a new leader was elected.
    pub elected_ms: u64,
}

/// On a node that should lead `g`'s group: asks the leader to hand over and waits until a
/// leader in this node's region has committed an entry of its term. Returns the pause.
pub async fn serve_take_leadership(node: &Arc<Node>, group: GroupId) -> Result<HandOver, KvError> {
    let g = node.group(group).ok_or_else(|| {
        KvError::Unavailable(format!(
            "node {} holds no replica of group {group} yet",
            node.id()
        ))
    })?;
    let me = node.id();
    let region = node.cfg.region.clone();
    let leader_before = g.raft.metrics().borrow_watched().current_leader;
    // A leader in this region whose term has a committed entry here: writes flow again.
    let settled = |m: &openraft::RaftMetrics<meridian_consensus::TypeConfig>| {
        let leader_here = m.current_leader.is_some_and(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .is_some_and(|n| n.region == region)
        });
        let term_applied = m
            .last_applied
            .as_ref()
            .is_some_and(|l| l.leader_id.term == m.current_term);
        leader_here && term_applied
    };
    if settled(&g.raft.metrics().borrow_watched()) {
        return Ok(HandOver::default());
    }
    let asked = Instant::now();
    let deadline = asked + HAND_OVER_WAIT;
    let ms = |since: Instant| since.elapsed().as_millis() as u64;
    reconfigure(node, group, VoterChange::TransferTo(me), deadline).await?;
    let answered_ms = ms(asked);
    let failed = |e: openraft::metrics::WaitError| {
        KvError::Unavailable(format!(
            "leadership of group {group} did not reach {region} within {HAND_OVER_WAIT:?} ({e}); retry the switchover"
        ))
    };
    let remaining = || Some(deadline.saturating_duration_since(Instant::now()));
    g.raft
        .wait(remaining())
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != leader_before,
            "switchover: a new leader",
        )
        .await
        .map_err(failed)?;
    let elected_ms = ms(asked);
    g.raft
        .wait(remaining())
        .metrics(settled, "switchover: the new term's first commit")
        .await
        .map_err(failed)?;
    let hand_over = HandOver {
        pause_ms: ms(asked),
        answered_ms,
        elected_ms,
    };
    tracing::info!(group, ?hand_over, "took leadership for a switchover");
    Ok(hand_over)
}

/// On `group`'s leader: carries out `change`. `Ok(Some(id))` when this node does not lead.
pub async fn serve_reconfigure(
    node: &Arc<Node>,
    group: GroupId,
    change: VoterChange,
) -> Result<Option<NodeId>, KvError> {
    let g = node.group(group).ok_or_else(|| {
        KvError::Unavailable(format!(
            "node {} holds no replica of group {group}",
            node.id()
        ))
    })?;
    let metrics = g.raft.metrics().borrow_watched().clone();
    if metrics.current_leader != Some(node.id()) {
        return match metrics.current_leader {
            Some(l) => Ok(Some(l)),
            None => Err(KvError::Unavailable(format!(
                "group {group} is electing a leader"
            ))),
        };
    }
    let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
    let raft_err = |e: &dyn std::fmt::Display| {
        KvError::Unavailable(format!("group {group}: membership change deferred: {e}"))
    };
    match &change {
        VoterChange::TransferTo(to) => {
            let to = *to;
            if !voters.contains(&to) {
                return Err(KvError::FailedPrecondition(format!(
                    "node {to} is not a voter of group {group}"
                )));
            }
            if to != node.id() {
                g.raft
                    .trigger()
                    .transfer_leader(to)
                    .await
                    .map_err(|e| raft_err(&e))?;
            }
            Ok(None)
        }
        VoterChange::AddVoters(ids) => {
            let add: BTreeSet<NodeId> = ids
                .iter()
                .copied()
                .filter(|id| !voters.contains(id))
                .collect();
            if add.is_empty() {
                return Ok(None);
            }
            wait_caught_up(&g, &add).await?;
            g.raft
                .change_membership(ChangeMembers::AddVoterIds(add), true)
                .await
                .map_err(|e| raft_err(&e))?;
            Ok(None)
        }
        VoterChange::RemoveVoters(ids) | VoterChange::RemoveVotersButLeader(ids) => {
            let but_leader = matches!(change, VoterChange::RemoveVotersButLeader(_));
            let remove: BTreeSet<NodeId> = ids
                .iter()
                .copied()
                .filter(|id| voters.contains(id) && !(but_leader && *id == node.id()))
                .collect();
            if remove.is_empty() {
                return Ok(None);
            }
            if remove.contains(&node.id()) {
                return Err(KvError::Unavailable(format!(
                    "node {} still leads group {group}; leadership moves before it stops voting",
                    node.id()
                )));
            }
            assert!(
                remove.len() < voters.len(),
                "a switchover never removes every voter"
            );
            // retain: the old voters stay as learners, serving local reads in their region.
            g.raft
                .change_membership(ChangeMembers::RemoveVoters(remove), true)
                .await
                .map_err(|e| raft_err(&e))?;
            Ok(None)
        }
    }
}

/// Waits until every node of `ids` has replicated the leader's log to within
/// `CAUGHT_UP_ENTRIES_MAX`, so making them voters does not stall commits behind their catch-up.
async fn wait_caught_up(
    g: &meridian_consensus::Group,
    ids: &BTreeSet<NodeId>,
) -> Result<(), KvError> {
    let slack = meridian_control::leadership::CAUGHT_UP_ENTRIES_MAX;
    let caught_up = |m: &openraft::RaftMetrics<meridian_consensus::TypeConfig>| {
        let last = m.last_log_index.unwrap_or(0);
        ids.iter().all(|id| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .is_some_and(|l| l.index() + slack >= last)
        })
    };
    g.raft
        .wait(Some(CATCH_UP_WAIT))
        .metrics(caught_up, "new voters caught up")
        .await
        .map(|_| ())
        .map_err(|e| {
            KvError::Unavailable(format!(
                "group {}: nodes {ids:?} did not catch up within {CATCH_UP_WAIT:?} ({e}); retry the switchover",
                g.id
            ))
        })
}
