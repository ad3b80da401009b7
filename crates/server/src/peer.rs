//! Messages between nodes: consensus traffic, forwarded client operations, and joins.

use meridian_consensus::{RaftRequest, RaftResponse};
use meridian_crdt::Hlc;
use meridian_types::catalog::NodeRecord;
use meridian_types::wire::{Command, CommandResult, ServedBy, ShipBatch};
use meridian_types::{GroupId, KvError, NodeId, ReadConsistency};
use serde::{Deserialize, Serialize};

/// One operation on one group, as forwarded between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Op {
    Write(Command),
    Get {
        key: Vec<u8>,
        consistency: ReadConsistencyWire,
        /// Session reads: positions the serving replica must have applied (see
        /// `meridian_georep::session`); empty otherwise.
        needs: Vec<(GroupId, u64)>,
    },
    Scan {
        prefix: Vec<u8>,
        limit: usize,
        consistency: ReadConsistencyWire,
        needs: Vec<(GroupId, u64)>,
    },
}

impl Op {
    pub fn get(key: Vec<u8>, consistency: ReadConsistency) -> Op {
        Op::Get {
            key,
            consistency: consistency.into(),
            needs: Vec::new(),
        }
    }
}

/// [`ReadConsistency`] in a form bincode carries (the type itself serializes as a string).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReadConsistencyWire {
    Linearizable,
    Bounded(u64),
    Session,
    Eventual,
}

impl From<ReadConsistency> for ReadConsistencyWire {
    fn from(c: ReadConsistency) -> Self {
        match c {
            ReadConsistency::Linearizable => ReadConsistencyWire::Linearizable,
            ReadConsistency::Bounded { staleness_ms_max } => {
                ReadConsistencyWire::Bounded(staleness_ms_max)
            }
            ReadConsistency::Session => ReadConsistencyWire::Session,
            ReadConsistency::Eventual => ReadConsistencyWire::Eventual,
        }
    }
}

impl From<ReadConsistencyWire> for ReadConsistency {
    fn from(c: ReadConsistencyWire) -> Self {
        match c {
            ReadConsistencyWire::Linearizable => ReadConsistency::Linearizable,
            ReadConsistencyWire::Bounded(ms) => ReadConsistency::Bounded {
                staleness_ms_max: ms,
            },
            ReadConsistencyWire::Session => ReadConsistency::Session,
            ReadConsistencyWire::Eventual => ReadConsistency::Eventual,
        }
    }
}

/// The answer to one [`Op`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpReply {
    pub result: CommandResult,
    pub value: Option<Vec<u8>>,
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    pub served_by: ServedBy,
    /// Positions the answer reflects (a write's own index; a read's replica's applied index
    /// and, for an async group, its cursors), for the client's session token.
    pub positions: Vec<(GroupId, u64)>,
    /// For a get on an async keyspace: the HLC of the version read (a delete's too).
    pub version: Option<Hlc>,
}

/// Replication lag one node sees on one pair of regions: the worst over the groups it runs.
/// A leader measures entries (its last index minus what each follower has); a follower
/// measures milliseconds (how old the leader state it has applied may be, see `Freshness`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLag {
    /// The leader's region.
    pub source_region: String,
    /// The replica's region.
    pub dest_region: String,
    pub lag_ms: Option<u64>,
    pub lag_entries: Option<u64>,
}

/// What a node reports about itself to a peer's probe (`PeerRequest::Stats`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's clock when it answered, for the prober's clock-offset estimate.
    pub clock_ms: u64,
    /// The node's freshness clock and its epoch, for bounded-staleness reads (see
    /// `meridian_consensus::freshness`).
    pub freshness_clock_ms: u64,
    pub freshness_epoch: u64,
    pub lag: Vec<RegionLag>,
    pub async_lag: Vec<crate::observe::AsyncLag>,
    /// Whom the node heard from lately and its latency percentiles (failover health).
    pub health: crate::failover::HealthReport,
    /// The client requests it served and their latency, and its round trips to its peers (the
    /// console's charts and region graph).
    pub requests: crate::observe::RequestStats,
}

#[derive(Serialize, Deserialize)]
pub enum PeerRequest {
    Raft {
        group: GroupId,
        req: RaftRequest,
    },
    Op {
        group: GroupId,
        op: Op,
        hops: u32,
    },
    Join(NodeRecord),
    Stats,
    /// Liveness only: answered at once with `Pong` (see `observe::liveness_loop`).
    Ping,
    /// A batch shipped from another region's group to group `dest` here.
    Ship {
        dest: GroupId,
        batch: ShipBatch,
    },
    /// Anti-entropy: the digest of group `group` here, over rows written up to `horizon_ms`.
    Digest {
        group: GroupId,
        horizon_ms: u64,
    },
    /// Anti-entropy: a page of one bucket of group `group` here.
    Bucket {
        group: GroupId,
        bucket: u32,
        after: Option<Vec<u8>>,
    },
    /// A switchover step on `group`'s leader (see `switchover.rs`).
    Reconfigure {
        group: GroupId,
        change: VoterChange,
    },
    /// Asks this node to take `group`'s leadership (a switchover's hand-over): answered with
    /// the write pause it measured.
    TakeLeadership {
        group: GroupId,
    },
    /// A promotion asks how far this node's replica of `group` got; with `freeze`, the replica
    /// stops first (it is the one the new epoch starts from).
    ReplicaState {
        group: GroupId,
        freeze: bool,
    },
}

/// A change a switchover asks of a group's leader.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum VoterChange {
    /// Makes these learners voters once they have caught up (joint consensus).
    AddVoters(Vec<NodeId>),
    /// Makes these voters learners (joint consensus); never the leader itself.
    RemoveVoters(Vec<NodeId>),
    /// As `RemoveVoters`, skipping the leader if it is one of them.
    RemoveVotersButLeader(Vec<NodeId>),
    /// Hands leadership to this voter.
    TransferTo(NodeId),
}

#[derive(Serialize, Deserialize)]
// One per request, moved a few times: boxing the reply would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum PeerResponse {
    Raft(RaftResponse),
    Op(Result<OpReply, KvError>),
    Join(Result<(), KvError>),
    Stats(NodeStats),
    Pong,
    /// The destination's answer: applied or not, its cursor, and the node that committed it.
    Ship(Result<(bool, u64, u64), KvError>),
    Digest(Result<meridian_georep::antientropy::Digest, KvError>),
    Bucket(Result<meridian_georep::antientropy::BucketPage, KvError>),
    /// `Ok(None)`: done; `Ok(Some(id))`: this node does not lead the group, `id` may.
    Reconfigure(Result<Option<NodeId>, KvError>),
    /// The hand-over as the new leader measured it.
    TookLeadership(Result<crate::switchover::HandOver, KvError>),
    ReplicaState(Result<crate::promotion::ReplicaState, KvError>),
}
