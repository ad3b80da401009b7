//! Multi-value registers keep exactly the maximal writes. In the simulation each register key
//! belongs to one client process, which writes it only through its own region without a
//! context (replacing what the region holds), so its writes are causally ordered and the
//! register must end, in every region, with exactly one sibling: the last acknowledged write,
//! or one whose outcome the client never learned.
//!
//! Property: a dotted version vector set keeps the writes no other write has seen (Almeida,
//! Baquero et al., "Scalable and Accurate Causality Tracking for Eventually Consistent
//! Stores", DAIS 2014); of causally ordered writes that is the last. An extra sibling (a
//! replaced write brought back), a lost write or a region that differs fails it.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Op, Ret};

/// `finals`: region -> key -> the register's sibling values there.
pub fn check(
    history: &[Op],
    finals: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
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
        let value = |o: &Op| match &o.call {
            Call::MvPut(v) => v.clone(),
            _ => unreachable!("only register writes"),
        };
        let last_acked = ops
            .iter()
            .rev()
            .find(|o| matches!(o.returned, Some((_, Ret::MvWritten))));
        let mut allowed: BTreeSet<String> = ops
            .iter()
            .filter(|o| o.returned.is_none())
            .map(|o| value(o))
            .collect();
        if let Some(o) = last_acked {
            allowed.insert(value(o));
        }
        for (region, registers) in finals {
            let siblings = registers.get(key).cloned().unwrap_or_default();
            let fine = match siblings.as_slice() {
                [] => last_acked.is_none(),
                [one] => allowed.contains(one),
                _ => false,
            };
            if !fine {
                problems.push(format!(
                    "register {key:?} in {region} holds the siblings {siblings:?}, but its owner's writes are ordered and the last acknowledged one wrote {:?} ({} indeterminate ones)",
                    last_acked.map(|o| value(o)),
                    ops.iter().filter(|o| o.returned.is_none()).count()
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str, t: u64, acked: bool) -> Op {
        Op {
            client: 1,
            key: "m".into(),
            call: Call::MvPut(v.into()),
            invoked_us: t,
            returned: acked.then_some((t + 1, Ret::MvWritten)),
        }
    }

    fn finals(siblings: &[&str]) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let s = siblings.iter().map(|v| v.to_string()).collect();
        BTreeMap::from([(
            "eu-west-1".to_string(),
            BTreeMap::from([("m".to_string(), s)]),
        )])
    }

    // Goal: the last acknowledged write alone passes (or an indeterminate one); a stale
    // sibling kept beside it, a lost write, or an older write alone is reported.
    #[test]
    fn ordered_writes_leave_one_sibling() {
        let h = vec![put("a", 1, true), put("b", 5, true)];
        assert!(check(&h, &finals(&["b"])).is_empty());
        assert!(!check(&h, &finals(&["a", "b"])).is_empty());
        assert!(!check(&h, &finals(&["a"])).is_empty());
        assert!(!check(&h, &finals(&[])).is_empty());
        let mut unknown = h.clone();
        unknown.push(put("c", 9, false));
        assert!(check(&unknown, &finals(&["c"])).is_empty());
    }
}
