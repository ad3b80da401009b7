//! Which nodes should vote in the metadata group: up to five, spread over regions so the
//! catalogue survives the loss of any one region once three regions have nodes.

use std::collections::{BTreeMap, BTreeSet};

use meridian_types::catalog::NodeRecord;
use meridian_types::NodeId;

pub const META_VOTERS_MAX: usize = 5;

/// The nodes to promote to voters, given the current voters and every known node. Picks, one at
/// a time, a node from the region with the fewest voters (ties by region name, then node id).
pub fn meta_voters_to_add(voters: &BTreeSet<NodeId>, nodes: &[NodeRecord]) -> Vec<NodeId> {
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
    // take the quorum (and with it every failover decision and promotion) along.
    if taken.len().is_multiple_of(2) {
        chosen.pop();
    }
    chosen
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
        let add = meta_voters_to_add(&BTreeSet::from([1]), &nodes);
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
        let add = meta_voters_to_add(&BTreeSet::from([1]), &nodes);
        assert_eq!(add.len(), 2, "{add:?}");
        let regions: BTreeSet<&str> = add
            .iter()
            .chain([1].iter())
            .map(|id| nodes[(*id - 1) as usize].region.as_str())
            .collect();
        assert_eq!(regions.len(), 3);
        assert!(meta_voters_to_add(&BTreeSet::from([1]), &nodes[..2]).is_empty());
    }

    // Goal: nothing is added when the group already has five voters.
    #[test]
    fn full_group_adds_nothing() {
        let nodes: Vec<NodeRecord> = (1..=7).map(|i| node(i, "r")).collect();
        assert!(meta_voters_to_add(&(1..=5).collect(), &nodes).is_empty());
    }
}
