//! Decisions by a quorum of regions: while the metadata group's leader is cut off with a
//! minority of its voters, no failover decision (nor operator action) taken on that side is
//! committed. Every entry first seen committed inside a cut (after a grace for entries that
//! committed just before it began) was decided by a node on the majority side.
//!
//! Property: a log entry commits only with a majority (Ongaro and Ousterhout, "In Search of an
//! Understandable Consensus Algorithm", 2014, the Leader Completeness and quorum rules); issue
//! 10's "the minority side of a partition can never decide anything". Entries name their
//! decider (`controller@<node>`, or the operator's node is unknown: `operator:` entries are
//! judged by the controller entries only).

use std::collections::BTreeMap;

use meridian_control::failover::Entry;

/// `cuts`: (from µs, to µs, node ids on the minority side) of each cut; `seen_us`: when each
/// entry was first seen committed; `grace_us`: how long after a cut begins an entry decided
/// before it may still be first seen.
pub fn check(
    cuts: &[(u64, u64, Vec<u64>)],
    chain: &[Entry],
    seen_us: &BTreeMap<u64, u64>,
    grace_us: u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    for e in chain {
        let Some(at) = seen_us.get(&e.seq) else {
            continue;
        };
        let Some(decider) =
            e.by.strip_prefix("controller@")
                .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        for (from, to, side) in cuts {
            if *at >= from + grace_us && at <= to && side.contains(&decider) {
                problems.push(format!(
                    "decision {} ({}) by node {decider} was committed {} ms into a cut that left node {decider} in the metadata group's minority {side:?}",
                    e.seq,
                    e.action.name(),
                    (at - from) / 1000
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_control::failover::{Action, GENESIS};

    fn entry(seq: u64, by: &str) -> Entry {
        Entry {
            seq,
            at_ms: 0,
            action: Action::Failback {
                region: "east".into(),
            },
            reason: String::new(),
            by: by.into(),
            inputs: BTreeMap::new(),
            prev: String::new(),
            hash: String::new(),
        }
        .seal(GENESIS)
    }

    // Goal: a decision by a minority-side node committed inside the cut is reported; one by
    // the majority side, one inside the grace, one outside the cut, and operators' pass.
    #[test]
    fn the_minority_decides_nothing() {
        let cuts = [(10_000_000, 20_000_000, vec![1, 2])];
        let chain = [
            entry(0, "controller@1"),
            entry(1, "controller@3"),
            entry(2, "controller@2"),
            entry(3, "operator:alice"),
            entry(4, "controller@1"),
        ];
        let seen = BTreeMap::from([
            (0, 10_100_000),
            (1, 12_000_000),
            (2, 15_000_000),
            (3, 16_000_000),
            (4, 21_000_000),
        ]);
        let p = check(&cuts, &chain, &seen, 500_000);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("decision 2 (failback) by node 2"), "{p:?}");
    }
}
