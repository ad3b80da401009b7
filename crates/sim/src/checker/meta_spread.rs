//! The metadata group's voters survive the loss of any one region.
//!
//! Property: the catalogue, the failover log and every promotion live in the metadata group
//! (../shared/design/brief.md, "Layers"); failing over out of a lost region needs its quorum.
//! So once the cluster spans three regions, no membership of more than one voter may give a
//! single region a majority of the voters (nor an even count, which tolerates no more losses
//! than one voter fewer). Checked on every voter set a metadata leader held, sampled through
//! the run. A partial promotion of whichever nodes caught up first once gave voters {1, 2, 4}
//! (two of three in the bootstrap region), and losing that region froze every failover
//! decision: the zone-promotion demo waited for a promotion that could never be proposed.

use std::collections::{BTreeMap, BTreeSet};

use meridian_types::NodeId;

/// `regions`: every node's region. `seen`: each voter set a metadata leader held, with the
/// first time (µs) it was sampled.
pub fn check(
    regions: &BTreeMap<NodeId, String>,
    seen: &BTreeMap<BTreeSet<NodeId>, u64>,
) -> Vec<String> {
    let spanned: BTreeSet<&String> = regions.values().collect();
    if spanned.len() < 3 {
        return Vec::new();
    }
    let mut violations = Vec::new();
    for (voters, at) in seen {
        if voters.len() <= 1 {
            continue;
        }
        if voters.len() % 2 == 0 {
            violations.push(format!(
                "metadata voters {voters:?} at {at}us are an even number: the group tolerates no more failures than with one voter fewer"
            ));
            continue;
        }
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for v in voters {
            let r = regions.get(v).map_or("?", |r| r.as_str());
            *per.entry(r).or_default() += 1;
        }
        for (region, n) in per {
            if n > voters.len() / 2 {
                violations.push(format!(
                    "metadata voters {voters:?} at {at}us put {n} of {} in {region}: losing that region loses the catalogue's quorum",
                    voters.len()
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> BTreeMap<NodeId, String> {
        (1..=6)
            .map(|i| (i, ["a", "b", "c"][((i - 1) / 2) as usize].to_string()))
            .collect()
    }

    // Goal: the voter set the old promotion produced is a violation; a spread one is not.
    #[test]
    fn majority_in_one_region_is_caught() {
        let seen = BTreeMap::from([(BTreeSet::from([1]), 0), (BTreeSet::from([1, 2, 3]), 5)]);
        let v = check(&regions(), &seen);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("2 of 3 in a"), "{v:?}");
        let seen = BTreeMap::from([
            (BTreeSet::from([1, 3, 5]), 0),
            (BTreeSet::from([1, 2, 3, 4, 5]), 9),
        ]);
        assert!(check(&regions(), &seen).is_empty());
        let seen = BTreeMap::from([(BTreeSet::from([1, 3]), 0)]);
        assert_eq!(check(&regions(), &seen).len(), 1);
    }
}
