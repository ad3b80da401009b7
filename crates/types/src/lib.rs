//! Meridian's vocabulary: ids, keyspace policy, limits, errors, the WAN latency matrix and the
//! types that cross layer boundaries.
//!
//! Architecture Invariant: this crate does no I/O, reads no clock and draws no randomness; time
//! and randomness arrive as arguments.

pub mod catalog;
pub mod clock;
pub mod error;
pub mod ids;
pub mod limits;
pub mod policy;
pub mod wan;
pub mod wire;

pub use clock::Clock;
pub use error::KvError;
pub use ids::{shard_for_key, GroupId, KeyspaceId, NodeId, META_GROUP};
pub use limits::Limits;
pub use policy::{
    Conflict, KeyspacePolicy, OnLagBudget, Promotion, ReadConsistency, Replication, Survive,
};
