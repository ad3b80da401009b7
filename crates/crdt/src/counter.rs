//! PN-counters: a counter every region increments and decrements locally, merged without
//! losing any region's updates.
//!
//! Each region keeps its own running totals of increments (`p`) and decrements (`n`); only that
//! region changes them, and only upwards, so the merge of two states is the per-region maximum
//! and the value is the sum of increments less the sum of decrements. Reference: Shapiro,
//! Preguiça, Baquero, Zawirski, "A comprehensive study of Convergent and Commutative Replicated
//! Data Types" (INRIA RR-7506, 2011), §3.1.2.
//!
//! The value a client sees is an `i64`: an update that would take it (or a region's running
//! total) outside the range is refused before it is applied, so a counter never wraps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hlc::RegionTag;
use crate::vv::{Dot, VersionVector};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    p: BTreeMap<RegionTag, u64>,
    n: BTreeMap<RegionTag, u64>,
    /// Per region: the number of its last update applied (its dot), so a redelivered update
    /// is recognised and skipped.
    at: BTreeMap<RegionTag, u64>,
}

/// Why an update was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub value: i128,
    pub by: i64,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "adding {} to the counter's value {} leaves the signed 64-bit range",
            self.by, self.value
        )
    }
}

impl PnCounter {
    pub fn new() -> PnCounter {
        PnCounter::default()
    }

    /// The counter's value (as i128: merged concurrent updates can leave the i64 range even
    /// though each was checked; reads report that as an error).
    pub fn value(&self) -> i128 {
        let p: i128 = self.p.values().map(|v| i128::from(*v)).sum();
        let n: i128 = self.n.values().map(|v| i128::from(*v)).sum();
        p - n
    }

    /// Whether adding `by` keeps the value in the signed 64-bit range: checked by the region
    /// that accepts an update, before it is acknowledged.
    pub fn check(&self, by: i64) -> Result<(), Overflow> {
        let value = self.value();
        if i64::try_from(value + i128::from(by)).is_err() {
            return Err(Overflow { value, by });
        }
        Ok(())
    }

    /// Applies the update `dot` (its region's update number `dot.n`) adding `by`; returns
    /// false, changing nothing, when the region's updates up to `dot.n` are applied already.
    /// Never refuses: an update another region acknowledged must count here too (concurrent
    /// updates can take the merged value outside the i64 range; `value` is exact).
    pub fn apply(&mut self, dot: Dot, by: i64) -> bool {
        let at = self.at.entry(dot.region).or_insert(0);
        if *at >= dot.n {
            return false;
        }
        *at = dot.n;
        let before = self.value();
        let e = if by >= 0 {
            self.p.entry(dot.region).or_insert(0)
        } else {
            self.n.entry(dot.region).or_insert(0)
        };
        *e = e.saturating_add(by.unsigned_abs());
        debug_assert_eq!(
            self.value(),
            before + i128::from(by),
            "an update changes the value by exactly its amount"
        );
        true
    }

    /// Adds `by` in `region` as its next update (a decrement when negative), refused when it
    /// would leave the i64 range.
    pub fn add(&mut self, region: RegionTag, by: i64) -> Result<Dot, Overflow> {
        self.check(by)?;
        let n = self.at.get(&region).copied().unwrap_or(0) + 1;
        let dot = Dot { region, n };
        let applied = self.apply(dot, by);
        debug_assert!(applied, "a region's next update is new");
        Ok(dot)
    }

    /// The updates applied: per region, the number of its last one.
    pub fn context(&self) -> VersionVector {
        let mut v = VersionVector::new();
        for (region, n) in &self.at {
            v.add(Dot {
                region: *region,
                n: *n,
            });
        }
        v
    }

    /// The per-region maximum: every region's totals only grow, so the larger is the later.
    pub fn merge(&mut self, other: &PnCounter) {
        for (mine, theirs) in [
            (&mut self.p, &other.p),
            (&mut self.n, &other.n),
            (&mut self.at, &other.at),
        ] {
            for (r, v) in theirs {
                let e = mine.entry(*r).or_insert(0);
                *e = (*e).max(*v);
            }
        }
    }

