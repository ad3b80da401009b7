//! Consensus: one openraft group per shard (and one for the metadata catalogue), all groups of a
//! node sharing one storage engine and one group-commit writer.
//!
//! This is the only crate that names openraft; a later openraft release changes this crate only.
//!
//! Architecture Invariant: a log append is reported flushed to openraft only after the group
//! committer has made it durable; a state-machine apply returns only after its data and applied
//! index are durable in the same commit.
//! Architecture Invariant: the network adapter never opens a socket; it hands messages to a
//! [`RaftRpc`] that the composition root provides (real sockets or a simulated network).

pub mod election;
pub mod freshness;
pub mod group;
pub mod keys;
pub mod ledger;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod runtime;
pub mod ship;
pub mod state_machine;
pub mod typ;

pub use election::{ElectionTiming, LeaderContact};
pub use freshness::{ClockOffset, Freshness, FreshnessClock, Stamp};
pub use group::{raft_config, Group, GroupOptions, ReplicaOptions};
pub use network::{
    handle_raft_request, PendingReply, RaftRequest, RaftResponse, RaftRpc, RpcFailure,
};
pub use proposer::Proposer;
pub use typ::{MRaft, PeerNode, TypeConfig};
