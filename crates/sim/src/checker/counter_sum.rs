//! Counters count every acknowledged update exactly once: once converged, a counter key holds,
//! in every region, the sum of its acknowledged increments plus some subset of the increments
//! whose outcome the client never learned (each counted either way), and nothing else.
//!
//! Property: a PN-counter's value is the sum of the updates delivered (Shapiro, Preguiça,
//! Baquero, Zawirski, "A comprehensive study of Convergent and Commutative Replicated Data
//! Types", INRIA RR-7506, 2011, §3.1.2); after the heal every region has delivered every
//! update, so a lost, doubled or invented increment changes the value.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Op, Ret};

/// The sums a subset of `amounts` can add up to.
fn subset_sums(amounts: &[i64]) -> BTreeSet<i64> {
    let mut sums = BTreeSet::from([0i64]);
    for a in amounts {
        let shifted: Vec<i64> = sums.iter().map(|s| s + a).collect();
        sums.extend(shifted);
    }
    sums
}

/// `finals`: region -> key -> the counter's value there (`None`: absent).
pub fn check(
    history: &[Op],
    finals: &BTreeMap<String, BTreeMap<String, Option<i64>>>,
) -> Vec<String> {
    let mut acked: BTreeMap<&str, i64> = BTreeMap::new();
    let mut unknown: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for op in history {
        let Call::Incr(by) = op.call else { continue };
        match &op.returned {
            Some((_, Ret::Incremented)) => *acked.entry(&op.key).or_default() += by,
            None => unknown.entry(&op.key).or_default().push(by),
            Some(_) => {}
        }
    }
    let keys: BTreeSet<&str> = acked.keys().chain(unknown.keys()).copied().collect();
    let mut problems = Vec::new();
    for key in keys {
        let base = acked.get(key).copied().unwrap_or(0);
        let maybe = unknown.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let possible = subset_sums(maybe);
        for (region, values) in finals {
            let value = values.get(key).copied().flatten().unwrap_or(0);
            if !possible.contains(&(value - base)) {
                problems.push(format!(
                    "counter {key:?} holds {value} in {region}, but its acknowledged increments sum to {base} and the {} indeterminate ones ({maybe:?}) cannot make up the difference of {}",
                    maybe.len(),
                    value - base
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(key: &str, by: i64, acked: bool) -> Op {
        Op {
            client: 1,
            key: key.into(),
            call: Call::Incr(by),
            invoked_us: 0,
            returned: acked.then_some((1, Ret::Incremented)),
        }
    }

    fn finals(value: i64) -> BTreeMap<String, BTreeMap<String, Option<i64>>> {
        BTreeMap::from([
            (
                "us-east-1".to_string(),
                BTreeMap::from([("c".to_string(), Some(value))]),
            ),
            (
                "eu-west-1".to_string(),
                BTreeMap::from([("c".to_string(), Some(value))]),
            ),
        ])
    }

    // Goal: the exact sum passes, with or without each indeterminate update; a lost, doubled
    // or invented increment is reported.
    #[test]
    fn every_acknowledged_update_counts_once() {
        let h = vec![
            incr("c", 5, true),
            incr("c", -2, true),
            incr("c", 10, false),
        ];
        assert!(check(&h, &finals(3)).is_empty());
        assert!(check(&h, &finals(13)).is_empty());
        let lost = check(&h, &finals(5));
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert!(lost[0].contains("holds 5"), "{lost:?}");
        assert!(!check(&h, &finals(8)).is_empty(), "doubled");
        let mut one_region = finals(3);
        one_region
            .get_mut("eu-west-1")
            .unwrap()
            .insert("c".into(), Some(23));
        assert_eq!(check(&h, &one_region).len(), 1);
    }
}
