//! Bounded-staleness reads of async keyspaces: a read with bound B that starts at time t
//! reflects every write of its key acknowledged, in any region, before t - B.
//!
//! Property: "bounded staleness" as in Terry's "Replicated Data Consistency Explained Through
//! Baseball" (CACM 2013) and Azure Cosmos DB's level of that name: the state read is no older
//! than the bound. Under last-writer-wins a state reflects write W of a key exactly when the
//! key's version has an HLC at least W's, so the check compares stamps. Times are the
//! simulator's one global clock, which no node's skewed or jumped wall clock can move; a write
//! counts from when its client heard the acknowledgement, which is no earlier than the node
//! gave it, so the check never blames a correct history.

use crate::history::{by_key, Call, Op, Ret};

/// Violations listed per run before the rest are only counted.
const REPORTS_MAX: usize = 10;

pub fn check(history: &[Op]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut more = 0usize;
    for (key, ops) in by_key(history) {
        for read in &ops {
            let (Call::BoundedGet { bound_ms }, Some((_, Ret::Read { version, .. }))) =
                (&read.call, &read.returned)
            else {
                continue;
            };
            let horizon = read.invoked_us.saturating_sub(bound_ms * 1000);
            // The newest write acknowledged before the horizon.
            let due = ops
                .iter()
                .filter_map(|w| match (&w.call, &w.returned) {
                    (Call::Write(_), Some((at, Ret::Written { hlc }))) if *at < horizon => {
                        Some((*hlc, *at))
                    }
                    _ => None,
                })
                .max();
            let Some((hlc, at)) = due else { continue };
            // Nothing read can be a purged tombstone of a delete at least as new.
            let purged = version.is_none()
                && ops.iter().any(|d| {
                    d.call == Call::Write(None)
                        && (d.unknown_write() || d.written_hlc().is_some_and(|h| h >= hlc))
                });
            if !purged && version.is_none_or(|v| v < hlc) {
                if violations.len() < REPORTS_MAX {
                    violations.push(format!(
                        "client {}'s bounded:{bound_ms} read of key {key:?} at {}us returned HLC {version:?}, older than the write with HLC {hlc:?} acknowledged at {at}us, more than {bound_ms} ms before the read: bounded staleness broken",
                        read.client, read.invoked_us
                    ));
                } else {
                    more += 1;
                }
            }
        }
    }
    if more > 0 {
        violations.push(format!(
            "and {more} more async bounded-staleness violations"
        ));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::{Hlc, RegionTag};

    fn hlc(t: u64) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of("us-east-1"),
        }
    }

    fn write(t: u64, acked_us: u64) -> Op {
        Op {
            client: 1,
            key: "k".into(),
            call: Call::Write(Some(format!("v{t}"))),
            invoked_us: acked_us - 10,
            returned: Some((acked_us, Ret::Written { hlc: hlc(t) })),
        }
    }

    fn read(bound_ms: u64, at_us: u64, version: Option<u64>) -> Op {
        Op {
            client: 2,
            key: "k".into(),
            call: Call::BoundedGet { bound_ms },
            invoked_us: at_us,
            returned: Some((
                at_us + 10,
                Ret::Read {
                    value: version.map(|t| format!("v{t}")),
                    version: version.map(hlc),
                },
            )),
        }
    }

    // Goal: a read must reflect the newest write acknowledged more than its bound before it;
    // a write acknowledged within the bound may be missing; a newer version always passes.
    #[test]
    fn reads_reflect_writes_older_than_the_bound() {
        let writes = [write(10, 1_000_000), write(20, 2_000_000)];
        let ok = |r: Op| {
            let mut h = writes.to_vec();
            h.push(r);
            check(&h)
        };
        // Write 20 was acknowledged 1.5 s before the read: a 1 s bound must see it.
        assert!(ok(read(1_000, 3_500_000, Some(20))).is_empty());
        assert!(ok(read(1_000, 3_500_000, Some(25))).is_empty());
        let v = ok(read(1_000, 3_500_000, Some(10)));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("bounded staleness broken"));
        assert_eq!(ok(read(1_000, 3_500_000, None)).len(), 1);
        // A 2 s bound at the same time needs only write 10.
        assert!(ok(read(2_000, 3_500_000, Some(10))).is_empty());
        assert_eq!(ok(read(2_000, 3_500_000, None)).len(), 1);
        // Nothing acknowledged before the horizon: anything passes.
        assert!(ok(read(5_000, 3_500_000, None)).is_empty());
        // Nothing read after a delete at least as new: a purged tombstone.
        let mut deleted = writes.to_vec();
        deleted.push(Op {
            client: 3,
            key: "k".into(),
            call: Call::Write(None),
            invoked_us: 2_100_000,
            returned: Some((2_200_000, Ret::Written { hlc: hlc(30) })),
        });
        deleted.push(read(1_000, 3_500_000, None));
        assert!(check(&deleted).is_empty());
    }
}
