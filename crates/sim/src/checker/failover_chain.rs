//! The failover decision log is one verified chain: every node's copy verifies (each entry's
//! hash, the links, no gap, no reordering), and all copies are prefixes of one sequence of
//! decisions (committed by a majority, so two leaders cannot fork it). Every decision a node
//! executes is one it derived from this log, so "executed" means "in the log, in order".
//!
//! Property: an append-only hash chain (Haber and Stornetta, "How to Time-Stamp a Digital
//! Document", 1991) replicated through consensus; issue 10's "every executed decision is in the
//! log, in order, and the chain verifies".

use std::collections::BTreeMap;

use meridian_control::failover::{verify, Entry};

/// `logs`: (node, its copy of the log). Returns the problems and the merged chain (by sequence
/// number) for the other failover checkers.
pub fn check(logs: &[(u64, Vec<Entry>)]) -> (Vec<String>, BTreeMap<u64, &Entry>) {
    let mut problems = Vec::new();
    let mut chain: BTreeMap<u64, &Entry> = BTreeMap::new();
    for (node, log) in logs {
        if let Err(e) = verify(log) {
            problems.push(format!("node {node}'s failover log does not verify: {e}"));
        }
        for e in log {
            match chain.get(&e.seq) {
                Some(other) if other.hash != e.hash => problems.push(format!(
                    "two different failover decisions {} committed: {} ({}) on one node, {} ({}) on node {node}",
                    e.seq,
                    other.action.name(),
                    other.hash,
                    e.action.name(),
                    e.hash
                )),
                Some(_) => {}
                None => {
                    chain.insert(e.seq, e);
                }
            }
        }
    }
    (problems, chain)
}

#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use meridian_control::failover::{Action, Entry, GENESIS};

    /// A sealed chain of `actions` by one controller.
    pub fn log(actions: &[Action]) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        actions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let e = Entry {
                    seq: i as u64,
                    at_ms: i as u64,
                    action: a.clone(),
                    reason: String::new(),
                    by: "controller@1".into(),
                    inputs: BTreeMap::new(),
                    prev: String::new(),
                    hash: String::new(),
                }
                .seal(&prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    pub fn failover(holddown_ms: u64) -> Action {
        Action::Failover {
            region: "us-east-1".into(),
            holddown_ms,
        }
    }

    pub fn failback() -> Action {
        Action::Failback {
            region: "us-east-1".into(),
        }
    }

    /// Entry `i` first seen at `times_ms[i]`, in µs.
    pub fn seen(times_ms: &[u64]) -> BTreeMap<u64, u64> {
        times_ms
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64, t * 1000))
            .collect()
    }

    /// The chain of one log, as the checkers take it.
    pub fn chain(log: &[Entry]) -> BTreeMap<u64, &Entry> {
        log.iter().map(|e| (e.seq, e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use meridian_control::failover::Action;

    // Goal: matching copies pass; a forked copy and a tampered one fail, naming the entry.
    #[test]
    fn forks_and_tampering_are_reported() {
        let good = log(&[failover(4_000), failback(), failover(8_000)]);
        let copies = [(1, good.clone()), (2, good[..2].to_vec())];
        let (p, chain) = check(&copies);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(chain.len(), 3);
        let other = log(&[failover(4_000), Action::Pause]);
        let (p, _) = check(&[(1, good.clone()), (2, other)]);
        assert!(p[0].contains("two different failover decisions 1"), "{p:?}");
        let mut tampered = good;
        tampered[1].reason = "edited".into();
        let (p, _) = check(&[(1, tampered)]);
        assert!(
            p[0].contains("does not verify") && p[0].contains("entry 1"),
            "{p:?}"
        );
    }
}
