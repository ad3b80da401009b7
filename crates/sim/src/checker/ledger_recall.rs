//! Every write that was certainly concurrent with another and met it is in the ledger. The
//! oracle reads concurrency off the history, not off the system's vectors: two writes of one
//! key from two regions are concurrent for certain when neither could have reached the other's
//! region before that one was acknowledged, i.e. each was acknowledged sooner after the other
//! was invoked than the fastest path between the two regions (the direct link or a relay
//! through a third region). The simulation's "duel" keys are written exactly once by each of
//! two regions and by nobody else, so both regions hold one and receive the other: each of the
//! two regions must record the pair, lww and mv alike.
//!
//! Property: concurrency as the absence of happens-before (Lamport, CACM 1978), where a write
//! can only have happened before a remote one if a message could carry it there in time; the
//! ledger's promise (issue 9) is that no truly concurrent overwrite or sibling goes unrecorded.
//! Recall is the share of certainly concurrent pairs found, in each writing region.

use std::collections::{BTreeMap, BTreeSet};

use meridian_consensus::ledger::Entry;
use meridian_crdt::{Hlc, RegionTag};

use crate::history::{Call, Op, Ret};

/// What the oracle expected and what the ledgers held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recall {
    /// Certainly concurrent pairs, those some region's ledger holds, and those both writing
    /// regions' ledgers hold (each writer holds one and receives the other, unless the other
    /// reached it only inside a later state: a compacted log's state transfer, or an
    /// anti-entropy repair of a lost shipment, carries the winner alone).
    pub expected: usize,
    pub found: usize,
    pub in_both: usize,
    pub violations: Vec<String>,
}

/// A ledger entry as the oracle looks it up: region, key and the two values, sorted.
type Recorded<'a> = (RegionTag, &'a [u8], [&'a [u8]; 2]);

/// A write the oracle can place: its value, origin region and times.
struct Placed<'a> {
    op: &'a Op,
    value: &'a str,
    origin: RegionTag,
    acked_us: u64,
}

fn placed(op: &Op) -> Option<Placed<'_>> {
    let (value, hlc): (&str, Hlc) = match (&op.call, &op.returned) {
        (Call::Write(Some(v)), Some((_, Ret::Written { hlc }))) => (v, *hlc),
        (Call::MvPut(v), Some((_, Ret::MvWritten { hlc }))) => (v, *hlc),
        _ => return None,
    };
    Some(Placed {
        op,
        value,
        origin: hlc.origin,
        acked_us: op.returned_us(),
    })
}

