//! Promotion of a `survive = "zone"` keyspace whose home region is lost, with epoch fencing and
//! an honest lost tail.
//!
//! A zone keyspace's voters are all in its home region; learners elsewhere trail
//! asynchronously. When the home region is lost, the failover controller proposes a `promote`
//! decision (pending until an operator approves it, or automatic after `promotion_after_ms`).
//! Once it is committed, the metadata leader carries it out ([`execute`]):
//! 1. per shard, the most caught-up replica in the target region (the nearest listed one) is
//!    frozen: its replica of the old group stops, at applied index A;
//! 2. the catalogue moves to epoch e+1 in one compare-and-swap: home = the target region, and
//!    per shard a new group (`ids::sync_group_id(.., e+1)`) whose voters are the target region's
//!    replicas (the frozen one first: it initialises the group) and whose learners are every
//!    other replica, the old home's included;
//! 3. the frozen replica copies its state into the new group through the new group's log
//!    (`Command::Load`), so every replica of the new epoch applies the same rows, and marks the
//!    shard loaded;
//! 4. the lost tail is recorded in the metadata group (`losttail/<keyspace>/<epoch>/<shard>`):
//!    at least the entries between A and the old leader's commit index that the frozen replica
//!    had heard of; when the old region returns, its replicas add the exact tail (every entry
//!    after A in their logs), kept read-only for reconciliation, never merged or discarded.
//!
//! Fencing. A group's id carries its epoch, so every replication message and forwarded request
//! names it, and a node whose catalogue has moved on runs no group of an older epoch (it
//! retires it: [`reconcile`]). A returning region whose catalogue has not caught up
//! yet could still elect a leader of the old group among its own voters, so a zone keyspace's
//! group serves writes and reads (other than eventual ones) only under an epoch lease: a
//! linearizable read of the catalogue, sent less than `EPOCH_LEASE` ago, that named the
//! group's epoch ([`admit`]). A promoted epoch accepts writes only `EPOCH_FENCE` after its
//! node first saw it, so every lease of the old epoch (confirmed before the promotion
//! committed) has run out by then: no write is ever acknowledged at a stale epoch (with clock
//! rates that drift by less than the margin between the two).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftLogReader;
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use meridian_consensus::state_machine;
use meridian_control::failover::Action;
use meridian_types::catalog::{self, KeyspaceRecord, Seed, ShardPlacement};
use meridian_types::ids::{group_epoch, group_keyspace, sync_group_id, EPOCH_MAX};
use meridian_types::wire::Command;
use meridian_types::{GroupId, KeyspaceId, KvError, NodeId, Replication, Survive, META_GROUP};

use crate::node::{Node, REQUEST_TIMEOUT};
use crate::peer::{Op, PeerRequest, PeerResponse, ReadConsistencyWire};
use crate::transport::Endpoint;

/// How long a confirmation of a keyspace's epoch lets its groups serve.
pub const EPOCH_LEASE: Duration = Duration::from_millis(2_000);
/// How long a node waits, after it first saw a promoted epoch, before that epoch accepts
/// writes: the lease and a margin for clock-rate drift between nodes.
pub const EPOCH_FENCE: Duration = Duration::from_millis(2_600);
/// How often leases are renewed.
const RENEW_EVERY: Duration = Duration::from_millis(400);
/// Rows per `Load` entry, and their bytes at most.
const LOAD_ROWS_MAX: usize = 512;
const LOAD_BYTES_MAX: usize = 1 << 20;
/// Entries of a recovered tail kept with their contents (the rest are counted).
const TAIL_ENTRIES_MAX: usize = 10_000;
/// Bytes of a value shown in a tail entry.
const TAIL_VALUE_SHOWN: usize = 256;

pub const LOST_TAIL_PREFIX: &str = "losttail/";

fn lost_tail_key(keyspace: &str, epoch: u64, shard: u16) -> String {
    format!("{LOST_TAIL_PREFIX}{keyspace}/{epoch:03}/{shard:05}")
}

/// A keyspace's epoch as this node last confirmed it with the metadata group.
#[derive(Clone, Debug)]
struct Lease {
    epoch: u64,
    /// When the confirming read was sent.
    confirmed_at: Instant,
    /// When this node first saw this epoch (a promoted epoch accepts writes `EPOCH_FENCE`
    /// later).
    first_seen: Instant,
    record: Arc<KeyspaceRecord>,
}

