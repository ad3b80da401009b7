//! The conflict ledger describes only writes that happened and were concurrent: every value an
//! entry names was written by some client, the two sides are two different writes, and no
//! entry pairs two writes of one region where the first was acknowledged before the second
//! was invoked (the second had seen the first: a region orders its writes through its log).
//!
//! Property: concurrency is the absence of happens-before (Lamport, "Time, Clocks, and the
//! Ordering of Events in a Distributed System", CACM 1978); two writes of one region, one
//! acknowledged before the other began, are ordered, so reporting them as a conflict is a
//! false positive. This checks the ledger's precision against what the history proves; its
//! recall is checked by the multi-process test and the property tests of the merges.

use std::collections::BTreeMap;

use meridian_consensus::ledger::Entry;

use crate::history::{Call, Op, Ret};

/// `ledgers`: (region, entry) for every entry every replica recorded.
pub fn check(history: &[Op], ledgers: &[(String, Entry)]) -> Vec<String> {
    // Values are unique per write: value -> the op that wrote it.
    let mut writes: BTreeMap<&[u8], &Op> = BTreeMap::new();
    for op in history {
        if let Call::Write(Some(v)) = &op.call {
            writes.insert(v.as_bytes(), op);
        }
    }
    let mut problems = Vec::new();
    for (region, e) in ledgers {
        if e.a.hlc == e.b.hlc {
            problems.push(format!(
                "{region} recorded a conflict of key {:?} between a write and itself ({:?})",
                String::from_utf8_lossy(&e.key),
                e.a.hlc
            ));
            continue;
        }
        let mut ops = Vec::new();
        for side in [&e.a, &e.b] {
            let Some(v) = &side.value else {
                ops.push(None);
                continue;
            };
            match writes.get(v.as_slice()) {
                Some(op) => ops.push(Some(*op)),
                None => {
                    problems.push(format!(
                        "{region} recorded a conflict of key {:?} naming the value {:?}, which no client wrote",
                        String::from_utf8_lossy(&e.key),
                        String::from_utf8_lossy(v)
                    ));
                    ops.push(None);
                }
            }
        }
        let (Some(a), Some(b)) = (ops[0], ops[1]) else {
            continue;
        };
        let acked = |o: &Op| match &o.returned {
            Some((t, Ret::Written { hlc })) => Some((*t, hlc.origin)),
            _ => None,
        };
        let (Some((a_ack, a_origin)), Some((b_ack, b_origin))) = (acked(a), acked(b)) else {
            continue;
        };
        if a_origin == b_origin && (a_ack < b.invoked_us || b_ack < a.invoked_us) {
            problems.push(format!(
                "{region} recorded a conflict of key {:?} between {:?} and {:?}, two writes of one region where one was acknowledged before the other began",
                String::from_utf8_lossy(&e.key),
                a.written().unwrap_or("?"),
                b.written().unwrap_or("?")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_consensus::ledger::RecordedSide;
    use meridian_crdt::{Hlc, Outcome, RegionTag, Rule};

    fn hlc(t: u64, region: &str) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of(region),
        }
    }

    fn write(value: &str, invoked: u64, acked: u64, region: &str) -> Op {
        Op {
            client: 1,
            key: "k".into(),
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

    fn entry(a: (&str, Hlc), b: (&str, Hlc)) -> (String, Entry) {
        let side = |(v, h): (&str, Hlc)| RecordedSide {
            hlc: h,
            value: Some(v.as_bytes().to_vec()),
            size: v.len() as u64,
            hash: None,
            deleted: false,
        };
        (
            "us-east-1".into(),
            Entry {
                seq: 0,
                id: 1,
                key: b"k".to_vec(),
                rule: Rule::Lww,
                a: side(a),
                b: side(b),
                outcome: Outcome::BWon,
                detected: hlc(100, "us-east-1"),
            },
        )
    }

    // Goal: two regions' overlapping writes may be recorded; one region's ordered writes, an
    // invented value and a write against itself are reported.
    #[test]
    fn only_writes_that_could_be_concurrent_are_recorded() {
        let h = vec![
            write("x", 0, 10, "us-east-1"),
            write("y", 5, 12, "eu-west-1"),
            write("z", 20, 30, "us-east-1"),
        ];
        let ok = entry(("x", hlc(10, "us-east-1")), ("y", hlc(12, "eu-west-1")));
        assert!(check(&h, &[ok]).is_empty());
        let ordered = entry(("x", hlc(10, "us-east-1")), ("z", hlc(30, "us-east-1")));
        let v = check(&h, &[ordered]);
        assert!(v[0].contains("one region"), "{v:?}");
        let invented = entry(("x", hlc(10, "us-east-1")), ("w", hlc(40, "eu-west-1")));
        assert!(check(&h, &[invented])[0].contains("no client wrote"));
        let itself = entry(("x", hlc(10, "us-east-1")), ("x", hlc(10, "us-east-1")));
        assert!(check(&h, &[itself])[0].contains("itself"));
    }
}
