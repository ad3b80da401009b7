//! Proposal batching (`proposer`): writes proposed together share log appends, yet each keeps
//! its own entry and outcome, in submission order, and is applied; a lone write is answered;
//! a stopped group fails writes instead of leaving them waiting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use meridian_consensus::group::Group;
use meridian_consensus::network::{PendingReply, RaftRequest, RpcFailure};
use meridian_consensus::{
    state_machine, ElectionTiming, FreshnessClock, GroupOptions, PeerNode, RaftRpc, ReplicaOptions,
};
use meridian_storage::{GroupCommitter, MemEngine, SharedEngine};
use meridian_types::clock::Clock;
use meridian_types::ids::{keyspace_id, sync_group_id};
use meridian_types::wire::Command;
use meridian_types::{GroupId, NodeId};

/// A one-node group has no peers to reach.
struct NoPeers;

impl RaftRpc for NoPeers {
    fn send(
        &self,
        target: NodeId,
        _node: &PeerNode,
        _group: GroupId,
        _req: RaftRequest,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<PendingReply, RpcFailure>> {
        Box::pin(async move { Err(RpcFailure::Unreachable(format!("no node {target}"))) })
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_000_000
    }
}

/// A one-node sync group, leader, on a memory engine.
async fn one_node_group() -> (SharedEngine, Group) {
    let engine: SharedEngine = Arc::new(MemEngine::new());
    let committer = GroupCommitter::start(engine.clone(), "test".into());
    let id = sync_group_id(keyspace_id("batching"), 0, 0);
    let g = Group::open(
        1,
        id,
        ElectionTiming::from_options(&GroupOptions::default()),
        committer,
        Arc::new(NoPeers),
        Arc::new(FreshnessClock::new(&FixedClock)),
        ReplicaOptions {
            ledger_max: 100,
            witness: false,
        },
    )
    .await
    .unwrap();
    g.raft.runtime_config().elect(true);
    let me = PeerNode {
        addr: "127.0.0.1:1".into(),
        region: "us-east-1".into(),
    };
    g.raft.initialize(BTreeMap::from([(1, me)])).await.unwrap();
    g.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "the only voter leads")
        .await
        .unwrap();
    (engine, g)
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

// Goal: 300 writes queued at once are proposed in a few batches (a few log appends, not 300),
// each with its own log index in submission order, each applied, the last write of a key wins.
#[tokio::test]
async fn queued_writes_share_appends_but_keep_their_own_entries_in_order() {
    let (engine, g) = one_node_group().await;
    // A lone write first: answered without any other write to batch with.
    let lone = g.proposer.propose(put("lone", "1")).await.unwrap();
    assert!(lone.data.succeeded);

    let appends = g.log.appends();
    let before = appends.completed();
    let writes: Vec<Command> = (0..300)
        .map(|i| put(&format!("k{}", i % 10), &format!("v{i}")))
        .collect();
    // Spawned in order on this current-thread runtime, so they queue in this order.
    let handles: Vec<_> = writes
        .into_iter()
        .map(|c| {
            let p = g.proposer.clone();
            tokio::spawn(async move { p.propose(c).await })
        })
        .collect();
    let outcomes: Vec<_> = join_all(handles)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let appended = appends.completed() - before;

    let mut last = lone.log_id.index;
    for (i, outcome) in outcomes.iter().enumerate() {
        let resp = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        assert!(resp.data.succeeded, "write {i}");
        assert_eq!(resp.data.index, resp.log_id.index, "write {i}");
        assert!(
            resp.log_id.index > last,
            "write {i} got index {} after {last}: out of submission order",
            resp.log_id.index
        );
        last = resp.log_id.index;
    }
    assert!(
        appended <= 10,
        "300 queued writes took {appended} log appends: not batched"
    );
    for k in 0..10 {
        let got = state_machine::read(&engine, g.id, format!("k{k}").as_bytes()).unwrap();
        assert_eq!(got, Some(format!("v{}", 290 + k).into_bytes()), "key k{k}");
    }
}

// Goal: once the group has stopped, a write fails at once (Fatal) instead of waiting forever.
#[tokio::test]
async fn a_stopped_group_fails_writes() {
    let (_engine, g) = one_node_group().await;
    g.raft.shutdown().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), g.proposer.propose(put("a", "b")))
        .await
        .expect("a write to a stopped group is answered");
    assert!(outcome.is_err(), "a stopped group acknowledged a write");
}
