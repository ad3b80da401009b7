//! No flapping: a region fails over at most once per hold-down. Between two failovers of a
//! region its leaders came back (a failback), and the second came at least the first's hold-down
//! later. Times are simulated time when an entry was first seen committed on some node (sampled,
//! so `tolerance_us` absorbs the sampling).
//!
//! Property: issue 10's "at most one failover per hold-down window" under a flapping region;
//! the hold-down with exponential growth is the damping of route-flap dampening (RFC 2439).

use std::collections::BTreeMap;

use meridian_control::failover::{Action, Entry};

/// `seen_us`: per sequence number, the simulated time it was first seen committed.
pub fn check(
    chain: &BTreeMap<u64, &Entry>,
    seen_us: &BTreeMap<u64, u64>,
    tolerance_us: u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    // Per region: (seq, hold-down) of its last executed failover, and whether leaders came
    // back since.
    let mut last_failover: BTreeMap<&str, (u64, u64, bool)> = BTreeMap::new();
    for e in chain.values() {
        let executed = match &e.action {
            Action::Approve { decision, .. } => &**decision,
            a => a,
        };
        match executed {
            Action::Failover {
                region,
                holddown_ms,
            } => {
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
            Action::Failback { region } => {
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
    use crate::checker::failover_chain::testing::*;

    // Goal: a spaced failover, failback, failover passes; one inside the hold-down and one
    // without a failback between fail; an approved failover counts like an automatic one.
    #[test]
    fn flapping_is_reported() {
        let good = log(&[failover(4_000), failback(), failover(8_000)]);
        assert!(check(&chain(&good), &seen(&[0, 5_000, 6_000]), 0).is_empty());
        let v = check(&chain(&good), &seen(&[0, 1_000, 2_000]), 0);
        assert!(v[0].contains("flapping"), "{v:?}");
        let twice = log(&[failover(4_000), failover(4_000)]);
        let v = check(&chain(&twice), &seen(&[0, 9_000]), 0);
        assert!(v[0].contains("without its leaders coming back"), "{v:?}");
        let approved = log(&[
            failover(4_000),
            Action::Approve {
                id: 1,
                decision: Box::new(failover(4_000)),
            },
        ]);
        let v = check(&chain(&approved), &seen(&[0, 9_000]), 0);
        assert!(v[0].contains("without its leaders coming back"), "{v:?}");
    }
}
