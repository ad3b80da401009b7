//! Reading a group's committed log for shipping to other regions (async keyspaces).
//!
//! Only applied entries are read: applied implies committed and durable on this node, so a
//! shipped write can never be rolled back at its source.

use std::io;

use meridian_crdt::Dot;
use meridian_storage::{SharedEngine, Table};
use meridian_types::wire::{Command, ShipBatch, Shipped};
use meridian_types::GroupId;
use openraft::EntryPayload;

use crate::keys;
use crate::log_store::{decode, io_err, LogStore};
use crate::typ::LogId;
use openraft::storage::RaftLogReader;

/// What reading the log from an index found.
#[derive(Debug)]
pub enum LogRead {
    /// A batch covering `from..=to` (possibly without writes: blank, membership and shipped
    /// entries are covered, not shipped: each region ships only what it accepted itself).
    Batch(ShipBatch),
    /// The entries from the requested index were compacted into a snapshot; the destination
    /// needs the source's state instead (see `georep::shipper`).
    Purged { last_purged: u64 },
}

/// The last log index compacted away (0: none).
pub fn last_purged(engine: &SharedEngine, group: GroupId) -> io::Result<u64> {
    let bytes = engine
        .get(Table::Meta, &keys::meta_key(group, keys::META_PURGED))
        .map_err(io_err)?;
    let purged: Option<LogId> = bytes.map(|b| decode(&b)).transpose()?;
    Ok(purged.map_or(0, |l| l.index))
}

/// Reads `group`'s log from `from` up to `applied` (inclusive), at most `max_entries` entries
/// and, past the first write, at most `max_bytes` of keys and values. Reads through `log`, so
/// an entry the leader applied before its own flush finished (a quorum of followers had it)
/// is found too.
pub async fn read_committed(
    log: &LogStore,
    engine: &SharedEngine,
    group: GroupId,
    from: u64,
    applied: u64,
    max_entries: u64,
    max_bytes: usize,
) -> io::Result<LogRead> {
    assert!(from >= 1 && from <= applied, "read {from}..={applied}");
    assert!(max_entries >= 1);
    let purged = last_purged(engine, group)?;
    if from <= purged {
        return Ok(LogRead::Purged {
            last_purged: purged,
        });
    }
    let end = applied.min(from.saturating_add(max_entries - 1));
    let entries = log.clone().try_get_log_entries(from..=end).await?;
    let mut batch = ShipBatch {
        source: group,
        from,
        to: from - 1,
        writes: Vec::new(),
        state: false,
        fresh: None,
    };
    let mut bytes = 0usize;
    let mut typed_keys = std::collections::HashSet::new();
    for entry in entries {
        let index = entry.log_id.index;
        if index != batch.to + 1 {
            // A hole below the applied index: compacted while we read.
            let purged = last_purged(engine, group)?;
            if purged >= index.min(batch.to + 1) {
                return Ok(LogRead::Purged {
                    last_purged: purged,
                });
            }
            return Err(io::Error::other(format!(
                "group {group}: log entry {} missing below the applied index {applied}",
                batch.to + 1
            )));
        }
        let payload = match entry.payload {
            // Ship the command a request id wraps, unless this entry was a retry the state
            // machine did not apply (the id's record names another entry). A record already
            // forgotten (older than the window) ships it: a duplicate write merges away.
            EntryPayload::Normal(Command::Idempotent { id, cmd, .. }) => {
                let record =
                    crate::state_machine::request_record(engine, group, &id).map_err(io_err)?;
                if record.is_some_and(|(_, first, _)| first != index) {
                    batch.to = index;
                    continue;
                }
                EntryPayload::Normal(*cmd)
            }
            p => p,
        };
        match payload {
            EntryPayload::Normal(Command::Write {
                key,
                value,
                hlc,
                mut seen,
            }) => {
                let size = key.len() + value.as_ref().map_or(0, Vec::len);
                if !batch.writes.is_empty() && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                seen.add(Dot {
                    region: hlc.origin,
                    n: index,
                });
                batch.writes.push(Shipped {
                    index,
                    key,
                    value,
                    hlc,
                    vv: seen.clone(),
                    seen,
                    typed: None,
                });
            }
            EntryPayload::Normal(Command::Update {
                key,
                hlc: Some(hlc),
                ..
            }) => {
                // A typed key ships its whole state as it is now (applied at least to this
                // entry), once per batch, under the index of its last operation in the batch:
                // a destination whose cursor is already past an earlier one skips that
                // index, and must still get the later operation.
                let again = typed_keys.contains(&key);
                let row = crate::state_machine::read_versioned(engine, group, &key)
                    .map_err(io_err)?
                    .and_then(|v| Some((v.hlc, v.typed?)));
                let Some((row_hlc, typed)) = row else {
                    return Err(io::Error::other(format!(
                        "group {group}: typed key of entry {index} has no typed state although applied"
                    )));
                };
                let size = key.len() + crate::log_store::encode(&typed).len();
                if again {
                    // The same state, moved to this later index (in place of the earlier).
                    batch.writes.retain(|w| w.key != key || w.typed.is_none());
                } else {
                    if !batch.writes.is_empty() && bytes + size > max_bytes {
                        break;
                    }
                    bytes += size;
                    typed_keys.insert(key.clone());
                }
                batch.writes.push(Shipped {
                    index,
                    key,
                    value: None,
                    // The state's highest stamp (at least this operation's).
                    hlc: row_hlc.max(hlc),
                    vv: Default::default(),
                    seen: Default::default(),
                    typed: Some(typed),
                });
            }
            _ => {}
        }
        batch.to = index;
    }
    if batch.to < from {
        // Nothing at `from` although it is at or below the applied index.
        let purged = last_purged(engine, group)?;
        if purged >= from {
            return Ok(LogRead::Purged {
                last_purged: purged,
            });
        }
        return Err(io::Error::other(format!(
            "group {group}: log entry {from} missing below the applied index {applied}"
        )));
    }
    debug_assert!(batch.is_well_formed());
    Ok(LogRead::Batch(batch))
}
