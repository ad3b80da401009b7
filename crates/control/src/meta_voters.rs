//! Which nodes should vote in the metadata group: up to five, spread over regions so the
//! catalogue survives the loss of any one region once three regions have nodes.
//!
//! The target set is chosen from every known node; a node joins it only once it has caught up
//! with the log, and a partial step is taken only when it keeps the promise by itself: an odd
//! number of voters and, once the cluster spans three regions, no region holding a majority of
//! them. (Promoting whichever nodes happened to catch up first once gave voters {1, 2, 4} with
//! two of three in one region: losing that region took the quorum, and with it every failover
//! decision and promotion, along.)

use std::collections::{BTreeMap, BTreeSet};

use meridian_types::catalog::NodeRecord;
use meridian_types::NodeId;

pub const META_VOTERS_MAX: usize = 5;

/// The nodes the metadata group should ideally gain, given its voters and every known node:
/// one at a time, a node from the region with the fewest voters (ties by region name, then
/// node id), up to [`META_VOTERS_MAX`], the total kept odd.
fn ideal_additions(voters: &BTreeSet<NodeId>, nodes: &[NodeRecord]) -> Vec<NodeId> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes {
        *count.entry(n.region.as_str()).or_default() += usize::from(voters.contains(&n.id));
    }
    let mut chosen = Vec::new();
    let mut taken: BTreeSet<NodeId> = voters.clone();
    while taken.len() < META_VOTERS_MAX {
        let pick = nodes
            .iter()
            .filter(|n| !taken.contains(&n.id))
            .min_by_key(|n| (count[n.region.as_str()], n.region.clone(), n.id));
        let Some(n) = pick else { break };
        *count.get_mut(n.region.as_str()).unwrap() += 1;
        taken.insert(n.id);
        chosen.push(n.id);
    }
    // An odd number of voters: a fourth voter tolerates no more failures than three, and with
    // nodes spread 2/1/1 it would put half the voters in one region, whose loss would then
    // take the quorum along.
    if taken.len().is_multiple_of(2) {
        chosen.pop();
    }
    chosen
}

/// The voter set the metadata group should have, over every known node: up to
/// [`META_VOTERS_MAX`], one at a time from the region with the fewest picked so far, keeping
/// current voters where that costs nothing (ties: current voters first, then region name, then
/// node id), the total kept odd. Unlike [`ideal_additions`] it may drop a current voter: three
/// voters picked while only two regions had nodes put two in one region, and a third region
/// that joins later with one node would otherwise never get a vote.
pub fn target(voters: &BTreeSet<NodeId>, nodes: &[NodeRecord]) -> Vec<NodeId> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut picked: Vec<NodeId> = Vec::new();
    while picked.len() < META_VOTERS_MAX {
        let pick = nodes
            .iter()
            .filter(|n| !picked.contains(&n.id))
            .min_by_key(|n| {
                (
                    count.get(n.region.as_str()).copied().unwrap_or(0),
                    !voters.contains(&n.id),
                    n.region.clone(),
                    n.id,
                )
            });
        let Some(n) = pick else { break };
        *count.entry(n.region.as_str()).or_default() += 1;
        picked.push(n.id);
    }
    if picked.len().is_multiple_of(2) {
        picked.pop();
    }
    picked
}

/// What the metadata leader should do about its voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoterChange {
    /// Add these caught-up nodes.
    Add(Vec<NodeId>),
    /// Replace the voters by this set (every new member caught up): a voter leaves.
    Replace(BTreeSet<NodeId>),
}

/// The next change towards [`target`]: all of it once its new members have caught up (a
/// replacement if a voter leaves), else the largest caught-up addition that keeps the voters
/// spread ([`meta_voters_to_add`]); None when there is nothing to do yet.
pub fn next_change(
    voters: &BTreeSet<NodeId>,
    nodes: &[NodeRecord],
    caught_up: impl Fn(NodeId) -> bool,
) -> Option<VoterChange> {
    let t = target(voters, nodes);
    let goal: BTreeSet<NodeId> = t.iter().copied().collect();
    if goal == *voters || goal.len() <= 1 {
        return None;
    }
    let adding: Vec<NodeId> = t
        .iter()
        .copied()
        .filter(|id| !voters.contains(id))
        .collect();
    if adding.iter().all(|id| caught_up(*id)) {
        // Never give up a spread set for an unspread one (the target is spread whenever the
        // nodes allow it).
        if !spread_ok(&goal, nodes) && spread_ok(voters, nodes) && voters.len() > 1 {
            return None;
        }
        return Some(if voters.is_subset(&goal) {
            VoterChange::Add(adding)
        } else {
            VoterChange::Replace(goal)
        });
    }
    let add = meta_voters_to_add(voters, nodes, caught_up);
    (!add.is_empty()).then_some(VoterChange::Add(add))
}

