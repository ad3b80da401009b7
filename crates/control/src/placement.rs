//! Replica placement for a new keyspace.
//!
//! survive = "region": voters in the home region and the two regions nearest to it (2, 2 and 1
//! voters where nodes allow), so a home-region write waits for one round trip to the nearest
//! region and the loss of any one region leaves a majority. Every other node in `regions` holds
//! a learner, so each allowed region can serve bounded-staleness reads locally.
//! survive = "zone": up to 3 voters in the home region (distinct zones first); learners elsewhere.
//! Nodes outside `regions` get nothing: residency is enforced here.

use std::collections::BTreeMap;

use meridian_types::catalog::{NodeRecord, NodeRole, ShardPlacement};
use meridian_types::ids::{async_group_id, group_id, keyspace_id};
use meridian_types::wan::LatencyMatrix;
use meridian_types::{KeyspacePolicy, KvError, NodeId, Replication, Survive};

const REGION_VOTERS: [usize; 3] = [2, 2, 1];
const ZONE_VOTERS: usize = 3;

/// Places every shard of `policy` on `nodes`. Fails when a required region has no node.
pub fn place_keyspace(
    policy: &KeyspacePolicy,
    nodes: &[NodeRecord],
    matrix: &LatencyMatrix,
) -> Result<Vec<ShardPlacement>, KvError> {
    if policy.replication == Replication::Async {
        return place_async(policy, nodes);
    }
    let home = policy
        .home_region
        .as_deref()
        .ok_or_else(|| KvError::InvalidArgument("home_region is required".into()))?;
    let witness = policy.witness_region.as_deref();
    // Data replicas on data nodes only; in the witness region, its witness nodes only.
    let eligible = |n: &&NodeRecord| {
        policy.regions.contains(&n.region)
            && match witness {
                Some(w) if n.region == w => n.role == NodeRole::Witness,
                _ => n.role == NodeRole::Data,
            }
    };
    let mut by_region: BTreeMap<&str, Vec<&NodeRecord>> = BTreeMap::new();
    for n in nodes.iter().filter(eligible) {
        by_region.entry(n.region.as_str()).or_default().push(n);
    }
    for list in by_region.values_mut() {
        list.sort_by_key(|n| (n.zone.clone(), n.id));
    }
    let mut regions: Vec<&str> = policy.regions.iter().map(String::as_str).collect();
    regions.sort_by(|a, b| {
        let key = |r: &str| {
            (
                r != home,
                (matrix.rtt_ms(home, r) * 1000.0) as u64,
                r.to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    if let Some(w) = witness {
        // Voters: the home region, the nearest other data region, then the witness region.
        let at = regions
            .iter()
            .position(|r| *r == w)
            .expect("validated: in regions");
        let wr = regions.remove(at);
        regions.insert(2.min(regions.len()), wr);
        if by_region.get(w).is_none_or(|l| l.is_empty()) {
            return Err(KvError::FailedPrecondition(format!(
                "`witness_region` {w:?} has no node with role = \"witness\"; start one there (role = \"witness\" in its config) or remove `witness_region`"
            )));
        }
    }
    let voter_regions = match policy.survive {
        Survive::Region => 3,
        Survive::Zone => 1,
    };
    for r in regions.iter().take(voter_regions) {
        if by_region.get(r).is_none_or(|l| l.is_empty()) {
            return Err(KvError::FailedPrecondition(format!(
                "region {r:?} has no live node to hold a voter; start a node there or choose other `regions`"
            )));
        }
    }
    let available: Vec<usize> = regions
        .iter()
        .map(|r| by_region.get(r).map_or(0, Vec::len))
        .collect();
    let wanted = voters_per_region(policy.survive, &available);
    let id = keyspace_id(&policy.name);
    let placements = (0..policy.shards)
        .map(|shard| {
            let mut voters = Vec::new();
            let mut learners = Vec::new();
            for (i, region) in regions.iter().enumerate() {
                let list = by_region.get(region).cloned().unwrap_or_default();
                let want = wanted[i];
                // Rotate the start per shard so leaders and load spread over a region's nodes.
                let rotated = rotate(&list, shard as usize);
                let ordered = distinct_zones_first(&rotated);
                for (j, n) in ordered.iter().enumerate() {
                    if j < want {
                        voters.push(n.id);
                    } else if n.role == NodeRole::Data {
                        // A witness holds no data: never a learner.
                        learners.push(n.id);
                    }
                }
            }
            ShardPlacement {
                shard,
                group: group_id(id, shard),
                region: None,
                voters,
                learners,
                seed: None,
                initialiser: None,
            }
        })
        .collect();
    Ok(placements)
}

/// How many voters each region holds (regions in placement order: home, then by round trip),
/// given how many nodes each has. `survive = "zone"`: the home region's three. `"region"`: 2, 2
/// and 1 where the nodes exist; then, while one region holds half the voters or more, it gives
/// one up, since losing it would lose the quorum (2 + 1 + 1 would leave 2 of 4 after the home
/// region's loss; the simulator's region-loss runs found the group never recovered).
fn voters_per_region(survive: Survive, available: &[usize]) -> Vec<usize> {
    let mut want: Vec<usize> = available
        .iter()
        .enumerate()
        .map(|(i, have)| {
            let w = match survive {
                Survive::Region => REGION_VOTERS.get(i).copied().unwrap_or(0),
                Survive::Zone if i == 0 => ZONE_VOTERS,
                Survive::Zone => 0,
            };
            w.min(*have)
        })
        .collect();
    if survive == Survive::Region {
        loop {
            let total: usize = want.iter().sum();
            let Some(i) = (0..want.len()).find(|i| want[*i] > 1 && 2 * want[*i] >= total) else {
                break;
            };
            want[i] -= 1;
        }
        let total: usize = want.iter().sum();
        debug_assert!(
            want.iter().filter(|w| **w > 0).count() < 3 || want.iter().all(|w| 2 * w < total),
            "no region holds half the voters: {want:?}"
        );
    }
    want
}

/// async: every region in `regions` gets its own group per shard, up to 3 voters in distinct
/// zones of that region first (so a write commits on a majority inside the region, with no
/// WAN round trip), and learners on the region's other nodes. Nothing outside `regions`.
fn place_async(
    policy: &KeyspacePolicy,
    nodes: &[NodeRecord],
) -> Result<Vec<ShardPlacement>, KvError> {
    let id = keyspace_id(&policy.name);
    let mut out = Vec::new();
    for (ri, region) in policy.regions.iter().enumerate() {
        let mut list: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| &n.region == region && n.role == NodeRole::Data)
            .collect();
        if list.is_empty() {
            return Err(KvError::FailedPrecondition(format!(
                "region {region:?} has no live node to hold the keyspace's replicas there; start a node there or choose other `regions`"
            )));
        }
        list.sort_by_key(|n| (n.zone.clone(), n.id));
        for shard in 0..policy.shards {
            let ordered = distinct_zones_first(&rotate(&list, shard as usize));
            let (voters, learners) = ordered.split_at(ordered.len().min(ZONE_VOTERS));
            out.push(ShardPlacement {
                shard,
                group: async_group_id(id, ri, shard),
                region: Some(region.clone()),
                voters: voters.iter().map(|n| n.id).collect(),
                learners: learners.iter().map(|n| n.id).collect(),
                seed: None,
                initialiser: None,
            });
        }
    }
    Ok(out)
}

fn rotate<'a>(list: &[&'a NodeRecord], by: usize) -> Vec<&'a NodeRecord> {
    if list.is_empty() {
        return Vec::new();
    }
    let k = by % list.len();
    list[k..].iter().chain(list[..k].iter()).copied().collect()
}