    /// This state restricted to `region`'s own totals: what that region ships.
    pub fn own(&self, region: RegionTag) -> PnCounter {
        let pick = |m: &BTreeMap<RegionTag, u64>| {
            m.get(&region).map(|v| (region, *v)).into_iter().collect()
        };
        PnCounter {
            p: pick(&self.p),
            n: pick(&self.n),
            at: pick(&self.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::r;
    use proptest::prelude::*;

    // Goal: updates add up per region and in total; one that would leave the i64 range is
    // refused and changes nothing.
    #[test]
    fn updates_add_up_and_never_wrap() {
        let mut c = PnCounter::new();
        c.add(r(1), 5).unwrap();
        c.add(r(2), -3).unwrap();
        c.add(r(1), -1).unwrap();
        assert_eq!(c.value(), 1);
        let mut big = PnCounter::new();
        big.add(r(1), i64::MAX).unwrap();
        let before = big.clone();
        let e = big.add(r(2), 1).unwrap_err();
        assert!(e.to_string().contains("signed 64-bit"), "{e}");
        assert_eq!(big, before);
        big.add(r(2), i64::MIN).unwrap();
        assert_eq!(big.value(), -1);
    }

    /// Each region's updates, in its own order: (region, amount).
    fn arb_updates() -> impl Strategy<Value = Vec<(u64, i64)>> {
        proptest::collection::vec((0u64..3, -1000i64..1000), 0..40)
    }

    proptest! {
        // Goal: whatever order the regions' states arrive in, with duplicates and stale copies,
        // every replica ends at the sum of all updates; merge is commutative, associative and
        // idempotent.
        #[test]
        fn replicas_converge_to_the_sum(updates in arb_updates(), order in proptest::collection::vec(0usize..1000, 0..60)) {
            // Each region applies its own updates, keeping every intermediate state (what it
            // would have shipped at that point).
            let mut states: Vec<PnCounter> = Vec::new();
            let mut regions: BTreeMap<u64, PnCounter> = BTreeMap::new();
            for (region, by) in &updates {
                let c = regions.entry(*region).or_default();
                c.add(r(*region), *by).unwrap();
                states.push(c.own(r(*region)));
            }
            let total: i128 = updates.iter().map(|(_, by)| i128::from(*by)).sum();
            // A replica that receives some states in an arbitrary order (duplicates, stale
            // copies), then every region's final one.
            let mut replica = PnCounter::new();
            for i in &order {
                if !states.is_empty() {
                    replica.merge(&states[i % states.len()]);
                }
            }
            for c in regions.values() {
                replica.merge(c);
            }
            prop_assert_eq!(replica.value(), total);
            // Updates delivered one by one (each region's in order, some twice) mixed with a
            // merged state: every update counts once.
            let mut by_ops = PnCounter::new();
            let mut numbers: BTreeMap<u64, u64> = BTreeMap::new();
            for (i, (region, by)) in updates.iter().enumerate() {
                let n = numbers.entry(*region).or_insert(0);
                *n += 1;
                let dot = Dot { region: r(*region), n: *n };
                by_ops.apply(dot, *by);
                if order.get(i).is_some_and(|o| o % 3 == 0) {
                    prop_assert!(!by_ops.apply(dot, *by), "a redelivered update is skipped");
                    by_ops.merge(&states[i]);
                }
            }
            prop_assert_eq!(by_ops.value(), total);
            if states.len() >= 3 {
                let (a, b, c) = (&states[0], &states[states.len() / 2], &states[states.len() - 1]);
                let join = |x: &PnCounter, y: &PnCounter| { let mut m = x.clone(); m.merge(y); m };
                prop_assert_eq!(join(a, b), join(b, a));
                prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
                prop_assert_eq!(join(a, a), a.clone());
            }
        }
    }
}
