//! Who stands for election when a leader falls silent: openraft's tick elections stay off on
//! every replica until it is its turn (see `meridian_consensus::election`), so the survivors of a
//! lost leader do not all stand at once and split the vote round after round.
//!
//! Every [`WATCH_EVERY`], for each group where this node is a voter and not the leader: the
//! silence is the time since a leader's last append here, restarted whenever the term moves (an
//! election took place, won or split, and every voter's lease restarts with it); the leader is
//! the current one, or the last one seen while an election runs. Elections are enabled exactly
//! while `ElectionTiming::may_stand` allows this node's rank.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meridian_consensus::election::{rank, Voter};
use meridian_consensus::Group;
use meridian_types::{GroupId, NodeId};
use openraft::async_runtime::WatchReceiver;

use crate::node::Node;

/// How often the turns are checked: well under the smallest margin (20 ms floor is a fifth of
/// the smallest heartbeat), so a turn starts at most this late.
pub const WATCH_EVERY: Duration = Duration::from_millis(10);

/// What the watchdog remembers per group.
#[derive(Default)]
struct Seen {
    term: u64,
    leader: Option<NodeId>,
    enabled: bool,
}

/// Runs until the process ends.
pub async fn run(node: Arc<Node>) {
    let mut seen: BTreeMap<GroupId, Seen> = BTreeMap::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        for g in node.groups() {
            let s = seen.entry(g.id).or_default();
            let enable = turn(&node, &g, s);
            if enable != s.enabled {
                tracing::debug!(group = g.id, enable, "election turn");
                g.raft.runtime_config().elect(enable);
                s.enabled = enable;
            }
        }
    }
}

/// Whether group `g` may start an election on this node now.
fn turn(node: &Node, g: &Group, s: &mut Seen) -> bool {
    let metrics = g.raft.metrics();
    let (term, leader, state) = {
        let m = metrics.borrow_watched();
        (m.current_term, m.current_leader, m.state)
    };
    debug_assert!(term >= s.term, "a term never goes back");
    if term != s.term {
        s.term = term;
        g.contact.heard();
    }
    if let Some(l) = leader {
        s.leader = Some(l);
    }
    if state == openraft::ServerState::Leader {
        return false;
    }
    let silence = g.contact.silence_ms();
    let t = g.timing;
    if !t.may_stand(0, silence) {
        return false;
    }
    let Some(leader) = s.leader.filter(|l| *l != node.id()) else {
        // No leader ever seen here (a group that never elected, or restarted without one):
        // openraft's own randomised timeouts decide.
        return true;
    };
    let membership = metrics
        .borrow_watched()
        .membership_config
        .membership()
        .clone();
    let region_of = |id: &NodeId| {
        membership
            .get_node(id)
            .map(|n| n.region.clone())
            .unwrap_or_default()
    };
    let voters: Vec<Voter> = membership
        .voter_ids()
        .map(|id| Voter {
            id,
            region: region_of(&id),
            heard_ms: if id == node.id() {
                Some(0)
            } else {
                node.transport
                    .last_heard(id)
                    .map(|at| at.elapsed().as_millis() as u64)
            },
        })
        .collect();
    let leader_region = region_of(&leader);
    let r = rank(
        node.id(),
        leader,
        &leader_region,
        &voters,
        silence,
        |a, b| node.matrix.rtt_ms(a, b),
    );
    tracing::trace!(group = g.id, silence, leader, rank = ?r, ?voters, "election turn check");
    r.is_some_and(|r| t.may_stand(r, silence))
}