/// Orders nodes so the first of each zone comes before a second node of any zone.
fn distinct_zones_first<'a>(list: &[&'a NodeRecord]) -> Vec<&'a NodeRecord> {
    let mut seen = std::collections::BTreeSet::new();
    let (first, rest): (Vec<&NodeRecord>, Vec<&NodeRecord>) =
        list.iter().partition(|n| seen.insert(n.zone.clone()));
    first.into_iter().chain(rest).collect()
}

/// The region of each node id, for callers that check placements.
pub fn regions_of(nodes: &[NodeRecord]) -> BTreeMap<NodeId, String> {
    nodes.iter().map(|n| (n.id, n.region.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_types::ReadConsistency;

    fn nodes(regions: &[&str], per_region: u64) -> Vec<NodeRecord> {
        let mut out = Vec::new();
        for (r, region) in regions.iter().enumerate() {
            for i in 0..per_region {
                let id = r as u64 * 10 + i + 1;
                out.push(NodeRecord {
                    id,
                    region: region.to_string(),
                    zone: format!("{region}{}", (b'a' + i as u8) as char),
                    peer_addr: String::new(),
                    http_addr: String::new(),
                    grpc_addr: String::new(),
                    role: Default::default(),
                });
            }
        }
        out
    }

    fn policy(survive: Survive, regions: &[&str]) -> KeyspacePolicy {
        KeyspacePolicy {
            name: "ks".into(),
            replication: Replication::Sync,
            survive,
            home_region: Some("us-east-1".into()),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            shards: 4,
            read: Some(ReadConsistency::Linearizable),
            conflict: Default::default(),
            lag_budget_ms: None,
            on_lag_budget: Default::default(),
            promotion: None,
            promotion_after_ms: None,
            witness_region: None,
        }
    }

    // Goal: an async keyspace gets one group per (region, shard) with every replica inside
    // that region, voters in distinct zones, and nothing in regions it does not list.
    // Goal: with survive = "region" no region holds half the voters or more, whatever nodes
    // the regions have, so losing any one region leaves a quorum: 2-2-1 with enough nodes;
    // 1-1-1 when the nearest region has one node (2-1-1 would lose quorum with the home region).
    #[test]
    fn no_region_holds_half_the_voters() {
        assert_eq!(voters_per_region(Survive::Region, &[3, 3, 3]), [2, 2, 1]);
        assert_eq!(voters_per_region(Survive::Region, &[2, 1, 1]), [1, 1, 1]);
        assert_eq!(voters_per_region(Survive::Region, &[1, 2, 2]), [1, 1, 1]);
        assert_eq!(voters_per_region(Survive::Region, &[2, 2, 2]), [2, 2, 1]);
        assert_eq!(voters_per_region(Survive::Zone, &[5, 3]), [3, 0]);
        for a in 1..4 {
            for b in 1..4 {
                for c in 1..4 {
                    let w = voters_per_region(Survive::Region, &[a, b, c]);
                    let total: usize = w.iter().sum();
                    assert!(w.iter().all(|v| 2 * v < total), "{a} {b} {c}: {w:?}");
                }
            }
        }
    }

    #[test]
    fn async_places_a_group_per_region_inside_it() {
        let all = nodes(&["us-east-1", "us-west-2", "eu-west-1"], 3);
        let mut p = policy(Survive::Region, &["us-east-1", "eu-west-1"]);
        p.replication = Replication::Async;
        p.home_region = None;
        let shards = place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap();
        let regions = regions_of(&all);
        assert_eq!(shards.len(), 2 * 4);
        let groups: std::collections::BTreeSet<_> = shards.iter().map(|s| s.group).collect();
        assert_eq!(groups.len(), 8, "every (region, shard) has its own group");
        for s in &shards {
            let region = s.region.clone().unwrap();
            assert!(s.replicas().all(|n| regions[&n] == region));
            assert_eq!(s.voters.len(), 3);
            let zones: std::collections::BTreeSet<_> = s
                .voters
                .iter()
                .map(|v| all.iter().find(|n| n.id == *v).unwrap().zone.clone())
                .collect();
            assert_eq!(zones.len(), 3, "voters in distinct zones");
        }
        assert!(shards
            .iter()
            .all(|s| s.replicas().all(|n| regions[&n] != "us-west-2")));
    }

    // Goal: with a witness region, the third voter is a witness node there, no data replica is
    // placed in that region, and without one no witness node gets anything.
    #[test]
    fn witness_region_gets_one_witness_voter_and_no_data() {
        let mut all = nodes(&["us-east-1", "us-west-2", "eu-west-1"], 3);
        // Node 21 (eu-west-1) is a witness; 22 and 23 hold data.
        all.iter_mut().find(|n| n.id == 21).unwrap().role = NodeRole::Witness;
        let mut p = policy(Survive::Region, &["us-east-1", "us-west-2", "eu-west-1"]);
        p.witness_region = Some("eu-west-1".into());
        let regions = regions_of(&all);
        for s in place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap() {
            let count = |r: &str| s.voters.iter().filter(|v| regions[v] == r).count();
            assert_eq!(
                (count("us-east-1"), count("us-west-2"), count("eu-west-1")),
                (2, 2, 1)
            );
            assert!(s.voters.contains(&21), "{s:?}");
            assert!(
                s.learners.iter().all(|l| regions[l] != "eu-west-1"),
                "{s:?}"
            );
            assert_eq!(regions[&s.voters[0]], "us-east-1");
        }
        p.witness_region = None;
        for s in place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap() {
            assert!(
                !s.replicas().any(|n| n == 21),
                "a witness holds no data: {s:?}"
            );
        }
        // A witness region without a witness node is refused, naming the fix.
        all.iter_mut().find(|n| n.id == 21).unwrap().role = NodeRole::Data;
        p.witness_region = Some("eu-west-1".into());
        let e = place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap_err();
        assert!(e.to_string().contains("role = \"witness\""), "{e}");
    }

    // Goal: survive=region puts 2/2/1 voters in home, nearest and next region, learners on the
    // rest of the allowed nodes, and nothing outside `regions`.
    #[test]
    fn region_survival_spreads_voters_by_distance() {
        let all = nodes(
            &["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"],
            3,
        );
        let p = policy(Survive::Region, &["us-east-1", "us-west-2", "eu-west-1"]);
        let shards = place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap();
        let regions = regions_of(&all);
        for s in &shards {
            let count = |r: &str| s.voters.iter().filter(|v| regions[v] == r).count();
            assert_eq!(
                (count("us-east-1"), count("us-west-2"), count("eu-west-1")),
                (2, 2, 1)
            );
            assert_eq!(
                regions[&s.voters[0]], "us-east-1",
                "the initialiser is in the home region"
            );
            assert_eq!(s.voters.len() + s.learners.len(), 9);
            assert!(
                s.replicas().all(|n| regions[&n] != "ap-northeast-1"),
                "residency violated"
            );
        }
        assert_ne!(
            shards[0].voters[0], shards[1].voters[0],
            "shards start on different home nodes"
        );
    }

    // Goal: survive=zone keeps every voter in the home region, in distinct zones.
    #[test]
    fn zone_survival_keeps_voters_home() {
        let all = nodes(&["us-east-1", "us-west-2"], 3);
        let p = policy(Survive::Zone, &["us-east-1", "us-west-2"]);
        let shards = place_keyspace(&p, &all, &LatencyMatrix::aws_default()).unwrap();
        let regions = regions_of(&all);
        for s in &shards {
            assert_eq!(s.voters.len(), 3);
            assert!(s.voters.iter().all(|v| regions[v] == "us-east-1"));
            assert_eq!(s.learners.len(), 3);
        }
    }

    // Goal: a voter region without nodes is a clear precondition failure.
    #[test]
    fn missing_region_nodes_fail() {
        let all = nodes(&["us-east-1", "us-west-2"], 2);
        let p = policy(Survive::Region, &["us-east-1", "us-west-2", "eu-west-1"]);
        let e = place_keyspace(&p, &all, &LatencyMatrix::aws_default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("eu-west-1"), "{e}");
    }
}
