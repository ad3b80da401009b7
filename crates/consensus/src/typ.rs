//! The openraft type configuration shared by every group.

use meridian_types::wire::{Command, CommandResult};
use serde::{Deserialize, Serialize};

use crate::state_machine::StateMachine;

/// What a group's membership records about a node: where to reach it and its region (the
/// transport needs the region to apply the WAN delay; placement needs it to keep leaders home).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub addr: String,
    pub region: String,
}

// Standard Raft leader ids: at most one leader per term, so "one leader per term" is an
// invariant the simulator can check and term numbers mean what operators expect. (openraft's
// default, `leader_id_adv`, lets a voter grant a higher node id in the same term, so two
// leaders of one term are legal there; the simulator found exactly that, seed 22.)
openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = PeerNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        Entry = openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>,
        Vote = openraft::impls::Vote<Self::LeaderId>,
        AsyncRuntime = crate::runtime::SeededRuntime,
);

pub type MRaft = openraft::Raft<TypeConfig, StateMachine>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
