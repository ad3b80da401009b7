//! Opening a group: its log, state machine and network adapter wired into an openraft instance.

use std::sync::Arc;

use meridian_storage::GroupCommitter;
use meridian_types::{Clock, GroupId, NodeId};

use crate::log_store::LogStore;
use crate::network::{NetworkFactory, RaftRpc};
use crate::state_machine::StateMachine;
use crate::typ::MRaft;
use crate::Freshness;

/// Timing of every group, tuned for WAN links. openraft waits for a heartbeat's answer for one
/// heartbeat interval, so the interval must exceed the slowest inter-region round trip (~230 ms
/// in the default matrix); elections wait for four missed heartbeats.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 1800,
        }
    }
}

/// The openraft configuration every group uses.
pub fn raft_config(opts: &GroupOptions) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "meridian".into(),
        heartbeat_interval: opts.heartbeat_interval_ms,
        election_timeout_min: opts.election_timeout_min_ms,
        election_timeout_max: opts.election_timeout_max_ms,
        max_payload_entries: meridian_types::limits::APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    Arc::new(config.validate().expect("the group configuration is valid"))
}

/// A running group on this node.
#[derive(Clone)]
pub struct Group {
    pub id: GroupId,
    pub raft: MRaft,
    pub freshness: Arc<Freshness>,
}

impl Group {
    /// Opens (or recovers from storage) group `id` on node `node_id`.
    pub async fn open(
        node_id: NodeId,
        id: GroupId,
        config: Arc<openraft::Config>,
        committer: GroupCommitter,
        rpc: Arc<dyn RaftRpc>,
        clock: Arc<dyn Clock>,
    ) -> Result<Group, String> {
        let network = NetworkFactory {
            node_id,
            group: id,
            rpc,
            clock,
        };
        let log = LogStore::new(id, committer.clone());
        let sm = StateMachine::new(id, committer);
        let raft = MRaft::new(node_id, config, network, log, sm)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Group {
            id,
            raft,
            freshness: Arc::new(Freshness::default()),
        })
    }
}
