//! Add-wins observed-remove sets: an element is in the set while some add of it has not been
//! seen by a remove; an add concurrent with a remove wins.
//!
//! Each add gets a dot; the set keeps, per element, the dots of the adds no later operation on
//! that element has observed, and a causal context of every dot seen. A remove drops the dots
//! it observes (the context keeps them, so the removal is remembered without a tombstone per
//! element); an add replaces its element's observed dots with its own. Merging keeps a dot
//! unless the other replica has seen it and dropped it. Reference: Bieniusa, Zawirski et al.,
//! "An optimized conflict-free replicated set" (2012), the OR-set without tombstones.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hlc::RegionTag;
use crate::vv::{Dot, VersionVector};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    entries: BTreeMap<Vec<u8>, BTreeSet<Dot>>,
    context: VersionVector,
}

impl OrSet {
    pub fn new() -> OrSet {
        OrSet::default()
    }

    /// The members, sorted.
    pub fn members(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(Vec::as_slice)
    }

    pub fn contains(&self, element: &[u8]) -> bool {
        self.entries.contains_key(element)
    }

    /// The dots of `element`'s live adds (what a remove here would observe).
    pub fn dots(&self, element: &[u8]) -> BTreeSet<Dot> {
        self.entries.get(element).cloned().unwrap_or_default()
    }

    /// Adds `element` in `region`; returns the add's dot.
    pub fn add(&mut self, region: RegionTag, element: Vec<u8>) -> Dot {
        let dot = self.context.next(region);
        self.entries.insert(element, BTreeSet::from([dot]));
        dot
    }

    /// Removes `element` as this replica sees it: adds it has not seen survive.
    pub fn remove(&mut self, element: &[u8]) {
        self.entries.remove(element);
    }

    pub fn merge(&mut self, other: &OrSet) {
        let keys: BTreeSet<Vec<u8>> = self
            .entries
            .keys()
            .chain(other.entries.keys())
            .cloned()
            .collect();
        for k in keys {
            let mine = self.entries.get(&k).cloned().unwrap_or_default();
            let theirs = other.entries.get(&k).cloned().unwrap_or_default();
            let kept: BTreeSet<Dot> = mine
                .iter()
                .filter(|d| theirs.contains(d) || !other.context.contains(**d))
                .chain(theirs.iter().filter(|d| !self.context.contains(**d)))
                .copied()
                .collect();
            if kept.is_empty() {
                self.entries.remove(&k);
            } else {
                self.entries.insert(k, kept);
            }
        }
        self.context.merge(&other.context);
        debug_assert!(
            self.entries
                .values()
                .flatten()
                .all(|d| self.context.contains(*d)),
            "every live dot is in the context"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(i: u64) -> RegionTag {
        RegionTag(i)
    }

    fn members(s: &OrSet) -> Vec<String> {
        s.members()
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect()
    }

    // Goal: a remove drops what it saw; an add concurrent with a remove survives it; a removal
    // is not undone by merging an older state back in.
    #[test]
    fn concurrent_add_wins_and_removal_sticks() {
        let mut a = OrSet::new();
        a.add(r(1), b"x".to_vec());
        let mut b = a.clone();
        b.remove(b"x");
        a.add(r(1), b"x".to_vec()); // concurrent with b's remove
        let mut m = b.clone();
        m.merge(&a);
        assert_eq!(members(&m), vec!["x"], "add wins");
        let mut gone = OrSet::new();
        gone.add(r(2), b"y".to_vec());
        let old = gone.clone();
        gone.remove(b"y");
        gone.merge(&old);
        assert!(
            !gone.contains(b"y"),
            "an older state does not bring it back"
        );
    }

    /// Operations: (replica/region, element, add or remove).
    fn arb_ops() -> impl Strategy<Value = Vec<(usize, u8, bool)>> {
        proptest::collection::vec((0usize..3, 0u8..4, any::<bool>()), 1..30)
    }

    proptest! {
        // Goal: replicas that exchange states in any order converge; an element ends present
        // exactly when some add of it was observed by no later operation on it; merge is
        // commutative, associative and idempotent.
        #[test]
        fn replicas_converge_to_the_unobserved_adds(ops in arb_ops(), gossip in proptest::collection::vec((0usize..3, 0usize..3), 0..30)) {
            let mut replicas = vec![OrSet::new(), OrSet::new(), OrSet::new()];
            let mut adds: Vec<(u8, Dot)> = Vec::new();
            let mut observed: BTreeSet<Dot> = BTreeSet::new();
            let mut snapshots = Vec::new();
            for (i, (k, e, is_add)) in ops.iter().enumerate() {
                let el = vec![*e];
                observed.extend(replicas[*k].dots(&el));
                if *is_add {
                    let d = replicas[*k].add(r(*k as u64), el);
                    adds.push((*e, d));
                } else {
                    replicas[*k].remove(&el);
                }
                snapshots.push(replicas[*k].clone());
                if let Some((from, to)) = gossip.get(i) {
                    let s = replicas[*from].clone();
                    replicas[*to].merge(&s);
                }
            }
            let join = |x: &OrSet, y: &OrSet| { let mut m = x.clone(); m.merge(y); m };
            let all = replicas.iter().fold(OrSet::new(), |acc, x| join(&acc, x));
            for x in &replicas {
                let mut y = join(x, &all);
                y.merge(x);
                prop_assert_eq!(&y, &all);
            }
            let expected: BTreeSet<Vec<u8>> = adds
                .iter()
                .filter(|(_, d)| !observed.contains(d))
                .map(|(e, _)| vec![*e])
                .collect();
            let got: BTreeSet<Vec<u8>> = all.members().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(got, expected);
            if snapshots.len() >= 3 {
                let (a, b, c) = (&snapshots[0], &snapshots[snapshots.len() / 2], &snapshots[snapshots.len() - 1]);
                prop_assert_eq!(join(a, b), join(b, a));
                prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
                prop_assert_eq!(join(a, a), a.clone());
            }
        }
    }
}