/// The node's promotion state: epoch leases, frozen replicas and running loads.
pub struct Promotions {
    leases: Mutex<BTreeMap<KeyspaceId, Lease>>,
    /// Counts renewals (by the lease loop), so a request can wait for the next one.
    renewed: tokio::sync::watch::Sender<u64>,
    /// Asks the lease loop to renew now.
    wake: tokio::sync::Notify,
    /// Old groups frozen for a promotion, with the state they stopped at: never reopened here,
    /// and a repeated question gets the same answer (a retried promotion picks the same seed).
    frozen: Mutex<BTreeMap<GroupId, ReplicaState>>,
    loading: Mutex<BTreeSet<GroupId>>,
    executing: Mutex<BTreeSet<String>>,
}

impl Default for Promotions {
    fn default() -> Self {
        Promotions {
            leases: Default::default(),
            renewed: tokio::sync::watch::channel(0).0,
            wake: Default::default(),
            frozen: Default::default(),
            loading: Default::default(),
            executing: Default::default(),
        }
    }
}

impl Promotions {
    pub fn is_frozen(&self, group: GroupId) -> bool {
        self.frozen.lock().unwrap().contains_key(&group)
    }
}

fn is_zoned(ks: &KeyspaceRecord) -> bool {
    ks.policy.replication == Replication::Sync && ks.policy.survive == Survive::Zone
}

/// What an operation does to a group, for [`admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Write,
    /// A promotion's copy into a new group (before the group is open for writes).
    Load,
    Read,
}

/// Whether `group` may serve `access` now: for a zone keyspace, only under a valid epoch lease
/// naming the group's epoch, and, for a promoted epoch, once loaded and past the fence. Other
/// keyspaces are always admitted.
pub async fn admit(node: &Arc<Node>, group: GroupId, access: Access) -> Result<(), KvError> {
    if group == META_GROUP {
        return Ok(());
    }
    let Some(ks) = node.keyspace_by_id(group_keyspace(group)) else {
        return Ok(());
    };
    if !is_zoned(&ks) {
        return Ok(());
    }
    match check(node, group, access) {
        Ok(()) => Ok(()),
        Err(_) => {
            // The lease loop renews at once and says when it has (renewing here would make
            // `execute` recursive).
            let mut renewed = node.promotions.renewed.subscribe();
            node.promotions.wake.notify_one();
            let _ = tokio::time::timeout(EPOCH_LEASE, renewed.changed()).await;
            check(node, group, access)
        }
    }
}

/// [`admit`] without renewing: for an acknowledgement, which must pass the same check (a
/// node may have become leader between the check before proposing and the proposal).
pub fn still_admitted(node: &Node, group: GroupId, access: Access) -> Result<(), KvError> {
    match node.keyspace_by_id(group_keyspace(group)) {
        Some(ks) if is_zoned(&ks) => check(node, group, access),
        _ => Ok(()),
    }
}

fn check(node: &Node, group: GroupId, access: Access) -> Result<(), KvError> {
    let leases = node.promotions.leases.lock().unwrap();
    let epoch = group_epoch(group);
    let Some(lease) = leases.get(&group_keyspace(group)) else {
        return Err(KvError::Unavailable(
            "this node has not confirmed the keyspace's epoch with the metadata group yet; retry"
                .into(),
        ));
    };
    if lease.epoch != epoch {
        return Err(KvError::Unavailable(format!(
            "group {group} belongs to epoch {epoch}, but the keyspace is at epoch {} since a promotion: the old epoch is fenced; retry (requests route to the new epoch's groups)",
            lease.epoch
        )));
    }
    let age = lease.confirmed_at.elapsed();
    if age > EPOCH_LEASE {
        return Err(KvError::Unavailable(format!(
            "this node last confirmed the keyspace's epoch with the metadata group {} ms ago (lease {} ms): it may be cut off from the majority, so the keyspace is fenced here; retry",
            age.as_millis(),
            EPOCH_LEASE.as_millis()
        )));
    }
    if epoch > 0 && access == Access::Write && lease.first_seen.elapsed() < EPOCH_FENCE {
        return Err(KvError::Unavailable(format!(
            "the keyspace was promoted to epoch {epoch}; writes open once every lease of the old epoch has run out ({} ms); retry",
            EPOCH_FENCE.as_millis()
        )));
    }
    let placement = lease.record.shards.iter().find(|s| s.group == group);
    let loading = placement.is_some_and(|s| s.seed.as_ref().is_some_and(|d| !d.loaded));
    // Reads too: until loaded, the group holds part of the promoted state.
    if access != Access::Load && loading {
        return Err(KvError::Unavailable(format!(
            "the keyspace was promoted to epoch {epoch} and its promoted state is still being loaded; retry"
        )));
    }
    // Once loaded, a load again would overwrite writes acknowledged since.
    if access == Access::Load && !loading {
        return Err(KvError::FailedPrecondition(format!(
            "group {group} is loaded already: a promotion's copy is applied once"
        )));
    }
    Ok(())
}

