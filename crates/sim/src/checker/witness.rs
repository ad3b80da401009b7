//! Witness voters never lead a keyspace's group (beyond handing leadership over) and never
//! hold its data.
//!
//! Property: a witness replica (Spanner's witness replicas; DynamoDB's strongly consistent
//! global tables' witness region) stores the log so its vote is sound, but no state: it
//! cannot serve a read, so it must not lead (a leader answers reads and writes from its
//! state), and it must hold no key-value rows, so a third region pays only for a vote. It may
//! take leadership only when no data voter can win (their logs are behind its own), to bring
//! one up to date and hand over at once: a witness that leads one term for longer than
//! `HAND_OVER_MAX_US` is a violation.

use std::collections::{BTreeMap, BTreeSet};

/// How long a witness may lead while it hands leadership to a data voter that catches up.
pub const HAND_OVER_MAX_US: u64 = 5_000_000;

use meridian_types::{GroupId, NodeId};

/// What the simulation saw of its witnesses.
pub struct Seen<'a> {
    pub witnesses: &'a BTreeSet<NodeId>,
    /// (group, term, node) of every leader sampled, with the first and last time (µs) it was.
    pub leaders: &'a BTreeMap<(GroupId, u64, NodeId), (u64, u64)>,
    /// (node, rows of keyspace data) at the end.
    pub rows: &'a [(NodeId, usize)],
}

pub fn check(seen: &Seen) -> Vec<String> {
    let mut violations = Vec::new();
    for ((group, term, node), (from, to)) in seen.leaders {
        if seen.witnesses.contains(node)
            && *group != meridian_types::META_GROUP
            && to - from > HAND_OVER_MAX_US
        {
            violations.push(format!(
                "witness node {node} led group {group} in term {term} from {from}us to {to}us, longer than a hand-over may take ({HAND_OVER_MAX_US}us)"
            ));
        }
    }
    for (node, rows) in seen.rows {
        if seen.witnesses.contains(node) && *rows > 0 {
            violations.push(format!(
                "witness node {node} holds {rows} rows of the keyspace's data"
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a witness leading a group, or holding rows, is reported; data nodes doing either
    // are not.
    #[test]
    fn reports_a_leading_or_holding_witness() {
        let witnesses = BTreeSet::from([3]);
        let leaders = BTreeMap::from([
            ((7, 1, 1), (0, 60_000_000)),
            ((7, 2, 3), (0, 9_000_000)),
            ((7, 3, 3), (0, 1_000_000)),
            ((0, 4, 3), (0, 60_000_000)),
        ]);
        let rows = [(1, 10), (3, 0)];
        let v = check(&Seen {
            witnesses: &witnesses,
            leaders: &leaders,
            rows: &rows,
        });
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("led group 7 in term 2"), "{v:?}");
        let rows = [(3, 2)];
        let v = check(&Seen {
            witnesses: &witnesses,
            leaders: &BTreeMap::new(),
            rows: &rows,
        });
        assert_eq!(v.len(), 1, "{v:?}");
    }
}
