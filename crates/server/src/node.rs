//! The node: its groups, the catalogue view, and the execution of client operations, locally
//! or forwarded to the node that can serve them.

use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_consensus::state_machine;
use meridian_consensus::{
    handle_raft_request, ElectionTiming, FreshnessClock, Group, MRaft, PeerNode, PendingReply,
    RaftRequest, RaftResponse, RaftRpc, RpcFailure,
};
use meridian_control::LeaderPlacement;
use meridian_crdt::{HlcClock, RegionTag};
use meridian_georep::{ShipStatus, Shipper};
use meridian_storage::GroupCommitter;
use meridian_types::catalog::{self, KeyspaceRecord, NodeRecord};
use meridian_types::ids::{group_keyspace, is_async_group};
use meridian_types::limits::FORWARD_HOPS_MAX;
use meridian_types::wan::LatencyMatrix;
use meridian_types::wire::{Command, ServedBy};
use meridian_types::{
    Clock, GroupId, KeyspaceId, KeyspacePolicy, KvError, NodeId, ReadConsistency, META_GROUP,
};
use openraft::errors::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::peer::{Op, OpReply, PeerRequest, PeerResponse, ReadConsistencyWire};
use crate::transport::{CallError, Endpoint, Handler, Transport};

/// How long one client request may take, forwarding and elections included, before it fails
/// as unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying when no leader is known (an election is running).
const NO_LEADER_BACKOFF: Duration = Duration::from_millis(50);
/// The longest a write is delayed by `on_lag_budget = "throttle"`.
const THROTTLE_MAX: Duration = Duration::from_millis(1000);
/// Leader-change events kept for the console and `/v1/cluster`.
const EVENTS_MAX: usize = 512;

/// A leadership change seen by this node.
#[derive(Clone, Debug, Serialize)]
pub struct LeaderEvent {
    pub at_ms: u64,
    pub keyspace: String,
    pub shard: u16,
    pub group: GroupId,
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
    pub to_region: Option<String>,
    /// `first`, `failover` or `transfer` (see `observe::ChangeKind`).
    pub kind: &'static str,
    /// For a failover: how long the group had no working leader, as seen by this node.
    pub rto_ms: Option<u64>,
    pub reason: String,
    /// The committed failover decision (its sequence number in the decision log) this change
    /// carried out: a transfer out of an evacuated region, or home after a failback. `None`
    /// for elections, which Raft holds on its own when a leader dies (liveness, not placement).
    pub decision: Option<u64>,
}

pub struct Node {
    pub cfg: NodeConfig,
    pub me: Endpoint,
    pub committer: GroupCommitter,
    /// Encryption at rest, when `[encryption]` is configured (set once at start).
    pub encryption: std::sync::OnceLock<Arc<crate::encryption::Encryption>>,
    pub transport: Arc<Transport>,
    pub clock: Arc<dyn Clock>,
    /// The clock of freshness stamps and staleness bounds (immune to wall-clock jumps).
    pub fresh_clock: Arc<FreshnessClock>,
    pub matrix: LatencyMatrix,
    /// Ordered, so every walk over the groups is in the same order (the simulator replays).
    groups: RwLock<BTreeMap<GroupId, Group>>,
    keyspaces: RwLock<BTreeMap<String, Arc<KeyspaceRecord>>>,
    pub(crate) placement: Mutex<LeaderPlacement>,
    pub(crate) events: Mutex<VecDeque<LeaderEvent>>,
    pub(crate) last_leaders: Mutex<BTreeMap<GroupId, Option<NodeId>>>,
    /// Region health and the failover decision log's state (see `crate::failover`).
    pub(crate) failover: crate::failover::Failover,
    /// The root token and the audit log's bounds (see `crate::auth`).
    pub(crate) auth: crate::auth::AuthState,
    /// Latency of the writes this node commits as a leader (a health signal).
    pub(crate) write_latency: meridian_storage::LatencyWindow,
    /// Whether the writes this node proposed as a leader committed (the error-rate signal).
    pub(crate) write_outcomes: meridian_storage::OutcomeWindow,
    /// Lag, clock offsets and peer round trips, as last measured.
    pub observations: crate::observe::Observations,
    /// The client requests this node received (the console's charts).
    pub(crate) requests: crate::observe::RequestCounters,
    /// The hybrid logical clock that stamps this region's async writes on this node.
    pub(crate) hlc: Mutex<HlcClock>,
    /// Per async group: the term in which this node, leading, has applied everything earlier
    /// terms committed (so its HLC has seen every stamp in the log before it stamps).
    ready_terms: Mutex<BTreeMap<GroupId, u64>>,
    /// Running shippers: (source group, destination group) to the task and its progress.
    pub(crate) shippers: Mutex<BTreeMap<(GroupId, GroupId), RunningShipper>>,
    /// Anti-entropy per async group led here (its status outlives a lost leadership).
    pub(crate) antientropy: Mutex<BTreeMap<GroupId, RunningAntiEntropy>>,
    /// When a lag-budget warning was last logged (at most one per 10 s).
    lag_alert_logged: Mutex<Option<Instant>>,
    /// Epoch leases, frozen replicas and running promotion steps (see `crate::promotion`).
    pub(crate) promotions: crate::promotion::Promotions,
}

pub(crate) struct RunningAntiEntropy {
    pub task: tokio::task::JoinHandle<()>,
    pub status: Arc<meridian_georep::antientropy::AntiEntropyStatus>,
    pub keyspace: String,
    pub region: String,
}

pub(crate) struct RunningShipper {
    pub task: tokio::task::JoinHandle<()>,
    pub status: Arc<ShipStatus>,
    pub keyspace: String,
    pub source_region: String,
    pub dest_region: String,
}

/// One group's consensus state on this node, as the simulator's checkers observe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: GroupId,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// This node leads the group in `term`.
    pub is_leader: bool,
    /// The last applied entry: its index and the leader that proposed it (term and node).
    pub applied: Option<(u64, String)>,
    /// The term of the last applied entry.
    pub applied_term: Option<u64>,
    /// The last index in this replica's log.
    pub last_log: Option<u64>,
    /// On a leader: each replica's matched index.
    pub matched: Vec<(NodeId, Option<u64>)>,
}

/// Whether a replica serves a read itself.
enum LocalRead {
    /// Yes, with this staleness (`None`: unknown, for an eventual read).
    Serve(Option<u64>),
    /// No, and why.
    Refuse(String),
}

/// What a local attempt at an operation concluded.
// One per request, moved a few times: boxing the reply would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Done(Result<OpReply, KvError>),
    /// Forward to this node (id, peer address, region), or wait when no leader is known.
    Forward(Option<(NodeId, String, String)>),
    /// Serve from another group of the same shard (an async keyspace's region that has
    /// applied what a session needs).
    Retarget(GroupId),
}

