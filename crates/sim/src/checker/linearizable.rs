//! Linearizability of single-key registers (put, get, compare-and-swap).
//!
//! Property: Herlihy & Wing, "Linearizability: A Correctness Condition for Concurrent Objects"
//! (TOPLAS 1990): every operation appears to take effect at one instant between its invocation
//! and its response, in an order consistent with the register's sequential specification.
//! Linearizability is local (their Theorem 1), so each key is checked on its own.
//!
//! Method: the Wing & Gong search with Lowe's memoisation ("Testing for linearizability",
//! 2017), as in Knossos and Porcupine: repeatedly pick an operation that may go next (invoked
//! before every pending response), apply it to the model if its result agrees, and backtrack
//! otherwise; a (linearized set, register value) pair already explored is not explored again.
//! An operation whose outcome the client never learned may take effect at any point after its
//! invocation, or never; it is not a failure.

use std::collections::HashSet;

use crate::history::{by_key, Call, Op, Ret};

/// States one key's search may visit before the key counts as inconclusive.
const SEARCH_STATES_MAX: usize = 2_000_000;

/// What checking one history concluded.
#[derive(Debug, Default)]
pub struct Report {
    pub ops_checked: usize,
    pub violations: Vec<String>,
    /// Keys whose search exceeded its budget: neither passed nor failed.
    pub inconclusive_keys: Vec<String>,
}

pub fn check(history: &[Op]) -> Report {
    let mut report = Report::default();
    for (key, mut ops) in by_key(history) {
        // Bounded-staleness reads promise less than linearizability; bounded_staleness.rs
        // judges them.
        ops.retain(|o| !o.is_stale_read());
        report.ops_checked += ops.len();
        match check_key(&ops) {
            Outcome::Linearizable => {}
            Outcome::Violation(deepest) => report.violations.push(format!(
                "key {key:?}: no linearization of its {} operations exists; {}",
                ops.len(),
                explain(&ops, &deepest)
            )),
            Outcome::Inconclusive => report.inconclusive_keys.push(key.to_string()),
        }
    }
    report
}

/// How many of the operations around the failure a report lists.
const REPORT_OPS_MAX: usize = 12;

fn describe(o: &Op) -> String {
    let ret = match &o.returned {
        Some((t, r)) => format!("{r:?} at {:.3} s", *t as f64 / 1e6),
        None => "never answered".into(),
    };
    format!(
        "[process {} {:?} from {:.3} s -> {ret}]",
        o.client,
        o.call,
        o.invoked_us as f64 / 1e6
    )
}

/// Where the search got furthest: how many operations it could linearize, the register's value
/// then, and the operation that could not go next, with the operations that could have gone
/// before it (those invoked before it returned).
fn explain(ops: &[&Op], deepest: &(Vec<u64>, Value)) -> String {
    let (done, state) = deepest;
    let pending: Vec<&Op> = (0..ops.len())
        .filter(|i| !is_set(done, *i))
        .map(|i| ops[i])
        .collect();
    let Some(stuck) = pending
        .iter()
        .filter(|o| o.returned.is_some())
        .min_by_key(|o| o.returned_us())
    else {
        return "the search found no stuck operation".into();
    };
    let mut rivals: Vec<&Op> = pending
        .iter()
        .copied()
        .filter(|o| o.invoked_us < stuck.returned_us() && !std::ptr::eq(*o, *stuck))
        .collect();
    rivals.sort_by_key(|o| o.invoked_us);
    let shown = rivals.len().min(REPORT_OPS_MAX);
    format!(
        "after {} of them the register holds {state:?} and no order fits {}; the operations that could go first: {}{}",
        ops.len() - pending.len(),
        describe(stuck),
        rivals[..shown].iter().map(|o| describe(o)).collect::<Vec<_>>().join(" "),
        if rivals.len() > shown { format!(" and {} more", rivals.len() - shown) } else { String::new() }
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Linearizable,
    /// With the furthest point the search reached.
    Violation((Vec<u64>, Value)),
    Inconclusive,
}

type Value = Option<String>;

/// The register's sequential specification: the state after `op` from `state`, or `None` when
/// the result the client saw is impossible from `state`.
fn step(state: &Value, op: &Op) -> Option<Value> {
    let ret = op.returned.as_ref().map(|(_, r)| r);
    match (&op.call, ret) {
        (Call::Put(v), _) => Some(Some(v.clone())),
        (Call::Get, Some(Ret::Get(seen))) => (seen == state).then(|| state.clone()),
        (Call::Get, _) => None,
        // Never reached: `check` leaves bounded reads out. They change nothing.
        (Call::StaleGet { .. }, _) => Some(state.clone()),
        (Call::Cas { expected, value }, ret) => {
            let applies = state == expected;
            match ret {
                Some(Ret::Cas { succeeded }) if *succeeded != applies => None,
                _ if applies => Some(Some(value.clone())),
                _ => Some(state.clone()),
            }
        }
        // Async operations live in their own history; never part of a linearizability search.
        (
            Call::Write(_)
            | Call::SessionGet
            | Call::EventualGet
            | Call::BoundedGet { .. }
            | Call::Incr(_)
            | Call::SetAdd(_)
            | Call::SetRemove(_)
            | Call::MvPut(_),
            _,
        ) => None,
    }
}

struct Search<'a> {
    ops: &'a [&'a Op],
    seen: HashSet<(Vec<u64>, Value)>,
    /// The state with the most operations linearized, for the report.
    deepest: (usize, Vec<u64>, Value),
}

