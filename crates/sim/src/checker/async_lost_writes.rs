//! No acknowledged async write is lost: at the end each acknowledged write is the key's
//! version or superseded by a version with a higher HLC, in every region.
//!
//! Property: the durability promise of an async keyspace (a write is acknowledged once a
//! majority of its region has it durable), checked like Jepsen's set-full ("an acknowledged
//! element must be present in every later read"), where for a register "present" means "not
//! replaced by anything older".

use std::collections::BTreeMap;

use meridian_crdt::Versioned;

use crate::history::Op;

/// `finals`: per region, each key's converged version.
pub fn check(
    history: &[Op],
    finals: &BTreeMap<String, BTreeMap<String, Option<Versioned>>>,
) -> Vec<String> {
    let mut violations = Vec::new();
    for op in history {
        let Some(hlc) = op.written_hlc() else {
            continue;
        };
        // Nothing left can be a purged tombstone: fine if some delete of the key, acknowledged
        // with a stamp at least this write's or of unknown outcome, could have superseded it.
        let deleted_later = history.iter().any(|d| {
            d.key == op.key
                && matches!(d.call, crate::history::Call::Write(None))
                && (d.unknown_write() || d.written_hlc().is_some_and(|h| h >= hlc))
        });
        for (region, keys) in finals {
            let kept = keys.get(&op.key).cloned().flatten();
            if kept.is_none() && deleted_later {
                continue;
            }
            if kept.as_ref().is_none_or(|v| v.hlc < hlc) {
                violations.push(format!(
                    "client {}'s acknowledged write {:?} of key {:?} (HLC {hlc:?}) is lost in {region}: it holds {:?}",
                    op.client,
                    op.call,
                    op.key,
                    kept.map(|v| v.hlc)
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{op, Call, Ret};
    use meridian_crdt::{Hlc, RegionTag};

    // Goal: a region holding an older version than an acknowledged write fails; a newer one
    // passes.
    #[test]
    fn an_older_final_version_loses_the_write() {
        let h = |t| Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of("us-east-1"),
        };
        let history = vec![op(
            1,
            Call::Write(Some("x".into())),
            0,
            Some((5, Ret::Written { hlc: h(5) })),
        )];
        let region = |t| -> BTreeMap<String, Option<Versioned>> {
            [(
                "k".to_string(),
                Some(Versioned::lww(h(t), None, Default::default())),
            )]
            .into_iter()
            .collect()
        };
        let mut finals = BTreeMap::new();
        finals.insert("us-east-1".to_string(), region(6));
        assert!(check(&history, &finals).is_empty());
        finals.insert("eu-west-1".to_string(), region(4));
        let v = check(&history, &finals);
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("eu-west-1"), "{v:?}");
        // Nothing left loses the write, unless a later delete's tombstone was purged.
        let empty: BTreeMap<String, BTreeMap<String, Option<Versioned>>> = BTreeMap::from([(
            "us-east-1".to_string(),
            BTreeMap::from([("k".to_string(), None)]),
        )]);
        assert_eq!(check(&history, &empty).len(), 1);
        let mut deleted = history.clone();
        deleted.push(op(
            2,
            Call::Write(None),
            6,
            Some((7, Ret::Written { hlc: h(7) })),
        ));
        assert!(check(&deleted, &empty).is_empty());
    }
}
