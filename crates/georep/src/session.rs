//! Session tokens: the positions (group, log index) a client's reads and writes depended on.
//!
//! A replica serves a read with a token only once it has applied at least those positions: its
//! own group's applied index for its own entries, its cursor for another region's group of the
//! same shard. Every response returns the token merged with what the serving replica had, so
//! the next request anywhere sees at least as much: read-your-writes and monotonic reads.
//!
//! Text form (opaque to clients): `m1` then `.group-index` per entry, group in hex, e.g.
//! `m1.3fa2b0008001-42.3fa2b0008101-17`.

use std::collections::BTreeMap;

use meridian_types::GroupId;

/// Entries a token may hold: one per group a session touched (shards x regions).
pub const SESSION_ENTRIES_MAX: usize = 512;
/// Longest token text accepted.
pub const SESSION_TEXT_MAX: usize = 16 * 1024;

const PREFIX: &str = "m1";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionToken {
    positions: BTreeMap<GroupId, u64>,
}

impl SessionToken {
    /// Parses a token a client sent back. The error says what was wrong.
    pub fn parse(text: &str) -> Result<SessionToken, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(SessionToken::default());
        }
        if text.len() > SESSION_TEXT_MAX {
            return Err(format!(
                "the session token is {} bytes, over the limit of {SESSION_TEXT_MAX}; start a new session",
                text.len()
            ));
        }
        let mut parts = text.split('.');
        if parts.next() != Some(PREFIX) {
            return Err(
                "the session token is not one Meridian issued (it must start with \"m1\"); send back the meridian-session value of an earlier response, or none".into(),
            );
        }
        let mut t = SessionToken::default();
        for p in parts {
            let parsed = p.split_once('-').and_then(|(g, i)| {
                Some((u64::from_str_radix(g, 16).ok()?, i.parse::<u64>().ok()?))
            });
            let Some((group, index)) = parsed else {
                return Err(format!(
                    "the session token has a malformed entry {p:?}; send back the meridian-session value unchanged"
                ));
            };
            t.observe(group, index);
        }
        if t.positions.len() > SESSION_ENTRIES_MAX {
            return Err(format!(
                "the session token names {} groups, over the limit of {SESSION_ENTRIES_MAX}; start a new session",
                t.positions.len()
            ));
        }
        Ok(t)
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Records that the session depends on `group` up to `index`. Positions only grow.
    pub fn observe(&mut self, group: GroupId, index: u64) {
        let e = self.positions.entry(group).or_insert(0);
        *e = (*e).max(index);
    }

    pub fn merge(&mut self, other: &SessionToken) {
        for (g, i) in &other.positions {
            self.observe(*g, *i);
        }
    }

    /// The position of `group` the session depends on (0: none).
    pub fn get(&self, group: GroupId) -> u64 {
        self.positions.get(&group).copied().unwrap_or(0)
    }

    /// The entries for the groups `relevant` selects (e.g. one shard's groups).
    pub fn select(&self, relevant: impl Fn(GroupId) -> bool) -> Vec<(GroupId, u64)> {
        self.positions
            .iter()
            .filter(|(g, _)| relevant(**g))
            .map(|(g, i)| (*g, *i))
            .collect()
    }

    /// The token text. A token over the entry limit keeps the highest groups' entries only
    /// after `parse` refuses it, so it is never silently truncated here.
    pub fn encode(&self) -> String {
        let mut s = String::from(PREFIX);
        for (g, i) in &self.positions {
            s.push_str(&format!(".{g:x}-{i}"));
        }
        s
    }
}

/// Whether a replica whose positions are `have(group)` satisfies `needs`.
pub fn satisfied(
    needs: &[(GroupId, u64)],
    have: impl Fn(GroupId) -> u64,
) -> Option<(GroupId, u64)> {
    needs.iter().copied().find(|(g, i)| have(*g) < *i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Goal: a token round-trips, merges by maximum, and malformed text is refused with a
    // message.
    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut t = SessionToken::default();
        t.observe(0x3fa2_b000_8001, 42);
        t.observe(0x3fa2_b000_8001, 7);
        t.observe(5, 1);
        let back = SessionToken::parse(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get(0x3fa2_b000_8001), 42);
        assert!(SessionToken::parse("").unwrap().is_empty());
        assert!(SessionToken::parse("x1.5-1").unwrap_err().contains("m1"));
        assert!(SessionToken::parse("m1.zz-1")
            .unwrap_err()
            .contains("malformed"));
        assert_eq!(satisfied(&[(5, 3)], |_| 2), Some((5, 3)));
        assert_eq!(satisfied(&[(5, 3)], |_| 3), None);
    }

    proptest! {
        // Goal: merging never lowers a position and is order-independent.
        #[test]
        fn merge_is_a_join(a in proptest::collection::vec((0u64..8, 0u64..100), 0..20),
                           b in proptest::collection::vec((0u64..8, 0u64..100), 0..20)) {
            let build = |v: &[(u64, u64)]| { let mut t = SessionToken::default(); for (g, i) in v { t.observe(*g, *i); } t };
            let (ta, tb) = (build(&a), build(&b));
            let mut ab = ta.clone(); ab.merge(&tb);
            let mut ba = tb.clone(); ba.merge(&ta);
            prop_assert_eq!(&ab, &ba);
            for (g, i) in a.iter().chain(b.iter()) {
                prop_assert!(ab.get(*g) >= *i);
            }
        }
    }
}