fn check_key(ops: &[&Op]) -> Outcome {
    let mut search = Search {
        ops,
        seen: HashSet::new(),
        deepest: (0, vec![0u64; ops.len().div_ceil(64)], None),
    };
    let done = vec![0u64; ops.len().div_ceil(64)];
    match search.explore(done, None) {
        Some(true) => Outcome::Linearizable,
        Some(false) => Outcome::Violation((search.deepest.1, search.deepest.2)),
        None => Outcome::Inconclusive,
    }
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

impl Search<'_> {
    /// Whether the operations not in `done` can be linearized from `state`; `None` when the
    /// budget ran out.
    fn explore(&mut self, done: Vec<u64>, state: Value) -> Option<bool> {
        let pending: Vec<usize> = (0..self.ops.len()).filter(|i| !is_set(&done, *i)).collect();
        // Every operation with a known outcome is linearized: the rest never happened.
        if pending.iter().all(|i| self.ops[*i].returned.is_none()) {
            return Some(true);
        }
        if !self.seen.insert((done.clone(), state.clone())) {
            return Some(false);
        }
        if self.seen.len() > SEARCH_STATES_MAX {
            return None;
        }
        let linearized = self.ops.len() - pending.len();
        if linearized > self.deepest.0 {
            self.deepest = (linearized, done.clone(), state.clone());
        }
        // Only an operation invoked before the earliest pending response may go next.
        let horizon = pending
            .iter()
            .map(|i| self.ops[*i].returned_us())
            .min()
            .unwrap_or(u64::MAX);
        for i in pending {
            let op = self.ops[i];
            if op.invoked_us >= horizon {
                continue;
            }
            let Some(next) = step(&state, op) else {
                continue;
            };
            let mut after = done.clone();
            after[i / 64] |= 1 << (i % 64);
            match self.explore(after, next) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => return None,
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::op;

    fn put(v: &str) -> Call {
        Call::Put(v.into())
    }
    fn got(v: Option<&str>) -> Ret {
        Ret::Get(v.map(str::to_string))
    }

    // Goal: sequential and overlapping histories that a register allows pass.
    #[test]
    fn accepts_linearizable_histories() {
        let h = vec![
            op(1, put("a"), 0, Some((10, Ret::Put))),
            op(2, Call::Get, 20, Some((30, got(Some("a"))))),
            // Concurrent put and get: the get may see either value.
            op(1, put("b"), 40, Some((60, Ret::Put))),
            op(2, Call::Get, 45, Some((50, got(Some("a"))))),
            op(2, Call::Get, 70, Some((80, got(Some("b"))))),
        ];
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.ops_checked, 5);
    }

    // Goal: a stale read, after a write completed, is caught.
    #[test]
    fn rejects_a_stale_read() {
        let h = vec![
            op(1, put("a"), 0, Some((10, Ret::Put))),
            op(1, put("b"), 20, Some((30, Ret::Put))),
            op(2, Call::Get, 40, Some((50, got(Some("a"))))),
        ];
        assert_eq!(check(&h).violations.len(), 1);
    }

    // Goal: an acknowledged write that a later read does not see (lost) is caught.
    #[test]
    fn rejects_a_lost_write() {
        let h = vec![
            op(1, put("a"), 0, Some((10, Ret::Put))),
            op(2, Call::Get, 20, Some((30, got(None)))),
        ];
        assert_eq!(check(&h).violations.len(), 1);
    }

    // Goal: reads that disagree on the order of two writes are caught, though each read alone
    // is plausible (a non-linearizable interleaving).
    #[test]
    fn rejects_reads_that_disagree_on_order() {
        let h = vec![
            op(1, put("a"), 0, Some((100, Ret::Put))),
            op(2, put("b"), 0, Some((100, Ret::Put))),
            op(3, Call::Get, 110, Some((120, got(Some("a"))))),
            op(4, Call::Get, 130, Some((140, got(Some("b"))))),
            op(3, Call::Get, 150, Some((160, got(Some("a"))))),
        ];
        assert_eq!(check(&h).violations.len(), 1);
    }

    // Goal: a CAS result must agree with the register; an unknown write may or may not apply.
    #[test]
    fn cas_and_unknown_outcomes() {
        let ok = vec![
            op(1, put("a"), 0, None),
            op(
                2,
                Call::Cas {
                    expected: Some("a".into()),
                    value: "b".into(),
                },
                50,
                Some((60, Ret::Cas { succeeded: true })),
            ),
            op(3, Call::Get, 70, Some((80, got(Some("b"))))),
        ];
        assert!(check(&ok).violations.is_empty());
        let never_applied = vec![
            op(1, put("a"), 0, None),
            op(3, Call::Get, 70, Some((80, got(None)))),
        ];
        assert!(check(&never_applied).violations.is_empty());
        let bad = vec![
            op(1, put("a"), 0, Some((10, Ret::Put))),
            op(
                2,
                Call::Cas {
                    expected: Some("a".into()),
                    value: "b".into(),
                },
                20,
                Some((30, Ret::Cas { succeeded: false })),
            ),
        ];
        assert_eq!(check(&bad).violations.len(), 1);
    }
}
