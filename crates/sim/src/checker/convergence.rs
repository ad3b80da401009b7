//! After the faults end, the cluster converges: every group has a leader and all replicas of a
//! group hold the same state.
//!
//! Property: the liveness half of the VOPR's method (TigerBeetle, "A Simulator for a
//! Distributed Database"): once the network and every node are healthy again, the replicas
//! must catch up and agree, and the cluster must serve. Checked on each group's applied index
//! and on its whole key-value state, read from every replica's storage.

use std::collections::BTreeMap;

use meridian_types::{GroupId, NodeId};

/// One replica of one group, as observed at the end.
#[derive(Clone, Debug)]
pub struct Replica {
    pub node: NodeId,
    pub is_leader: bool,
    pub applied_index: u64,
    pub data: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The reasons the replicas have not converged; empty when they have.
pub fn check(groups: &BTreeMap<GroupId, Vec<Replica>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (group, replicas) in groups {
        let leaders: Vec<NodeId> = replicas
            .iter()
            .filter(|r| r.is_leader)
            .map(|r| r.node)
            .collect();
        if leaders.len() != 1 {
            problems.push(format!(
                "group {group} has leaders {leaders:?}, not exactly one"
            ));
        }
        let Some(first) = replicas.first() else {
            continue;
        };
        for r in &replicas[1..] {
            if r.applied_index != first.applied_index {
                problems.push(format!(
                    "group {group}: node {} applied up to {}, node {} up to {}",
                    first.node, first.applied_index, r.node, r.applied_index
                ));
            } else if r.data != first.data {
                problems.push(format!(
                    "group {group}: nodes {} and {} applied up to {} but hold different data",
                    first.node, r.node, r.applied_index
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(node: NodeId, leader: bool, index: u64, value: &[u8]) -> Replica {
        Replica {
            node,
            is_leader: leader,
            applied_index: index,
            data: vec![(b"k".to_vec(), value.to_vec())],
        }
    }

    // Goal: agreeing replicas with one leader pass; a lagging or divergent replica or a
    // leaderless group is caught.
    #[test]
    fn divergence_is_caught() {
        let ok = BTreeMap::from([(
            1,
            vec![replica(1, true, 5, b"a"), replica(2, false, 5, b"a")],
        )]);
        assert!(check(&ok).is_empty());
        let lagging = BTreeMap::from([(
            1,
            vec![replica(1, true, 5, b"a"), replica(2, false, 4, b"a")],
        )]);
        assert_eq!(check(&lagging).len(), 1);
        let divergent = BTreeMap::from([(
            1,
            vec![replica(1, true, 5, b"a"), replica(2, false, 5, b"b")],
        )]);
        assert_eq!(check(&divergent).len(), 1);
        let leaderless = BTreeMap::from([(1, vec![replica(1, false, 5, b"a")])]);
        assert_eq!(check(&leaderless).len(), 1);
    }
}
