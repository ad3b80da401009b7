//! One key's stored state in an async keyspace, whatever its conflict type, and the merges
//! that report what they resolved.
//!
//! - `lww`: a value (or tombstone) with the HLC of the write that made it, the version vector
//!   of that write (every write it had seen, and itself) and `seen`, the join of every vector
//!   merged here. Two versions are concurrent exactly when neither vector covers the other;
//!   the higher HLC still wins, and the merge reports the conflict. A write's dot is (its
//!   region, its index in that region's log), so vectors need no coordination and never
//!   restart.
//! - `counter`, `set`, `mv`: the state-based types of this crate, merged by their joins; their
//!   operations are numbered per region by the type's own context.
//!
//! Rows are merged: a local write or operation, a shipped write, a repair or a whole shipped
//! row all go through [`merge`], [`apply_write`] or [`apply_op`]; each is deterministic, so
//! every replica of a group reaches the same row and reports the same conflicts.

use serde::{Deserialize, Serialize};

use crate::counter::{Overflow, PnCounter};
use crate::hlc::{Hlc, RegionTag};
use crate::lww;
use crate::mv::MvRegister;
use crate::orset::OrSet;
use crate::vv::{Causal, Dot, VersionVector};

/// The state of a key of a typed keyspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Typed {
    Counter(PnCounter),
    Set(OrSet),
    Mv(MvRegister),
}

impl Typed {
    pub fn type_name(&self) -> &'static str {
        match self {
            Typed::Counter(_) => "counter",
            Typed::Set(_) => "set",
            Typed::Mv(_) => "mv",
        }
    }
}

/// One key's state. For `lww` keys `typed` is `None` and `value` is the value (`None`: a
/// tombstone); for typed keys `value` is `None` and `typed` holds the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// `lww`: the winning write's HLC. Typed: the highest HLC of any operation merged.
    pub hlc: Hlc,
    pub value: Option<Vec<u8>>,
    /// `lww`: the winning write's version vector.
    #[serde(default)]
    pub vv: VersionVector,
    /// `lww`: every write merged into this row (winners and losers).
    #[serde(default)]
    pub seen: VersionVector,
    #[serde(default)]
    pub typed: Option<Typed>,
}

/// An operation on a typed key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Adds a signed amount to a counter.
    Incr(i64),
    /// Adds and removes members of a set (an element in both is refused before).
    Set {
        add: Vec<Vec<u8>>,
        remove: Vec<Vec<u8>>,
    },
    /// Writes a multi-value register (`None`: a delete). `context`: the causal context the
    /// client read (it replaces exactly the siblings that context covers); `None`: this
    /// region's current state (it replaces every sibling here).
    Mv {
        value: Option<Vec<u8>>,
        context: Option<VersionVector>,
    },
}

impl Op {
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Incr(_) => "counter",
            Op::Set { .. } => "set",
            Op::Mv { .. } => "mv",
        }
    }
}

/// Which rule resolved a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Lww,
    Mv,
    Set,
}

impl Rule {
    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::Lww => "lww",
            Rule::Mv => "mv",
            Rule::Set => "set",
        }
    }
}

/// One side of a conflict: the write's HLC (its origin region inside) and value (for a set,
/// the element; `None`: a delete or a remove).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    pub hlc: Hlc,
    pub value: Option<Vec<u8>>,
}

/// How a conflict was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Last writer wins: side `a` won.
    AWon,
    /// Last writer wins: side `b` won.
    BWon,
    /// Multi-value register: both kept as siblings.
    Siblings,
    /// Set: the add (side `a`) survived the concurrent remove (side `b`).
    AddWins,
}

/// Two concurrent writes a merge resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub rule: Rule,
    pub a: Side,
    pub b: Side,
    pub outcome: Outcome,
}