/// Confirms every zone keyspace's epoch with one linearizable read of the catalogue.
async fn renew(node: &Arc<Node>) {
    let sent = Instant::now();
    let op = Op::Scan {
        prefix: catalog::KEYSPACE_PREFIX.as_bytes().to_vec(),
        limit: usize::MAX,
        consistency: ReadConsistencyWire::Linearizable,
        needs: Vec::new(),
    };
    let rows = match tokio::time::timeout(EPOCH_LEASE, node.execute(META_GROUP, op, 0)).await {
        Ok(Ok(r)) => r.rows,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "epoch lease not renewed");
            return;
        }
        Err(_) => {
            tracing::debug!("epoch lease not renewed in time");
            return;
        }
    };
    let now = Instant::now();
    let mut leases = node.promotions.leases.lock().unwrap();
    for (_, v) in rows {
        let Ok(record) = serde_json::from_slice::<KeyspaceRecord>(&v) else {
            continue;
        };
        if !is_zoned(&record) {
            continue;
        }
        let first_seen = match leases.get(&record.id) {
            Some(l) if l.epoch == record.epoch => l.first_seen,
            Some(l) => {
                assert!(
                    l.epoch < record.epoch,
                    "a keyspace's epoch never goes back ({} then {})",
                    l.epoch,
                    record.epoch
                );
                now
            }
            None => now,
        };
        leases.insert(
            record.id,
            Lease {
                epoch: record.epoch,
                confirmed_at: sent,
                first_seen,
                record: Arc::new(record),
            },
        );
    }
}

/// Renews epoch leases while this node holds a replica of any zone keyspace.
pub async fn lease_loop(node: Arc<Node>) {
    loop {
        let hosts_zoned = node.catalog_keyspaces().iter().any(|k| {
            is_zoned(k)
                && k.shards
                    .iter()
                    .any(|s| s.replicas().any(|r| r == node.id()))
        });
        if hosts_zoned {
            renew(&node).await;
        }
        node.promotions.renewed.send_modify(|n| *n += 1);
        tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => {}
            _ = node.promotions.wake.notified() => {}
        }
    }
}

// ---- carrying out a promotion (the metadata leader) ----

/// What a replica of an old group reports to a promotion (and, when frozen, where it stopped).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaState {
    pub applied: u64,
    pub last_log: u64,
    /// The newest commit index its leader promised (freshness stamps), if any.
    pub commit_known: Option<u64>,
    /// When that promise was made (wall ms on this node's clock).
    pub commit_known_at_ms: Option<u64>,
}

fn replica_state(node: &Node, group: GroupId) -> Result<ReplicaState, KvError> {
    let g = node.group(group).ok_or_else(|| {
        KvError::Unavailable(format!(
            "node {} runs no replica of group {group}",
            node.id()
        ))
    })?;
    Ok(state_of(node, &g))
}

fn state_of(node: &Node, g: &meridian_consensus::Group) -> ReplicaState {
    let m = g.raft.metrics().borrow_watched().clone();
    let latest = g.freshness.latest();
    let wall_of = |fresh_ms: u64| {
        node.clock
            .now_ms()
            .saturating_sub(node.fresh_clock.now_ms().saturating_sub(fresh_ms))
    };
    ReplicaState {
        applied: m.last_applied.as_ref().map_or(0, |l| l.index()),
        last_log: m.last_log_index.unwrap_or(0),
        commit_known: latest.map(|(c, _)| c),
        commit_known_at_ms: latest.map(|(_, t)| wall_of(t)),
    }
}

/// `PeerRequest::ReplicaState`: this node's replica of `group`, frozen first when asked.
pub async fn serve_replica_state(
    node: &Arc<Node>,
    group: GroupId,
    freeze: bool,
) -> Result<ReplicaState, KvError> {
    if let Some(state) = node.promotions.frozen.lock().unwrap().get(&group) {
        return Ok(*state);
    }
    if !freeze {
        return replica_state(node, group);
    }
    let g = node.group(group).ok_or_else(|| {
        KvError::Unavailable(format!(
            "node {} runs no replica of group {group}",
            node.id()
        ))
    })?;
    // Marked first, so the reconcile loop does not reopen it meanwhile.
    node.promotions
        .frozen
        .lock()
        .unwrap()
        .insert(group, ReplicaState::default());
    node.remove_group(group);
    let _ = g.raft.shutdown().await;
    // Applies are deferred commits: make the state the promotion copies durable before it is
    // reported, so a crash cannot take it back below the index reported.
    node.committer
        .commit(meridian_storage::WriteBatch::default())
        .await
        .map_err(|e| KvError::Internal(format!("making the frozen replica durable: {e}")))?;
    let state = state_of(node, &g);
    node.promotions.frozen.lock().unwrap().insert(group, state);
    tracing::warn!(group, ?state, "replica frozen for a promotion");
    Ok(state)
}

