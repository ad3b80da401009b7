//! Hash chains: the failover decision log and the audit log are each a sequence of entries
//! where every entry carries the hash of the one before and a hash over its own contents, so
//! an entry edited, removed or reordered after the fact is found by [`verify`].

/// The hash that starts a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry of a hash chain.
pub trait Chained {
    fn seq(&self) -> u64;
    /// Hex of the previous entry's hash ([`GENESIS`] for the first).
    fn prev(&self) -> &str;
    /// Hex of this entry's hash as stored.
    fn hash(&self) -> &str;
    /// The hash its contents give now.
    fn compute_hash(&self) -> String;
}

/// The chain that ends at the head (`head_hash`, sequence `head_seq`), walked back through
/// `by_hash` (every stored entry by its hash, orphans of lost appends too) to entry 0; oldest
/// first. `Err` says where the chain breaks (an entry missing, or more entries than the head's
/// sequence number allows) in terms of `what` ("the audit log").
pub fn walk_back<E: Chained + Clone>(
    by_hash: &std::collections::BTreeMap<String, E>,
    head_hash: &str,
    head_seq: u64,
    what: &str,
) -> Result<Vec<E>, String> {
    let mut out: Vec<E> = Vec::new();
    let mut want = Some(head_hash.to_string());
    while let Some(h) = want {
        let Some(e) = by_hash.get(&h) else {
            return Err(format!(
                "{what}'s chain is broken: no entry with hash {h} (head is entry {head_seq}); an entry was removed or edited in the data files"
            ));
        };
        if let Some(newer) = out.last() {
            debug_assert_eq!(newer.prev(), e.hash(), "the walk follows previous hashes");
        }
        out.push(e.clone());
        if out.len() as u64 > head_seq + 1 {
            return Err(format!(
                "{what}'s chain is longer than its head's sequence number: entries were reordered in the data files"
            ));
        }
        want = (e.seq() > 0).then(|| e.prev().to_string());
    }
    out.reverse();
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a log (in order): every entry's hash matches its contents, links to the one before,
/// and sequence numbers run from 0 without gaps. `Err` names the first entry that was edited,
/// removed or reordered; `Ok` is the number of entries.
pub fn verify<E: Chained>(entries: &[E]) -> Result<usize, String> {
    let mut prev: Option<&E> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.compute_hash() != e.hash() {
            return Err(format!(
                "entry {} (position {i}) was edited: its contents do not match its hash {}",
                e.seq(),
                e.hash()
            ));
        }
        if let Some(p) = prev {
            if e.prev() != p.hash() {
                return Err(format!(
                    "entry {} (position {i}) does not follow entry {}: its previous hash is {}, entry {}'s hash is {} (an entry between them was removed, or they were reordered)",
                    e.seq(), p.seq(), e.prev(), p.seq(), p.hash()
                ));
            }
            if e.seq() != p.seq() + 1 {
                return Err(format!(
                    "entry {} (position {i}) follows entry {}: sequence numbers skip or go back",
                    e.seq(),
                    p.seq()
                ));
            }
        } else if e.seq() != 0 {
            return Err(format!(
                "entry 0 is missing: the log starts at entry {} (position {i})",
                e.seq()
            ));
        } else if e.prev() != GENESIS {
            return Err(format!(
                "entry 0 (position {i}) does not start the chain: its previous hash is {}",
                e.prev()
            ));
        }
        prev = Some(e);
    }
    Ok(entries.len())
}
