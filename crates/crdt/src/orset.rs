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

use crate::hlc::Hlc;
use crate::vv::{Dot, VersionVector};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    /// Per element, the live adds: dot and HLC (the HLC only to report conflicts).
    entries: BTreeMap<Vec<u8>, BTreeMap<Dot, Hlc>>,
    context: VersionVector,
    /// The latest removes (at most [`REMOVES_KEPT`], newest by HLC), kept only to report a
    /// concurrent add that survives one; membership never depends on them.
    removes: Vec<Removal>,
}

/// Removes remembered per set to detect concurrent adds (older ones are forgotten: an add
/// concurrent with a remove that old is merged right but not reported).
pub const REMOVES_KEPT: usize = 64;

/// A remove: its operation's dot and HLC, the element, and what it had seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub dot: Dot,
    pub hlc: Hlc,
    pub element: Vec<u8>,
    pub seen: VersionVector,
}

/// An add that a concurrent remove did not see, and that therefore kept its element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddKept {
    pub element: Vec<u8>,
    pub dot: Dot,
    pub hlc: Hlc,
}

impl OrSet {
    pub fn new() -> OrSet {
        OrSet::default()
    }

    /// The members, sorted.
    pub fn members(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, element: &[u8]) -> bool {
        self.entries.contains_key(element)
    }

