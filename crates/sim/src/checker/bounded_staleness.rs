//! Bounded-staleness reads: a read with bound B that starts at time t reflects every write
//! acknowledged before t - B, and the staleness it reports is at least its true staleness.
//!
//! Property: the "bounded staleness" consistency of Terry's "Replicated Data Consistency
//! Explained Through Baseball" (CACM 2013; Azure Cosmos DB's level of the same name, and
//! CockroachDB's bounded-staleness follower reads): a read sees a state no older than the
//! bound. Here both sides are judged on the simulator's one global clock, which no node's
//! skewed or jumped wall clock can move.
//!
//! Method: a read returned the value of write V. An acknowledged write W supersedes V for
//! certain when V's response came before W's invocation (every linearization puts V before W;
//! for an absent value, any acknowledged write does). If such a W was acknowledged at time a
//! before the read started at t, the served state lacked W, so it was at least t - a old:
//! a violation of the bound when a < t - B, and an under-reported staleness when the node said
//! less than t - a. Writes whose order with V is not certain (concurrent, or never answered)
//! prove nothing and are skipped, so the check never blames a correct history.
//! Times are microseconds; a reported staleness is whole milliseconds, so it counts as under the
//! truth only when it is a full millisecond short.

use crate::history::{by_key, Call, Op, Ret};

/// Violations listed per run before the rest are only counted.
const REPORTS_MAX: usize = 10;

pub fn check(history: &[Op]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut more = 0usize;
    for (key, ops) in by_key(history) {
        for read in ops.iter().filter(|o| o.is_stale_read()) {
            for v in check_read(key, read, &ops) {
                if violations.len() < REPORTS_MAX {
                    violations.push(v);
                } else {
                    more += 1;
                }
            }
        }
    }
    if more > 0 {
        violations.push(format!("and {more} more bounded-staleness violations"));
    }
    violations
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The violations one bounded read shows against the other operations on its key.
fn check_read(key: &str, read: &Op, ops: &[&Op]) -> Vec<String> {
    let (
        Call::StaleGet { bound_ms },
        Some((
            _,
            Ret::StaleGet {
                value,
                staleness_ms,
            },
        )),
    ) = (&read.call, &read.returned)
    else {
        return Vec::new();
    };
    let t = read.invoked_us;
    let writer = match value {
        None => None,
        Some(v) => match ops.iter().find(|o| o.written() == Some(v.as_str())) {
            Some(w) => Some(*w),
            None => {
                return vec![format!(
                    "key {key:?}: process {}'s bounded read at {:.3} ms returned {v:?}, which no client wrote",
                    read.client,
                    ms(t)
                )]
            }
        },
    };
    if let Some(w) = writer {
        if w.invoked_us > read.returned_us() {
            return vec![format!(
                "key {key:?}: process {}'s bounded read at {:.3} ms returned {value:?}, written only at {:.3} ms, after the read returned",
                read.client,
                ms(t),
                ms(w.invoked_us)
            )];
        }
    }
    // The acknowledged write that most certainly superseded the value read: the earliest one
    // acknowledged, which proves the largest staleness.
    let superseding = ops
        .iter()
        .filter(|w| w.acknowledged_write() && w.returned_us() < t)
        .filter(|w| writer.is_none_or(|v| v.returned_us() < w.invoked_us))
        .min_by_key(|w| w.returned_us());
    let Some(w) = superseding else {
        return Vec::new();
    };
    let true_staleness_us = t - w.returned_us();
    let mut found = Vec::new();
    if true_staleness_us > bound_ms * 1000 {
        found.push(format!(
            "key {key:?}: process {}'s read with bound {bound_ms} ms, started at {:.3} ms, returned {value:?}, but process {}'s write of {:?} superseded it and was acknowledged at {:.3} ms, {:.3} ms before the read began",
            read.client,
            ms(t),
            w.client,
            w.written().unwrap_or_default(),
            ms(w.returned_us()),
            ms(true_staleness_us)
        ));
    }
    if true_staleness_us >= (staleness_ms + 1) * 1000 {
        found.push(format!(
            "key {key:?}: process {}'s bounded read at {:.3} ms reported a staleness of {staleness_ms} ms, but it missed process {}'s write of {:?} acknowledged {:.3} ms before it began",
            read.client,
            ms(t),
            w.client,
            w.written().unwrap_or_default(),
            ms(true_staleness_us)
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::op;

    fn put(client: u64, v: &str, from_ms: u64, to_ms: u64) -> Op {
        op(
            client,
            Call::Put(v.into()),
            from_ms * 1000,
            Some((to_ms * 1000, Ret::Put)),
        )
    }
    fn read(bound_ms: u64, at_ms: u64, value: Option<&str>, staleness_ms: u64) -> Op {
        op(
            9,
            Call::StaleGet { bound_ms },
            at_ms * 1000,
            Some((
                (at_ms + 5) * 1000,
                Ret::StaleGet {
                    value: value.map(str::to_string),
                    staleness_ms,
                },
            )),
        )
    }

    // Goal: reads that are stale but within their bound, and honest about it, pass.
    #[test]
    fn stale_within_the_bound_passes() {
        let h = vec![
            put(1, "a", 0, 10),
            put(1, "b", 20, 30),
            // b was acknowledged 70 ms before this read: within 100 ms, and reported as 80.
            read(100, 100, Some("a"), 80),
            // Concurrent with c: either value is fine, whatever the staleness.
            put(2, "c", 150, 400),
            read(10, 300, Some("b"), 0),
            read(10, 500, Some("c"), 0),
        ];
        assert_eq!(check(&h), Vec::<String>::new());
    }

    // Goal: the failure is caught: a follower serves a value superseded by a write
    // acknowledged a second before the read, while saying it is 47 ms stale.
    #[test]
    fn a_read_older_than_its_bound_fails_twice() {
        let h = vec![
            put(1, "367", 0, 10),
            put(1, "374", 20, 1_000),
            read(500, 1_980, Some("367"), 47),
        ];
        let v = check(&h);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("bound 500 ms"), "{v:?}");
        assert!(v[1].contains("reported a staleness of 47 ms"), "{v:?}");
    }

    // Goal: a staleness report below the truth fails even when the truth is within the bound.
    #[test]
    fn under_reported_staleness_fails() {
        let h = vec![
            put(1, "a", 0, 10),
            put(1, "b", 20, 30),
            read(500, 300, Some("a"), 200),
        ];
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("reported a staleness of 200 ms"), "{v:?}");
    }

    // Goal: an absent value after an acknowledged write is stale; a value nobody wrote, or one
    // written after the read returned, is reported.
    #[test]
    fn absent_unknown_and_future_values_fail() {
        let h = vec![put(1, "a", 0, 10), read(100, 500, None, 3)];
        assert_eq!(check(&h).len(), 2);
        let h = vec![put(1, "a", 0, 10), read(100, 500, Some("zz"), 3)];
        assert!(check(&h)[0].contains("no client wrote"));
        let h = vec![read(100, 500, Some("late"), 3), put(1, "late", 600, 610)];
        assert!(check(&h)[0].contains("after the read returned"));
    }

    // Goal: writes whose outcome is unknown, or that overlap the value read, prove nothing.
    #[test]
    fn unknown_and_concurrent_writes_prove_nothing() {
        let h = vec![
            put(1, "a", 0, 100),
            put(2, "b", 50, 60),
            op(3, Call::Put("c".into()), 70_000, None),
            read(10, 1_000, Some("a"), 0),
        ];
        assert_eq!(check(&h), Vec::<String>::new());
    }
}