/// `ledgers`: (region, entry) for every entry every replica recorded, `regions` the keyspace's
/// regions. `fastest_us(a, b)`: the least time anything written in region `a` can take to
/// reach region `b`.
pub fn check(
    history: &[Op],
    ledgers: &[(String, Entry)],
    regions: &[String],
    fastest_us: impl Fn(RegionTag, RegionTag) -> u64,
) -> Recall {
    let mut writes: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if matches!(op.call, Call::Write(_) | Call::MvPut(_)) {
            writes.entry(&op.key).or_default().push(op);
        }
    }
    // (region, key, the two values in order) of every entry.
    let mut recorded: BTreeSet<Recorded> = BTreeSet::new();
    for (region, e) in ledgers {
        if let (Some(a), Some(b)) = (&e.a.value, &e.b.value) {
            let mut pair = [a.as_slice(), b.as_slice()];
            pair.sort();
            recorded.insert((RegionTag::of(region), &e.key, pair));
        }
    }
    let names: BTreeMap<RegionTag, &str> = regions
        .iter()
        .map(|r| (RegionTag::of(r), r.as_str()))
        .collect();
    let mut recall = Recall::default();
    for (key, ops) in writes {
        // Only keys written exactly twice, both acknowledged, from two regions.
        let [a, b] = ops.as_slice() else { continue };
        let (Some(a), Some(b)) = (placed(a), placed(b)) else {
            continue;
        };
        if a.origin == b.origin {
            continue;
        }
        if let Some(w) = [&a, &b]
            .into_iter()
            .find(|w| !names.contains_key(&w.origin))
        {
            recall.violations.push(format!(
                "key {key:?}: {:?} was acknowledged with an HLC from no region of the keyspace ({:?}, in {:?})",
                w.value, w.origin, w.op.returned
            ));
            continue;
        }
        let concurrent = a.acked_us < b.op.invoked_us + fastest_us(b.origin, a.origin)
            && b.acked_us < a.op.invoked_us + fastest_us(a.origin, b.origin);
        if !concurrent {
            continue;
        }
        let mut pair = [a.value.as_bytes(), b.value.as_bytes()];
        pair.sort();
        recall.expected += 1;
        let holders: Vec<&str> = names
            .iter()
            .filter(|(r, _)| recorded.contains(&(**r, key.as_bytes(), pair)))
            .map(|(_, n)| *n)
            .collect();
        if holders.is_empty() {
            recall.violations.push(format!(
                "key {key:?}: {:?} ({}) and {:?} ({}) were written concurrently (each acknowledged before the other could have arrived), but no region's ledger holds a conflict between them",
                a.value,
                names.get(&a.origin).copied().unwrap_or("?"),
                b.value,
                names.get(&b.origin).copied().unwrap_or("?"),
            ));
        } else {
            recall.found += 1;
            if holders.contains(&names.get(&a.origin).copied().unwrap_or_default())
                && holders.contains(&names.get(&b.origin).copied().unwrap_or_default())
            {
                recall.in_both += 1;
            }
        }
    }
    recall
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_consensus::ledger::RecordedSide;
    use meridian_crdt::{Outcome, Rule};

    const EAST: &str = "us-east-1";
    const WEST: &str = "eu-west-1";

    fn hlc(t: u64, region: &str) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of(region),
        }
    }

    fn write(key: &str, value: &str, invoked: u64, acked: u64, region: &str) -> Op {
        Op {
            client: 1,
            key: key.into(),
            call: Call::Write(Some(value.into())),
            invoked_us: invoked,
            returned: Some((
                acked,
                Ret::Written {
                    hlc: hlc(acked, region),
                },
            )),
        }
    }

    fn entry(region: &str, key: &str, a: &str, b: &str) -> (String, Entry) {
        let side = |v: &str| RecordedSide {
            hlc: hlc(1, EAST),
            value: Some(v.as_bytes().to_vec()),
            size: v.len() as u64,
            hash: None,
            deleted: false,
        };
        (
            region.into(),
            Entry {
                seq: 0,
                id: 1,
                key: key.as_bytes().to_vec(),
                rule: Rule::Lww,
                a: side(a),
                b: side(b),
                outcome: Outcome::BWon,
                detected: hlc(100, region),
            },
        )
    }

    // 40 ms between the two regions, either way.
    fn fastest(_: RegionTag, _: RegionTag) -> u64 {
        40_000
    }

    // Goal: a pair some region recorded passes (counted in both when both writers did); one no
    // region recorded is reported; a pair
    // that could have been ordered, a key written three times and one region's two writes are
    // not judged.
    #[test]
    fn certainly_concurrent_pairs_must_be_in_some_ledger() {
        let h = vec![
            write("d1", "x", 0, 10_000, EAST),
            write("d1", "y", 2_000, 12_000, WEST),
        ];
        let both = [entry(EAST, "d1", "x", "y"), entry(WEST, "d1", "y", "x")];
        let regions = [EAST.to_string(), WEST.to_string()];
        let r = check(&h, &both, &regions, fastest);
        assert_eq!((r.expected, r.found, r.in_both), (1, 1, 1), "{r:?}");
        assert!(r.violations.is_empty());
        let r = check(&h, &both[..1], &regions, fastest);
        assert_eq!((r.expected, r.found, r.in_both), (1, 1, 0));
        assert!(r.violations.is_empty());
        let r = check(&h, &[], &regions, fastest);
        assert_eq!((r.expected, r.found), (1, 0));
        assert!(r.violations[0].contains("no region"), "{:?}", r.violations);

        // y was invoked 50 ms after x was acknowledged: it may have seen x.
        let ordered = vec![
            write("d2", "x", 0, 10_000, EAST),
            write("d2", "y", 60_000, 70_000, WEST),
        ];
        assert_eq!(check(&ordered, &[], &regions, fastest), Recall::default());
        let thrice = vec![
            write("d3", "x", 0, 10_000, EAST),
            write("d3", "y", 2_000, 12_000, WEST),
            write("d3", "z", 3_000, 13_000, WEST),
        ];
        assert_eq!(check(&thrice, &[], &regions, fastest), Recall::default());
        let one_region = vec![
            write("d4", "x", 0, 10_000, EAST),
            write("d4", "y", 2_000, 12_000, EAST),
        ];
        assert_eq!(
            check(&one_region, &[], &regions, fastest),
            Recall::default()
        );
    }
}
