//! The conflict ledger: every conflict a group's merges resolved (an lww write that overwrote,
//! or lost to, a concurrent one; mv siblings created; a set add that survived a concurrent
//! remove), in the order detected.
//!
//! Each replica records the entries in the same commit as the merge that found them, so the
//! replicas of a group hold the same entries (merges are deterministic). The ledger is kept
//! beside the group's replicated state, not in it: a replica that installs a snapshot starts
//! its ledger afresh, and retention (`ledger_max` entries per group, the oldest dropped and
//! counted) is this node's setting.

use meridian_crdt::{Conflict, Hlc, Outcome, Rule, Side};
use meridian_storage::{prefix_end, SharedEngine, Table};
use meridian_types::GroupId;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::log_store::decode;

/// Meta tag of (next sequence number, entries dropped).
pub const META_LEDGER: &[u8] = b"ledger";
const ENTRY_PREFIX: &[u8] = b"ledger/";

/// Values larger than this are recorded as their size and hash.
pub const VALUE_INLINE_MAX: usize = 1024;

pub fn entry_tag(seq: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &seq.to_be_bytes()].concat()
}

/// One side of a recorded conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSide {
    pub hlc: Hlc,
    /// The value, when at most [`VALUE_INLINE_MAX`] bytes; `None` for a delete (or a remove)
    /// or a larger value.
    pub value: Option<Vec<u8>>,
    /// The value's size in bytes (0 for a delete).
    pub size: u64,
    /// FNV-1a of the value, when it is larger than [`VALUE_INLINE_MAX`].
    pub hash: Option<u64>,
    pub deleted: bool,
}

impl RecordedSide {
    fn of(s: &Side) -> RecordedSide {
        let size = s.value.as_ref().map_or(0, |v| v.len() as u64);
        let large = size as usize > VALUE_INLINE_MAX;
        RecordedSide {
            hlc: s.hlc,
            value: s.value.clone().filter(|_| !large),
            size,
            hash: s
                .value
                .as_deref()
                .filter(|_| large)
                .map(meridian_crdt::row::fnv1a),
            deleted: s.value.is_none(),
        }
    }
}

/// One recorded conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in this group's ledger (grows by one per entry).
    pub seq: u64,
    /// Derived from the two versions: equal in every region that detected this conflict.
    pub id: u64,
    pub key: Vec<u8>,
    pub rule: Rule,
    pub a: RecordedSide,
    pub b: RecordedSide,
    pub outcome: Outcome,
    /// The group's highest HLC when detected: when, on the detecting region's clock.
    pub detected: Hlc,
}

impl Entry {
    pub fn new(seq: u64, key: &[u8], c: &Conflict, detected: Hlc) -> Entry {
        Entry {
            seq,
            id: c.id(),
            key: key.to_vec(),
            rule: c.rule,
            a: RecordedSide::of(&c.a),
            b: RecordedSide::of(&c.b),
            outcome: c.outcome,
            detected,
        }
    }
}

/// (next sequence number, entries dropped so far) of `group`'s ledger.
pub fn position(engine: &SharedEngine, group: GroupId) -> meridian_storage::Result<(u64, u64)> {
    let bytes = engine.get(Table::Meta, &keys::meta_key(group, META_LEDGER))?;
    Ok(bytes.and_then(|b| decode(&b).ok()).unwrap_or((0, 0)))
}

/// Up to `limit` entries of `group`'s ledger with sequence number at least `from_seq`, oldest
/// first.
pub fn entries(
    engine: &SharedEngine,
    group: GroupId,
    from_seq: u64,
    limit: usize,
) -> meridian_storage::Result<Vec<Entry>> {
    let start = keys::meta_key(group, &entry_tag(from_seq));
    let end = prefix_end(&keys::meta_key(group, ENTRY_PREFIX)).expect("meta keys end below 0xff");
    let rows = engine.scan(Table::Meta, &start, &end, limit)?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, v)| decode::<Entry>(&v).ok())
        .collect())
}
