//! Who stands for election when a leader falls silent: openraft's tick elections stay off on
//! every replica until it is its turn (see `meridian_consensus::election`), so the survivors of a
//! lost leader do not all stand at once and split the vote round after round.
//!
//! Every [`WATCH_EVERY`], for each group where this node is a voter and not the leader: the
//! silence is the time since a leader's last append here, restarted whenever the term moves (an
//! election took place, won or split, and every voter's lease restarts with it); the leader is
//! the current one, or the last one seen while an election runs. When
//! `ElectionTiming::may_stand` allows this node's rank it starts a pre-vote round itself
//! (openraft's own tick would wait for the lease *and* a randomised timeout after it, a second
//! more), and again every stagger while the turn lasts. A pre-vote changes no term, so a node
//! that merely lost sight of a healthy leader disturbs nothing: the voters that still hear the
//! leader refuse it. Only a group that never had a leader here leaves it to openraft's ticks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meridian_consensus::election::{rank, Voter};
use meridian_consensus::Group;
use meridian_types::{GroupId, NodeId};
use openraft::async_runtime::WatchReceiver;

use crate::node::Node;

/// How often the turns are checked: half the smallest margin (20 ms), so a turn starts at
/// most this late.
pub const WATCH_EVERY: Duration = Duration::from_millis(10);

/// What the watchdog remembers per group.
#[derive(Default)]
struct Seen {
    term: u64,
    leader: Option<NodeId>,
    /// The term in which a leader was last seen.
    leader_term: u64,
    enabled: bool,
    /// When this node last started a pre-vote round itself.
    stood_at: Option<tokio::time::Instant>,
}

/// Runs until the process ends.
pub async fn run(node: Arc<Node>) {
    let mut seen: BTreeMap<GroupId, Seen> = BTreeMap::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let groups = node.groups();
        // Forget groups this node no longer hosts (a keyspace dropped, a replica moved away).
        seen.retain(|id, _| groups.iter().any(|g| g.id == *id));
        debug_assert!(seen.len() <= groups.len());
        for g in groups {
            let s = seen.entry(g.id).or_default();
            let (enable, stand) = match turn(&node, &g, s) {
                Turn::Wait => (false, false),
                Turn::Stand => (false, true),
                Turn::Openraft => (true, false),
            };
            if enable != s.enabled {
                tracing::debug!(
                    group = g.id,
                    enable,
                    term = s.term,
                    silence = g.contact.silence_ms(),
                    node = node.id(),
                    "tick elections"
                );
                g.raft.runtime_config().elect(enable);
                s.enabled = enable;
            }
            let again = s
                .stood_at
                .is_none_or(|at| at.elapsed() >= Duration::from_millis(g.timing.stagger_ms));
            if stand && again {
                tracing::info!(
                    group = g.id,
                    silence_ms = g.contact.silence_ms(),
                    "standing for election: this voter's turn"
                );
                s.stood_at = Some(tokio::time::Instant::now());
                let _ = g.raft.trigger().elect(true).await;
            }
        }
    }
}

/// What this node does about group `g`'s leadership now.
enum Turn {
    Wait,
    /// Its turn: start a pre-vote round.
    Stand,
    /// No leader ever seen here: openraft's randomised ticks.
    Openraft,
}

fn turn(node: &Node, g: &Group, s: &mut Seen) -> Turn {
    let metrics = g.raft.metrics();
    let (term, leader, state) = {
        let m = metrics.borrow_watched();
        (m.current_term, m.current_leader, m.state)
    };
    debug_assert!(term >= s.term, "a term never goes back");
    if term != s.term {
        s.term = term;
        s.stood_at = None;
        g.contact.heard();
    }
    if let Some(l) = leader {
        s.leader = Some(l);
        s.leader_term = term;
    }
    if state == openraft::ServerState::Leader {
        return Turn::Wait;
    }
    let Some(leader) = s.leader.filter(|l| *l != node.id()) else {
        // No leader seen here since this process started (a group that never elected, or a
        // restart), or this node led last: no lease holds the voters back in step, so
        // openraft's own randomised timeouts decide (gating them on the silence as below
        // would start every such node at the same instant, and split the vote every round).
        // A witness leaves a first election to the data voters.
        return if node.is_witness() {
            Turn::Wait
        } else {
            Turn::Openraft
        };
    };
    let silence = g.contact.silence_ms();
    let t = g.timing;
    if !t.may_stand(0, silence) {
        return Turn::Wait;
    }
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
    // Witnesses never stand, so no one waits for their turn.
    let witnesses = node.witness_ids();
    let voters: Vec<Voter> = membership
        .voter_ids()
        .filter(|id| !witnesses.contains(id))
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
    // A witness stands last, after every data voter's turn: only when none of them can win
    // (their logs are behind the witness's, whose vote they need), so that it can bring them
    // up to date and hand leadership over at once (`reconcile::hand_away`).
    let r = if witnesses.contains(&node.id()) {
        Some(voters.len() + 1)
    } else {
        rank(node.id(), leader, &leader_region, &voters, |a, b| {
            node.matrix.rtt_ms(a, b)
        })
    };
    // After a round that elected nobody (the term moved on without a leader), voters whose
    // views of who is alive differ could stand together again and again: each waits a little
    // more, different per node and per term.
    let jitter = if term > s.leader_term {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&(node.id(), term, g.id), &mut h);
        std::hash::Hasher::finish(&h) % t.heartbeat_ms.max(1)
    } else {
        0
    };
    tracing::trace!(group = g.id, silence, leader, rank = ?r, jitter, ?voters, "election turn check");
    if r.is_some_and(|r| t.may_stand(r, silence.saturating_sub(jitter))) {
        Turn::Stand
    } else {
        Turn::Wait
    }
}