/// Runs, on the metadata leader, every promotion the decision log holds that the catalogue
/// does not reflect yet (one at a time per keyspace, in the background).
pub fn drive(node: &Arc<Node>) {
    let state = crate::failover::local_state(node);
    if state.promoted.is_empty() {
        return;
    }
    let Ok(log) = crate::failover::local_log(node) else {
        return;
    };
    for ks in node.catalog_keyspaces() {
        let Some(&epoch) = state.promoted.get(&ks.policy.name) else {
            continue;
        };
        if ks.epoch >= epoch {
            continue;
        }
        let decided = log.iter().rev().find_map(|e| {
            let a = match &e.action {
                Action::Approve { decision, .. } => &**decision,
                a => a,
            };
            match a {
                Action::Promote {
                    keyspace,
                    to,
                    epoch: ep,
                    from,
                } if *keyspace == ks.policy.name && *ep == epoch => {
                    Some((from.clone(), to.clone(), e.seq))
                }
                _ => None,
            }
        });
        let Some((from, to, seq)) = decided else {
            continue;
        };
        if !node
            .promotions
            .executing
            .lock()
            .unwrap()
            .insert(ks.policy.name.clone())
        {
            continue;
        }
        let node = node.clone();
        let name = ks.policy.name.clone();
        tokio::spawn(async move {
            match execute(&node, &name, &from, &to, epoch, seq).await {
                Ok(lost) => {
                    tracing::warn!(keyspace = %name, epoch, %to, lost_entries_at_least = lost, "promotion carried out")
                }
                Err(e) => {
                    tracing::warn!(keyspace = %name, epoch, error = %e, "promotion not carried out yet; retrying")
                }
            }
            node.promotions.executing.lock().unwrap().remove(&name);
        });
    }
}