impl Conflict {
    /// An id derived from the two versions alone, so every region that detects the conflict
    /// gives it the same id, and distinct conflicts differ.
    pub fn id(&self) -> u64 {
        let side = |s: &Side| {
            let mut h = fnv(FNV_START, &s.hlc.physical_ms.to_be_bytes());
            h = fnv(h, &s.hlc.logical.to_be_bytes());
            h = fnv(h, &s.hlc.origin.0.to_be_bytes());
            match &s.value {
                Some(v) => fnv(fnv(h, &(v.len() as u64).to_be_bytes()), v),
                None => fnv(h, b"none"),
            }
        };
        let (x, y) = (side(&self.a), side(&self.b));
        let (lo, hi) = (x.min(y), x.max(y));
        let h = fnv(FNV_START, self.rule.as_str().as_bytes());
        fnv(fnv(h, &lo.to_be_bytes()), &hi.to_be_bytes())
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv(FNV_START, bytes)
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Why an operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    Overflow(Overflow),
    /// The key holds another type (a keyspace's type never changes, so only a bug or a
    /// hand-made command gets here).
    WrongType {
        stored: &'static str,
        op: &'static str,
    },
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Overflow(o) => write!(f, "{o}"),
            OpError::WrongType { stored, op } => {
                write!(f, "the key holds a {stored}, not a {op}")
            }
        }
    }
}

impl Versioned {
    /// A last-writer-wins version.
    pub fn lww(hlc: Hlc, value: Option<Vec<u8>>, vv: VersionVector) -> Versioned {
        Versioned {
            hlc,
            value,
            seen: vv.clone(),
            vv,
            typed: None,
        }
    }

