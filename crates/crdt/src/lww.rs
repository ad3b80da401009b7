//! Last-writer-wins registers: every write of an async keyspace carries its HLC, and the
//! version with the highest HLC is the value, whatever order the versions arrive in.
//!
//! A delete is a version too (a tombstone, `value: None`), so a delete that wins is never
//! undone by an older put arriving late. Merging is commutative, associative and idempotent
//! (property-tested below), which is what lets shipping retry, duplicate and reorder.

use crate::row::Versioned;

/// Whether `incoming` replaces `stored` (absent: anything replaces it). Two versions with one
/// HLC are one write (HLCs are unique per region and ordered by region last), so an equal
/// stamp is a duplicate and changes nothing.
pub fn wins(incoming: &Versioned, stored: Option<&Versioned>) -> bool {
    match stored {
        None => true,
        Some(s) => {
            debug_assert!(
                incoming.hlc != s.hlc || incoming.value == s.value,
                "two different writes share the HLC {:?}",
                s.hlc
            );
            incoming.hlc > s.hlc
        }
    }
}

/// The merge of two versions of one key: the higher HLC.
pub fn merge(a: Option<Versioned>, b: Option<Versioned>) -> Option<Versioned> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(if wins(&b, Some(&a)) { b } else { a }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::hlc::RegionTag;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn v(physical_ms: u64, logical: u32, region: &str, value: Option<&str>) -> Versioned {
        Versioned::lww(
            Hlc {
                physical_ms,
                logical,
                origin: RegionTag::of(region),
            },
            value.map(|s| s.as_bytes().to_vec()),
            crate::vv::VersionVector::new(),
        )
    }

    // Goal: the higher stamp wins whichever arrives first; a late older put does not undo a
    // delete; a duplicate changes nothing.
    #[test]
    fn highest_stamp_wins_and_deletes_stick() {
        let put = v(10, 0, "us-east-1", Some("a"));
        let del = v(11, 0, "eu-west-1", None);
        assert!(wins(&del, Some(&put)));
        assert!(!wins(&put, Some(&del)));
        assert!(!wins(&del, Some(&del)), "a duplicate is not a change");
        assert_eq!(
            merge(Some(del.clone()), Some(put.clone())),
            Some(del.clone())
        );
        assert_eq!(merge(Some(put), Some(del.clone())), Some(del));
        assert!(wins(&v(1, 0, "x", Some("b")), None));
    }

    /// A write as the property tests deliver it: key, stamp, value. Stamps are unique per
    /// (physical, logical, region), so a generated stamp names exactly one write.
    fn writes() -> impl Strategy<Value = Vec<(u8, Versioned)>> {
        proptest::collection::btree_map(
            (0u64..20, 0u32..3, 0usize..3),
            (0u8..4, proptest::option::of(0u8..50)),
            1..40,
        )
        .prop_map(|m| {
            let regions = ["us-east-1", "us-west-2", "eu-west-1"];
            m.into_iter()
                .map(|((p, l, r), (key, val))| {
                    let value = val.map(|x| format!("{x}-{p}-{l}-{r}"));
                    (key, v(p, l, regions[r], value.as_deref()))
                })
                .collect()
        })
    }

    fn apply(state: &mut BTreeMap<u8, Versioned>, key: u8, w: &Versioned) {
        let merged = merge(state.remove(&key), Some(w.clone()));
        state.insert(key, merged.expect("merging a version yields one"));
    }

    proptest! {
        // Goal: any delivery order, with duplicates, converges to the same state: the highest
        // stamp of each key.
        #[test]
        fn any_order_with_duplicates_converges(ws in writes(), seed in any::<u64>(), dups in 0usize..20) {
            let mut reference = BTreeMap::new();
            for (k, w) in &ws {
                apply(&mut reference, *k, w);
            }
            let mut delivered: Vec<&(u8, Versioned)> = ws.iter().collect();
            for i in 0..dups.min(ws.len()) {
                delivered.push(&ws[i * 7 % ws.len()]);
            }
            // A deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..delivered.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                delivered.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut state = BTreeMap::new();
            for (k, w) in delivered {
                apply(&mut state, *k, w);
            }
            prop_assert_eq!(&state, &reference);
            for (k, final_version) in &state {
                let highest = ws.iter().filter(|(key, _)| key == k).map(|(_, w)| w.hlc).max();
                prop_assert_eq!(Some(final_version.hlc), highest);
            }
        }

        // Goal: merge is commutative, associative and idempotent.
        #[test]
        fn merge_laws(ws in writes()) {
            let vs: Vec<Option<Versioned>> = ws.into_iter().map(|(_, w)| Some(w)).take(3).collect();
            let a = vs.first().cloned().flatten();
            let b = vs.get(1).cloned().flatten();
            let c = vs.get(2).cloned().flatten();
            prop_assert_eq!(merge(a.clone(), b.clone()), merge(b.clone(), a.clone()));
            prop_assert_eq!(
                merge(merge(a.clone(), b.clone()), c.clone()),
                merge(a.clone(), merge(b.clone(), c.clone()))
            );
            prop_assert_eq!(merge(a.clone(), a.clone()), a);
        }
    }
}