/// Carries out decision `seq`: `name` moves from `from` to `to` at `epoch`. Returns the lost
/// entries known so far.
async fn execute(
    node: &Arc<Node>,
    name: &str,
    from: &str,
    to: &str,
    epoch: u64,
    seq: u64,
) -> Result<u64, KvError> {
    let (record, bytes) = crate::switchover::read_record(node, name).await?;
    if record.epoch >= epoch {
        return Ok(0);
    }
    assert_eq!(record.epoch + 1, epoch, "a promotion moves one epoch");
    assert!(epoch <= EPOCH_MAX, "{name} was promoted {EPOCH_MAX} times");
    let nodes = node.catalog_nodes_linearizable().await?;
    let region_of: BTreeMap<NodeId, (String, String)> = nodes
        .iter()
        .map(|n| (n.id, (n.region.clone(), n.zone.clone())))
        .collect();
    // Every shard's seed is chosen before any replica is frozen: a shard with no answering
    // replica in `to` fails the attempt with nothing frozen.
    let mut seeds = Vec::new();
    for s in &record.shards {
        let in_to: Vec<NodeId> = s
            .replicas()
            .filter(|r| region_of.get(r).is_some_and(|(reg, _)| reg == to))
            .collect();
        // The most caught-up replica in `to` that answers.
        let mut best: Option<(NodeId, ReplicaState)> = None;
        for &r in &in_to {
            if let Ok(st) = ask_state(node, r, s.group, false).await {
                if best.is_none_or(|(_, b)| (st.applied, st.last_log) > (b.applied, b.last_log)) {
                    best = Some((r, st));
                }
            }
        }
        let Some((seed, _)) = best else {
            return Err(KvError::Unavailable(format!(
                "no replica of shard {} in {to} answered",
                s.shard
            )));
        };
        seeds.push((s, seed, in_to));
    }
    let mut shards = Vec::new();
    let mut tails = Vec::new();
    for (s, seed, in_to) in seeds {
        let frozen = ask_state(node, seed, s.group, true).await?;
        // Voters: the seed first (it initialises the group), then distinct zones, up to 3.
        let mut voters = vec![seed];
        let mut zones: BTreeSet<&str> = region_of
            .get(&seed)
            .map(|(_, z)| z.as_str())
            .into_iter()
            .collect();
        for &r in &in_to {
            if voters.len() < 3 && r != seed {
                let z = region_of.get(&r).map_or("", |(_, z)| z.as_str());
                if zones.insert(z) {
                    voters.push(r);
                }
            }
        }
        for &r in &in_to {
            if voters.len() < 3 && !voters.contains(&r) {
                voters.push(r);
            }
        }
        let learners: Vec<NodeId> = s.replicas().filter(|r| !voters.contains(r)).collect();
        let group = sync_group_id(record.id, s.shard, epoch);
        shards.push(ShardPlacement {
            shard: s.shard,
            group,
            region: None,
            voters,
            learners,
            seed: Some(Seed {
                node: seed,
                from_group: s.group,
                applied: frozen.applied,
                loaded: false,
            }),
            initialiser: None,
        });
        let at_least = frozen
            .commit_known
            .map_or(0, |c| c.saturating_sub(frozen.applied));
        tails.push(LostTail {
            keyspace: name.to_string(),
            shard: s.shard,
            from_group: s.group,
            from_epoch: record.epoch,
            epoch,
            from_region: from.to_string(),
            to_region: to.to_string(),
            decision: seq,
            promoted_at_ms: node.clock.now_ms(),
            applied_at_promotion: frozen.applied,
            commit_known: frozen.commit_known,
            commit_known_at_ms: frozen.commit_known_at_ms,
            lost_entries_at_least: at_least,
            old_voters: s.voters.clone(),
            recovered: None,
        });
    }
    let mut next = record.clone();
    next.epoch = epoch;
    next.policy.home_region = Some(to.to_string());
    next.shards = shards;
    // The tails first: once the catalogue has moved, old replicas retire and record what they
    // have into these records (a tail written after the move could be missing for good if this
    // attempt failed in between).
    let mut lost = 0;
    for t in &tails {
        lost += t.lost_entries_at_least;
        put_tail(node, t).await?;
    }
    let key = catalog::keyspace_key(name).into_bytes();
    let value = serde_json::to_vec(&next).expect("records encode");
    if !node.meta_cas(key, bytes, value).await? {
        return Err(KvError::Unavailable(format!(
            "keyspace {name:?} changed during its promotion"
        )));
    }
    let reason = format!(
        "{name} promoted to epoch {epoch} in {to}: at least {lost} committed entries of {from} never reached the promoted replicas ({}); the exact tail is known when {from} returns (GET /v1/failover/lost-tail/{name})",
        tails
            .iter()
            .map(|t| format!(
                "shard {}: applied {} of at least {}",
                t.shard,
                t.applied_at_promotion,
                t.commit_known.unwrap_or(t.applied_at_promotion)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    metrics::gauge!("meridian_promotion_lost_entries", "keyspace" => name.to_string(), "epoch" => epoch.to_string())
        .set(lost as f64);
    crate::failover::append(
        node,
        &format!("controller@{}", node.id()),
        &reason,
        crate::failover::views(node),
        |_| {
            Ok(Action::Promoted {
                keyspace: name.to_string(),
                epoch,
                lost_entries_at_least: lost,
            })
        },
    )
    .await?;
    Ok(lost)
}

async fn ask_state(
    node: &Arc<Node>,
    to: NodeId,
    group: GroupId,
    freeze: bool,
) -> Result<ReplicaState, KvError> {
    if to == node.id() {
        return serve_replica_state(node, group, freeze).await;
    }
    let (addr, region) = node
        .node_addr(to)
        .ok_or_else(|| KvError::Unavailable(format!("node {to} is not in the catalogue")))?;
    let req = PeerRequest::ReplicaState { group, freeze };
    match node
        .transport
        .call(&Endpoint { node: to, region }, &addr, req, REQUEST_TIMEOUT)
        .await
    {
        Ok(PeerResponse::ReplicaState(r)) => r,
        Ok(_) => Err(KvError::Internal("wrong reply type".into())),
        Err(e) => Err(KvError::Unavailable(format!("node {to}: {e}"))),
    }
}

// ---- the lost tail ----

/// What a promotion lost of one shard.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LostTail {
    pub keyspace: String,
    pub shard: u16,
    pub from_group: GroupId,
    pub from_epoch: u64,
    pub epoch: u64,
    pub from_region: String,
    pub to_region: String,
    /// The decision that promoted it.
    pub decision: u64,
    pub promoted_at_ms: u64,
    /// The old group's index the promoted state reflects.
    pub applied_at_promotion: u64,
    /// The newest commit index of the old leader the promoted replica had heard of.
    pub commit_known: Option<u64>,
    /// When the old leader made that promise (wall ms).
    pub commit_known_at_ms: Option<u64>,
    /// Entries committed in the old group that the promoted replica never applied, as far as
    /// it knew (`commit_known - applied_at_promotion`).
    pub lost_entries_at_least: u64,
    /// The old group's voters: the tail is exact once a majority of them has reported.
    #[serde(default)]
    pub old_voters: Vec<NodeId>,
    /// The tail from the most up-to-date log among the old voters that have reported.
    pub recovered: Option<RecoveredTail>,
}

impl LostTail {
    /// Exact: a majority of the old voters reported, so the most up-to-date of their logs (by
    /// last term, then index, as Raft's elections compare them) holds every committed entry.
    pub fn is_exact(&self) -> bool {
        self.recovered.as_ref().is_some_and(|r| {
            self.old_voters.is_empty()
                || 2 * r
                    .reported_by
                    .iter()
                    .filter(|n| self.old_voters.contains(n))
                    .count()
                    > self.old_voters.len()
        })
    }
}

/// The old group's entries after the promotion point, as a returning replica had them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoveredTail {
    pub by_node: NodeId,
    /// The last entry in that replica's log: its term and index.
    #[serde(default)]
    pub last_term: u64,
    pub last_index: u64,
    /// Every old replica that has reported its log so far.
    #[serde(default)]
    pub reported_by: BTreeSet<NodeId>,
    /// Entries after `applied_at_promotion` that carry a client write.
    pub writes: u64,
    /// Every entry after the promotion point (blank and membership entries included).
    pub entries_total: u64,
    /// The writes, oldest first (at most `TAIL_ENTRIES_MAX`).
    pub entries: Vec<LostEntry>,
    pub truncated: bool,
    /// Part of the range was purged from this replica's log: the writes counted and listed are
    /// fewer than were lost.
    #[serde(default)]
    pub incomplete: bool,
}

/// One lost write, for reconciliation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LostEntry {
    pub index: u64,
    pub term: u64,
    /// What it did (e.g. `put "k1" (5 bytes)`).
    pub op: String,
    pub key: String,
    /// The value written, when one was (the first bytes, lossy UTF-8).
    pub value: Option<String>,
    pub value_bytes: usize,
}

