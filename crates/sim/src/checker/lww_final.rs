//! Last-writer-wins picks the highest HLC: after convergence each key's version is the
//! acknowledged write (put or delete) with the highest HLC, or a write whose outcome the client
//! never learned with a higher one.
//!
//! Property: the LWW register's specification (Shapiro et al., "A comprehensive study of
//! Convergent and Commutative Replicated Data Types", INRIA RR-7506, 2011, §3.2.1): the value
//! is the one with the greatest timestamp. Writes with unknown outcomes may or may not have
//! taken effect, so they may win, but only with a value one of them wrote.

use std::collections::BTreeMap;

use meridian_crdt::Versioned;

use crate::history::{by_key, Call, Op};

/// `finals`: each key's converged version (`None`: never written anywhere).
pub fn check(history: &[Op], finals: &BTreeMap<String, Option<Versioned>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (key, ops) in by_key(history) {
        let best = ops
            .iter()
            .filter_map(|o| Some((o.written_hlc()?, *o)))
            .max_by_key(|(h, _)| *h);
        let Some(last) = finals.get(key) else {
            violations.push(format!("key {key:?} was not read at the end"));
            continue;
        };
        let Some(last) = last else {
            // Nothing left: a purged tombstone, if the winning write was a delete (acknowledged,
            // or one whose outcome is unknown and may have won).
            let purged_delete = best.is_some_and(|(_, w)| w.call == Call::Write(None))
                || ops
                    .iter()
                    .any(|o| o.unknown_write() && o.call == Call::Write(None));
            if let (Some((h, w)), false) = (best, purged_delete) {
                violations.push(format!(
                    "key {key:?} holds nothing at the end, but client {} was told its write (HLC {h:?}) succeeded",
                    w.client
                ));
            }
            continue;
        };
        let final_value = last
            .value
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        match best {
            Some((h, w)) if last.hlc == h => {
                if w.call != Call::Write(final_value.clone()) {
                    violations.push(format!(
                        "key {key:?} ends with HLC {h:?} of client {}'s write {:?} but holds {final_value:?}",
                        w.client, w.call
                    ));
                }
            }
            Some((h, w)) if last.hlc < h => violations.push(format!(
                "key {key:?} ends with HLC {:?} ({final_value:?}), below the HLC {h:?} of client {}'s acknowledged write {:?}: last-writer-wins kept a lower stamp",
                last.hlc, w.client, w.call
            )),
            // Higher than every acknowledged write (or none was): an unknown-outcome write.
            _ => {
                let candidate = ops
                    .iter()
                    .any(|o| o.unknown_write() && o.call == Call::Write(final_value.clone()));
                if !candidate {
                    violations.push(format!(
                        "key {key:?} ends with {final_value:?} at HLC {:?}, above every acknowledged write, yet no unacknowledged write wrote it",
                        last.hlc
                    ));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{op, Ret};
    use meridian_crdt::{Hlc, RegionTag};

    fn hlc(t: u64, region: &str) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of(region),
        }
    }

    fn write(client: u64, v: Option<&str>, h: Option<Hlc>) -> Op {
        let ret = h.map(|hlc| (10, Ret::Written { hlc }));
        op(client, Call::Write(v.map(String::from)), 0, ret)
    }

    fn finals(v: Option<Versioned>) -> BTreeMap<String, Option<Versioned>> {
        [("k".to_string(), v)].into_iter().collect()
    }

    // Goal: the highest acknowledged stamp passes; a lower stamp winning fails; a value no
    // write made fails; an unknown write may win with its own value; nothing left passes only
    // where a delete won (its tombstone purged).
    #[test]
    fn the_highest_stamp_must_win() {
        let (a, b) = (hlc(5, "us-east-1"), hlc(7, "eu-west-1"));
        let h = vec![write(1, Some("x"), Some(a)), write(2, None, Some(b))];
        let deleted = Versioned::lww(b, None, Default::default());
        assert!(check(&h, &finals(Some(deleted))).is_empty());
        let kept_x = Versioned::lww(a, Some(b"x".to_vec()), Default::default());
        let v = check(&h, &finals(Some(kept_x)));
        assert!(v[0].contains("below"), "{v:?}");
        let mut with_unknown = h.clone();
        with_unknown.push(write(3, Some("z"), None));
        let z = Versioned::lww(hlc(9, "us-west-2"), Some(b"z".to_vec()), Default::default());
        assert!(check(&with_unknown, &finals(Some(z.clone()))).is_empty());
        assert!(!check(&h, &finals(Some(z))).is_empty());
        // Nothing left: a purged tombstone when the delete won, a lost value when a put did.
        assert!(check(&h, &finals(None)).is_empty());
        let put_won = vec![write(1, Some("x"), Some(b)), write(2, None, Some(a))];
        assert!(check(&put_won, &finals(None))[0].contains("holds nothing"));
    }
}