impl Node {
    pub fn new(
        cfg: NodeConfig,
        committer: GroupCommitter,
        transport: Arc<Transport>,
        clock: Arc<dyn Clock>,
    ) -> Node {
        let matrix = cfg.wan.matrix().expect("validated config");
        let placement = LeaderPlacement::new(cfg.leader_return_delay_ms);
        let cfg_region = cfg.region.clone();
        let auth = crate::auth::AuthState::load(&cfg.auth).expect("validated config");
        Node {
            me: transport.me.clone(),
            cfg,
            committer,
            encryption: std::sync::OnceLock::new(),
            transport,
            fresh_clock: Arc::new(FreshnessClock::new(clock.as_ref())),
            clock,
            matrix,
            groups: RwLock::new(BTreeMap::new()),
            keyspaces: RwLock::new(BTreeMap::new()),
            placement: Mutex::new(placement),
            events: Mutex::new(VecDeque::new()),
            last_leaders: Mutex::new(BTreeMap::new()),
            auth,
            failover: Default::default(),
            write_latency: Default::default(),
            write_outcomes: Default::default(),
            observations: Default::default(),
            requests: Default::default(),
            hlc: Mutex::new(HlcClock::new(RegionTag::of(&cfg_region))),
            ready_terms: Mutex::new(BTreeMap::new()),
            shippers: Mutex::new(BTreeMap::new()),
            antientropy: Mutex::new(BTreeMap::new()),
            lag_alert_logged: Mutex::new(None),
            promotions: Default::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.cfg.node_id
    }

    pub fn record(&self) -> NodeRecord {
        NodeRecord {
            id: self.cfg.node_id,
            region: self.cfg.region.clone(),
            zone: self.cfg.zone.clone(),
            peer_addr: self.cfg.peer_addr(),
            http_addr: self.cfg.http_addr(),
            grpc_addr: self.cfg.grpc_addr(),
            role: self.cfg.role,
        }
    }

    /// This node is a witness: votes, keeps logs, holds no key-value state, never leads.
    pub fn is_witness(&self) -> bool {
        self.cfg.role == meridian_types::catalog::NodeRole::Witness
    }

    /// The witness nodes of the catalogue.
    pub fn witness_ids(&self) -> BTreeSet<NodeId> {
        self.catalog_nodes()
            .into_iter()
            .filter(|n| n.role == meridian_types::catalog::NodeRole::Witness)
            .map(|n| n.id)
            .collect()
    }

    pub fn group(&self, id: GroupId) -> Option<Group> {
        self.groups.read().unwrap().get(&id).cloned()
    }

    pub fn groups(&self) -> Vec<Group> {
        self.groups.read().unwrap().values().cloned().collect()
    }

    /// Stops running group `id` here (its data stays in the engine); the caller shuts it down.
    pub(crate) fn remove_group(&self, id: GroupId) -> Option<Group> {
        self.ready_terms.lock().unwrap().remove(&id);
        self.groups.write().unwrap().remove(&id)
    }

    /// Opens group `id` if this node does not run it yet.
    pub async fn ensure_group(self: &Arc<Self>, id: GroupId) -> Result<Group, String> {
        if let Some(g) = self.group(id) {
            return Ok(g);
        }
        if self.promotions.is_frozen(id) {
            return Err(format!(
                "group {id} was frozen here for a promotion and is not reopened"
            ));
        }
        let rpc: Arc<dyn RaftRpc> = Arc::new(Rpc {
            transport: self.transport.clone(),
        });
        let g = Group::open(
            self.id(),
            id,
            self.group_timing(id),
            self.committer.clone(),
            rpc,
            self.fresh_clock.clone(),
            meridian_consensus::ReplicaOptions {
                ledger_max: self.cfg.conflict_ledger_max,
                // A witness keeps the log of the groups it votes in, but no data (the metadata
                // group's catalogue it holds like any node).
                witness: self.is_witness() && id != META_GROUP,
            },
        )
        .await?;
        let mut groups = self.groups.write().unwrap();
        Ok(groups.entry(id).or_insert(g).clone())
    }

    /// Group `id`'s election timing: the `[raft]` config's when it sets one, else from the
    /// largest round trip between the regions its voters may be in (the metadata group: every
    /// region with a node; a sync keyspace: its regions; an async group: this region).
    pub fn group_timing(&self, id: GroupId) -> ElectionTiming {
        if let Some(o) = self.cfg.group_options() {
            return ElectionTiming::from_options(&o);
        }
        let mut regions: Vec<String> = if id == META_GROUP {
            let known: Vec<String> = self.catalog_nodes().into_iter().map(|n| n.region).collect();
            if known.is_empty() {
                // Opened before the catalogue names anyone (this node bootstraps or joins):
                // the WAN-safe defaults, whatever regions join later.
                return ElectionTiming::from_options(&meridian_consensus::GroupOptions::default());
            }
            known
        } else {
            match self.keyspace_by_id(meridian_types::ids::group_keyspace(id)) {
                Some(ks) if ks.policy.replication == meridian_types::Replication::Sync => {
                    ks.policy.regions.clone()
                }
                Some(_) => Vec::new(),
                // Not in this node's catalogue yet: the timing of the widest cluster it knows.
                None => self.catalog_nodes().into_iter().map(|n| n.region).collect(),
            }
        };
        regions.push(self.cfg.region.clone());
        let mut max_rtt: f64 = 0.0;
        for a in &regions {
            for b in &regions {
                max_rtt = max_rtt.max(self.matrix.rtt_ms(a, b));
            }
        }
        ElectionTiming::from_rtt(max_rtt)
    }

    pub fn served(&self, staleness_ms: Option<u64>) -> ServedBy {
        ServedBy {
            region: self.cfg.region.clone(),
            node: self.cfg.node_id,
            staleness_ms,
        }
    }

    /// The consensus state of every group this node runs.
    pub fn group_status(&self) -> Vec<GroupStatus> {
        self.groups()
            .iter()
            .map(|g| {
                let m = g.raft.metrics().borrow_watched().clone();
                GroupStatus {
                    group: g.id,
                    term: m.current_term,
                    leader: m.current_leader,
                    is_leader: m.state == openraft::ServerState::Leader,
                    applied: m
                        .last_applied
                        .as_ref()
                        .map(|l| (l.index, l.leader_id.to_string())),
                    applied_term: m.last_applied.as_ref().map(|l| l.leader_id.term),
                    last_log: m.last_log_index,
                    matched: m
                        .replication
                        .as_ref()
                        .map(|r| {
                            r.iter()
                                .map(|(id, l)| (*id, l.as_ref().map(|l| l.index)))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    // ---- catalogue ----

    /// Every node in the local copy of the catalogue.
    pub fn catalog_nodes(&self) -> Vec<NodeRecord> {
        let engine = self.committer.engine();
        let rows = state_machine::scan(
            engine,
            META_GROUP,
            catalog::NODE_PREFIX.as_bytes(),
            usize::MAX,
        )
        .unwrap_or_default();
        rows.iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }

    /// Every keyspace in the local copy of the catalogue.
    pub fn catalog_keyspaces(&self) -> Vec<KeyspaceRecord> {
        let engine = self.committer.engine();
        let rows = state_machine::scan(
            engine,
            META_GROUP,
            catalog::KEYSPACE_PREFIX.as_bytes(),
            usize::MAX,
        )
        .unwrap_or_default();
        rows.iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }

    pub fn cluster_regions(&self) -> BTreeSet<String> {
        self.catalog_nodes().into_iter().map(|n| n.region).collect()
    }

    pub(crate) fn node_addr(&self, id: NodeId) -> Option<(String, String)> {
        self.catalog_nodes()
            .into_iter()
            .find(|n| n.id == id)
            .map(|n| (n.peer_addr, n.region))
    }

    /// Replaces cached keyspace records the catalogue has changed since (a switchover moves a
    /// home region and voters); the reconcile loop calls it every tick with its catalogue copy.
    pub fn refresh_cached_keyspaces(&self, current: &[KeyspaceRecord]) {
        let mut cache = self.keyspaces.write().unwrap();
        for k in current {
            if let Some(cached) = cache.get_mut(&k.policy.name) {
                if **cached != *k {
                    debug_assert_eq!(cached.id, k.id, "a keyspace keeps its id");
                    *cached = Arc::new(k.clone());
                }
            }
        }
    }

    /// The keyspace named `name`. A found record is cached (the reconcile loop refreshes it when
    /// the catalogue changes it); a miss is confirmed with a linearizable read of the catalogue
    /// before it is an error.
    pub async fn keyspace(self: &Arc<Self>, name: &str) -> Result<Arc<KeyspaceRecord>, KvError> {
        if let Some(k) = self.keyspaces.read().unwrap().get(name) {
            return Ok(k.clone());
        }
        let key = catalog::keyspace_key(name).into_bytes();
        let local = state_machine::read(self.committer.engine(), META_GROUP, &key)
            .ok()
            .flatten();
        let bytes = match local {
            Some(b) => Some(b),
            None => {
                let op = Op::get(key, ReadConsistency::Linearizable);
                self.execute(META_GROUP, op, 0).await?.value
            }
        };
        let Some(bytes) = bytes else {
            return Err(KvError::NotFound(format!(
                "keyspace {name:?} does not exist; create it with POST /v1/keyspaces or `meridian keyspace create`"
            )));
        };
        let record: KeyspaceRecord = serde_json::from_slice(&bytes)
            .map_err(|e| KvError::Internal(format!("catalogue record of {name:?}: {e}")))?;
        let record = Arc::new(record);
        self.keyspaces
            .write()
            .unwrap()
            .insert(name.to_string(), record.clone());
        Ok(record)
    }

    /// Validates, places and records a new keyspace through the metadata group.
    pub async fn create_keyspace(
        self: &Arc<Self>,
        policy: KeyspacePolicy,
    ) -> Result<KeyspaceRecord, KvError> {
        // Placement must see every node that has joined, not this node's possibly lagging copy.
        let nodes = self.catalog_nodes_linearizable().await?;
        let regions: BTreeSet<String> = nodes.iter().map(|n| n.region.clone()).collect();
        policy.validate(&regions)?;
        let shards = meridian_control::place_keyspace(&policy, &nodes, &self.matrix)?;
        let record = KeyspaceRecord {
            id: meridian_types::ids::keyspace_id(&policy.name),
            policy,
            shards,
            epoch: 0,
        };
        let value = serde_json::to_vec(&record).expect("records encode");
        let cmd = Command::Cas {
            key: catalog::keyspace_key(&record.policy.name).into_bytes(),
            expected: None,
            value: Some(value),
        };
        let reply = self.execute(META_GROUP, Op::Write(cmd), 0).await?;
        if !reply.result.succeeded {
            return Err(KvError::FailedPrecondition(format!(
                "keyspace {:?} already exists; choose another name (policies cannot be changed yet)",
                record.policy.name
            )));
        }
        Ok(record)
    }

    /// Compare-and-swap of one metadata-group key (`expected` the bytes read before): whether
    /// it swapped.
    pub async fn meta_cas(
        self: &Arc<Self>,
        key: Vec<u8>,
        expected: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<bool, KvError> {
        let cmd = Command::Cas {
            key,
            expected: Some(expected),
            value: Some(value),
        };
        Ok(self
            .execute(META_GROUP, Op::Write(cmd), 0)
            .await?
            .result
            .succeeded)
    }

    /// Every node of the catalogue, read linearizably from the metadata group.
    pub async fn catalog_nodes_linearizable(self: &Arc<Self>) -> Result<Vec<NodeRecord>, KvError> {
        let op = Op::Scan {
            prefix: catalog::NODE_PREFIX.as_bytes().to_vec(),
            limit: usize::MAX,
            consistency: ReadConsistencyWire::Linearizable,
            needs: Vec::new(),
        };
        let rows = self.execute(META_GROUP, op, 0).await?.rows;
        Ok(rows
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect())
    }

    /// Every keyspace, read linearizably from the metadata group.
    pub async fn list_keyspaces(self: &Arc<Self>) -> Result<Vec<KeyspaceRecord>, KvError> {
        let op = Op::Scan {
            prefix: catalog::KEYSPACE_PREFIX.as_bytes().to_vec(),
            limit: usize::MAX,
            consistency: ReadConsistencyWire::Linearizable,
            needs: Vec::new(),
        };
        let reply = self.execute(META_GROUP, op, 0).await?;
        Ok(reply
            .rows
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect())
    }

    // ---- operations ----

    /// Executes `op` on `group`: here when this node can serve it, otherwise on the node that
    /// can, following leader hints, until it succeeds, fails for good, or times out.
    pub async fn execute(
        self: &Arc<Self>,
        group: GroupId,
        op: Op,
        hops: u32,
    ) -> Result<OpReply, KvError> {
        // A bounded read that no replica within its bound answers fails fast: waiting longer
        // than the configured wait would serve the caller worse than an error it can act on.
        let bound_ms = match &op {
            Op::Get { consistency, .. } | Op::Scan { consistency, .. } => {
                match ReadConsistency::from(*consistency) {
                    ReadConsistency::Bounded { staleness_ms_max } => Some(staleness_ms_max),
                    _ => None,
                }
            }
            Op::Write(_) => None,
        };
        let wait = match bound_ms {
            Some(_) => Duration::from_millis(self.cfg.bounded_read_wait_ms).min(REQUEST_TIMEOUT),
            None => REQUEST_TIMEOUT,
        };
        let deadline = Instant::now() + wait;
        let mut last_problem = String::from("no leader elected yet");
        let mut group = group;
        let mut hops = hops;
        loop {
            if Instant::now() >= deadline {
                if let Some(bound) = bound_ms {
                    let local = match self.group(group) {
                        Some(g) => match self.local_read(&g, bound_ms) {
                            LocalRead::Serve(_) => {
                                "the local replica has just come within the bound".to_string()
                            }
                            LocalRead::Refuse(why) => why,
                        },
                        None => format!("node {} holds no replica of this shard", self.id()),
                    };
                    return Err(KvError::Unavailable(format!(
                        "no replica within the staleness bound of {bound} ms answered within {wait:?}: {local}, and the leader did not answer ({last_problem}); retry, or read with a larger bound or consistency=eventual"
                    )));
                }
                return Err(KvError::Unavailable(format!(
                    "no replica could serve the request within {wait:?} ({last_problem}); retry later"
                )));
            }
            let target = match self.attempt_local(group, &op, hops).await {
                Attempt::Done(r) => return r,
                Attempt::Forward(t) => t,
                Attempt::Retarget(other) => {
                    if hops >= FORWARD_HOPS_MAX {
                        return Err(KvError::Unavailable(format!(
                            "no replica of this shard has applied what the session token needs (last tried group {group}); retry, or read with consistency=eventual"
                        )));
                    }
                    hops += 1;
                    group = other;
                    continue;
                }
            };
            let Some((node, addr, region)) = target.filter(|(n, _, _)| *n != self.id()) else {
                tokio::time::sleep(NO_LEADER_BACKOFF).await;
                continue;
            };
            if hops >= FORWARD_HOPS_MAX {
                return Err(KvError::Unavailable(format!(
                    "request forwarded {FORWARD_HOPS_MAX} times without reaching a leader; retry later"
                )));
            }
            let to = Endpoint { node, region };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let req = PeerRequest::Op {
                group,
                op: op.clone(),
                hops: hops + 1,
            };
            match self.transport.call(&to, &addr, req, remaining).await {
                Ok(PeerResponse::Op(r)) => return r,
                Ok(_) => return Err(KvError::Internal("peer answered with the wrong message type".into())),
                // Safe to retry: the request never left, or it is a read.
                Err(e) if matches!(e, CallError::NotSent(..)) || !matches!(op, Op::Write(_)) => {
                    last_problem = format!("node {node}: {e}");
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                }
                Err(e) => {
                    return Err(KvError::Unavailable(format!(
                        "lost contact with the leader ({e}); the write may or may not have been applied"
                    )))
                }
            }
        }
    }

    fn forward_target(&self, f: &ForwardToLeader<meridian_consensus::TypeConfig>) -> Attempt {
        let target = match (&f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) => Some((*id, node.addr.clone(), node.region.clone())),
            (Some(id), None) => self.node_addr(*id).map(|(a, r)| (*id, a, r)),
            _ => None,
        };
        Attempt::Forward(target)
    }

    /// The best guess of a group's leader when this node has no replica of it.
    fn remote_guess(&self, group: GroupId) -> Attempt {
        let shard = self
            .catalog_keyspaces()
            .into_iter()
            .flat_map(|k| k.shards.into_iter())
            .find(|s| s.group == group);
        let Some(shard) = shard else {
            // A group of an epoch a promotion has left behind: say which epoch is current,
            // so the sender can route there.
            let epoch = meridian_types::ids::group_epoch(group);
            if let Some(ks) = self
                .keyspace_by_id(group_keyspace(group))
                .filter(|k| !k.is_async() && k.epoch > epoch)
            {
                return Attempt::Done(Err(KvError::Unavailable(format!(
                    "group {group} belongs to epoch {epoch}, but the keyspace is at epoch {} since a promotion: the old epoch is fenced; retry (requests route to the new epoch's groups)",
                    ks.epoch
                ))));
            }
            return Attempt::Done(Err(KvError::Unavailable(format!(
                "group {group} is not in this node's catalogue yet"
            ))));
        };
        let hinted = self
            .last_leaders
            .lock()
            .unwrap()
            .get(&group)
            .copied()
            .flatten();
        let target = hinted.or_else(|| shard.voters.first().copied());
        Attempt::Forward(target.and_then(|id| self.node_addr(id).map(|(a, r)| (id, a, r))))
    }

    async fn attempt_local(self: &Arc<Self>, group: GroupId, op: &Op, hops: u32) -> Attempt {
        let Some(g) = self.group(group) else {
            return self.remote_guess(group);
        };
        if self.is_witness() && group != META_GROUP {
            // A witness holds no data: it neither serves nor proposes; the leader does.
            let leader = g.raft.metrics().borrow_watched().current_leader;
            return match leader.filter(|l| *l != self.id()) {
                Some(l) => Attempt::Forward(self.node_addr(l).map(|(a, r)| (l, a, r))),
                None => Attempt::Done(Err(KvError::Unavailable(format!(
                    "node {} is a witness of group {group} and serves nothing itself; its leader is being elected (or handed over): retry",
                    self.id()
                )))),
            };
        }
        match op {
            Op::Write(cmd) => {
                // A zone keyspace's leader writes only under its epoch lease (fencing); checked
                // again when the write is acknowledged.
                let access = if matches!(cmd.inner(), Command::Load { .. }) {
                    crate::promotion::Access::Load
                } else {
                    crate::promotion::Access::Write
                };
                if g.raft.is_leader() {
                    if let Err(e) = crate::promotion::admit(self, group, access).await {
                        return Attempt::Done(Err(e));
                    }
                }
                // Only an async group's leader stamps its writes: a follower forwards them
                // before preparing anything, since a command prepared here unstamped would
                // reach the log as is if this node became leader in between (the conflict-type
                // test saw exactly that: an unstamped update refused by every replica).
                if is_async_group(group)
                    && matches!(cmd.inner(), Command::Write { .. } | Command::Update { .. })
                    && !g.raft.is_leader()
                {
                    let leader = g.raft.metrics().borrow_watched().current_leader;
                    return Attempt::Forward(
                        leader
                            .filter(|l| *l != self.id())
                            .and_then(|l| self.node_addr(l).map(|(a, r)| (l, a, r))),
                    );
                }
                let cmd = match self.prepare_write(&g, cmd).await {
                    Ok(c) => c,
                    Err(e) => return Attempt::Done(Err(e)),
                };
                if let Some(reply) = self.replay(&g, &cmd) {
                    return Attempt::Done(Ok(reply));
                }
                let shipped = match &cmd {
                    Command::Ship(b) => {
                        Some((b.source, b.writes.iter().map(|w| w.hlc).collect::<Vec<_>>()))
                    }
                    _ => None,
                };
                let started = Instant::now();
                match g.proposer.propose(cmd).await {
                    Ok(_) if crate::promotion::still_admitted(self, group, access).is_err() => {
                        // Committed, but the epoch lease ran out meanwhile (a promotion may
                        // have opened a newer epoch), or this node was not checked before it
                        // proposed: not acknowledged (and, if lost, in the reported tail).
                        let why =
                            crate::promotion::still_admitted(self, group, access).unwrap_err();
                        Attempt::Done(Err(KvError::Unavailable(format!(
                            "{why}; the write may or may not have been applied"
                        ))))
                    }
                    Ok(resp) => {
                        self.write_latency.record(started.elapsed());
                        self.write_outcomes.record(true);
                        let index = resp.log_id.index();
                        debug_assert_eq!(
                            resp.data.index, index,
                            "the state machine reports the entry's index"
                        );
                        if let (Some((source, stamps)), true) = (shipped, resp.data.succeeded) {
                            crate::observe::record_shipped(self, group, source, &stamps);
                        }
                        crate::observe::record_conflicts(self, group, &resp.data.conflicts);
                        Attempt::Done(Ok(OpReply {
                            result: resp.data,
                            served_by: self.served(None),
                            positions: vec![(group, index)],
                            ..Default::default()
                        }))
                    }
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        self.forward_target(&f)
                    }
                    Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                        self.write_outcomes.record(false);
                        Attempt::Done(Err(KvError::Unavailable(
                            "leadership changed while the write was in flight; it may or may not have been applied".into(),
                        )))
                    }
                    Err(e) => {
                        self.write_outcomes.record(false);
                        Attempt::Done(Err(KvError::Unavailable(format!("write failed: {e}"))))
                    }
                }
            }
            Op::Get {
                consistency, needs, ..
            }
            | Op::Scan {
                consistency, needs, ..
            } => {
                let c = ReadConsistency::from(*consistency);
                if is_async_group(group) {
                    return self.async_read(&g, op, c, needs, hops == 0).await;
                }
                if c != ReadConsistency::Eventual {
                    let access = crate::promotion::Access::Read;
                    if let Err(e) = crate::promotion::admit(self, group, access).await {
                        return Attempt::Done(Err(e));
                    }
                }
                let bound = match c {
                    ReadConsistency::Linearizable => None,
                    ReadConsistency::Session => {
                        // Any replica that has applied what the session saw will do; one that
                        // has not asks the leader (which has: it answered the write) rather
                        // than wait for the next append to tell it the commit index.
                        let missing = meridian_georep::session::satisfied(needs, |grp| {
                            if grp == group {
                                self.position(&g, grp)
                            } else {
                                u64::MAX
                            }
                        });
                        if missing.is_none() {
                            return Attempt::Done(self.read_local(group, op, None));
                        }
                        None
                    }
                    ReadConsistency::Bounded { staleness_ms_max } => Some(Some(staleness_ms_max)),
                    ReadConsistency::Eventual => Some(None),
                };
                if let Some(bound) = bound {
                    if let LocalRead::Serve(staleness_ms) = self.local_read(&g, bound) {
                        return Attempt::Done(self.read_local(group, op, staleness_ms));
                    }
                }
                match self.linearize(&g.raft).await {
                    // The leader's state reflects every acknowledged write: staleness 0.
                    Ok(()) => Attempt::Done(self.read_local(group, op, bound.map(|_| 0))),
                    Err(a) => a,
                }
            }
        }
    }

    /// Stamps an async write with this region's HLC, on the leader only (a follower's stamp
    /// would be replaced when the write is forwarded), after the leader has applied every
    /// earlier term's entries and seen the highest HLC applied; a shipped batch's stamps are
    /// observed first, so later local writes follow them.
    async fn prepare_write(&self, g: &Group, cmd: &Command) -> Result<Command, KvError> {
        if let Command::Idempotent {
            id,
            window_ms,
            cmd: inner,
            ..
        } = cmd
        {
            // Stamped with the leader's clock: the window is measured between proposals.
            let inner = self.prepare_command(g, inner).await?;
            return Ok(Command::Idempotent {
                id: id.clone(),
                at_ms: self.clock.now_ms(),
                window_ms: *window_ms,
                cmd: Box::new(inner),
            });
        }
        self.prepare_command(g, cmd).await
    }

    async fn prepare_command(&self, g: &Group, cmd: &Command) -> Result<Command, KvError> {
        match cmd {
            Command::Write { .. } | Command::Update { .. }
                if g.raft.is_leader() && is_async_group(g.id) =>
            {
                self.await_ready(g).await?;
                self.enforce_lag_budget(g).await?;
                let engine = self.committer.engine();
                let high = state_machine::hlc_max(engine, g.id)
                    .map_err(|e| KvError::Internal(format!("reading the group's HLC: {e}")))?;
                let wall = self.clock.now_ms();
                let hlc = {
                    let mut clock = self.hlc.lock().unwrap();
                    if let Some(h) = high {
                        clock.observe(h, wall, u64::MAX);
                    }
                    clock.now(wall)
                };
                debug_assert!(
                    high.is_none_or(|h| hlc > h),
                    "a local write follows every applied stamp"
                );
                Ok(match cmd.clone() {
                    Command::Write { key, value, .. } => {
                        // What the write has seen: every version of the key merged here.
                        let internal = |e: meridian_storage::StorageError| {
                            KvError::Internal(format!("reading the key: {e}"))
                        };
                        let seen =
                            state_machine::write_context(engine, g.id, &key).map_err(internal)?;
                        Command::Write {
                            key,
                            value,
                            hlc,
                            seen,
                        }
                    }
                    Command::Update { key, op, .. } => Command::Update {
                        key,
                        op,
                        hlc: Some(hlc),
                    },
                    _ => unreachable!("matched above"),
                })
            }
            // Leadership moved since the caller checked: never propose it unstamped.
            Command::Write { .. } | Command::Update { .. } if is_async_group(g.id) => {
                Err(KvError::Unavailable(
                    "the region's leadership moved while the write was being prepared; retry"
                        .into(),
                ))
            }
            Command::Ship(b) if g.raft.is_leader() => {
                let wall = self.clock.now_ms();
                let mut clock = self.hlc.lock().unwrap();
                for w in &b.writes {
                    let seen = clock.observe(w.hlc, wall, self.cfg.max_clock_offset_ms);
                    if seen.skew_alarm {
                        crate::observe::record_skew_alarm(self, g.id, seen.ahead_ms);
                    }
                }
                Ok(cmd.clone())
            }
            c => Ok(c.clone()),
        }
    }

    /// A retry of a request id this leader has applied within the window: the first outcome,
    /// without proposing (the state machine would refuse to apply it again anyway; this saves
    /// the round). Only on the leader, whose state holds every committed record.
    fn replay(&self, g: &Group, cmd: &Command) -> Option<OpReply> {
        let Command::Idempotent {
            id,
            at_ms,
            window_ms,
            ..
        } = cmd
        else {
            return None;
        };
        if !g.raft.is_leader() {
            return None;
        }
        let (first, index, result) =
            state_machine::request_record(self.committer.engine(), g.id, id).ok()??;
        (at_ms.saturating_sub(first) <= *window_ms).then(|| OpReply {
            result: meridian_types::wire::CommandResult {
                replayed: true,
                index,
                ..result
            },
            served_by: self.served(None),
            positions: vec![(g.id, index)],
            ..Default::default()
        })
    }

    /// Applies the keyspace's lag budget to a write in this region: over budget towards some
    /// region, `alert` counts it (and logs at most every 10 s), `throttle` delays the write by
    /// the excess (at most `THROTTLE_MAX`), `reject` fails it with a retriable error.
    async fn enforce_lag_budget(&self, g: &Group) -> Result<(), KvError> {
        let Some(ks) = self.keyspace_by_id(group_keyspace(g.id)) else {
            return Ok(());
        };
        let Some(budget) = ks.policy.lag_budget_ms.filter(|b| *b > 0).map(|b| b as u64) else {
            return Ok(());
        };
        let wall = self.clock.now_ms();
        let worst = self
            .shippers
            .lock()
            .unwrap()
            .iter()
            .filter(|((source, _), r)| *source == g.id && !r.task.is_finished())
            .map(|(_, r)| (r.status.get().lag_ms(wall), r.dest_region.clone()))
            .max();
        let Some((lag, dest)) = worst.filter(|(lag, _)| *lag > budget) else {
            return Ok(());
        };
        let action = ks.policy.on_lag_budget;
        let action_name = match action {
            meridian_types::OnLagBudget::Alert => "alert",
            meridian_types::OnLagBudget::Throttle => "throttle",
            meridian_types::OnLagBudget::Reject => "reject",
        };
        metrics::counter!("meridian_lag_budget_exceeded_total", "keyspace" => ks.policy.name.clone(),
            "source_region" => self.cfg.region.clone(), "dest_region" => dest.clone(), "action" => action_name)
        .increment(1);
        {
            let mut last = self.lag_alert_logged.lock().unwrap();
            if last.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                *last = Some(Instant::now());
                tracing::warn!(keyspace = %ks.policy.name, source = %self.cfg.region, dest = %dest, lag_ms = lag, budget_ms = budget, action = action_name, "replication lag over the keyspace's budget");
            }
        }
        match action {
            meridian_types::OnLagBudget::Alert => Ok(()),
            meridian_types::OnLagBudget::Throttle => {
                tokio::time::sleep(Duration::from_millis(lag - budget).min(THROTTLE_MAX)).await;
                Ok(())
            }
            meridian_types::OnLagBudget::Reject => Err(KvError::Unavailable(format!(
                "replication from {} to {dest} is {lag} ms behind, over keyspace {:?}'s lag budget of {budget} ms (on_lag_budget = \"reject\"); retry once it has caught up",
                self.cfg.region, ks.policy.name
            ))),
        }
    }

    /// Waits (bounded) until this leader has applied an entry of its own term: then every
    /// entry of earlier terms is applied and its HLC is in the group's highest HLC.
    async fn await_ready(&self, g: &Group) -> Result<(), KvError> {
        let term = g.raft.metrics().borrow_watched().current_term;
        if self.ready_terms.lock().unwrap().get(&g.id) == Some(&term) {
            return Ok(());
        }
        match g.raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
            Ok(_) => {
                self.ready_terms.lock().unwrap().insert(g.id, term);
                Ok(())
            }
            Err(e) => Err(KvError::Unavailable(format!(
                "the region's leader is not ready to accept writes yet ({e}); retry"
            ))),
        }
    }

    /// What this replica of `g` has applied of `group` (its own applied index, or its cursor
    /// for another region's group of the same shard).
    fn position(&self, g: &Group, group: GroupId) -> u64 {
        if group == g.id {
            return applied_index(g);
        }
        state_machine::cursor(self.committer.engine(), g.id, group).unwrap_or(0)
    }

    /// Waits up to `bounded_read_wait_ms` for this replica to apply `needs` (the entries of
    /// groups it can apply: its own, and for an async group its sources). Returns the first
    /// position still missing, `None` when all are applied.
    async fn wait_for_positions(
        &self,
        g: &Group,
        needs: &[(GroupId, u64)],
    ) -> Option<(GroupId, u64)> {
        let relevant = |n: &&(GroupId, u64)| {
            n.0 == g.id
                || (is_async_group(g.id)
                    && is_async_group(n.0)
                    && group_keyspace(n.0) == group_keyspace(g.id)
                    && meridian_types::ids::group_shard(n.0)
                        == meridian_types::ids::group_shard(g.id))
        };
        let needs: Vec<(GroupId, u64)> = needs.iter().filter(relevant).copied().collect();
        let deadline = Instant::now() + Duration::from_millis(self.cfg.bounded_read_wait_ms);
        // A follower missing its own group's position asks the leader at once (see above).
        let own_missing = || {
            !g.raft.is_leader()
                && needs
                    .iter()
                    .any(|(grp, i)| *grp == g.id && self.position(g, *grp) < *i)
        };
        let mut watch = g.raft.metrics();
        loop {
            let missing = meridian_georep::session::satisfied(&needs, |grp| self.position(g, grp));
            let missing = missing?;
            if own_missing() {
                return Some((g.id, 0));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Some(missing);
            }
            match tokio::time::timeout(remaining, watch.changed()).await {
                Ok(Ok(())) => {}
                _ => return Some(missing),
            }
        }
    }

    /// A read of an async group: any replica serves eventual reads; session reads wait for
    /// the session's positions, then move to the region that has them.
    async fn async_read(
        &self,
        g: &Group,
        op: &Op,
        c: ReadConsistency,
        needs: &[(GroupId, u64)],
        first_hop: bool,
    ) -> Attempt {
        match c {
            ReadConsistency::Eventual => Attempt::Done(self.read_local(g.id, op, None)),
            ReadConsistency::Session => match self.wait_for_positions(g, needs).await {
                None => Attempt::Done(self.read_local(g.id, op, None)),
                // This region's own write: its leader has applied it (it answered the write);
                // a follower would learn the commit only with the next append.
                Some((missing, _)) if missing == g.id && !g.raft.is_leader() => {
                    let leader = g.raft.metrics().borrow_watched().current_leader;
                    Attempt::Forward(leader.and_then(|l| self.node_addr(l).map(|(a, r)| (l, a, r))))
                }
                // The origin region has applied its own writes: read there.
                Some((missing, _)) if missing != g.id => Attempt::Retarget(missing),
                Some((_, index)) => Attempt::Done(Err(KvError::Unavailable(format!(
                    "this region's replica has not applied position {index} the session token needs within {} ms; retry",
                    self.cfg.bounded_read_wait_ms
                )))),
            },
            ReadConsistency::Bounded { staleness_ms_max } => {
                let why = match self.async_staleness(g).await {
                    Ok(s) if s <= staleness_ms_max => {
                        return Attempt::Done(self.read_local(g.id, op, Some(s)))
                    }
                    Ok(s) => format!(
                        "the replica on node {} ({}) is up to {s} ms stale",
                        self.id(),
                        self.cfg.region
                    ),
                    Err(why) => format!(
                        "the replica on node {} ({}) cannot bound its staleness: {why}",
                        self.id(),
                        self.cfg.region
                    ),
                };
                // Only the node the client asked looks elsewhere: the nearest other region.
                if first_hop {
                    if let Some(other) = self.nearest_region_group(g.id) {
                        return Attempt::Retarget(other);
                    }
                }
                Attempt::Done(Err(KvError::Unavailable(format!(
                    "no replica within the staleness bound of {staleness_ms_max} ms: {why}; retry, or read with a larger bound, consistency=session or consistency=eventual"
                ))))
            }
            ReadConsistency::Linearizable => Attempt::Done(Err(KvError::FailedPrecondition(
                "an async keyspace cannot serve linearizable reads; use session, bounded:<ms> or eventual".into(),
            ))),
        }
    }

    /// An upper bound on how stale this replica of async group `g` is: the oldest of its own
    /// region's freshness (0 on a leader with a valid lease; a follower's from its leader's
    /// stamps) and, per other region, the latest promise of that region's leader that this
    /// replica has applied, converted to this node's clock with the probed offset less its
    /// error.
    async fn async_staleness(&self, g: &Group) -> Result<u64, String> {
        let now = self.fresh_clock.now_ms();
        let mut worst = if g.raft.is_leader() {
            self.linearize(&g.raft)
                .await
                .map_err(|_| "its region's leader cannot confirm its lease".to_string())?;
            0
        } else {
            g.freshness
                .staleness_ms(applied_index(g), now)
                .ok_or_else(|| {
                    g.freshness.refused().unwrap_or_else(|| {
                        "it has applied no state its region's leader vouched for recently".into()
                    })
                })?
        };
        let ks = self
            .keyspace_by_id(group_keyspace(g.id))
            .ok_or_else(|| "its keyspace is not known here yet".to_string())?;
        let shard = meridian_types::ids::group_shard(g.id);
        let promises = state_machine::fresh_promises(self.committer.engine(), g.id)
            .map_err(|e| format!("reading its state: {e}"))?;
        for region in ks.policy.regions.iter().filter(|r| **r != self.cfg.region) {
            let Some(source) = ks.region_group(region, shard) else {
                continue;
            };
            let f = promises
                .get(&source)
                .ok_or_else(|| format!("it has applied no freshness promise from {region} yet"))?;
            let offset = self
                .observations
                .clock_offset(f.node, self.cfg.max_clock_offset_ms)
                .map_err(|e| format!("the clock of {region}'s leader (node {}): {e}", f.node))?;
            if offset.epoch != f.epoch {
                return Err(format!(
                    "{region}'s leader (node {}) restarted since its clock was probed",
                    f.node
                ));
            }
            let local_at = f.at_ms as i64 - offset.offset_ms - offset.error_ms as i64;
            worst = worst.max((now as i64 - local_at).max(0) as u64);
        }
        Ok(worst)
    }

    /// The same shard's group in the nearest other region of its async keyspace that this node
    /// has heard from lately (one of the group's voters answered within 3 s; the clock probe
    /// asks every node every 2 s), or the nearest one if none has.
    fn nearest_region_group(&self, group: GroupId) -> Option<GroupId> {
        let ks = self.keyspace_by_id(group_keyspace(group))?;
        let shard = meridian_types::ids::group_shard(group);
        let mut others: Vec<(f64, GroupId)> = ks
            .policy
            .regions
            .iter()
            .filter(|r| **r != self.cfg.region)
            .filter_map(|r| {
                Some((
                    self.matrix.rtt_ms(&self.cfg.region, r),
                    ks.region_group(r, shard)?,
                ))
            })
            .collect();
        others.sort_by(|a, b| a.0.total_cmp(&b.0));
        let reachable = |g: GroupId| {
            ks.placement(g).is_some_and(|p| {
                p.voters.iter().any(|v| {
                    self.transport
                        .last_heard(*v)
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(3))
                })
            })
        };
        others
            .iter()
            .find(|(_, g)| reachable(*g))
            .or(others.first())
            .map(|(_, g)| *g)
    }

    /// Whether this replica serves a non-linearizable read with staleness `bound` (`None`:
    /// any) itself, and the staleness it would serve. The leader never does: it serves
    /// linearizably, at no extra cost.
    fn local_read(&self, g: &Group, bound: Option<u64>) -> LocalRead {
        if g.raft.is_leader() {
            return LocalRead::Refuse("this node leads the shard".into());
        }
        let applied = applied_index(g);
        let staleness = g.freshness.staleness_ms(applied, self.fresh_clock.now_ms());
        match (bound, staleness) {
            // Eventual: any local state, with its staleness when known.
            (None, s) => LocalRead::Serve(s),
            (Some(b), Some(s)) if s <= b => LocalRead::Serve(Some(s)),
            (Some(b), Some(s)) => LocalRead::Refuse(format!(
                "the local replica (node {}) is up to {s} ms stale, beyond the bound of {b} ms",
                self.id()
            )),
            (Some(_), None) => LocalRead::Refuse(match g.freshness.refused() {
                Some(why) => format!("the local replica (node {}) cannot bound its staleness: {why}", self.id()),
                None => format!(
                    "the local replica (node {}) has not applied any state its leader vouched for recently",
                    self.id()
                ),
            }),
        }
    }

    /// Confirms this node leads and its state machine reflects every acknowledged write: a
    /// lease read when the lease is valid, otherwise a read-index round.
    async fn linearize(&self, raft: &MRaft) -> Result<(), Attempt> {
        let mut policy = ReadPolicy::LeaseRead;
        loop {
            match raft.ensure_linearizable(policy.clone()).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    return Err(self.forward_target(&f))
                }
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q))) => {
                    if policy == ReadPolicy::LeaseRead {
                        policy = ReadPolicy::ReadIndex;
                        continue;
                    }
                    return Err(Attempt::Done(Err(KvError::Unavailable(format!(
                        "this leader cannot reach a quorum ({q}); retry later"
                    )))));
                }
                Err(e) => {
                    return Err(Attempt::Done(Err(KvError::Unavailable(format!(
                        "read failed: {e}"
                    )))))
                }
            }
        }
    }

    fn read_local(
        &self,
        group: GroupId,
        op: &Op,
        staleness_ms: Option<u64>,
    ) -> Result<OpReply, KvError> {
        let engine = self.committer.engine();
        let internal = |e: meridian_storage::StorageError| {
            KvError::Internal(format!("storage read failed: {e}"))
        };
        let mut reply = OpReply {
            served_by: self.served(staleness_ms),
            positions: self.positions_of(group),
            ..Default::default()
        };
        match op {
            Op::Get { key, .. } if is_async_group(group) => {
                let v = state_machine::read_versioned(engine, group, key).map_err(internal)?;
                reply.version = v.as_ref().map(|v| v.hlc);
                reply.value = v.and_then(|v| v.render());
            }
            Op::Get { key, .. } => {
                reply.value = state_machine::read(engine, group, key).map_err(internal)?
            }
            Op::Scan { prefix, limit, .. } => {
                reply.rows = state_machine::scan(engine, group, prefix, *limit).map_err(internal)?
            }
            Op::Write(_) => unreachable!("writes are not reads"),
        }
        Ok(reply)
    }

    /// What this replica of `group` reflects: its applied index and, for an async group,
    /// its cursor for every source.
    fn positions_of(&self, group: GroupId) -> Vec<(GroupId, u64)> {
        let Some(g) = self.group(group) else {
            return Vec::new();
        };
        if is_async_group(group) {
            // The last write applied, not the applied index: the entries after it (shipped
            // batches, blanks) carry no write of this region, and another region's cursor
            // passes them only when a later write is shipped.
            let own = state_machine::last_write(self.committer.engine(), group).unwrap_or(0);
            let mut out = vec![(group, own)];
            out.extend(state_machine::cursors(self.committer.engine(), group).unwrap_or_default());
            return out;
        }
        vec![(group, self.position(&g, group))]
    }

    /// The keyspace with id `id`, from the cache or the local catalogue.
    pub fn keyspace_by_id(&self, id: KeyspaceId) -> Option<Arc<KeyspaceRecord>> {
        if let Some(k) = self.keyspaces.read().unwrap().values().find(|k| k.id == id) {
            return Some(k.clone());
        }
        let k = Arc::new(self.catalog_keyspaces().into_iter().find(|k| k.id == id)?);
        self.keyspaces
            .write()
            .unwrap()
            .insert(k.policy.name.clone(), k.clone());
        Some(k)
    }

    /// On the destination: commits a shipped batch through the group's consensus (forwarded
    /// to its leader) and answers with (applied, cursor, committing node).
    pub async fn receive_ship(
        self: &Arc<Self>,
        dest: GroupId,
        batch: meridian_types::wire::ShipBatch,
    ) -> Result<(bool, u64, u64), KvError> {
        if !is_async_group(dest)
            || !is_async_group(batch.source)
            || group_keyspace(dest) != group_keyspace(batch.source)
        {
            return Err(KvError::InvalidArgument(format!(
                "group {} cannot ship to group {dest}: not two regions of one async keyspace",
                batch.source
            )));
        }
        let r = self
            .execute(dest, Op::Write(Command::Ship(batch)), 0)
            .await?;
        Ok((
            r.result.succeeded,
            r.result.cursor.unwrap_or(0),
            r.served_by.node,
        ))
    }

    /// The shippers this node should run: one per other region for every async group it
    /// leads. Starts missing or finished ones.
    pub(crate) fn ensure_shippers(self: &Arc<Self>, ks: &KeyspaceRecord, g: &Group, shard: u16) {
        let source_region = self.cfg.region.clone();
        for region in ks.policy.regions.iter().filter(|r| **r != source_region) {
            let Some(dest) = ks.region_group(region, shard) else {
                continue;
            };
            let mut running = self.shippers.lock().unwrap();
            if running
                .get(&(g.id, dest))
                .is_some_and(|r| !r.task.is_finished())
            {
                continue;
            }
            let status = Arc::new(ShipStatus::default());
            let shipper = Shipper {
                node: self.id(),
                group: g.clone(),
                engine: self.committer.engine().clone(),
                dest,
                rpc: Arc::new(crate::georep_rpc::ShipVia {
                    node: self.clone(),
                    rotation: Default::default(),
                }),
                limits: crate::georep_rpc::limits(self, region),
                status: status.clone(),
            };
            let task = tokio::spawn(shipper.run());
            running.insert(
                (g.id, dest),
                RunningShipper {
                    task,
                    status,
                    keyspace: ks.policy.name.clone(),
                    source_region: source_region.clone(),
                    dest_region: region.clone(),
                },
            );
        }
        self.ensure_antientropy(ks, g, shard);
    }

    /// Starts anti-entropy for async group `g`, led here, unless it runs.
    fn ensure_antientropy(self: &Arc<Self>, ks: &KeyspaceRecord, g: &Group, shard: u16) {
        use meridian_georep::antientropy::{
            AntiEntropy, AntiEntropyLimits, AntiEntropyStatus, Origins, Peer,
        };
        let mut running = self.antientropy.lock().unwrap();
        if running.get(&g.id).is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let regions = &ks.policy.regions;
        let origins = Origins {
            groups: regions
                .iter()
                .filter_map(|r| Some((RegionTag::of(r), ks.region_group(r, shard)?)))
                .collect(),
        };
        let peers = regions
            .iter()
            .filter(|r| **r != self.cfg.region)
            .filter_map(|r| {
                Some(Peer {
                    region: r.clone(),
                    group: ks.region_group(r, shard)?,
                })
            })
            .collect();
        // Counts carry over when leadership comes back.
        let status = running
            .get(&g.id)
            .map(|r| r.status.clone())
            .unwrap_or_else(|| Arc::new(AntiEntropyStatus::default()));
        let clock = self.clock.clone();
        let ae = AntiEntropy {
            group: g.clone(),
            engine: self.committer.engine().clone(),
            keyspace: ks.policy.name.clone(),
            region: self.cfg.region.clone(),
            peers,
            origins,
            rpc: Arc::new(crate::georep_rpc::AntiEntropyVia {
                node: self.clone(),
                rotation: Default::default(),
            }),
            limits: AntiEntropyLimits {
                interval: Duration::from_millis(self.cfg.antientropy_interval_ms),
                settle: Duration::from_millis(self.cfg.antientropy_settle_ms),
                ..AntiEntropyLimits::default()
            },
            status: status.clone(),
            wall_ms: Arc::new(move || clock.now_ms()),
            rotation: Default::default(),
            peer_applied: Default::default(),
        };
        let task = tokio::spawn(ae.run());
        running.insert(
            g.id,
            RunningAntiEntropy {
                task,
                status,
                keyspace: ks.policy.name.clone(),
                region: self.cfg.region.clone(),
            },
        );
    }

    /// Keys anti-entropy has repaired on this node since it started.
    pub fn antientropy_repairs(&self) -> u64 {
        self.antientropy
            .lock()
            .unwrap()
            .values()
            .map(|r| r.status.repairs.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Anti-entropy per async group led here (or led earlier), for `/v1/cluster`.
    pub fn antientropy_report(&self) -> Vec<serde_json::Value> {
        use std::sync::atomic::Ordering::Relaxed;
        self.antientropy
            .lock()
            .unwrap()
            .iter()
            .map(|(group, r)| {
                serde_json::json!({
                    "keyspace": r.keyspace,
                    "region": r.region,
                    "group": group,
                    "running": !r.task.is_finished(),
                    "rounds": r.status.rounds.load(Relaxed),
                    "repairs": r.status.repairs.load(Relaxed),
                    "differing_buckets": r.status.differing.load(Relaxed),
                    "tombstones_purged": r.status.purged.load(Relaxed),
                })
            })
            .collect()
    }

    /// Anti-entropy's digest of async group `group` here.
    fn antientropy_digest(
        &self,
        group: GroupId,
        horizon_ms: u64,
    ) -> Result<meridian_georep::antientropy::Digest, KvError> {
        self.antientropy_group(group)?;
        meridian_georep::antientropy::digest_of(self.committer.engine(), group, horizon_ms)
            .map_err(|e| KvError::Internal(format!("reading group {group}: {e}")))
    }

    /// A page of one anti-entropy bucket of async group `group` here.
    fn antientropy_bucket(
        &self,
        group: GroupId,
        bucket: u32,
        after: Option<Vec<u8>>,
    ) -> Result<meridian_georep::antientropy::BucketPage, KvError> {
        self.antientropy_group(group)?;
        if bucket as usize >= meridian_georep::antientropy::BUCKETS {
            return Err(KvError::InvalidArgument(format!(
                "bucket {bucket} does not exist: there are {}",
                meridian_georep::antientropy::BUCKETS
            )));
        }
        meridian_georep::antientropy::bucket_page(
            self.committer.engine(),
            group,
            bucket,
            after.as_deref(),
            meridian_georep::antientropy::PAGE_ROWS,
        )
        .map_err(|e| KvError::Internal(format!("reading group {group}: {e}")))
    }

    fn antientropy_group(&self, group: GroupId) -> Result<(), KvError> {
        if !is_async_group(group) {
            return Err(KvError::InvalidArgument(format!(
                "group {group} is not a group of an async keyspace"
            )));
        }
        if self.group(group).is_none() {
            return Err(KvError::Unavailable(format!(
                "node {} holds no replica of group {group}",
                self.id()
            )));
        }
        Ok(())
    }

    // ---- joining ----

    /// Records `rec` in the catalogue and adds it to the metadata group as a learner; forwarded
    /// to the metadata leader when this node is not it.
    pub async fn handle_join(self: &Arc<Self>, rec: NodeRecord) -> Result<(), KvError> {
        let put = Command::Put {
            key: catalog::node_key(rec.id).into_bytes(),
            value: serde_json::to_vec(&rec).unwrap(),
        };
        let unchanged = state_machine::read(
            self.committer.engine(),
            META_GROUP,
            &catalog::node_key(rec.id).into_bytes(),
        )
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<NodeRecord>(&b).ok())
        .is_some_and(|known| known == rec);
        if !unchanged {
            self.execute(META_GROUP, Op::Write(put), 0).await?;
        }
        let meta = self
            .group(META_GROUP)
            .ok_or_else(|| KvError::Unavailable("metadata group not open".into()))?;
        let member = meta
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&rec.id)
            .is_some();
        if member {
            return Ok(());
        }
        if meta.raft.is_leader() {
            let node = PeerNode {
                addr: rec.peer_addr.clone(),
                region: rec.region.clone(),
            };
            meta.raft
                .add_learner(rec.id, node, false)
                .await
                .map_err(|e| {
                    KvError::Unavailable(format!(
                        "adding node {} to the metadata group: {e}",
                        rec.id
                    ))
                })?;
            return Ok(());
        }
        let leader = meta.raft.metrics().borrow_watched().current_leader;
        let Some(leader) = leader.filter(|l| *l != self.id()) else {
            return Err(KvError::Unavailable(
                "the metadata group has no leader yet; retry".into(),
            ));
        };
        let Some((addr, region)) = self.node_addr(leader) else {
            return Err(KvError::Unavailable(
                "the metadata leader's address is not known yet; retry".into(),
            ));
        };
        let to = Endpoint {
            node: leader,
            region,
        };
        match self
            .transport
            .call(&to, &addr, PeerRequest::Join(rec), REQUEST_TIMEOUT)
            .await
        {
            Ok(PeerResponse::Join(r)) => r,
            Ok(_) => Err(KvError::Internal("wrong answer to a join".into())),
            Err(e) => Err(KvError::Unavailable(e.to_string())),
        }
    }

    /// Appends a leadership change to the bounded timeline.
    pub(crate) fn push_event(&self, e: LeaderEvent) {
        tracing::info!(keyspace = %e.keyspace, shard = e.shard, from = ?e.from, to = ?e.to, region = ?e.to_region, reason = %e.reason, "leader change");
        let mut ev = self.events.lock().unwrap();
        if ev.len() == EVENTS_MAX {
            ev.pop_front();
        }
        ev.push_back(e);
    }

    pub fn events(&self) -> Vec<LeaderEvent> {
        self.events.lock().unwrap().iter().cloned().collect()
    }

    /// Node id to region, for every catalogue node.
    pub fn regions_by_node(&self) -> BTreeMap<NodeId, String> {
        self.catalog_nodes()
            .into_iter()
            .map(|n| (n.id, n.region))
            .collect()
    }
}