async fn put_tail(node: &Arc<Node>, t: &LostTail) -> Result<(), KvError> {
    let cmd = Command::Put {
        key: lost_tail_key(&t.keyspace, t.epoch, t.shard).into_bytes(),
        value: serde_json::to_vec(t).expect("tails encode"),
    };
    node.execute(META_GROUP, Op::Write(cmd), 0).await?;
    Ok(())
}

/// Every lost tail recorded for `keyspace`, read linearizably.
pub async fn lost_tails(node: &Arc<Node>, keyspace: &str) -> Result<Vec<LostTail>, KvError> {
    let op = Op::Scan {
        prefix: format!("{LOST_TAIL_PREFIX}{keyspace}/").into_bytes(),
        limit: usize::MAX,
        consistency: ReadConsistencyWire::Linearizable,
        needs: Vec::new(),
    };
    let rows = node.execute(META_GROUP, op, 0).await?.rows;
    Ok(rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect())
}

/// Every promotion's lost tail in this node's replica of the catalogue, summed per keyspace
/// and epoch (for the console and `/v1/cluster`; the endpoint below reads linearizably).
pub fn local_summary(node: &Node) -> Vec<serde_json::Value> {
    let rows = state_machine::scan(
        node.committer.engine(),
        META_GROUP,
        LOST_TAIL_PREFIX.as_bytes(),
        usize::MAX,
    )
    .unwrap_or_default();
    let mut by: BTreeMap<(String, u64), Vec<LostTail>> = BTreeMap::new();
    for (_, v) in rows {
        if let Ok(t) = serde_json::from_slice::<LostTail>(&v) {
            by.entry((t.keyspace.clone(), t.epoch)).or_default().push(t);
        }
    }
    by.into_iter()
        .map(|((keyspace, epoch), shards)| {
            let recovered = shards.iter().all(LostTail::is_exact);
            serde_json::json!({
                "keyspace": keyspace,
                "epoch": epoch,
                "from_region": shards[0].from_region,
                "to_region": shards[0].to_region,
                "decision": shards[0].decision,
                "lost_entries_at_least": shards.iter().map(|t| t.lost_entries_at_least).sum::<u64>(),
                "recovered": recovered,
                "lost_writes": recovered.then(|| shards.iter().filter_map(|t| t.recovered.as_ref().map(|r| r.writes)).sum::<u64>()),
            })
        })
        .collect()
}

/// `GET /v1/failover/lost-tail/{keyspace}`: per promotion, what it lost.
pub async fn lost_tail_report(
    node: &Arc<Node>,
    keyspace: &str,
) -> Result<serde_json::Value, KvError> {
    node.keyspace(keyspace).await?;
    let tails = lost_tails(node, keyspace).await?;
    let mut by_epoch: BTreeMap<u64, Vec<&LostTail>> = BTreeMap::new();
    for t in &tails {
        by_epoch.entry(t.epoch).or_default().push(t);
    }
    let promotions: Vec<serde_json::Value> = by_epoch
        .iter()
        .map(|(epoch, shards)| {
            let recovered = shards.iter().all(|t| t.is_exact());
            let writes: u64 = shards
                .iter()
                .filter_map(|t| t.recovered.as_ref().map(|r| r.writes))
                .sum();
            serde_json::json!({
                "epoch": epoch,
                "from_region": shards[0].from_region,
                "to_region": shards[0].to_region,
                "decision": shards[0].decision,
                "promoted_at_ms": shards[0].promoted_at_ms,
                "lost_entries_at_least": shards.iter().map(|t| t.lost_entries_at_least).sum::<u64>(),
                // Exact once every shard's old replicas have returned.
                "recovered": recovered,
                "lost_writes": recovered.then_some(writes),
                "shards": shards,
            })
        })
        .collect();
    Ok(serde_json::json!({"keyspace": keyspace, "promotions": promotions}))
}

