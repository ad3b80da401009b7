//! The node's background control loop: join the cluster, grow the metadata group, open the
//! groups the catalogue places here, initialise and complete them, and keep leaders in their
//! home regions. Every step is idempotent, so a tick that fails is simply repeated.

use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meridian_consensus::{Group, PeerNode};
use meridian_control::{LeaderObservation, MetaVoterChange};
use meridian_types::catalog::{KeyspaceRecord, NodeRecord, ShardPlacement};
use meridian_types::{NodeId, META_GROUP};
use openraft::ChangeMembers;

use crate::node::{LeaderEvent, Node, REQUEST_TIMEOUT};
use crate::observe::ChangeKind;
use crate::peer::{PeerRequest, PeerResponse};
use crate::transport::Endpoint;

pub const TICK: Duration = Duration::from_millis(200);
const JOIN_RETRY: Duration = Duration::from_millis(300);

/// Joins through the seeds (or, on the bootstrap node, records itself) until the node is in the
/// catalogue and the metadata group. Repeated at every start, so changed addresses are recorded.
pub async fn join(node: Arc<Node>) {
    let rec = node.record();
    loop {
        let joined = if node.cfg.bootstrap {
            node.handle_join(rec.clone()).await.is_ok()
        } else {
            join_via_seeds(&node, &rec).await
        };
        let in_catalog = node.catalog_nodes().contains(&rec);
        if joined && in_catalog {
            tracing::info!(node = rec.id, region = %rec.region, "joined the cluster");
            return;
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

async fn join_via_seeds(node: &Arc<Node>, rec: &NodeRecord) -> bool {
    for seed in node.cfg.seeds.iter().filter(|s| **s != rec.peer_addr) {
        // The seed's id and region are unknown before joining; region "" means no WAN delay.
        let to = Endpoint {
            node: 0,
            region: String::new(),
        };
        match node
            .transport
            .call(&to, seed, PeerRequest::Join(rec.clone()), REQUEST_TIMEOUT)
            .await
        {
            Ok(PeerResponse::Join(Ok(()))) => return true,
            Ok(PeerResponse::Join(Err(e))) => {
                tracing::debug!(%seed, error = %e, "join refused; retrying")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%seed, error = %e, "seed unreachable; retrying"),
        }
    }
    false
}

/// Runs [`tick`] forever.
pub async fn run(node: Arc<Node>) {
    loop {
        tick(&node).await;
        tokio::time::sleep(TICK).await;
    }
}

pub async fn tick(node: &Arc<Node>) {
    if let Some(meta) = node.group(META_GROUP) {
        if meta.raft.is_leader() {
            grow_meta_group(node, &meta).await;
        }
        observe_leader(node, &meta, "meta", 0);
    }
    let keyspaces = node.catalog_keyspaces();
    node.refresh_cached_keyspaces(&keyspaces);
    for ks in keyspaces {
        for shard in &ks.shards {
            if !shard.replicas().any(|n| n == node.id()) {
                continue;
            }
            let g = match node.ensure_group(shard.group).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(group = shard.group, error = %e, "cannot open group");
                    continue;
                }
            };
            if shard.initialiser() == Some(node.id())
                && !g.raft.is_initialized().await.unwrap_or(true)
            {
                initialise(node, &g, shard).await;
            }
            if g.raft.is_leader() && node.is_witness() {
                hand_away(node, &g).await;
            } else if g.raft.is_leader() {
                add_missing_learners(node, &g, shard).await;
                keep_leader_home(node, &g, &ks).await;
                if ks.is_async() {
                    node.ensure_shippers(&ks, &g, shard.shard);
                }
            }
            observe_leader(node, &g, &ks.policy.name, shard.shard);
        }
    }
    crate::promotion::reconcile(node, &node.catalog_keyspaces()).await;
    update_leader_gauges(node);
    crate::observe::measure_lag(node);
    crate::failover::tick(node).await;
}

/// A witness that finds itself leading (a vote it could not refuse, a transfer) hands the
/// leadership at once to the most caught-up voter that is not a witness.
async fn hand_away(node: &Node, g: &Group) {
    let witnesses = node.witness_ids();
    let m = g.raft.metrics().borrow_watched().clone();
    let target = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| !witnesses.contains(id) && *id != node.id())
        .max_by_key(|id| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |l| l.index())
        });
    if let Some(t) = target {
        tracing::warn!(
            group = g.id,
            to = t,
            "a witness leads: handing leadership away"
        );
        let _ = g.raft.trigger().transfer_leader(t).await;
    }
}

