//! Multi-value registers: concurrent writes are kept side by side (siblings) instead of one
//! silently replacing the other; a write that has seen siblings replaces exactly those.
//!
//! Each sibling carries the dot of the write that made it; the register's causal context is
//! the version vector of every write it has seen (kept or replaced). A write names the context
//! its client read: it replaces the siblings that context covers and adds its own dot. Merging
//! two replicas keeps a sibling unless the other replica has seen its dot and dropped it.
//! Reference: Almeida, Baquero et al., "Scalable and Accurate Causality Tracking for
//! Eventually Consistent Stores" (DAIS 2014), the dotted version vector set.

use serde::{Deserialize, Serialize};

use crate::hlc::{Hlc, RegionTag};
use crate::vv::{Dot, VersionVector};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvRegister {
    /// Sorted by dot.
    siblings: Vec<Sibling>,
    context: VersionVector,
}

/// One write kept in the register: its dot, its HLC (to report conflicts) and its value
/// (`None`: a delete kept as a sibling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    pub dot: Dot,
    pub hlc: Hlc,
    pub value: Option<Vec<u8>>,
}

impl MvRegister {
    pub fn new() -> MvRegister {
        MvRegister::default()
    }

    /// The siblings, in dot order.
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// Every write this replica has seen: what a client sends back to replace what it read.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// A write in `region` (stamped `hlc`) by a client that read `seen` (empty: it read
    /// nothing): replaces the siblings `seen` covers, keeps the rest (they are concurrent with
    /// it). Returns the write's dot and the siblings kept beside it.
    pub fn write(
        &mut self,
        region: RegionTag,
        hlc: Hlc,
        seen: &VersionVector,
        value: Option<Vec<u8>>,
    ) -> (Dot, Vec<Sibling>) {
        let dot = self.context.next(region);
        self.siblings.retain(|s| !seen.contains(s.dot));
        debug_assert!(
            self.siblings.iter().all(|s| s.dot != dot),
            "a new dot is new"
        );
        let concurrent = self.siblings.clone();
        self.siblings.push(Sibling { dot, hlc, value });
        self.siblings.sort_by_key(|s| s.dot);
        (dot, concurrent)
    }