// ---- on every node: loading new groups, retiring old ones ----

/// Reconcile step: copies frozen replicas into their new groups (on the seed), and retires
/// replicas of groups the catalogue no longer has (recording the lost tail first on the old
/// home's replicas).
pub async fn reconcile(node: &Arc<Node>, keyspaces: &[KeyspaceRecord]) {
    for ks in keyspaces.iter().filter(|k| is_zoned(k)) {
        for s in &ks.shards {
            let Some(seed) = &s.seed else { continue };
            if seed.loaded || seed.node != node.id() {
                continue;
            }
            if !node.promotions.loading.lock().unwrap().insert(s.group) {
                continue;
            }
            let (node, name, shard, seed) = (
                node.clone(),
                ks.policy.name.clone(),
                s.clone(),
                seed.clone(),
            );
            tokio::spawn(async move {
                match load(&node, &name, &shard, &seed).await {
                    Ok(rows) => {
                        tracing::warn!(keyspace = %name, group = shard.group, rows, "promoted state loaded")
                    }
                    Err(e) => {
                        tracing::warn!(keyspace = %name, group = shard.group, error = %e, "promoted state not loaded yet; retrying")
                    }
                }
                node.promotions.loading.lock().unwrap().remove(&shard.group);
            });
        }
    }
    let placed: BTreeSet<GroupId> = keyspaces
        .iter()
        .flat_map(|k| k.shards.iter().map(|s| s.group))
        .collect();
    for g in node.groups() {
        if g.id == META_GROUP || placed.contains(&g.id) {
            continue;
        }
        let Some(ks) = keyspaces.iter().find(|k| k.id == group_keyspace(g.id)) else {
            continue;
        };
        if !is_zoned(ks) || ks.epoch <= group_epoch(g.id) {
            continue;
        }
        if let Err(e) = retire(node, ks, &g).await {
            tracing::debug!(group = g.id, error = %e, "old epoch's replica not retired yet");
        }
    }
}