/// Whether `voters` (more than one) keep the metadata group's promise: an odd count and, when
/// the cluster's nodes span three regions or more, no region holding a majority.
pub fn spread_ok(voters: &BTreeSet<NodeId>, nodes: &[NodeRecord]) -> bool {
    if voters.len() <= 1 {
        return true;
    }
    if voters.len().is_multiple_of(2) {
        return false;
    }
    let regions: BTreeSet<&str> = nodes.iter().map(|n| n.region.as_str()).collect();
    if regions.len() < 3 {
        return true;
    }
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes.iter().filter(|n| voters.contains(&n.id)) {
        *per.entry(n.region.as_str()).or_default() += 1;
    }
    per.values().all(|c| *c <= voters.len() / 2)
}

/// The nodes to promote to voters now, given the current voters, every known node and which of
/// them have caught up with the log: the largest subset of the ideal additions (see
/// [`ideal_additions`]) that has caught up and leaves the voters spread (see [`spread_ok`]);
/// ties go to the ideal order. Empty while no such step exists (the caller retries as more
/// nodes catch up).
pub fn meta_voters_to_add(
    voters: &BTreeSet<NodeId>,
    nodes: &[NodeRecord],
    caught_up: impl Fn(NodeId) -> bool,
) -> Vec<NodeId> {
    let ready: Vec<NodeId> = ideal_additions(voters, nodes)
        .into_iter()
        .filter(|id| caught_up(*id))
        .collect();
    debug_assert!(voters.len() + ready.len() <= META_VOTERS_MAX);
    // At most four additions: every subset is cheap to try. Bigger subsets first, then the
    // ideal order (a lower mask bit is an earlier pick).
    let mut best: Option<Vec<NodeId>> = None;
    for mask in 1u32..(1u32 << ready.len()) {
        let pick: Vec<NodeId> = (0..ready.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| ready[i])
            .collect();
        let after: BTreeSet<NodeId> = voters.iter().copied().chain(pick.iter().copied()).collect();
        if !spread_ok(&after, nodes) {
            continue;
        }
        if best.as_ref().is_none_or(|b| pick.len() > b.len()) {
            best = Some(pick);
        }
    }
    let add = best.unwrap_or_default();
    debug_assert!(
        add.is_empty() || {
            let after: BTreeSet<NodeId> = voters.iter().chain(add.iter()).copied().collect();
            spread_ok(&after, nodes) && after.len() <= META_VOTERS_MAX
        }
    );
    add
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, region: &str) -> NodeRecord {
        NodeRecord {
            id,
            region: region.into(),
            zone: String::new(),
            peer_addr: String::new(),
            http_addr: String::new(),
            grpc_addr: String::new(),
            role: Default::default(),
        }
    }

    // Goal: starting from the bootstrap voter, promotions spread 2/2/1 over three regions.
    #[test]
    fn voters_spread_over_regions() {
        let nodes: Vec<NodeRecord> = (1..=9)
            .map(|i| {
                node(
                    i,
                    ["us-east-1", "us-west-2", "eu-west-1"][((i - 1) / 3) as usize],
                )
            })
            .collect();
        let add = meta_voters_to_add(&BTreeSet::from([1]), &nodes, |_| true);
        assert_eq!(add.len(), 4);
        let mut per = BTreeMap::new();
        for id in add.iter().chain([1].iter()) {
            *per.entry(nodes[(*id - 1) as usize].region.clone())
                .or_insert(0) += 1;
        }
        let mut counts: Vec<i32> = per.values().copied().collect();
        counts.sort();
        assert_eq!(counts, vec![1, 2, 2]);
    }

    // Goal: an odd number of voters, so four nodes spread 2/1/1 give three voters, one per
    // region, and the loss of any region leaves a quorum.
    #[test]
    fn voters_stay_odd() {
        let nodes = vec![
            node(1, "us-east-1"),
            node(2, "us-east-1"),
            node(3, "us-west-2"),
            node(4, "eu-west-1"),
        ];
        let add = meta_voters_to_add(&BTreeSet::from([1]), &nodes, |_| true);
        assert_eq!(add.len(), 2, "{add:?}");
        let regions: BTreeSet<&str> = add
            .iter()
            .chain([1].iter())
            .map(|id| nodes[(*id - 1) as usize].region.as_str())
            .collect();
        assert_eq!(regions.len(), 3);
        assert!(meta_voters_to_add(&BTreeSet::from([1]), &nodes[..2], |_| true).is_empty());
    }

    // Goal: nothing is added when the group already has five voters.
    #[test]
    fn full_group_adds_nothing() {
        let nodes: Vec<NodeRecord> = (1..=7).map(|i| node(i, "r")).collect();
        assert!(meta_voters_to_add(&(1..=5).collect(), &nodes, |_| true).is_empty());
    }

    fn nine() -> Vec<NodeRecord> {
        (1..=9)
            .map(|i| {
                node(
                    i,
                    ["us-east-1", "us-west-2", "eu-west-1"][((i - 1) / 3) as usize],
                )
            })
            .collect()
    }

    // Goal: nodes of the bootstrap region that catch up first are not promoted ahead of the
    // other regions' nodes: voters {1, 2, 4} would lose the quorum with us-east-1 (the CI
    // failure of the zone-promotion demo on a loaded machine).
    #[test]
    fn partial_catch_up_never_gives_one_region_a_majority() {
        let nodes = nine();
        let voters = BTreeSet::from([1]);
        // Only 2 (us-east-1) and 4 (us-west-2) have caught up: no spread step exists yet.
        assert!(meta_voters_to_add(&voters, &nodes, |id| id == 2 || id == 4).is_empty());
        // 4 and 7 have: three voters, one per region.
        let add = meta_voters_to_add(&voters, &nodes, |id| [2, 4, 7].contains(&id));
        assert_eq!(add.len(), 2, "{add:?}");
        let after: BTreeSet<NodeId> = voters.iter().chain(add.iter()).copied().collect();
        assert!(spread_ok(&after, &nodes));
        // Then the rest, to five voters spread 2/2/1.
        let more = meta_voters_to_add(&after, &nodes, |_| true);
        let all: BTreeSet<NodeId> = after.iter().chain(more.iter()).copied().collect();
        assert_eq!(all.len(), 5);
        assert!(spread_ok(&all, &nodes));
    }

    // Goal: every step from any caught-up subset keeps the voters spread (exhaustive over the
    // 2^8 subsets of the other nodes).
    #[test]
    fn every_step_keeps_the_spread() {
        let nodes = nine();
        for mask in 0u32..256 {
            let ready = |id: NodeId| id > 1 && mask & (1 << (id - 2)) != 0;
            let mut voters = BTreeSet::from([1]);
            for _ in 0..3 {
                let add = meta_voters_to_add(&voters, &nodes, ready);
                voters.extend(add);
                assert!(spread_ok(&voters, &nodes), "mask {mask:b}: {voters:?}");
            }
        }
    }

    // Goal: the spread rule itself: a majority in one region fails, two regions relax it.
    #[test]
    fn spread_rule() {
        let nodes = nine();
        assert!(!spread_ok(&BTreeSet::from([1, 2, 4]), &nodes));
        assert!(spread_ok(&BTreeSet::from([1, 4, 7]), &nodes));
        assert!(!spread_ok(&BTreeSet::from([1, 4]), &nodes));
        assert!(spread_ok(&BTreeSet::from([1, 2, 4, 5, 7]), &nodes));
        assert!(!spread_ok(&BTreeSet::from([1, 2, 3, 4, 7]), &nodes));
        let two: Vec<NodeRecord> = nodes[..6].to_vec();
        assert!(spread_ok(&BTreeSet::from([1, 2, 4]), &two));
    }

    // Goal: regions joining one after another end with voters no region can take down: {1,2,3}
    // picked while us-east-1 and us-west-2 had nodes (2/1) gives way once eu-west-1 joins with
    // a single node, and 3/2 over two regions becomes 2/2/1 when the third brings nodes.
    #[test]
    fn staggered_regions_are_rebalanced() {
        let nodes = vec![
            node(1, "us-east-1"),
            node(2, "us-east-1"),
            node(3, "us-west-2"),
            node(4, "eu-west-1"),
        ];
        let voters = BTreeSet::from([1, 2, 3]);
        // Before eu-west-1 is known, nothing to do (two regions: 2/1 is the best there is).
        assert_eq!(next_change(&voters, &nodes[..3], |_| true), None);
        // Node 4 not caught up yet: wait.
        assert_eq!(next_change(&voters, &nodes, |id| id != 4), None);
        let Some(VoterChange::Replace(goal)) = next_change(&voters, &nodes, |_| true) else {
            panic!("expected a replacement");
        };
        assert!(spread_ok(&goal, &nodes), "{goal:?}");
        assert!(
            goal.contains(&4) && goal.contains(&1) && goal.contains(&3),
            "{goal:?}"
        );
        // Settled: nothing more.
        assert_eq!(next_change(&goal, &nodes, |_| true), None);

        let nine = nine();
        let voters: BTreeSet<NodeId> = BTreeSet::from([1, 2, 3, 4, 5]);
        let Some(VoterChange::Replace(goal)) = next_change(&voters, &nine, |_| true) else {
            panic!("expected a replacement");
        };
        assert!(spread_ok(&goal, &nine), "{goal:?}");
        assert_eq!(goal.len(), 5);
        assert_eq!(
            goal.intersection(&voters).count(),
            4,
            "one voter leaves: {goal:?}"
        );
    }

    // Goal: from every start, repeated changes end spread and then stop (exhaustive over
    // starting voter sets of the 9-node cluster with up to three voters).
    #[test]
    fn changes_converge_to_a_spread_set() {
        let nine = nine();
        for mask in 1u32..512 {
            if mask.count_ones() > 3 || mask.count_ones() % 2 == 0 {
                continue;
            }
            let mut voters: BTreeSet<NodeId> =
                (1..=9).filter(|i| mask & (1 << (i - 1)) != 0).collect();
            for _ in 0..4 {
                match next_change(&voters, &nine, |_| true) {
                    Some(VoterChange::Add(a)) => voters.extend(a),
                    Some(VoterChange::Replace(g)) => voters = g,
                    None => break,
                }
            }
            assert!(
                spread_ok(&voters, &nine) && voters.len() == 5,
                "from {mask:b}: {voters:?}"
            );
            assert_eq!(next_change(&voters, &nine, |_| true), None);
        }
    }
}