    /// The dots of `element`'s live adds (what a remove here would observe).
    pub fn dots(&self, element: &[u8]) -> BTreeSet<Dot> {
        self.entries
            .get(element)
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every operation seen.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// Applies operation `dot` (stamped `hlc`), which had seen `seen`: each element of
    /// `remove` loses the adds `seen` covers, each element of `add` has them replaced by this
    /// operation's add. Returns `None`, changing nothing, when the operation was applied
    /// already; otherwise the adds a remove did not see (they keep their element: add wins).
    ///
    /// The caller passes in `seen` every earlier operation of the dot's own region (a region
    /// orders its operations), so a remove after an add in one region does remove it.
    pub fn apply(
        &mut self,
        dot: Dot,
        hlc: Hlc,
        seen: &VersionVector,
        add: &[Vec<u8>],
        remove: &[Vec<u8>],
    ) -> Option<Vec<AddKept>> {
        if self.context.contains(dot) {
            return None;
        }
        debug_assert!(!seen.contains(dot), "an operation has not seen itself");
        let mut kept = Vec::new();
        for e in remove {
            self.removes.push(Removal {
                dot,
                hlc,
                element: e.clone(),
                seen: seen.clone(),
            });
            if let Some(dots) = self.entries.get_mut(e) {
                dots.retain(|d, _| !seen.contains(*d));
                kept.extend(dots.iter().map(|(d, h)| AddKept {
                    element: e.clone(),
                    dot: *d,
                    hlc: *h,
                }));
                if dots.is_empty() {
                    self.entries.remove(e);
                }
            }
        }
        for e in add {
            let dots = self.entries.entry(e.clone()).or_default();
            dots.retain(|d, _| !seen.contains(*d));
            dots.insert(dot, hlc);
        }
        self.context.add(dot);
        debug_assert!(self.context.contains(dot));
        self.trim_removes();
        Some(kept)
    }

    /// Adds `element` as `region`'s next operation, having seen this replica's state.
    pub fn add(&mut self, region: crate::hlc::RegionTag, hlc: Hlc, element: Vec<u8>) -> Dot {
        let dot = Dot {
            region,
            n: self.context.get(region) + 1,
        };
        let seen = self.context.clone();
        self.apply(dot, hlc, &seen, &[element], &[]);
        dot
    }

    /// Removes `element` as `region`'s next operation, having seen this replica's state:
    /// adds it has not seen survive.
    pub fn remove(&mut self, region: crate::hlc::RegionTag, hlc: Hlc, element: &[u8]) -> Dot {
        let dot = Dot {
            region,
            n: self.context.get(region) + 1,
        };
        let seen = self.context.clone();
        self.apply(dot, hlc, &seen, &[], &[element.to_vec()]);
        dot
    }

    /// The join of two replicas' states: a dot is kept unless one side has seen it and dropped
    /// it. Returns the adds that survive a concurrent remove met here: an element one side
    /// removed (it dropped an add it had seen) while the other side holds an add of it that
    /// the remover had not seen; each as (the surviving add, the removed add).
    pub fn merge(&mut self, other: &OrSet) -> Vec<(AddKept, AddKept)> {
        let keys: BTreeSet<Vec<u8>> = self
            .entries
            .keys()
            .chain(other.entries.keys())
            .cloned()
            .collect();
        // A remove meets an add it had not seen, which had not seen it either (its replica
        // had not merged the remove), for the first time here: one of the two is new here.
        let mut met = Vec::new();
        let has_removal = |set: &OrSet, r: &Removal| {
            set.removes
                .iter()
                .any(|x| x.dot == r.dot && x.element == r.element)
        };
        for (adds, removes, adds_ctx, new_adds) in [
            (&*self, other, &self.context, false),
            (other, &*self, &other.context, true),
        ] {
            for r in &removes.removes {
                let r_new = !has_removal(adds, r);
                let Some(dots) = adds.entries.get(&r.element) else {
                    continue;
                };
                for (d, h) in dots {
                    let add_new = new_adds
                        && !self
                            .entries
                            .get(&r.element)
                            .is_some_and(|m| m.contains_key(d));
                    if (r_new || add_new) && !r.seen.contains(*d) && !adds_ctx.contains(r.dot) {
                        met.push((
                            AddKept {
                                element: r.element.clone(),
                                dot: *d,
                                hlc: *h,
                            },
                            AddKept {
                                element: r.element.clone(),
                                dot: r.dot,
                                hlc: r.hlc,
                            },
                        ));
                    }
                }
            }
        }
        met.sort_by_key(|x| (x.0.dot, x.1.dot));
        met.dedup();
        for k in keys {
            let mine = self.entries.get(&k).cloned().unwrap_or_default();
            let theirs = other.entries.get(&k).cloned().unwrap_or_default();
            let kept: BTreeMap<Dot, Hlc> = mine
                .iter()
                .filter(|(d, _)| theirs.contains_key(d) || !other.context.contains(**d))
                .chain(theirs.iter().filter(|(d, _)| !self.context.contains(**d)))
                .map(|(d, h)| (*d, *h))
                .collect();
            if kept.is_empty() {
                self.entries.remove(&k);
            } else {
                self.entries.insert(k, kept);
            }
        }
        self.context.merge(&other.context);
        for r in &other.removes {
            if !has_removal(self, r) {
                self.removes.push(r.clone());
            }
        }
        self.trim_removes();
        debug_assert!(
            self.entries
                .values()
                .flat_map(|d| d.keys())
                .all(|d| self.context.contains(*d)),
            "every live dot is in the context"
        );
        met
    }

    /// Keeps the newest [`REMOVES_KEPT`] removes, in a canonical order (equal sets encode
    /// equally).
    fn trim_removes(&mut self) {
        self.removes
            .sort_by(|a, b| (b.hlc, b.dot, &b.element).cmp(&(a.hlc, a.dot, &a.element)));
        self.removes.truncate(REMOVES_KEPT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{h, r};
    use proptest::prelude::*;

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
        a.add(r(1), h(1), b"x".to_vec());
        let mut b = a.clone();
        b.remove(r(2), h(2), b"x");
        a.add(r(1), h(3), b"x".to_vec()); // concurrent with b's remove
        let mut m = b.clone();
        let met = m.merge(&a);
        assert_eq!(members(&m), vec!["x"], "add wins");
        assert_eq!(met.len(), 1, "the surviving add met the remove: {met:?}");
        assert_eq!(met[0].0.hlc, h(3));
        assert_eq!(met[0].1.hlc, h(2), "the remove");
        let mut gone = OrSet::new();
        gone.add(r(2), h(4), b"y".to_vec());
        let old = gone.clone();
        gone.remove(r(2), h(5), b"y");
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
                    let d = replicas[*k].add(r(*k as u64), h(i as u64), el);
                    adds.push((*e, d));
                } else {
                    replicas[*k].remove(r(*k as u64), h(i as u64), &el);
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