    /// Keeps each sibling the other replica has too, or has not seen (so has not replaced).
    /// Returns the pairs of siblings that meet here for the first time: one kept from here and
    /// one new from the other side (concurrent writes, now siblings).
    pub fn merge(&mut self, other: &MvRegister) -> Vec<(Sibling, Sibling)> {
        let has = |r: &MvRegister, d: Dot| r.siblings.iter().any(|s| s.dot == d);
        let mine: Vec<Sibling> = self
            .siblings
            .iter()
            .filter(|s| has(other, s.dot) || !other.context.contains(s.dot))
            .cloned()
            .collect();
        let theirs: Vec<Sibling> = other
            .siblings
            .iter()
            .filter(|s| !has(self, s.dot) && !self.context.contains(s.dot))
            .cloned()
            .collect();
        // Every sibling kept from here is concurrent with every new one kept (both survive);
        // the pair is new here exactly because the second of them just arrived.
        let mut met = Vec::new();
        for a in &mine {
            for b in &theirs {
                met.push((a.clone(), b.clone()));
            }
        }
        let mut kept = mine;
        kept.extend(theirs);
        kept.sort_by_key(|s| s.dot);
        kept.dedup_by_key(|s| s.dot);
        self.siblings = kept;
        self.context.merge(&other.context);
        debug_assert!(
            self.siblings.iter().all(|s| self.context.contains(s.dot)),
            "every sibling's dot is in the context"
        );
        met
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{h, r};
    use proptest::prelude::*;

    fn values(m: &MvRegister) -> Vec<String> {
        m.siblings()
            .iter()
            .map(|s| String::from_utf8(s.value.clone().unwrap_or_default()).unwrap())
            .collect()
    }

    // Goal: concurrent writes become siblings; a write that read both replaces both; a write
    // that read only one replaces only that one.
    #[test]
    fn concurrent_writes_are_kept_and_replaced_by_what_saw_them() {
        let mut a = MvRegister::new();
        let mut b = MvRegister::new();
        a.write(r(1), h(1), &VersionVector::new(), Some(b"x".to_vec()));
        b.write(r(2), h(2), &VersionVector::new(), Some(b"y".to_vec()));
        let mut m = a.clone();
        let met = m.merge(&b);
        assert_eq!(met.len(), 1, "x and y meet once");
        assert!(m.clone().merge(&b).is_empty(), "and only once");
        assert_eq!(values(&m), vec!["x", "y"]);
        let mut resolved = m.clone();
        resolved.write(r(1), h(3), &m.context().clone(), Some(b"z".to_vec()));
        assert_eq!(values(&resolved), vec!["z"]);
        // b, still holding only y, learns of the resolution: y goes, z stays.
        let mut b2 = b.clone();
        b2.merge(&resolved);
        assert_eq!(values(&b2), vec!["z"]);
        // A write that saw only x leaves y.
        let mut partial = m.clone();
        partial.write(r(2), h(4), &a.context().clone(), Some(b"w".to_vec()));
        assert_eq!(values(&partial), vec!["y", "w"]);
    }

    /// Writes: (region, whether the client read first).
    fn arb_writes() -> impl Strategy<Value = Vec<(u64, bool)>> {
        proptest::collection::vec((0u64..3, any::<bool>()), 1..20)
    }

    proptest! {
        // Goal: replicas that exchange states in any order, with duplicates, end equal, holding
        // exactly the writes no other write replaced; merge is commutative, associative and
        // idempotent.
        #[test]
        fn replicas_converge(writes in arb_writes(), order in proptest::collection::vec((0usize..3, 0usize..3), 0..30)) {
            let mut replicas = vec![MvRegister::new(), MvRegister::new(), MvRegister::new()];
            let mut snapshots = Vec::new();
            let mut made: Vec<(Dot, VersionVector)> = Vec::new();
            for (i, (region, read_first)) in writes.iter().enumerate() {
                let k = *region as usize;
                let seen = if *read_first { replicas[k].context().clone() } else { VersionVector::new() };
                let (dot, _) = replicas[k].write(r(*region), h(i as u64), &seen, Some(format!("v{i}").into_bytes()));
                made.push((dot, seen));
                snapshots.push(replicas[k].clone());
                // Some gossip between writes.
                if let Some((from, to)) = order.get(i) {
                    let s = replicas[*from].clone();
                    replicas[*to].merge(&s);
                }
            }
            let join = |x: &MvRegister, y: &MvRegister| { let mut m = x.clone(); m.merge(y); m };
            let all = replicas.iter().fold(MvRegister::new(), |acc, x| join(&acc, x));
            // The siblings are exactly the writes no other write saw (and so replaced); a blind
            // write replaces nothing, even of its own region.
            let mut maximal: Vec<Dot> = made
                .iter()
                .filter(|(d, _)| !made.iter().any(|(_, seen)| seen.contains(*d)))
                .map(|(d, _)| *d)
                .collect();
            maximal.sort();
            let kept: Vec<Dot> = all.siblings().iter().map(|s| s.dot).collect();
            prop_assert_eq!(kept, maximal);
            for x in &replicas {
                // Every replica, given everything, ends in the same state (duplicates included).
                let mut y = join(x, &all);
                y.merge(x);
                prop_assert_eq!(&y, &all);
            }
            if snapshots.len() >= 3 {
                let (a, b, c) = (&snapshots[0], &snapshots[snapshots.len() / 2], &snapshots[snapshots.len() - 1]);
                prop_assert_eq!(join(a, b), join(b, a));
                prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
                prop_assert_eq!(join(a, a), a.clone());
            }
        }
    }
}
