//! The metadata group's voters survive the loss of any one region.
//!
//! Property: the catalogue, the failover log and every promotion live in the metadata group
//! (../shared/design/brief.md, "Layers"); failing over out of a lost region needs its quorum.
//! So once the group's members span three regions, its voters must be an odd number with no
//! region holding a majority; a set that breaks this may stand only while the leader moves to a
//! better one ([`GRACE_US`]). Checked on the (non-joint) voter sets a metadata leader held,
//! sampled through the run, against the regions its members (voters and learners) spanned then.
//! A partial promotion of whichever nodes caught up first once gave voters {1, 2, 4} (two of
//! three in the bootstrap region), and losing that region froze every failover decision; and
//! voters picked while two regions had nodes kept a majority in one after a third joined
//! (`meridian sim --staggered-join`).

use std::collections::{BTreeMap, BTreeSet};

use meridian_types::NodeId;

/// How long a voter set that breaks the property may stand once three regions have members.
pub const GRACE_US: u64 = 20_000_000;

/// One sampled state: from `at` (µs) on, the leader held `voters` with `members` in the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: u64,
    pub voters: BTreeSet<NodeId>,
    pub members: BTreeSet<NodeId>,
}

/// Why `voters` do not keep the property, given every node's region (None: they do, or the
/// members span fewer than three regions).
fn problem(
    regions: &BTreeMap<NodeId, String>,
    voters: &BTreeSet<NodeId>,
    members: &BTreeSet<NodeId>,
) -> Option<String> {
    let region = |n: &NodeId| regions.get(n).map_or("?", |r| r.as_str());
    let spanned: BTreeSet<&str> = members.iter().map(region).collect();
    if spanned.len() < 3 || voters.len() <= 1 {
        return None;
    }
    if voters.len().is_multiple_of(2) {
        return Some("are an even number".into());
    }
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for v in voters {
        *per.entry(region(v)).or_default() += 1;
    }
    per.into_iter()
        .find(|(_, n)| *n > voters.len() / 2)
        .map(|(r, n)| format!("put {n} of {} in {r}", voters.len()))
}

/// `timeline`: samples in time order, each standing until the next (the last until `end_us`).
pub fn check(regions: &BTreeMap<NodeId, String>, timeline: &[Sample], end_us: u64) -> Vec<String> {
    let mut violations = Vec::new();
    // (since, voters, why) of the current run of bad samples.
    let mut bad: Option<(u64, BTreeSet<NodeId>, String)> = None;
    let mut report = |bad: &Option<(u64, BTreeSet<NodeId>, String)>, until: u64| {
        if let Some((since, voters, why)) = bad {
            if until.saturating_sub(*since) > GRACE_US {
                violations.push(format!(
                    "metadata voters {voters:?} {why} from {since}us to {until}us, longer than a move may take ({GRACE_US}us): losing that region loses the catalogue's quorum"
                ));
            }
        }
    };
    for s in timeline {
        match problem(regions, &s.voters, &s.members) {
            Some(why) => {
                let same = bad.as_ref().is_some_and(|(_, v, _)| *v == s.voters);
                if !same {
                    report(&bad, s.at);
                    bad = Some((s.at, s.voters.clone(), why));
                }
            }
            None => {
                report(&bad, s.at);
                bad = None;
            }
        }
    }
    report(&bad, end_us);
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

    fn s(at: u64, voters: &[NodeId], members: &[NodeId]) -> Sample {
        Sample {
            at,
            voters: voters.iter().copied().collect(),
            members: members.iter().copied().collect(),
        }
    }

    // Goal: a set with a region majority that stands past the grace is a violation; one moved
    // in time, or one while only two regions had members, is not.
    #[test]
    fn majority_in_one_region_is_caught() {
        let all = [1, 2, 3, 4, 5, 6];
        let v = check(
            &regions(),
            &[s(0, &[1], &[1]), s(5, &[1, 2, 3], &all)],
            30_000_000,
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("put 2 of 3 in a"), "{v:?}");
        let moved = [s(0, &[1, 2, 3], &all), s(1_000_000, &[1, 3, 5], &all)];
        assert!(check(&regions(), &moved, 60_000_000).is_empty());
        let two_regions = [s(0, &[1, 2, 3], &[1, 2, 3, 4])];
        assert!(check(&regions(), &two_regions, 60_000_000).is_empty());
        let even = [s(0, &[1, 3], &all)];
        assert_eq!(check(&regions(), &even, 60_000_000).len(), 1);
    }
}