impl Handler for Node {
    async fn handle(&self, from: Endpoint, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Raft { group, req } => match self.group(group) {
                Some(g) => {
                    let offset = || {
                        self.observations
                            .clock_offset(from.node, self.cfg.max_clock_offset_ms)
                    };
                    PeerResponse::Raft(
                        handle_raft_request(&g.raft, &g.freshness, &g.contact, offset, req).await,
                    )
                }
                None => PeerResponse::Raft(RaftResponse::NoGroup(format!(
                    "node {} does not run group {group}",
                    self.id()
                ))),
            },
            PeerRequest::Stats => PeerResponse::Stats(crate::observe::stats(self)),
            PeerRequest::Ping => PeerResponse::Pong,
            PeerRequest::Digest { group, horizon_ms } => {
                PeerResponse::Digest(self.antientropy_digest(group, horizon_ms))
            }
            PeerRequest::Bucket {
                group,
                bucket,
                after,
            } => PeerResponse::Bucket(self.antientropy_bucket(group, bucket, after)),
            // Operations, joins and shipping need `Arc<Node>`; the server wraps the node (see
            // `NodeHandler`).
            PeerRequest::Op { .. }
            | PeerRequest::Join(_)
            | PeerRequest::Ship { .. }
            | PeerRequest::Reconfigure { .. }
            | PeerRequest::TakeLeadership { .. }
            | PeerRequest::ReplicaState { .. } => {
                unreachable!("served by NodeHandler")
            }
        }
    }

    fn lane(&self, req: &PeerRequest) -> Option<u64> {
        match req {
            PeerRequest::Raft {
                group,
                req: RaftRequest::Append { .. },
            } => Some(*group),
            // One destination's batches commit in arrival order, so a window of batches in
            // flight applies without gaps. (Lanes are per connection: appends for the same
            // group arrive from its leader on another connection.)
            PeerRequest::Ship { dest, .. } => Some(*dest),
            _ => None,
        }
    }
}