    /// An `lww` delete that won: the only row that is not a value. Typed rows never are.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none() && self.typed.is_none()
    }

    /// What every region's replicas of an `lww` row must agree on once shipping has delivered
    /// every write: the winner (HLC, value) and its version vector. `seen` is not part of it: it
    /// is what this region knows of the key's history, and a tombstone purge makes regions know
    /// different amounts. A region that purged tombstone T before a write W concurrent with T
    /// arrived stores W without T's dots, while a region that received T after W merged them
    /// (simulator seed 6385, async). Both are sound (each names only writes that precede), and
    /// what T's dots would decide is kept by the group's purged context, which a local write
    /// joins when it is stamped, so no later write is misjudged concurrent with T.
    pub fn replicated(&self) -> (&Hlc, &Option<Vec<u8>>, &VersionVector) {
        debug_assert!(self.typed.is_none(), "a typed row is its state");
        (&self.hlc, &self.value, &self.vv)
    }

    /// The causal context a write here has seen: for `lww` every write merged, for a typed
    /// key its type's context.
    pub fn context(&self) -> VersionVector {
        match &self.typed {
            None => self.seen.clone(),
            Some(Typed::Counter(c)) => c.context(),
            Some(Typed::Set(s)) => s.context().clone(),
            Some(Typed::Mv(m)) => m.context().clone(),
        }
    }

    /// What a read returns: the value; a counter's value in decimal; a set's members as a
    /// sorted JSON array of strings; a register's siblings (see [`render_mv`]). `None`: absent.
    pub fn render(&self) -> Option<Vec<u8>> {
        match &self.typed {
            None => self.value.clone(),
            Some(Typed::Counter(c)) => Some(c.value().to_string().into_bytes()),
            Some(Typed::Set(s)) => {
                let members: Vec<String> = s
                    .members()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
                Some(json_strings(&members).into_bytes())
            }
            Some(Typed::Mv(m)) => render_mv(m),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strings(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", parts.join(","))
}

/// Encodes a causal context as the opaque token clients send back: hex of each (region,
/// count) pair.
pub fn context_token(vv: &VersionVector) -> String {
    let mut out = String::new();
    for (r, n) in vv.entries() {
        out.push_str(&format!("{:016x}{:016x}", r.0, n));
    }
    out
}

/// Decodes a token made by [`context_token`].
pub fn parse_context_token(token: &str) -> Result<VersionVector, String> {
    let token = token.trim();
    if !token.len().is_multiple_of(32) || !token.is_ascii() {
        return Err(format!(
            "a causal context is a token returned by a read of the key (whole 32-character groups of hex digits); got {} characters",
            token.len()
        ));
    }
    let mut vv = VersionVector::new();
    for i in (0..token.len()).step_by(32) {
        let r = u64::from_str_radix(&token[i..i + 16], 16);
        let n = u64::from_str_radix(&token[i + 16..i + 32], 16);
        match (r, n) {
            (Ok(r), Ok(n)) => vv.add(Dot {
                region: RegionTag(r),
                n,
            }),
            _ => return Err(
                "a causal context token holds hex digits only; send back the token a read returned"
                    .into(),
            ),
        }
    }
    Ok(vv)
}

/// A register as read: `{"siblings":[...],"context":"..."}`, each sibling a string (lossy
/// UTF-8) or `null` for a delete kept as a sibling; `None` when every sibling is a delete.
pub fn render_mv(m: &MvRegister) -> Option<Vec<u8>> {
    if m.siblings().iter().all(|s| s.value.is_none()) {
        return None;
    }
    let sibs: Vec<String> = m
        .siblings()
        .iter()
        .map(|s| match &s.value {
            Some(v) => json_string(&String::from_utf8_lossy(v)),
            None => "null".into(),
        })
        .collect();
    Some(
        format!(
            "{{\"siblings\":[{}],\"context\":\"{}\"}}",
            sibs.join(","),
            context_token(m.context())
        )
        .into_bytes(),
    )
}

/// Merges an `lww` write into the stored row: the higher HLC wins, `seen` gathers both. A
/// write whose vector is concurrent with the stored winner's is a conflict. Returns the new row
/// (`None`: nothing changed) and the conflict, if any.
pub fn apply_write(
    stored: Option<&Versioned>,
    incoming: Versioned,
) -> (Option<Versioned>, Option<Conflict>) {
    debug_assert!(
        incoming.typed.is_none(),
        "an lww write carries no typed state"
    );
    let Some(s) = stored else {
        return (Some(incoming), None);
    };
    if s.typed.is_some() {
        // Only a bug mixes types in one key; keep the row (deterministically) and say so.
        debug_assert!(
            false,
            "an lww write to a {} key",
            s.typed.as_ref().map_or("?", Typed::type_name)
        );
        return (None, None);
    }
    let conflict = (s.hlc != incoming.hlc && s.vv.compare(&incoming.vv) == Causal::Concurrent)
        .then(|| Conflict {
            rule: Rule::Lww,
            a: Side {
                hlc: s.hlc,
                value: s.value.clone(),
            },
            b: Side {
                hlc: incoming.hlc,
                value: incoming.value.clone(),
            },
            outcome: if incoming.hlc > s.hlc {
                Outcome::BWon
            } else {
                Outcome::AWon
            },
        });
    let mut seen = s.seen.clone();
    seen.merge(&incoming.seen);
    seen.merge(&incoming.vv);
    let won = lww::wins(&incoming, Some(s));
    let row = if won {
        Versioned { seen, ..incoming }
    } else if seen != s.seen {
        Versioned { seen, ..s.clone() }
    } else {
        return (None, conflict);
    };
    debug_assert!(row.seen.covers(&row.vv), "a row has seen its own winner");
    (Some(row), conflict)
}

/// Applies operation `op` of region `region`, stamped `hlc`, to the stored row (absent: an
/// empty value of the op's type). Refused when a counter would leave the i64 range.
pub fn apply_op(
    stored: Option<&Versioned>,
    region: RegionTag,
    hlc: Hlc,
    op: &Op,
) -> Result<(Versioned, Vec<Conflict>), OpError> {
    let mut typed = match stored.and_then(|s| s.typed.clone()) {
        Some(t) => t,
        None => match op {
            Op::Incr(_) => Typed::Counter(PnCounter::new()),
            Op::Set { .. } => Typed::Set(OrSet::new()),
            Op::Mv { .. } => Typed::Mv(MvRegister::new()),
        },
    };
    let mut conflicts = Vec::new();
    match (&mut typed, op) {
        (Typed::Counter(c), Op::Incr(by)) => {
            c.add(region, *by).map_err(OpError::Overflow)?;
        }
        (Typed::Set(s), Op::Set { add, remove }) => {
            let dot = s.context().clone().next(region);
            let seen = s.context().clone();
            let kept = s
                .apply(dot, hlc, &seen, add, remove)
                .expect("a region's next operation is new");
            debug_assert!(kept.is_empty(), "a remove here has seen every add here");
        }
        (Typed::Mv(m), Op::Mv { value, context }) => {
            let seen = context.clone().unwrap_or_else(|| m.context().clone());
            let (_, kept) = m.write(region, hlc, &seen, value.clone());
            for s in kept {
                conflicts.push(Conflict {
                    rule: Rule::Mv,
                    a: Side {
                        hlc: s.hlc,
                        value: s.value,
                    },
                    b: Side {
                        hlc,
                        value: value.clone(),
                    },
                    outcome: Outcome::Siblings,
                });
            }
        }
        (t, op) => {
            return Err(OpError::WrongType {
                stored: t.type_name(),
                op: op.type_name(),
            })
        }
    }
    let row_hlc = stored.map_or(hlc, |s| s.hlc.max(hlc));
    Ok((
        Versioned {
            hlc: row_hlc,
            value: None,
            vv: VersionVector::new(),
            seen: VersionVector::new(),
            typed: Some(typed),
        },
        conflicts,
    ))
}

/// Merges a whole row (shipped state, a repair) into the stored one: `lww` rows as a write,
/// typed rows by their type's join. Returns the new row (`None`: nothing changed) and the
/// conflicts the join resolved.
pub fn merge(
    stored: Option<&Versioned>,
    incoming: &Versioned,
) -> (Option<Versioned>, Vec<Conflict>) {
    let Some(inc) = &incoming.typed else {
        let (row, c) = apply_write(stored, incoming.clone());
        return (row, c.into_iter().collect());
    };
    let Some(s) = stored else {
        return (Some(incoming.clone()), Vec::new());
    };
    let mut conflicts = Vec::new();
    let typed = match (&s.typed, inc) {
        (Some(Typed::Counter(a)), Typed::Counter(b)) => {
            let mut m = a.clone();
            m.merge(b);
            Typed::Counter(m)
        }
        (Some(Typed::Set(a)), Typed::Set(b)) => {
            let mut m = a.clone();
            for (kept, removed) in m.merge(b) {
                // The removed add identifies the remove (both regions see the same dots).
                conflicts.push(Conflict {
                    rule: Rule::Set,
                    a: Side {
                        hlc: kept.hlc,
                        value: Some(kept.element),
                    },
                    b: Side {
                        hlc: removed.hlc,
                        value: None,
                    },
                    outcome: Outcome::AddWins,
                });
            }
            Typed::Set(m)
        }
        (Some(Typed::Mv(a)), Typed::Mv(b)) => {
            let mut m = a.clone();
            for (x, y) in m.merge(b) {
                conflicts.push(Conflict {
                    rule: Rule::Mv,
                    a: Side {
                        hlc: x.hlc,
                        value: x.value,
                    },
                    b: Side {
                        hlc: y.hlc,
                        value: y.value,
                    },
                    outcome: Outcome::Siblings,
                });
            }
            Typed::Mv(m)
        }
        (stored_type, _) => {
            debug_assert!(
                false,
                "merging a {} row into a {:?} row",
                inc.type_name(),
                stored_type.as_ref().map(Typed::type_name)
            );
            return (None, Vec::new());
        }
    };
    let row = Versioned {
        hlc: s.hlc.max(incoming.hlc),
        value: None,
        vv: VersionVector::new(),
        seen: VersionVector::new(),
        typed: Some(typed),
    };
    if &row == s {
        return (None, conflicts);
    }
    (Some(row), conflicts)
}

/// Whether merging `incoming` would change `stored` (anti-entropy's test for a missing
/// version). For a typed key only the state counts: its highest stamp converges with shipping
/// (every state shipped carries it) and is no divergence. For an `lww` key only the winner
/// counts (see [`Versioned::replicated`]).
pub fn changes(stored: Option<&Versioned>, incoming: &Versioned) -> bool {
    match merge(stored, incoming).0 {
        None => false,
        Some(row) if row.typed.is_none() => {
            stored.is_none_or(|s| s.replicated() != row.replicated())
        }
        Some(row) => stored.is_none_or(|s| s.typed != row.typed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(t: u64, region: &str) -> Hlc {
        Hlc {
            physical_ms: t,
            logical: 0,
            origin: RegionTag::of(region),
        }
    }

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (r, n) in entries {
            v.add(Dot {
                region: RegionTag::of(r),
                n: *n,
            });
        }
        v
    }

    // Goal: an lww write that had seen the stored winner replaces it quietly; a concurrent one
    // is reported whichever wins, with one id seen from either side; a duplicate is nothing.
    #[test]
    fn lww_reports_exactly_the_concurrent_writes() {
        let a = Versioned::lww(h(10, "us"), Some(b"a".to_vec()), vv(&[("us", 3)]));
        let after = Versioned::lww(
            h(11, "eu"),
            Some(b"b".to_vec()),
            vv(&[("us", 3), ("eu", 5)]),
        );
        let (row, c) = apply_write(Some(&a), after.clone());
        assert_eq!(row.unwrap().value, Some(b"b".to_vec()));
        assert!(c.is_none(), "it had seen the winner");
        let concurrent = Versioned::lww(h(9, "eu"), Some(b"c".to_vec()), vv(&[("eu", 5)]));
        let (row, c) = apply_write(Some(&a), concurrent.clone());
        let row = row.expect("seen grows even when the write loses");
        assert_eq!(row.value, Some(b"a".to_vec()));
        assert!(row.seen.covers(&concurrent.vv));
        let c = c.expect("concurrent");
        assert_eq!(c.outcome, Outcome::AWon);
        let (_, mirror) = apply_write(Some(&concurrent), a.clone());
        assert_eq!(mirror.unwrap().id(), c.id(), "one conflict, one id");
        assert_eq!(apply_write(Some(&a), a.clone()), (None, None));
    }

    // Goal: typed operations apply and render; an overflow and a wrong type are refused; a
    // register write without a context replaces what is here, and concurrent registers merge
    // into siblings that are reported once.
    #[test]
    fn typed_rows_apply_merge_and_render() {
        let us = RegionTag::of("us");
        let eu = RegionTag::of("eu");
        let (c, _) = apply_op(None, us, h(1, "us"), &Op::Incr(5)).unwrap();
        let (c, _) = apply_op(Some(&c), us, h(2, "us"), &Op::Incr(-7)).unwrap();
        assert_eq!(c.render(), Some(b"-2".to_vec()));
        let (big, _) = apply_op(None, us, h(1, "us"), &Op::Incr(i64::MAX)).unwrap();
        assert!(matches!(
            apply_op(Some(&big), us, h(2, "us"), &Op::Incr(1)),
            Err(OpError::Overflow(_))
        ));
        let e = apply_op(
            Some(&c),
            us,
            h(3, "us"),
            &Op::Set {
                add: vec![],
                remove: vec![],
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the key holds a counter, not a set");
        let (s, _) = apply_op(
            None,
            us,
            h(1, "us"),
            &Op::Set {
                add: vec![b"b".to_vec(), b"a\"".to_vec()],
                remove: vec![],
            },
        )
        .unwrap();
        assert_eq!(s.render(), Some(br#"["a\"","b"]"#.to_vec()));
        let (x, _) = apply_op(
            None,
            us,
            h(1, "us"),
            &Op::Mv {
                value: Some(b"x".to_vec()),
                context: None,
            },
        )
        .unwrap();
        let (y, _) = apply_op(
            None,
            eu,
            h(2, "eu"),
            &Op::Mv {
                value: Some(b"y".to_vec()),
                context: None,
            },
        )
        .unwrap();
        let (m, found) = merge(Some(&x), &y);
        let m = m.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            merge(Some(&m), &y),
            (None, vec![]),
            "merging again changes nothing"
        );
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(
            text.starts_with(r#"{"siblings":["x","y"],"context":""#)
                || text.starts_with(r#"{"siblings":["y","x"],"context":""#),
            "{text}"
        );
        let token = context_token(&m.context());
        assert_eq!(parse_context_token(&token).unwrap(), m.context());
        assert!(parse_context_token("xyz").is_err());
        let (z, _) = apply_op(
            Some(&m),
            eu,
            h(3, "eu"),
            &Op::Mv {
                value: Some(b"z".to_vec()),
                context: Some(m.context()),
            },
        )
        .unwrap();
        assert!(String::from_utf8(z.render().unwrap())
            .unwrap()
            .starts_with(r#"{"siblings":["z"]"#));
    }
}
