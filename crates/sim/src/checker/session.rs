//! Session guarantees hold for async keyspaces: a session read sees the session's own earlier
//! writes (or something with a higher HLC), and a session never reads a key older than it read
//! it before, whichever region serves it.
//!
//! Property: read-your-writes and monotonic reads, two of the session guarantees of Terry,
//! Demers, Petersen, Spreitzer, Theimer and Welch, "Session Guarantees for Weakly Consistent
//! Replicated Data" (PDIS 1994). Versions are compared by HLC: under last-writer-wins a
//! version is "at least as new" exactly when its stamp is at least as high.

use std::collections::BTreeMap;

use meridian_crdt::Hlc;

use crate::history::{Call, Op, Ret};

pub fn check(history: &[Op]) -> Vec<String> {
    // Reading nothing can be a tombstone purged after every region shipped past it: it stands
    // for a version at least `h` when a delete of the key could carry such a stamp (acknowledged
    // with one, or of unknown outcome).
    let purged_at_least = |key: &str, h: Hlc| {
        history.iter().any(|d| {
            d.key == key
                && d.call == Call::Write(None)
                && (d.unknown_write() || d.written_hlc().is_some_and(|dh| dh >= h))
        })
    };
    let older = |key: &str, version: &Option<Hlc>, h: Hlc| match version {
        Some(v) => *v < h,
        None => !purged_at_least(key, h),
    };
    let mut violations = Vec::new();
    let mut by_client: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_client.entry(op.client).or_default().push(op);
    }
    for (client, mut ops) in by_client {
        // A client is sequential: order its operations by invocation.
        ops.sort_by_key(|o| o.invoked_us);
        // Per key: the highest stamp the session wrote (acknowledged) or read.
        let mut written: BTreeMap<&str, Hlc> = BTreeMap::new();
        let mut read: BTreeMap<&str, Hlc> = BTreeMap::new();
        for op in ops {
            match (&op.call, &op.returned) {
                (Call::Write(_), Some((_, Ret::Written { hlc }))) => {
                    let e = written.entry(op.key.as_str()).or_insert(*hlc);
                    *e = (*e).max(*hlc);
                }
                (Call::SessionGet, Some((at, Ret::Read { version, value }))) => {
                    if let Some(w) = written.get(op.key.as_str()) {
                        if older(&op.key, version, *w) {
                            violations.push(format!(
                                "client {client} read key {:?} at {at}us and got {value:?} (HLC {version:?}), older than its own acknowledged write (HLC {w:?}): read-your-writes broken",
                                op.key
                            ));
                        }
                    }
                    if let Some(r) = read.get(op.key.as_str()) {
                        if older(&op.key, version, *r) {
                            violations.push(format!(
                                "client {client} read key {:?} at {at}us and got HLC {version:?}, older than the HLC {r:?} it read before: monotonic reads broken",
                                op.key
                            ));
                        }
                    }
                    if let Some(v) = version {
                        let e = read.entry(op.key.as_str()).or_insert(*v);
                        *e = (*e).max(*v);
                    }
                }
                _ => {}
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::op;
    use meridian_crdt::RegionTag;

    fn h(t: u64) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of("us-east-1"),
        }
    }

    fn read(client: u64, at: u64, v: Option<u64>) -> Op {
        op(
            client,
            Call::SessionGet,
            at,
            Some((
                at + 1,
                Ret::Read {
                    value: None,
                    version: v.map(h),
                },
            )),
        )
    }

    // Goal: reading an older version than one's own write fails; going back after a newer
    // read fails; other sessions' reads are not held to it.
    #[test]
    fn own_writes_and_earlier_reads_bound_later_reads() {
        let w = op(
            1,
            Call::Write(Some("x".into())),
            0,
            Some((5, Ret::Written { hlc: h(5) })),
        );
        assert!(check(&[w.clone(), read(1, 10, Some(5))]).is_empty());
        assert!(
            check(&[w.clone(), read(2, 10, None)]).is_empty(),
            "another session"
        );
        let v = check(&[w.clone(), read(1, 10, Some(4))]);
        assert!(v[0].contains("read-your-writes"), "{v:?}");
        let v = check(&[read(1, 10, Some(8)), read(1, 20, Some(6))]);
        assert!(v[0].contains("monotonic"), "{v:?}");
        let v = check(&[w.clone(), read(1, 10, None)]);
        assert!(v[0].contains("read-your-writes"), "{v:?}");
        // Nothing, after a later delete whose tombstone may have been purged, is fine.
        let del = op(
            3,
            Call::Write(None),
            6,
            Some((7, Ret::Written { hlc: h(7) })),
        );
        assert!(check(&[w.clone(), del, read(1, 10, None)]).is_empty());
        let older_del = op(
            3,
            Call::Write(None),
            1,
            Some((2, Ret::Written { hlc: h(2) })),
        );
        assert!(!check(&[w, older_del, read(1, 10, None)]).is_empty());
    }
}