fn peer_nodes(
    node: &Node,
    ids: impl Iterator<Item = NodeId>,
) -> Option<BTreeMap<NodeId, PeerNode>> {
    let nodes: BTreeMap<NodeId, NodeRecord> = node
        .catalog_nodes()
        .into_iter()
        .map(|n| (n.id, n))
        .collect();
    ids.map(|id| {
        nodes.get(&id).map(|n| {
            (
                id,
                PeerNode {
                    addr: n.peer_addr.clone(),
                    region: n.region.clone(),
                },
            )
        })
    })
    .collect()
}

async fn initialise(node: &Node, g: &Group, shard: &ShardPlacement) {
    let Some(voters) = peer_nodes(node, shard.voters.iter().copied()) else {
        return;
    };
    match g.raft.initialize(voters).await {
        Ok(()) => tracing::info!(group = g.id, "initialised group"),
        Err(e) => tracing::debug!(group = g.id, error = %e, "initialise skipped"),
    }
}

async fn add_missing_learners(node: &Node, g: &Group, shard: &ShardPlacement) {
    let membership = g.raft.metrics().borrow_watched().membership_config.clone();
    let missing: Vec<NodeId> = shard
        .learners
        .iter()
        .copied()
        .filter(|id| membership.membership().get_node(id).is_none())
        .collect();
    let Some(learners) = peer_nodes(node, missing.into_iter()) else {
        return;
    };
    for (id, peer) in learners {
        if let Err(e) = g.raft.add_learner(id, peer, false).await {
            tracing::debug!(group = g.id, learner = id, error = %e, "add learner deferred");
        }
    }
}

/// On the metadata leader: every catalogue node becomes a learner, and the voters move towards
/// up to five spread over the regions (`meridian_control::meta_voters::next_change`): caught-up
/// learners are promoted, and a voter of an over-represented region gives way once a region
/// that joined later has a caught-up node.
async fn grow_meta_group(node: &Node, meta: &Group) {
    let metrics = meta.raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership().clone();
    let nodes = node.catalog_nodes();
    for n in &nodes {
        if membership.get_node(&n.id).is_none() {
            let peer = PeerNode {
                addr: n.peer_addr.clone(),
                region: n.region.clone(),
            };
            let _ = meta.raft.add_learner(n.id, peer, false).await;
            return;
        }
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = |id: &NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .is_some_and(|m| {
                m.index() + meridian_control::leadership::CAUGHT_UP_ENTRIES_MAX >= last
            })
    };
    let Some(change) =
        meridian_control::meta_voters_next_change(&voters, &nodes, |id| matched(&id))
    else {
        return;
    };
    let (members, what) = match &change {
        MetaVoterChange::Add(add) => (
            ChangeMembers::AddVoterIds(add.iter().copied().collect()),
            "promoted metadata voters",
        ),
        MetaVoterChange::Replace(goal) => (
            ChangeMembers::ReplaceAllVoters(goal.clone()),
            "moved metadata voters so no region holds a majority",
        ),
    };
    // Removed voters stay learners (retain), so they keep the catalogue.
    match meta.raft.change_membership(members, true).await {
        Ok(_) => tracing::info!(?change, from = ?voters, "{what}"),
        Err(e) => tracing::debug!(error = %e, "metadata voter change deferred"),
    }
}

/// On a leader outside the region its keyspace's leaders belong in (the home region, or the
/// nearest listed region the failover log has not evacuated): hands leadership to a caught-up
/// voter there once it has stayed caught up for the return delay (see
/// `meridian_control::leadership`). While failover is paused no leader is moved.
async fn keep_leader_home(node: &Node, g: &Group, ks: &KeyspaceRecord) {
    let Some(home) = ks.policy.home_region.clone() else {
        return;
    };
    let failover = crate::failover::local_state(node);
    if !failover.may_move_leaders() {
        return;
    }
    // Leaders never go to the witness region (its voter holds no data).
    let mut nearest: Vec<String> = ks
        .policy
        .regions
        .iter()
        .filter(|r| ks.policy.witness_region.as_ref() != Some(*r))
        .cloned()
        .collect();
    nearest.sort_by_key(|r| ((node.matrix.rtt_ms(&home, r) * 1000.0) as u64, r.clone()));
    let Some(home) = failover
        .preferred_region(&home, &nearest)
        .map(str::to_string)
    else {
        return;
    };
    let metrics = g.raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters = membership
        .voter_ids()
        .filter(|id| *id != node.id())
        .map(|id| {
            let region = membership
                .get_node(&id)
                .map(|n| n.region.clone())
                .unwrap_or_default();
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index());
            (id, region, matched)
        })
        .collect();
    let obs = LeaderObservation {
        group: g.id,
        home_region: home,
        my_region: node.cfg.region.clone(),
        my_last_index: metrics.last_log_index.unwrap_or(0),
        voters,
        leaving: failover.evacuated.contains_key(&node.cfg.region),
        stagger_ms: u64::from(meridian_types::ids::group_shard(g.id))
            * meridian_control::leadership::RETURN_STAGGER_MS,
    };
    let target = node
        .placement
        .lock()
        .unwrap()
        .decide(&obs, node.clock.now_ms());
    if let Some(target) = target {
        tracing::info!(
            group = g.id,
            to = target,
            "returning leadership to the home region"
        );
        let _ = g.raft.trigger().transfer_leader(target).await;
    }
}

