//! Sets hold exactly the elements whose last add was not observed by a later remove. In the
//! simulation each element belongs to one client process, which updates it only through its
//! own region, so its acknowledged operations are causally ordered (a region orders its log)
//! and the last acknowledged one decides, unless an operation whose outcome the client never
//! learned took effect after it (any of those may).
//!
//! Property: the add-wins observed-remove set's specification (Bieniusa, Zawirski et al., "An
//! optimized conflict-free replicated set", 2012): an element is present iff some add of it
//! has not been observed by a remove; with operations ordered, that is the last one's effect.
//! A resurrected element, a lost add or a region that differs fails it.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Op, Ret};

/// `finals`: region -> key -> the set's members there.
pub fn check(
    history: &[Op],
    finals: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Vec<String> {
    // (key, element) -> (the effect of the last acknowledged op, effects of unknown ops).
    let mut ops: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    for op in history {
        match &op.call {
            Call::SetAdd(e) | Call::SetRemove(e) => ops.entry((&op.key, e)).or_default().push(op),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for ((key, element), mut list) in ops {
        list.sort_by_key(|o| o.invoked_us);
        let adds = |o: &Op| matches!(o.call, Call::SetAdd(_));
        let last_acked = list
            .iter()
            .rev()
            .find(|o| matches!(o.returned, Some((_, Ret::SetUpdated))));
        let mut allowed = BTreeSet::new();
        match last_acked {
            Some(o) => {
                allowed.insert(adds(o));
            }
            // Nothing acknowledged: absent unless an unknown add took effect.
            None => {
                allowed.insert(false);
            }
        }
        for o in list.iter().filter(|o| o.returned.is_none()) {
            allowed.insert(adds(o));
        }
        for (region, sets) in finals {
            let present = sets.get(key).is_some_and(|m| m.contains(element));
            if !allowed.contains(&present) {
                problems.push(format!(
                    "set {key:?} in {region} {} {element:?}, but its owner's last acknowledged operation was {} ({} indeterminate ones)",
                    if present { "holds" } else { "lacks" },
                    last_acked.map_or("none".to_string(), |o| format!("{:?}", o.call)),
                    list.iter().filter(|o| o.returned.is_none()).count()
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, t: u64, acked: bool) -> Op {
        Op {
            client: 1,
            key: "s".into(),
            call,
            invoked_us: t,
            returned: acked.then_some((t + 1, Ret::SetUpdated)),
        }
    }

    fn finals(members: &[&str]) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
        let m: BTreeSet<String> = members.iter().map(|s| s.to_string()).collect();
        BTreeMap::from([(
            "us-east-1".to_string(),
            BTreeMap::from([("s".to_string(), m)]),
        )])
    }

    // Goal: the last acknowledged operation decides; an indeterminate one may; a resurrected
    // or lost element is reported.
    #[test]
    fn the_last_acknowledged_operation_decides() {
        let h = vec![
            op(Call::SetAdd("x".into()), 1, true),
            op(Call::SetRemove("x".into()), 5, true),
            op(Call::SetAdd("y".into()), 6, true),
        ];
        assert!(check(&h, &finals(&["y"])).is_empty());
        let v = check(&h, &finals(&["x", "y"]));
        assert!(v[0].contains("holds \"x\""), "{v:?}");
        assert!(check(&h, &finals(&[]))[0].contains("lacks \"y\""));
        let mut unknown = h.clone();
        unknown.push(op(Call::SetAdd("x".into()), 9, false));
        assert!(check(&unknown, &finals(&["x", "y"])).is_empty());
        assert!(check(&unknown, &finals(&["y"])).is_empty());
    }
}