/// The last index `g` has applied on this node (0: none).
fn applied_index(g: &Group) -> u64 {
    g.raft
        .metrics()
        .borrow_watched()
        .last_applied
        .as_ref()
        .map_or(0, |l| l.index())
}

/// The peer-request handler: the node behind an `Arc`, so forwarded work can re-enter it.
pub struct NodeHandler(pub Arc<Node>);

impl Handler for NodeHandler {
    fn admit(&self, who: &Endpoint) -> Result<(), String> {
        match self
            .0
            .catalog_nodes()
            .into_iter()
            .find(|n| n.id == who.node)
        {
            Some(n) if n.region != who.region => Err(format!(
                "its certificate says node {} is in {}, the catalogue says {}",
                who.node, who.region, n.region
            )),
            _ => Ok(()),
        }
    }

    async fn handle(&self, from: Endpoint, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Op { group, op, hops } => {
                PeerResponse::Op(self.0.execute(group, op, hops).await)
            }
            PeerRequest::Join(rec) => PeerResponse::Join(self.0.handle_join(rec).await),
            PeerRequest::Ship { dest, batch } => {
                PeerResponse::Ship(self.0.receive_ship(dest, batch).await)
            }
            PeerRequest::Reconfigure { group, change } => PeerResponse::Reconfigure(
                crate::switchover::serve_reconfigure(&self.0, group, change).await,
            ),
            PeerRequest::TakeLeadership { group } => PeerResponse::TookLeadership(
                crate::switchover::serve_take_leadership(&self.0, group).await,
            ),
            PeerRequest::ReplicaState { group, freeze } => PeerResponse::ReplicaState(
                crate::promotion::serve_replica_state(&self.0, group, freeze).await,
            ),
            raft => self.0.handle(from, raft).await,
        }
    }

    fn lane(&self, req: &PeerRequest) -> Option<u64> {
        self.0.lane(req)
    }
}

/// The consensus layer's view of the transport.
struct Rpc {
    transport: Arc<Transport>,
}

impl RaftRpc for Rpc {
    fn send(
        &self,
        target: NodeId,
        node: &PeerNode,
        group: GroupId,
        req: RaftRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<PendingReply, RpcFailure>> {
        let transport = self.transport.clone();
        let to = Endpoint {
            node: target,
            region: node.region.clone(),
        };
        let addr = node.addr.clone();
        Box::pin(async move {
            let pending = transport
                .send(&to, &addr, PeerRequest::Raft { group, req })
                .await
                .map_err(rpc_failure)?;
            let reply: PendingReply = Box::pin(async move {
                match pending.wait(timeout).await.map_err(rpc_failure)? {
                    PeerResponse::Raft(r) => Ok(r),
                    _ => Err(RpcFailure::Unreachable(
                        "peer answered with the wrong message type".into(),
                    )),
                }
            });
            Ok(reply)
        })
    }
}

fn rpc_failure(e: CallError) -> RpcFailure {
    match e {
        CallError::Timeout(_, t) => RpcFailure::Timeout(t),
        e => RpcFailure::Unreachable(e.to_string()),
    }
}
