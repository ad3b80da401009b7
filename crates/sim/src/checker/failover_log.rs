//! The failover decision log: every node's copy verifies (each entry's hash, the chain, no gap),
//! all copies are prefixes of one chain (one sequence of decisions, committed by a majority);
//! no automatic decision executes while failover is paused (between a pause and the next
//! resume the controller only files pending decisions, and only operators' approvals execute);
//! and a region fails over at most once per hold-down: between two failovers of a region its
//! leaders came back (a failback), and the second came at least the first's hold-down later.
//!
//! Property: an append-only hash chain (Haber and Stornetta, "How to Time-Stamp a Digital
//! Document", 1991) replicated through consensus; the no-flapping and pause promises of
//! issue 10. Times are simulated time when an entry was first seen committed on some node
//! (sampled, so `tolerance_us` absorbs the sampling).

use std::collections::BTreeMap;

use meridian_control::failover::{verify, Action, Entry};

/// `logs`: (node, its copy of the log); `seen_us`: per sequence number, the simulated time it
/// was first seen committed.
pub fn check(
    logs: &[(u64, Vec<Entry>)],
    seen_us: &BTreeMap<u64, u64>,
    tolerance_us: u64,
) -> Vec<String> {
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
    let mut paused = false;
    // Per region: (seq, hold-down) of its last executed failover, and whether leaders came
    // back since.
    let mut last_failover: BTreeMap<&str, (u64, u64, bool)> = BTreeMap::new();
    for e in chain.values() {
        let executed = match &e.action {
            Action::Pause => {
                paused = true;
                None
            }
            Action::Resume => {
                paused = false;
                None
            }
            Action::Approve { decision, .. } => Some(&**decision),
            a @ (Action::Failover { .. } | Action::Failback { .. }) => {
                if paused {
                    problems.push(format!(
                        "decision {} ({} by {}) executed automatically while failover was paused",
                        e.seq,
                        a.name(),
                        e.by
                    ));
                }
                Some(a)
            }
            Action::Pending { .. } | Action::Reject { .. } => None,
        };
        match executed {
            Some(Action::Failover {
                region,
                holddown_ms,
            }) => {
                if let Some(&(prev, prev_holddown, came_back)) = last_failover.get(region.as_str())
                {
                    let gap = seen_us
                        .get(&e.seq)
                        .zip(seen_us.get(&prev))
                        .map(|(b, a)| b.saturating_sub(*a));
                    if !came_back {
                        problems.push(format!(
                            "{region} failed over twice (decisions {prev} and {}) without its leaders coming back between",
                            e.seq
                        ));
                    } else if gap.is_some_and(|g| g + tolerance_us < prev_holddown * 1000) {
                        problems.push(format!(
                            "{region} failed over again (decision {}) {} ms after decision {prev}, inside its hold-down of {prev_holddown} ms: flapping",
                            e.seq,
                            gap.unwrap_or(0) / 1000
                        ));
                    }
                }
                last_failover.insert(region, (e.seq, *holddown_ms, false));
            }
            Some(Action::Failback { region }) => {
                if let Some(f) = last_failover.get_mut(region.as_str()) {
                    f.2 = true;
                }
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_control::failover::GENESIS;

    fn log(actions: &[Action]) -> Vec<Entry> {
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

    fn failover(holddown_ms: u64) -> Action {
        Action::Failover {
            region: "us-east-1".into(),
            holddown_ms,
        }
    }

    fn failback() -> Action {
        Action::Failback {
            region: "us-east-1".into(),
        }
    }

    fn seen(times_ms: &[u64]) -> BTreeMap<u64, u64> {
        times_ms
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64, t * 1000))
            .collect()
    }

    // Goal: a spaced failover, failback, failover passes; one inside the hold-down, one
    // without a failback between, one executed while paused, a forked or tampered copy fail.
    #[test]
    fn flapping_pausing_and_forks_are_reported() {
        let good = log(&[failover(4_000), failback(), failover(8_000)]);
        assert!(check(&[(1, good.clone())], &seen(&[0, 5_000, 6_000]), 0).is_empty());
        let v = check(&[(1, good.clone())], &seen(&[0, 1_000, 2_000]), 0);
        assert!(v[0].contains("flapping"), "{v:?}");
        let twice = log(&[failover(4_000), failover(4_000)]);
        let v = check(&[(1, twice)], &seen(&[0, 9_000]), 0);
        assert!(v[0].contains("without its leaders coming back"), "{v:?}");
        let paused = log(&[Action::Pause, failover(4_000)]);
        let v = check(&[(1, paused)], &seen(&[0, 1]), 0);
        assert!(v[0].contains("while failover was paused"), "{v:?}");
        let approved = log(&[
            Action::Pause,
            Action::Pending {
                id: 1,
                decision: Box::new(failover(4_000)),
            },
            Action::Approve {
                id: 1,
                decision: Box::new(failover(4_000)),
            },
        ]);
        assert!(check(&[(1, approved)], &seen(&[0, 1, 2]), 0).is_empty());
        let other = log(&[failover(4_000), Action::Pause]);
        let v = check(
            &[(1, good.clone()), (2, other)],
            &seen(&[0, 5_000, 6_000]),
            0,
        );
        assert!(v[0].contains("two different"), "{v:?}");
        let mut tampered = good;
        tampered[1].reason = "edited".into();
        let v = check(&[(1, tampered)], &seen(&[0, 5_000, 6_000]), 0);
        assert!(v[0].contains("does not verify"), "{v:?}");
    }
}
