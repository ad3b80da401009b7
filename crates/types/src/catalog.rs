//! The catalogue the metadata group replicates: nodes and keyspaces with their placement.
//!
//! Records are stored as JSON values under string keys in the metadata group's key-value state
//! machine (`node/<id>`, `keyspace/<name>`), so the metadata group is an ordinary group.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, KeyspaceId, NodeId};
use crate::policy::KeyspacePolicy;

pub const NODE_PREFIX: &str = "node/";
pub const KEYSPACE_PREFIX: &str = "keyspace/";

pub fn node_key(id: NodeId) -> String {
    format!("{NODE_PREFIX}{id:020}")
}

pub fn keyspace_key(name: &str) -> String {
    format!("{KEYSPACE_PREFIX}{name}")
}

/// What a node is for.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Holds replicas of keyspaces' data.
    #[default]
    Data,
    /// Votes (in the metadata group, and in sync groups whose policy names its region as
    /// `witness_region`) and keeps the log, but holds no key-value state and never leads.
    Witness,
}

/// A node as the cluster knows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: NodeId,
    pub region: String,
    pub zone: String,
    /// Where peers reach the node's transport.
    pub peer_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
    #[serde(default)]
    pub role: NodeRole,
}

/// Where one shard's replicas live.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardPlacement {
    pub shard: u16,
    pub group: GroupId,
    /// For an async keyspace: the region whose group this is (every replica is in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Voters, the first of which initialises the group. The leader is kept in the home region.
    pub voters: Vec<NodeId>,
    /// Non-voting replicas, for local reads in other allowed regions.
    pub learners: Vec<NodeId>,
    /// For the group of a promoted epoch: where its first state comes from, until loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// The node that initialises the group, when not the first voter: a switchover reorders the
    /// voters, and a new first voter that never heard of the group must not initialise a second
    /// one beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialiser: Option<NodeId>,
}

/// How a promotion fills the new epoch's group of a shard: node `node` copies its replica of
/// the old epoch's group (frozen at `applied`) into the new group through its log, so every
/// replica of the new group applies the same rows. The group accepts writes once `loaded`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seed {
    pub node: NodeId,
    pub from_group: GroupId,
    /// The old group's index the copy reflects (the seed's applied index when it froze).
    pub applied: u64,
    pub loaded: bool,
}

impl ShardPlacement {
    pub fn replicas(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The node that initialises the group: the first voter as placed at creation (or at a
    /// promotion), whatever a switchover did to the voters since.
    pub fn initialiser(&self) -> Option<NodeId> {
        self.initialiser.or_else(|| self.voters.first().copied())
    }
}

impl KeyspaceRecord {
    pub fn is_async(&self) -> bool {
        self.policy.replication == crate::Replication::Async
    }

    /// For an async keyspace: the group of `shard` in `region`, if the keyspace lists it.
    pub fn region_group(&self, region: &str, shard: u16) -> Option<GroupId> {
        let i = self.policy.regions.iter().position(|r| r == region)?;
        Some(crate::ids::async_group_id(self.id, i, shard))
    }

    /// The placement of group `group`.
    pub fn placement(&self, group: GroupId) -> Option<&ShardPlacement> {
        self.shards.iter().find(|s| s.group == group)
    }
}

/// A keyspace and where its shards live.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyspaceRecord {
    pub id: KeyspaceId,
    pub policy: KeyspacePolicy,
    pub shards: Vec<ShardPlacement>,
    /// Bumped by every promotion; the shards' groups are of this epoch (see
    /// `ids::sync_group_id`).
    #[serde(default)]
    pub epoch: u64,
}
