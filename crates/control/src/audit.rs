//! The audit log: every administrative action (keyspace creation, token changes, failover
//! actions, fault injection), allowed or denied, as a hash-chained entry in the metadata group.
//! The chain is the failover log's ([`crate::chain`]); `meridian audit log --verify` names the
//! first entry edited, removed or reordered.

use serde::{Deserialize, Serialize};

use crate::chain::{sha256_hex, Chained};

/// Longest `target` and `detail` kept in an entry (a longer one is cut, marked with `…`).
pub const FIELD_BYTES_MAX: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Wall-clock time of the node that recorded it.
    pub at_ms: u64,
    /// Who: `root`, `token:<name>`, or `anonymous`.
    pub principal: String,
    /// What: `keyspace.create`, `auth.token.create`, `failover.pause`, `admin.faults`, ...
    pub action: String,
    /// On what: a keyspace, a token id, a decision id, a region (may be empty).
    pub target: String,
    /// `allowed` (and carried out), `denied` (no permission or no valid token), or `failed`
    /// (allowed, but the action itself failed).
    pub outcome: String,
    /// The status or error, in a sentence.
    pub detail: String,
    /// The node that took the request.
    pub node: u64,
    pub prev: String,
    pub hash: String,
}

/// `s` cut to at most [`FIELD_BYTES_MAX`] bytes on a character boundary.
pub fn bounded(s: &str) -> String {
    if s.len() <= FIELD_BYTES_MAX {
        return s.to_string();
    }
    let mut end = FIELD_BYTES_MAX - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Entry {
    /// Fills `prev` and `hash`, chaining this entry after `prev`.
    pub fn seal(mut self, prev: &str) -> Entry {
        debug_assert_eq!(prev.len(), 64, "a previous hash is 32 bytes of hex");
        self.prev = prev.to_string();
        self.hash = self.compute_hash();
        self
    }

    /// SHA-256 over the canonical JSON of the entry with `hash` empty.
    pub fn compute_hash(&self) -> String {
        let mut bare = self.clone();
        bare.hash = String::new();
        sha256_hex(&serde_json::to_vec(&bare).expect("an audit entry serialises"))
    }
}

impl Chained for Entry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn prev(&self) -> &str {
        &self.prev
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn compute_hash(&self) -> String {
        Entry::compute_hash(self)
    }
}

/// Checks an audit log (in order): see [`crate::chain::verify`].
pub fn verify(entries: &[Entry]) -> Result<usize, String> {
    crate::chain::verify(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::GENESIS;

    fn log(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for seq in 0..n {
            let prev = out.last().map_or(GENESIS.to_string(), |e| e.hash.clone());
            out.push(
                Entry {
                    seq,
                    at_ms: 1000 + seq,
                    principal: "token:ops".into(),
                    action: "keyspace.create".into(),
                    target: format!("ks{seq}"),
                    outcome: "allowed".into(),
                    detail: "201 Created".into(),
                    node: 1,
                    prev: String::new(),
                    hash: String::new(),
                }
                .seal(&prev),
            );
        }
        out
    }

    // Goal: an intact log verifies; an edit, a removal and a reordering are each named.
    #[test]
    fn tampering_is_named() {
        let good = log(5);
        assert_eq!(verify(&good), Ok(5));
        let mut edited = good.clone();
        edited[2].outcome = "denied".into();
        let e = verify(&edited).unwrap_err();
        assert!(e.starts_with("entry 2 (position 2) was edited"), "{e}");
        let mut removed = good.clone();
        removed.remove(3);
        let e = verify(&removed).unwrap_err();
        assert!(
            e.starts_with("entry 4 (position 3) does not follow entry 2"),
            "{e}"
        );
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        let e = verify(&reordered).unwrap_err();
        assert!(
            e.starts_with("entry 2 (position 1) does not follow entry 0"),
            "{e}"
        );
        let e = verify(&good[1..]).unwrap_err();
        assert!(e.starts_with("entry 0 is missing"), "{e}");
        // Recomputing an edited entry's hash does not help: the next one no longer follows.
        let mut resealed = good.clone();
        resealed[1].target = "other".into();
        let prev = resealed[0].hash.clone();
        resealed[1] = resealed[1].clone().seal(&prev);
        let e = verify(&resealed).unwrap_err();
        assert!(
            e.starts_with("entry 2 (position 2) does not follow entry 1"),
            "{e}"
        );
    }

    // Goal: walking back from the head finds the chain (orphans of lost appends ignored) and
    // names a missing entry.
    #[test]
    fn walking_back_from_the_head() {
        let good = log(4);
        let mut stored: std::collections::BTreeMap<String, Entry> =
            good.iter().map(|e| (e.hash.clone(), e.clone())).collect();
        let mut orphan = good[3].clone();
        orphan.target = "lost append".into();
        let orphan = orphan.seal(&good[2].hash);
        stored.insert(orphan.hash.clone(), orphan);
        let head = &good[3];
        let walked = crate::chain::walk_back(&stored, &head.hash, head.seq, "the audit log");
        assert_eq!(walked.as_deref(), Ok(&good[..]));
        stored.remove(&good[1].hash);
        let e =
            crate::chain::walk_back(&stored, &head.hash, head.seq, "the audit log").unwrap_err();
        assert!(e.starts_with("the audit log's chain is broken"), "{e}");
    }

    #[test]
    fn fields_are_bounded() {
        let long = "é".repeat(400);
        let b = bounded(&long);
        assert!(b.len() <= FIELD_BYTES_MAX && b.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
