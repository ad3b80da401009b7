//! No acknowledged write is lost: after the faults are over, every key holds the value of a
//! write that no acknowledged write to it followed in real time.
//!
//! Property: the "set-full" check of Jepsen (Kingsbury, jepsen.checker/set-full): an element
//! acknowledged as added must be present in every later read. For a register, the final value
//! must come from a write that was not already superseded, in real time, by an acknowledged
//! write: if write X completed before acknowledged write W began, X's value cannot be final.
//! The final values are read linearizably after the liveness phase, once every region is back,
//! so a write acknowledged before a whole region was lost must be there.

use std::collections::BTreeMap;

use crate::history::{by_key, Op};

/// `finals`: each key's value as read at the end (`None`: absent).
pub fn check(history: &[Op], finals: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (key, ops) in by_key(history) {
        let Some(last) = finals.get(key) else {
            violations.push(format!("key {key:?} was not read at the end"));
            continue;
        };
        let acked: Vec<&&Op> = ops.iter().filter(|o| o.acknowledged_write()).collect();
        let Some(value) = last else {
            if let Some(w) = acked.first() {
                violations.push(format!(
                    "key {key:?} is absent at the end, but client {} was told its write of {:?} succeeded at {}us",
                    w.client,
                    w.written().unwrap_or_default(),
                    w.returned_us()
                ));
            }
            continue;
        };
        let Some(writer) = ops.iter().find(|o| o.written() == Some(value.as_str())) else {
            violations.push(format!(
                "key {key:?} holds {value:?}, which no client wrote"
            ));
            continue;
        };
        for w in acked {
            if writer.returned_us() < w.invoked_us {
                violations.push(format!(
                    "key {key:?}: client {}'s write of {:?}, acknowledged at {}us, is lost: the key holds {value:?}, written before it began",
                    w.client,
                    w.written().unwrap_or_default(),
                    w.returned_us()
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Ret};

    fn put(client: u64, v: &str, from: u64, to: Option<u64>) -> Op {
        Op {
            client,
            key: "k".into(),
            call: Call::Put(v.into()),
            invoked_us: from,
            returned: to.map(|t| (t, Ret::Put)),
        }
    }

    fn finals(v: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([("k".to_string(), v.map(str::to_string))])
    }

    // Goal: the last acknowledged value, or a concurrent or unknown later write, passes.
    #[test]
    fn accepts_surviving_writes() {
        let h = vec![
            put(1, "a", 0, Some(10)),
            put(2, "b", 20, Some(30)),
            put(3, "c", 25, None),
        ];
        assert!(check(&h, &finals(Some("b"))).is_empty());
        assert!(check(&h, &finals(Some("c"))).is_empty());
    }

    // Goal: an acknowledged write overwritten by an older value, or vanished, is caught.
    #[test]
    fn rejects_lost_writes() {
        let h = vec![put(1, "a", 0, Some(10)), put(2, "b", 20, Some(30))];
        assert_eq!(check(&h, &finals(Some("a"))).len(), 1);
        assert_eq!(check(&h, &finals(None)).len(), 1);
        assert_eq!(check(&h, &finals(Some("zzz"))).len(), 1);
    }
}