fn observe_leader(node: &Node, g: &Group, keyspace: &str, shard: u16) {
    let Some(current) = g.raft.metrics().borrow_watched().current_leader else {
        // Leaderless while an election runs: keep the last leader, so the change is seen
        // against it.
        return;
    };
    let previous = node
        .last_leaders
        .lock()
        .unwrap()
        .insert(g.id, Some(current));
    let from = previous.flatten();
    if from == Some(current) {
        return;
    }
    let regions = node.regions_by_node();
    let to_region = regions.get(&current).cloned();
    let from_region = from.and_then(|f| regions.get(&f).cloned());
    let (kind, rto_ms) = crate::observe::classify_change(node, from, g.timing.election_min_ms);
    let mut reason = match (&from_region, &to_region) {
        (None, _) => "first leader observed".to_string(),
        (Some(a), Some(b)) if a == b => format!("leader changed within {a}"),
        (Some(a), Some(b)) => format!("leadership moved from {a} to {b}"),
        _ => "leader changed".to_string(),
    };
    if kind == ChangeKind::Failover {
        reason = match rto_ms {
            Some(ms) => format!("failover: {reason}; {ms} ms after the old leader went silent"),
            None => format!("failover: {reason}"),
        };
        if current == node.id() && g.id != META_GROUP {
            let from_region = from_region.as_deref().unwrap_or("unknown");
            crate::observe::record_failover(node, keyspace, from_region, rto_ms);
        }
    }
    let decision = match kind {
        ChangeKind::Transfer => deciding_entry(node, from_region.as_deref(), to_region.as_deref()),
        _ => None,
    };
    if let Some(seq) = decision {
        reason = format!("{reason}, carrying out failover decision #{seq}");
    } else if kind == ChangeKind::Failover {
        reason = format!("{reason} (elected by Raft: liveness, not a placement decision)");
    }
    node.push_event(LeaderEvent {
        at_ms: node.clock.now_ms(),
        keyspace: keyspace.to_string(),
        shard,
        group: g.id,
        from,
        to: Some(current),
        to_region,
        kind: kind.as_str(),
        rto_ms,
        reason,
        decision,
    });
}

/// The committed decision a transfer from `from` to `to` carries out: the failover that
/// evacuated `from`, else the latest failback of `to` (executed or approved).
fn deciding_entry(node: &Node, from: Option<&str>, to: Option<&str>) -> Option<u64> {
    use meridian_control::failover::Action;
    let state = crate::failover::local_state(node);
    if let Some(ev) = from.and_then(|r| state.evacuated.get(r)) {
        return Some(ev.decision);
    }
    let to = to?;
    let log = crate::failover::local_log(node).ok()?;
    // The latest decision about `to`, if it is a failback or a switchover of the last few
    // minutes (an older one is not what moved this leader).
    let latest = log.iter().rev().find_map(|e| {
        let executed = match &e.action {
            Action::Approve { decision, .. } => &**decision,
            a => a,
        };
        match executed {
            Action::Failback { region } if region == to => Some((e, true)),
            Action::Switchover { to: region, .. } if region == to => Some((e, true)),
            Action::Failover { region, .. } if region == to => Some((e, false)),
            _ => None,
        }
    })?;
    let recent = node.clock.now_ms().saturating_sub(latest.0.at_ms) <= RECENT_DECISION_MS;
    (latest.1 && recent).then_some(latest.0.seq)
}

/// How old a failback may be and still be what a transfer home carries out.
const RECENT_DECISION_MS: u64 = 5 * 60 * 1000;

fn update_leader_gauges(node: &Node) {
    let mut led = 0u64;
    for g in node.groups() {
        if g.id != META_GROUP && g.raft.is_leader() {
            led += 1;
        }
    }
    metrics::gauge!("meridian_leaders", "node" => node.id().to_string(), "region" => node.cfg.region.clone())
        .set(led as f64);
}
