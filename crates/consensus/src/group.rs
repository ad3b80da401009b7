//! Opening a group: its log, state machine and network adapter wired into an openraft instance.

use std::sync::Arc;
use std::time::Duration;

use meridian_storage::GroupCommitter;
use meridian_types::{GroupId, NodeId};
use openraft::errors::RaftError;
use openraft::ReadPolicy;

use crate::election::{ElectionTiming, LeaderContact};
use crate::freshness::{FreshnessClock, Stamp, Stamper};
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, RaftRpc};
use crate::state_machine::StateMachine;
use crate::typ::MRaft;
use crate::Freshness;

/// How often a leader renews the freshness stamp its appends carry. A follower's reported
/// staleness includes the stamp's age, so this is the floor of what followers report.
pub const STAMP_INTERVAL: Duration = Duration::from_millis(20);

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

/// What this node's replica of a group keeps.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaOptions {
    /// Conflict ledger entries kept (async groups).
    pub ledger_max: u64,
    /// A witness's replica: the log, no key-value state.
    pub witness: bool,
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
        // Applies are deferred commits (durable with the next log append) and the commit index
        // is not persisted, so a leader that restarts may have a state machine behind what it
        // acknowledged; restoring its leadership without an election would let it serve that
        // stale state as linearizable (the simulator found it). It must win an election, whose
        // first commit brings its state machine up to date before it serves.
        enable_leader_restore: Some(false),
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
    /// While this node leads: the promise its appends carry (see `freshness`).
    pub stamper: Arc<Stamper>,
    /// The group's log (shared with openraft: entries not yet flushed here are visible too),
    /// for shipping committed entries to other regions.
    pub log: LogStore,
    /// Its election timing, and when this replica last heard a leader (see `election`).
    pub timing: ElectionTiming,
    pub contact: Arc<LeaderContact>,
    /// Batches client writes into raft proposals (see `proposer`).
    pub proposer: crate::Proposer,
}

impl Group {
    /// Opens (or recovers from storage) group `id` on node `node_id`.
    pub async fn open(
        node_id: NodeId,
        id: GroupId,
        timing: ElectionTiming,
        committer: GroupCommitter,
        rpc: Arc<dyn RaftRpc>,
        clock: Arc<FreshnessClock>,
        replica: ReplicaOptions,
    ) -> Result<Group, String> {
        let stamper = Arc::new(Stamper::default());
        let network = NetworkFactory {
            node_id,
            group: id,
            rpc,
            stamper: stamper.clone(),
        };
        let log = LogStore::new(id, committer.clone());
        let sm = StateMachine::new(id, committer)
            .with_ledger_max(replica.ledger_max)
            .witness(replica.witness);
        let mut config = raft_config(&timing.options());
        if replica.witness {
            // A witness never builds a snapshot, so it never purges its log: a snapshot of its
            // (empty) state sent to a lagging data voter would replace that voter's data with
            // nothing. Its log is therefore not compacted (a known gap).
            let mut c = (*config).clone();
            c.snapshot_policy = openraft::SnapshotPolicy::Never;
            config = Arc::new(c);
        }
        let raft = MRaft::new(node_id, config, network, log.clone(), sm)
            .await
            .map_err(|e| e.to_string())?;
        // Elections wait for this replica's turn (see `election`); the server's watchdog
        // enables them.
        raft.runtime_config().elect(false);
        tokio::spawn(stamp_loop(raft.clone(), stamper.clone(), clock));
        let proposer = crate::Proposer::start(raft.clone(), log.appends());
        Ok(Group {
            proposer,
            id,
            raft,
            freshness: Arc::new(Freshness::default()),
            stamper,
            log,
            timing,
            contact: Arc::new(LeaderContact::default()),
        })
    }
}

/// Renews the leader's freshness stamp every [`STAMP_INTERVAL`] while this node leads, until
/// the group shuts down. The time is read before the question to openraft, so the index it
/// answers covers every write acknowledged before that time; openraft answers only while the
/// leader's lease is valid, so no other leader acknowledged anything meanwhile.
async fn stamp_loop(raft: MRaft, stamper: Arc<Stamper>, clock: Arc<FreshnessClock>) {
    loop {
        tokio::time::sleep(STAMP_INTERVAL).await;
        if !raft.is_leader() {
            continue;
        }
        let at_ms = clock.now_ms();
        match raft.get_read_linearizer(ReadPolicy::LeaseRead).await {
            Ok(l) => stamper.set(Stamp {
                commit_index: l.read_log_id().index(),
                at_ms,
                epoch: clock.epoch(),
            }),
            Err(RaftError::Fatal(_)) => return,
            // No valid lease (or no longer the leader): no promise this round.
            Err(RaftError::APIError(_)) => {}
        }
    }
}
