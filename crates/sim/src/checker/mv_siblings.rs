//! Multi-value registers keep exactly the maximal writes. Two shapes of key are written:
//!
//! - a process's own register, written only through its own region without a context
//!   (replacing what the region holds): its writes are causally ordered, so the register must
//!   end, in every region, with exactly one sibling: the last acknowledged write, or one whose
//!   outcome the client never learned;
//! - a duel key, written once by each of two regions: if each write was acknowledged before
//!   the other could have reached its region, they are concurrent and both must remain; one
//!   alone is allowed only if it could have seen the other (or the other may never have
//!   happened).
//!
//! Property: a dotted version vector set keeps the writes no other write has seen (Almeida,
//! Baquero et al., "Scalable and Accurate Causality Tracking for Eventually Consistent
//! Stores", DAIS 2014); of causally ordered writes that is the last, of concurrent ones all.
//! An extra sibling (a replaced write brought back), a lost write, a concurrent write
//! swallowed, or a region that differs fails it.

use std::collections::{BTreeMap, BTreeSet};

use meridian_crdt::RegionTag;

use crate::history::{Call, Op, Ret};

fn value(o: &Op) -> String {
    match &o.call {
        Call::MvPut(v) => v.clone(),
        _ => unreachable!("only register writes"),
    }
}

fn acked(o: &Op) -> Option<RegionTag> {
    match &o.returned {
        Some((_, Ret::MvWritten { hlc })) => Some(hlc.origin),
        _ => None,
    }
}

/// `finals`: region -> key -> the register's sibling values there. `fastest_us(a, b)`: the
/// least time a write of region `a` takes to reach region `b`.
pub fn check(
    history: &[Op],
    finals: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    fastest_us: impl Fn(RegionTag, RegionTag) -> u64,
) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if let Call::MvPut(_) = op.call {
            by_key.entry(&op.key).or_default().push(op);
        }
    }
    let mut problems = Vec::new();
    for (key, mut ops) in by_key {
        ops.sort_by_key(|o| o.invoked_us);
        let allowed: Vec<BTreeSet<String>> = match ops.as_slice() {
            [a, b] if a.client != b.client => duel(a, b, &fastest_us),
            _ => owned(&ops),
        };
        for (region, registers) in finals {
            let siblings: BTreeSet<String> = registers
                .get(key)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            if !allowed.contains(&siblings) {
                problems.push(format!(
                    "register {key:?} in {region} holds the siblings {siblings:?}, but its writes ({}) allow only one of {allowed:?}",
                    ops.iter()
                        .map(|o| format!(
                            "{:?} {}",
                            value(o),
                            if acked(o).is_some() { "acknowledged" } else { "indeterminate" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    problems
}

/// One process's ordered writes: the last acknowledged one alone, or an indeterminate one
/// alone, or nothing if none was acknowledged.
fn owned(ops: &[&Op]) -> Vec<BTreeSet<String>> {
    let last_acked = ops.iter().rev().find(|o| acked(o).is_some());
    let mut allowed: Vec<BTreeSet<String>> = ops
        .iter()
        .filter(|o| o.returned.is_none())
        .map(|o| BTreeSet::from([value(o)]))
        .collect();
    match last_acked {
        Some(o) => allowed.push(BTreeSet::from([value(o)])),
        None => allowed.push(BTreeSet::new()),
    }
    allowed
}

/// Two regions' single writes of one key.
fn duel(
    a: &Op,
    b: &Op,
    fastest_us: &impl Fn(RegionTag, RegionTag) -> u64,
) -> Vec<BTreeSet<String>> {
    // `x` alone remains only if `x` replaced `y`, so `x`'s region held `y` before `x` was
    // stamped, or if `y` never took effect.
    let alone = |x: &Op, y: &Op| match (acked(x), acked(y)) {
        (_, None) | (None, _) => true,
        (Some(ox), Some(oy)) => x.returned_us() >= y.invoked_us + fastest_us(oy, ox),
    };
    let mut allowed = vec![BTreeSet::from([value(a), value(b)])];
    if alone(a, b) {
        allowed.push(BTreeSet::from([value(a)]));
    }
    if alone(b, a) {
        allowed.push(BTreeSet::from([value(b)]));
    }
    if acked(a).is_none() && acked(b).is_none() {
        allowed.push(BTreeSet::new());
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    use meridian_crdt::Hlc;

    fn put(v: &str, t: u64, acked: bool) -> Op {
        put_from(1, "us-east-1", v, t, t + 1, acked)
    }

    fn put_from(client: u64, region: &str, v: &str, t: u64, done: u64, acked: bool) -> Op {
        let hlc = Hlc {
            physical_ms: done,
            logical: 0,
            origin: RegionTag::of(region),
        };
        Op {
            client,
            key: "m".into(),
            call: Call::MvPut(v.into()),
            invoked_us: t,
            returned: acked.then_some((done, Ret::MvWritten { hlc })),
        }
    }

    fn fastest(_: RegionTag, _: RegionTag) -> u64 {
        40_000
    }

    fn finals(siblings: &[&str]) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let s = siblings.iter().map(|v| v.to_string()).collect();
        BTreeMap::from([(
            "eu-west-1".to_string(),
            BTreeMap::from([("m".to_string(), s)]),
        )])
    }

    fn check_(h: &[Op], f: &BTreeMap<String, BTreeMap<String, Vec<String>>>) -> Vec<String> {
        check(h, f, fastest)
    }

    // Goal: two regions' concurrent writes must both remain; one alone only if it could have
    // seen the other, or the other is indeterminate.
    #[test]
    fn concurrent_writes_of_two_regions_both_remain() {
        let h = vec![
            put_from(1, "us-east-1", "x", 0, 10_000, true),
            put_from(2, "eu-west-1", "y", 1_000, 11_000, true),
        ];
        assert!(check_(&h, &finals(&["x", "y"])).is_empty());
        let v = check_(&h, &finals(&["y"]));
        assert!(v[0].contains("\"x\" acknowledged"), "{v:?}");
        assert!(!check_(&h, &finals(&["x"])).is_empty());
        // y began 60 ms after x was acknowledged: it may have seen and replaced x.
        let later = vec![
            put_from(1, "us-east-1", "x", 0, 10_000, true),
            put_from(2, "eu-west-1", "y", 70_000, 80_000, true),
        ];
        assert!(check_(&later, &finals(&["y"])).is_empty());
        assert!(!check_(&later, &finals(&["x"])).is_empty());
        assert!(check_(&later, &finals(&["x", "y"])).is_empty());
        let unknown = vec![
            put_from(1, "us-east-1", "x", 0, 10_000, true),
            put_from(2, "eu-west-1", "y", 1_000, 11_000, false),
        ];
        assert!(check_(&unknown, &finals(&["x"])).is_empty());
        assert!(!check_(&unknown, &finals(&[])).is_empty());
    }

    // Goal: the last acknowledged write alone passes (or an indeterminate one); a stale
    // sibling kept beside it, a lost write, or an older write alone is reported.
    #[test]
    fn ordered_writes_leave_one_sibling() {
        let h = vec![put("a", 1, true), put("b", 5, true)];
        assert!(check_(&h, &finals(&["b"])).is_empty());
        assert!(!check_(&h, &finals(&["a", "b"])).is_empty());
        assert!(!check_(&h, &finals(&["a"])).is_empty());
        assert!(!check_(&h, &finals(&[])).is_empty());
        let mut unknown = h.clone();
        unknown.push(put("c", 9, false));
        assert!(check_(&unknown, &finals(&["c"])).is_empty());
    }
}