/// Copies the seed's frozen replica of the old group into the new one, then marks it loaded.
async fn load(
    node: &Arc<Node>,
    name: &str,
    shard: &ShardPlacement,
    seed: &Seed,
) -> Result<u64, KvError> {
    // This node's catalogue may lag: a shard already marked loaded is never loaded again (its
    // clients are writing).
    let (record, _) = crate::switchover::read_record(node, name).await?;
    let current = record.shards.iter().find(|s| s.group == shard.group);
    if current.is_none_or(|s| s.seed.as_ref().is_none_or(|d| d.loaded)) {
        return Ok(0);
    }
    let engine = node.committer.engine();
    let mut after: Option<Vec<u8>> = None;
    let mut total = 0u64;
    loop {
        let rows =
            state_machine::rows_after(engine, seed.from_group, after.as_deref(), LOAD_ROWS_MAX)
                .map_err(|e| KvError::Internal(format!("reading the frozen replica: {e}")))?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (k, v) in rows {
            bytes += k.len() + v.len();
            batch.push((k, v));
            if bytes >= LOAD_BYTES_MAX {
                total += propose_load(node, shard.group, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            total += propose_load(node, shard.group, batch).await?;
        }
    }
    // Mark the shard loaded (other shards may be marking theirs: compare-and-swap, retried).
    loop {
        let (mut record, bytes) = crate::switchover::read_record(node, name).await?;
        let Some(s) = record.shards.iter_mut().find(|s| s.group == shard.group) else {
            return Err(KvError::FailedPrecondition("the shard moved on".into()));
        };
        match &mut s.seed {
            Some(d) if !d.loaded => d.loaded = true,
            _ => return Ok(total),
        }
        let key = catalog::keyspace_key(name).into_bytes();
        let value = serde_json::to_vec(&record).expect("records encode");
        if node.meta_cas(key, bytes, value).await? {
            return Ok(total);
        }
    }
}

async fn propose_load(
    node: &Arc<Node>,
    group: GroupId,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<u64, KvError> {
    let n = rows.len() as u64;
    node.execute(group, Op::Write(Command::Load { rows }), 0)
        .await?;
    Ok(n)
}

/// Stops this node's replica of an old epoch's group. A replica in the old home region
/// records what it has after the promotion point (the exact lost tail) first.
async fn retire(
    node: &Arc<Node>,
    ks: &KeyspaceRecord,
    g: &meridian_consensus::Group,
) -> Result<(), KvError> {
    let shard = meridian_types::ids::group_shard(g.id);
    let next_epoch = group_epoch(g.id) + 1;
    let key = lost_tail_key(&ks.policy.name, next_epoch, shard).into_bytes();
    // Every returning old-home replica offers its log; the longest wins, by compare-and-swap
    // (they retire at about the same time, and a plain write would let the last one win).
    loop {
        let op = Op::get(key.clone(), meridian_types::ReadConsistency::Linearizable);
        let Some(bytes) = node.execute(META_GROUP, op, 0).await?.value else {
            break;
        };
        let tail: LostTail = serde_json::from_slice(&bytes)
            .map_err(|e| KvError::Internal(format!("a lost tail record: {e}")))?;
        if tail.from_group != g.id || node.cfg.region != tail.from_region {
            break;
        }
        let last = g
            .raft
            .metrics()
            .borrow_watched()
            .last_log_index
            .unwrap_or(0);
        if tail
            .recovered
            .as_ref()
            .is_some_and(|r| r.reported_by.contains(&node.id()))
        {
            break;
        }
        let mine = read_tail(node, g, tail.applied_at_promotion, last).await?;
        // The most up-to-date log wins (it holds every entry committed on a majority of the
        // voters that reported); every reporter is counted.
        let recovered = match &tail.recovered {
            Some(r) if (r.last_term, r.last_index) >= (mine.last_term, mine.last_index) => {
                let mut r = r.clone();
                r.reported_by.insert(node.id());
                r
            }
            Some(r) => {
                let mut mine = mine;
                mine.reported_by.extend(r.reported_by.iter().copied());
                mine
            }
            None => mine,
        };
        let writes = recovered.writes;
        let mut updated = tail.clone();
        updated.recovered = Some(recovered);
        let value = serde_json::to_vec(&updated).expect("tails encode");
        if node.meta_cas(key.clone(), bytes, value).await? {
            metrics::gauge!("meridian_promotion_lost_writes", "keyspace" => ks.policy.name.clone(), "epoch" => next_epoch.to_string(), "shard" => shard.to_string())
                .set(writes as f64);
            tracing::warn!(keyspace = %ks.policy.name, group = g.id, from = tail.applied_at_promotion, to = last, writes, "lost tail recovered from the returning old home");
            break;
        }
    }
    if let Some(g) = node.remove_group(g.id) {
        let _ = g.raft.shutdown().await;
        tracing::warn!(
            group = g.id,
            "replica of an old epoch retired (its data stays on disk, read-only)"
        );
    }
    Ok(())
}

async fn read_tail(
    node: &Node,
    g: &meridian_consensus::Group,
    after: u64,
    last: u64,
) -> Result<RecoveredTail, KvError> {
    let last_term = {
        let mut log = g.log.clone();
        log.try_get_log_entries(last..=last)
            .await
            .map_err(|e| KvError::Internal(format!("reading the old log: {e}")))?
            .first()
            .map_or(0, |e| e.log_id.leader_id.term)
    };
    let entries = if last > after {
        let mut log = g.log.clone();
        log.try_get_log_entries(after + 1..=last)
            .await
            .map_err(|e| KvError::Internal(format!("reading the old log: {e}")))?
    } else {
        Vec::new()
    };
    // Entries purged from this log (a promoted replica that lagged more than the retained
    // log) cannot be listed: the tail says so rather than pass for exact.
    let complete = entries.len() as u64 == last.saturating_sub(after)
        && entries
            .first()
            .is_none_or(|e| e.log_id.index() == after + 1);
    let mut out = RecoveredTail {
        by_node: node.id(),
        last_term,
        reported_by: BTreeSet::from([node.id()]),
        last_index: last,
        writes: 0,
        entries_total: entries.len() as u64,
        entries: Vec::new(),
        truncated: false,
        incomplete: !complete,
    };
    for e in entries {
        let EntryPayload::Normal(cmd) = &e.payload else {
            continue;
        };
        out.writes += 1;
        if out.entries.len() >= TAIL_ENTRIES_MAX {
            out.truncated = true;
            continue;
        }
        let value = match cmd.inner() {
            Command::Put { value, .. } => Some(value.clone()),
            Command::Cas { value, .. } => value.clone(),
            _ => None,
        };
        out.entries.push(LostEntry {
            index: e.log_id.index(),
            term: e.log_id.leader_id.term,
            op: cmd.to_string(),
            key: String::from_utf8_lossy(cmd.key()).into_owned(),
            value_bytes: value.as_ref().map_or(0, Vec::len),
            value: value
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(TAIL_VALUE_SHOWN)]).into_owned()),
        });
    }
    Ok(out)
}
