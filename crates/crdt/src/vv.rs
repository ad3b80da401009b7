//! Version vectors: which writes of each region a version has seen, so the system knows exactly
//! which writes were concurrent (an HLC only says which stamp is higher).
//!
//! A region numbers its writes to a key 1, 2, 3, ...; the write numbered n by region r is the
//! dot (r, n). A vector maps each region to the highest number it has seen from it, and so
//! stands for every dot at or below. Two versions are concurrent exactly when neither vector
//! covers the other. Entries exist only for regions that wrote: a vector is as large as the
//! keyspace's region list at most.
//!
//! Reference: Parker et al., "Detection of Mutual Inconsistency in Distributed Systems" (IEEE
//! TSE 1983); dots as in Almeida, Baquero et al., "Scalable and Accurate Causality Tracking
//! for Eventually Consistent Stores" (DAIS 2014).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hlc::RegionTag;

/// One write: its region and its number among that region's writes to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub region: RegionTag,
    pub n: u64,
}

/// How two versions relate causally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causal {
    Equal,
    /// The first saw everything the second did, and more.
    After,
    /// The second saw everything the first did, and more.
    Before,
    /// Each saw a write the other did not.
    Concurrent,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<RegionTag, u64>);

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The highest write number seen from `region` (0: none).
    pub fn get(&self, region: RegionTag) -> u64 {
        self.0.get(&region).copied().unwrap_or(0)
    }

    /// Whether the vector has seen `dot`.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.n <= self.get(dot.region)
    }

    /// The next dot of `region`, recorded as seen.
    pub fn next(&mut self, region: RegionTag) -> Dot {
        let n = self.get(region) + 1;
        self.0.insert(region, n);
        debug_assert!(self.contains(Dot { region, n }));
        Dot { region, n }
    }

    /// Records `dot` as seen (and every earlier write of its region).
    pub fn add(&mut self, dot: Dot) {
        if dot.n == 0 {
            // Not a write: nothing seen. (Keeps equal vectors equal as maps.)
            return;
        }
        let e = self.0.entry(dot.region).or_insert(0);
        *e = (*e).max(dot.n);
    }

    /// The least vector covering both.
    pub fn merge(&mut self, other: &VersionVector) {
        for (r, n) in &other.0 {
            let e = self.0.entry(*r).or_insert(0);
            *e = (*e).max(*n);
        }
    }

    /// Whether this vector has seen everything `other` has.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(r, n)| self.get(*r) >= *n)
    }

    pub fn compare(&self, other: &VersionVector) -> Causal {
        match (self.covers(other), other.covers(self)) {
            (true, true) => Causal::Equal,
            (true, false) => Causal::After,
            (false, true) => Causal::Before,
            (false, false) => Causal::Concurrent,
        }
    }

    /// The regions and counts, for encoding.
    pub fn entries(&self) -> impl Iterator<Item = (RegionTag, u64)> + '_ {
        self.0.iter().map(|(r, n)| (*r, *n))
    }
}

impl PartialOrd for VersionVector {
    /// The causal partial order: `None` for concurrent vectors.
    fn partial_cmp(&self, other: &VersionVector) -> Option<Ordering> {
        match self.compare(other) {
            Causal::Equal => Some(Ordering::Equal),
            Causal::After => Some(Ordering::Greater),
            Causal::Before => Some(Ordering::Less),
            Causal::Concurrent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::r;
    use proptest::prelude::*;

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (region, n) in entries {
            v.add(Dot {
                region: r(*region),
                n: *n,
            });
        }
        v
    }

    // Goal: comparison names the four relations; a region's next dot is new to every vector
    // that had not seen it and covered once added.
    #[test]
    fn causality_is_classified() {
        assert_eq!(vv(&[(1, 2)]).compare(&vv(&[(1, 2)])), Causal::Equal);
        assert_eq!(vv(&[(1, 2), (2, 1)]).compare(&vv(&[(1, 2)])), Causal::After);
        assert_eq!(vv(&[(1, 1)]).compare(&vv(&[(1, 2)])), Causal::Before);
        assert_eq!(vv(&[(1, 2)]).compare(&vv(&[(2, 1)])), Causal::Concurrent);
        assert_eq!(vv(&[(1, 2)]).partial_cmp(&vv(&[(2, 1)])), None);
        let mut a = vv(&[(1, 3)]);
        let d = a.next(r(2));
        assert_eq!(d, Dot { region: r(2), n: 1 });
        assert!(a.contains(d) && !vv(&[(1, 3)]).contains(d));
        assert!(a.contains(Dot { region: r(1), n: 2 }));
    }

    fn arb_vv() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((0u64..4, 0u64..6), 0..6).prop_map(|e| vv(&e))
    }

    proptest! {
        // Goal: merge is commutative, associative and idempotent, and its result covers both
        // inputs and nothing more (the least upper bound).
        #[test]
        fn merge_is_a_join(a in arb_vv(), b in arb_vv(), c in arb_vv()) {
            let join = |x: &VersionVector, y: &VersionVector| { let mut m = x.clone(); m.merge(y); m };
            prop_assert_eq!(join(&a, &b), join(&b, &a));
            prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
            prop_assert_eq!(join(&a, &a), a.clone());
            let m = join(&a, &b);
            prop_assert!(m.covers(&a) && m.covers(&b));
            for (region, n) in m.entries() {
                prop_assert!(a.get(region) == n || b.get(region) == n);
            }
        }

        // Goal: the comparison is consistent: antisymmetric, and Before/After mirror each other.
        #[test]
        fn comparison_mirrors(a in arb_vv(), b in arb_vv()) {
            let mirrored = match a.compare(&b) {
                Causal::Equal => Causal::Equal,
                Causal::After => Causal::Before,
                Causal::Before => Causal::After,
                Causal::Concurrent => Causal::Concurrent,
            };
            prop_assert_eq!(b.compare(&a), mirrored);
            if a.compare(&b) == Causal::Equal {
                prop_assert_eq!(&a, &b);
            }
        }
    }
}
