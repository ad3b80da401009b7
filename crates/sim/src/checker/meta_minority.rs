//! Decisions by a quorum of regions: while the metadata group's leader is cut off with a
//! minority of its voters, nothing decided on that side is ever committed. Every committed
//! entry its controller stamped inside a cut was decided by a node on the majority side. (An
//! entry the old leader proposed just before the cut may still commit after it, through the
//! majority's new leader: Raft commits earlier terms' entries with its own; so the time that
//! counts is when the decision was taken, the entry's stamp on its decider's clock, not when it
//! was first seen committed.)
//!
//! Property: a log entry commits only with a majority (Ongaro and Ousterhout, "In Search of an
//! Understandable Consensus Algorithm", 2014, the Leader Completeness and quorum rules); issue
//! 10's "the minority side of a partition can never decide anything". Entries name their
//! decider (`controller@<node>`, or the operator's node is unknown: `operator:` entries are
//! judged by the controller entries only).

use std::collections::BTreeMap;

use meridian_control::failover::Entry;

/// `cuts`: (from µs, to µs, node ids on the minority side) of each cut; `decided_us`: per
/// committed entry, the simulated time its decider stamped it.
pub fn check(
    cuts: &[(u64, u64, Vec<u64>)],
    chain: &[Entry],
    decided_us: &BTreeMap<u64, u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for e in chain {
        let Some(at) = decided_us.get(&e.seq) else {
            continue;
        };
        let Some(decider) =
            e.by.strip_prefix("controller@")
                .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        for (from, to, side) in cuts {
            if at > from && at <= to && side.contains(&decider) {
                problems.push(format!(
                    "decision {} ({}) taken by node {decider} {} ms into a cut that left it in the metadata group's minority {side:?} was committed",
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

    // Goal: a decision a minority-side node took inside the cut is reported; one by the
    // majority side, one taken before the cut, one after it, and operators' pass.
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
            (0, 9_990_000),
            (1, 12_000_000),
            (2, 15_000_000),
            (3, 16_000_000),
            (4, 21_000_000),
        ]);
        let p = check(&cuts, &chain, &seen);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("decision 2 (failback) taken by node 2"),
            "{p:?}"
        );
    }
}
