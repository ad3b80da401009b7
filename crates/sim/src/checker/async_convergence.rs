//! Async keyspaces converge: once the faults end and shipping catches up, every replica of
//! every region's group of a shard holds the same versions (values, deletes and their HLCs).
//!
//! Property: strong eventual consistency (Shapiro, Preguiça, Baquero, Zawirski, "Conflict-free
//! Replicated Data Types", SSS 2011): replicas that have delivered the same updates are in the
//! same state. After the heal every region has delivered every other region's writes, so all
//! of a shard's replicas, in every region, must be equal. Two differences are allowed: a
//! tombstone one replica has purged (every region had shipped past it) and another still
//! holds, both reading the key as deleted; and an `lww` row's `seen`, what the region knows of
//! the key's history, which purges make differ (see `Versioned::replicated`): the winner and
//! its version vector must be equal.

use std::collections::BTreeMap;

use meridian_crdt::Versioned;
use meridian_types::{GroupId, NodeId};

/// One replica of one region's group, as read from its storage at the end.
#[derive(Clone, Debug)]
pub struct RegionReplica {
    pub node: NodeId,
    pub region: String,
    pub group: GroupId,
    pub rows: Vec<(Vec<u8>, Versioned)>,
}

/// Reasons the replicas of each shard (key of `shards`) differ; empty when all are equal.
pub fn check(shards: &BTreeMap<u16, Vec<RegionReplica>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (shard, replicas) in shards {
        let Some(first) = replicas.first() else {
            continue;
        };
        for r in &replicas[1..] {
            let differing = differing_keys(&first.rows, &r.rows);
            if !differing.is_empty() {
                problems.push(format!(
                    "shard {shard}: node {} ({}) and node {} ({}) differ on {} key(s), e.g. {:?}",
                    first.node,
                    first.region,
                    r.node,
                    r.region,
                    differing.len(),
                    differing
                        .first()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default()
                ));
            }
        }
    }
    problems
}

/// Keys whose versions differ between two replicas' rows.
pub fn differing_keys(a: &[(Vec<u8>, Versioned)], b: &[(Vec<u8>, Versioned)]) -> Vec<Vec<u8>> {
    let a: BTreeMap<&Vec<u8>, &Versioned> = a.iter().map(|(k, v)| (k, v)).collect();
    let b: BTreeMap<&Vec<u8>, &Versioned> = b.iter().map(|(k, v)| (k, v)).collect();
    let purged = |x: Option<&&Versioned>, y: Option<&&Versioned>| match (x, y) {
        (Some(t), None) | (None, Some(t)) => t.is_tombstone(),
        _ => false,
    };
    let same = |x: Option<&&Versioned>, y: Option<&&Versioned>| match (x, y) {
        (Some(x), Some(y)) if x.typed.is_none() && y.typed.is_none() => {
            x.replicated() == y.replicated()
        }
        _ => x == y,
    };
    let mut keys: Vec<Vec<u8>> = a
        .keys()
        .chain(b.keys())
        .filter(|k| !same(a.get(*k), b.get(*k)) && !purged(a.get(*k), b.get(*k)))
        .map(|k| (*k).clone())
        .collect();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::{Hlc, RegionTag};

    fn row(key: &str, t: u64, value: Option<&str>) -> (Vec<u8>, Versioned) {
        let hlc = Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of("us-east-1"),
        };
        let value = value.map(|v| v.as_bytes().to_vec());
        (
            key.as_bytes().to_vec(),
            Versioned::lww(hlc, value, Default::default()),
        )
    }

    fn replica(node: NodeId, region: &str, rows: Vec<(Vec<u8>, Versioned)>) -> RegionReplica {
        RegionReplica {
            node,
            region: region.into(),
            group: node,
            rows,
        }
    }

    // Goal: equal replicas pass; a region missing a delete (a tombstone) fails, naming the key.
    #[test]
    fn a_missing_delete_is_divergence() {
        let mut shards = BTreeMap::new();
        shards.insert(
            0,
            vec![
                replica(1, "us-east-1", vec![row("a", 1, Some("x"))]),
                replica(2, "eu-west-1", vec![row("a", 1, Some("x"))]),
            ],
        );
        assert!(check(&shards).is_empty());
        shards.insert(
            1,
            vec![
                replica(1, "us-east-1", vec![row("b", 2, None)]),
                replica(2, "eu-west-1", vec![row("b", 1, Some("y"))]),
            ],
        );
        let v = check(&shards);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("\"b\""), "{v:?}");
    }

    // Goal: a tombstone one region purged and another still holds is no divergence; two
    // different tombstones of one key, or a value against nothing, are.
    #[test]
    fn a_purged_tombstone_is_not_divergence() {
        let shards = |a: Vec<(Vec<u8>, Versioned)>, b: Vec<(Vec<u8>, Versioned)>| {
            BTreeMap::from([(
                0,
                vec![replica(1, "us-east-1", a), replica(2, "eu-west-1", b)],
            )])
        };
        assert!(check(&shards(vec![row("d", 5, None)], vec![])).is_empty());
        assert_eq!(
            check(&shards(vec![row("d", 5, None)], vec![row("d", 4, None)])).len(),
            1
        );
        assert_eq!(
            check(&shards(vec![row("v", 5, Some("x"))], vec![])).len(),
            1
        );
    }
}
