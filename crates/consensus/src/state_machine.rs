//! A group's state machine: the group's keys in the shared engine's data table.
//!
//! Applying a batch of entries is one commit holding the data changes and the new applied
//! index, so after a crash the data and the applied index agree. The commit is deferred (no
//! fsync of its own): the entries are durable in the log already, the apply becomes durable
//! with the next log append, and a crash before that only takes the applied index back to an
//! earlier consistent point, from which openraft applies the log again. An async group's
//! per-source cursors sit in the same commit, so a re-applied shipment is neither lost nor
//! merged twice.

use std::collections::{BTreeMap, HashMap};
use std::io;

use futures::{Stream, StreamExt};
use meridian_crdt::{row, Conflict, Dot, Hlc, Op, Versioned};
use meridian_storage::{prefix_end, GroupCommitter, SharedEngine, Table, WriteBatch};
use meridian_types::ids::is_async_group;
use meridian_types::wire::{Command, CommandResult, ShipBatch, SourceFreshness};
use meridian_types::GroupId;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::ledger;
use crate::log_store::{decode, encode, io_err};
use crate::typ::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// What the state machine has applied, stored with the data it describes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Fault injection for the simulator: a shipping bug that anti-entropy must repair.
///
/// Off unless a test turns it on. The decision depends only on the destination group and the
/// shipped entry's index, so every replica of a group drops the same writes and the group stays
/// consistent with itself while it diverges from the other regions.
#[doc(hidden)]
pub mod inject {
    use std::cell::Cell;

    use meridian_types::ids::async_region_index;
    use meridian_types::GroupId;

    thread_local! {
        /// 0: off. n: the destination groups of the keyspace's second region drop every
        /// shipped write whose source index is a multiple of n. Per thread: a simulation runs
        /// every node on one thread, and tests running in parallel must not see each other's.
        static LOSE_SHIPPED_EVERY: Cell<u64> = const { Cell::new(0) };
    }

    pub fn lose_shipped_writes(every: u64) {
        LOSE_SHIPPED_EVERY.with(|e| e.set(every));
    }

    pub(super) fn loses(group: GroupId, index: u64) -> bool {
        let every = LOSE_SHIPPED_EVERY.with(|e| e.get());
        every != 0 && async_region_index(group) == 1 && index.is_multiple_of(every)
    }
}

/// What merging one version found.
struct Merged {
    /// The key held a live value before.
    existed: bool,
    /// The incoming version replaced the stored one.
    won: bool,
}

/// What an async group's apply changed besides data, written in the same commit.
#[derive(Default)]
struct GeoChanges {
    hlc_max: Option<Hlc>,
    last_write: Option<u64>,
    cursors: BTreeMap<GroupId, u64>,
    /// Per source: the highest HLC of its writes applied by shipping.
    src_hlc: BTreeMap<GroupId, Hlc>,
    /// Conflicts found by the command being applied (moved into its result).
    found: Vec<Conflict>,
    /// The ledger's (next sequence number, dropped) once this apply has recorded an entry.
    ledger: Option<(u64, u64)>,
    /// Request id records written by this apply: id -> (first at_ms, first index, outcome).
    requests: HashMap<Vec<u8>, Option<RequestRecord>>,
    /// How many request id records the group holds, once this apply has changed it.
    request_count: Option<u64>,
}

/// A request id's record: when it was first applied (the proposer's clock), at which log
/// index, and its outcome.
pub type RequestRecord = (u64, u64, CommandResult);

/// Request id records a group keeps at most (the oldest beyond are forgotten early).
pub const REQUESTS_MAX: u64 = 100_000;
/// Expired request id records removed per idempotent command applied (amortised cleanup).
const REQUESTS_PRUNE_PER_APPLY: usize = 32;

/// A snapshot's content: the group's data rows and its replicated meta rows (an async group's
/// cursors and highest HLC), so a replica installing it resumes shipping where the data is.
#[derive(Serialize, Deserialize)]
struct SnapshotContent {
    data: Vec<(Vec<u8>, Vec<u8>)>,
    meta: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A built snapshot as stored: its meta and its encoded data.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    group: GroupId,
    committer: GroupCommitter,
    /// Conflict ledger entries kept per group (the oldest beyond are dropped and counted).
    ledger_max: u64,
    /// A witness's replica: entries advance the applied index and membership, but no data,
    /// ledger or request record is kept (see `NodeRole::Witness`).
    witness: bool,
}

/// Conflict ledger entries kept per group unless configured (`conflict_ledger_max`).
pub const LEDGER_MAX_DEFAULT: u64 = 10_000;

impl StateMachine {
    pub fn new(group: GroupId, committer: GroupCommitter) -> StateMachine {
        StateMachine {
            group,
            committer,
            ledger_max: LEDGER_MAX_DEFAULT,
            witness: false,
        }
    }

    /// A witness's replica: holds no key-value state.
    pub fn witness(mut self, witness: bool) -> StateMachine {
        self.witness = witness;
        self
    }

    /// Keeps at most `max` (at least 1) conflict ledger entries.
    pub fn with_ledger_max(mut self, max: u64) -> StateMachine {
        self.ledger_max = max.max(1);
        self
    }

    /// Applies an operation on a typed key of a sync group: the stored value is the rendered
    /// one (a counter's decimal, a set's sorted JSON array of strings), changed in place; the
    /// log orders every operation, so there is nothing to merge.
    fn apply_update_sync(
        &self,
        key: Vec<u8>,
        op: Op,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> io::Result<CommandResult> {
        let current = self.current(overlay, &key)?;
        let existed = current.is_some();
        let refuse = |why: String| CommandResult {
            existed,
            succeeded: false,
            current: current.clone(),
            refused: Some(why),
            ..Default::default()
        };
        let next = match &op {
            Op::Incr(by) => {
                let now: i64 = match &current {
                    None => 0,
                    Some(b) => match std::str::from_utf8(b).ok().and_then(|t| t.parse().ok()) {
                        Some(v) => v,
                        None => return Ok(refuse("the key holds a value that is not a counter (written before the keyspace was a counter?); delete it first".into())),
                    },
                };
                match now.checked_add(*by) {
                    Some(v) => v.to_string().into_bytes(),
                    None => {
                        return Ok(refuse(
                            meridian_crdt::counter::Overflow {
                                value: i128::from(now),
                                by: *by,
                            }
                            .to_string(),
                        ))
                    }
                }
            }
            Op::Set { add, remove } => {
                let mut members: std::collections::BTreeSet<String> = match &current {
                    None => Default::default(),
                    Some(b) => match serde_json::from_slice(b) {
                        Ok(m) => m,
                        Err(_) => return Ok(refuse("the key holds a value that is not a set (written before the keyspace was a set?); delete it first".into())),
                    },
                };
                for r in remove {
                    members.remove(String::from_utf8_lossy(r).as_ref());
                }
                for a in add {
                    members.insert(String::from_utf8_lossy(a).into_owned());
                }
                serde_json::to_vec(&members).expect("strings encode")
            }
            Op::Mv { .. } => {
                return Ok(refuse(
                    "multi-value registers exist only in async keyspaces (a sync keyspace orders every write, so nothing is ever concurrent)".into(),
                ))
            }
        };
        batch.put(Table::Data, keys::data_key(self.group, &key), next.clone());
        overlay.insert(key, Some(next.clone()));
        Ok(CommandResult {
            existed,
            succeeded: true,
            current: Some(next),
            ..Default::default()
        })
    }

    fn engine(&self) -> &SharedEngine {
        self.committer.engine()
    }

    fn applied(&self) -> io::Result<Applied> {
        let bytes = self
            .engine()
            .get(Table::Meta, &keys::meta_key(self.group, keys::META_APPLIED))
            .map_err(io_err)?;
        Ok(bytes.map(|b| decode(&b)).transpose()?.unwrap_or_default())
    }

    fn current(
        &self,
        overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        key: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        // The stored bytes as they are (an async group's are encoded versions).
        self.engine()
            .get(Table::Data, &keys::data_key(self.group, key))
            .map_err(io_err)
    }

    /// The highest HLC this async group has applied.
    fn hlc_max(&self, geo: &GeoChanges) -> io::Result<Option<Hlc>> {
        if geo.hlc_max.is_some() {
            return Ok(geo.hlc_max);
        }
        hlc_max(self.engine(), self.group).map_err(io_err)
    }

    fn cursor(&self, geo: &GeoChanges, source: GroupId) -> io::Result<u64> {
        if let Some(c) = geo.cursors.get(&source) {
            return Ok(*c);
        }
        cursor(self.engine(), self.group, source).map_err(io_err)
    }

    fn src_hlc(&self, geo: &GeoChanges, source: GroupId) -> io::Result<Option<Hlc>> {
        if let Some(h) = geo.src_hlc.get(&source) {
            return Ok(Some(*h));
        }
        Ok(src_hlcs(self.engine(), self.group)
            .map_err(io_err)?
            .get(&source)
            .copied())
    }

    /// Removes each tombstone that is still the key's version and that every source has
    /// shipped past (a write with an HLC at least the tombstone's); returns how many.
    fn apply_purge(
        &self,
        sources: Vec<GroupId>,
        tombstones: Vec<(Vec<u8>, Hlc)>,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &GeoChanges,
    ) -> io::Result<u64> {
        let mut purged_seen = purged_context(self.engine(), self.group).map_err(io_err)?;
        let before = purged_seen.clone();
        let mut passed: Vec<Option<Hlc>> = Vec::with_capacity(sources.len());
        for s in &sources {
            passed.push(self.src_hlc(geo, *s)?);
        }
        let mut purged = 0;
        for (key, hlc) in tombstones {
            if !passed.iter().all(|p| p.is_some_and(|p| p >= hlc)) {
                continue;
            }
            let stored = self
                .current(overlay, &key)?
                .map(|b| decode::<Versioned>(&b))
                .transpose()?;
            if let Some(v) = stored.filter(|v| v.is_tombstone() && v.hlc == hlc) {
                batch.delete(Table::Data, keys::data_key(self.group, &key));
                overlay.insert(key, None);
                purged += 1;
                // What the purged history had seen stays known: a later write of the key
                // starts from it (see `purged_context`).
                purged_seen.merge(&v.seen);
            }
        }
        if purged_seen != before {
            debug_assert!(purged_seen.covers(&before), "the purged context only grows");
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, keys::META_PURGED_SEEN),
                encode(&purged_seen),
            );
        }
        Ok(purged)
    }

    fn stored(
        &self,
        overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        key: &[u8],
    ) -> io::Result<Option<Versioned>> {
        self.current(overlay, key)?
            .map(|b| decode::<Versioned>(&b))
            .transpose()
    }

    /// Writes `row` as `key`'s version and raises the group's highest HLC to `hlc`.
    fn put_row(
        &self,
        key: Vec<u8>,
        row: &Versioned,
        hlc: Hlc,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<()> {
        let high = self.hlc_max(geo)?;
        geo.hlc_max = Some(high.map_or(hlc, |h| h.max(hlc)));
        let bytes = encode(row);
        batch.put(Table::Data, keys::data_key(self.group, &key), bytes.clone());
        overlay.insert(key, Some(bytes));
        Ok(())
    }

    /// Merges one version of `key` (a write, a shipped write or row, a repair) by its type;
    /// records the conflicts it resolved. Returns whether a live value existed and whether
    /// the row changed.
    fn merge(
        &self,
        key: Vec<u8>,
        incoming: Versioned,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<Merged> {
        let stored = self.stored(overlay, &key)?;
        let existed = stored.as_ref().is_some_and(|s| !s.is_tombstone());
        let (row, conflicts) = row::merge(stored.as_ref(), &incoming);
        let won = row.is_some();
        match row {
            Some(row) => self.put_row(key.clone(), &row, incoming.hlc, batch, overlay, geo)?,
            None => {
                let high = self.hlc_max(geo)?;
                geo.hlc_max = Some(high.map_or(incoming.hlc, |h| h.max(incoming.hlc)));
            }
        }
        self.record(&key, conflicts, batch, geo)?;
        Ok(Merged { existed, won })
    }

    /// Appends conflicts to this replica's ledger (see [`ledger`]), dropping the oldest past
    /// the bound; counted in the result for the node's metrics.
    fn record(
        &self,
        key: &[u8],
        conflicts: Vec<Conflict>,
        batch: &mut WriteBatch,
        geo: &mut GeoChanges,
    ) -> io::Result<()> {
        if conflicts.is_empty() {
            return Ok(());
        }
        let (mut next, mut dropped) = match geo.ledger {
            Some(l) => l,
            None => ledger::position(self.engine(), self.group).map_err(io_err)?,
        };
        let detected = self.hlc_max(geo)?.unwrap_or_default();
        for c in conflicts {
            let entry = ledger::Entry::new(next, key, &c, detected);
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, &ledger::entry_tag(next)),
                encode(&entry),
            );
            if next >= self.ledger_max {
                batch.delete(
                    Table::Meta,
                    keys::meta_key(self.group, &ledger::entry_tag(next - self.ledger_max)),
                );
                dropped += 1;
            }
            next += 1;
            geo.found.push(c);
        }
        assert!(next > 0, "the ledger's next sequence number only grows");
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, ledger::META_LEDGER),
            encode(&(next, dropped)),
        );
        geo.ledger = Some((next, dropped));
        Ok(())
    }

    /// Applies an operation on a typed key of an async group, stamped `hlc`.
    fn apply_update_async(
        &self,
        key: Vec<u8>,
        op: Op,
        hlc: Hlc,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<CommandResult> {
        let stored = self.stored(overlay, &key)?;
        let existed = stored.as_ref().is_some_and(|s| s.render().is_some());
        match row::apply_op(stored.as_ref(), hlc.origin, hlc, &op) {
            Ok((row, conflicts)) => {
                self.put_row(key.clone(), &row, hlc, batch, overlay, geo)?;
                self.record(&key, conflicts, batch, geo)?;
                Ok(CommandResult {
                    existed,
                    succeeded: true,
                    hlc: Some(hlc),
                    current: row.render(),
                    ..Default::default()
                })
            }
            Err(e) => Ok(CommandResult {
                existed,
                succeeded: false,
                current: stored.and_then(|s| s.render()),
                refused: Some(e.to_string()),
                ..Default::default()
            }),
        }
    }

    /// Applies a shipped batch: refused if it would leave a gap after the cursor; writes at
    /// or below the cursor are skipped (already applied); the cursor moves to the batch's end.
    fn apply_ship(
        &self,
        b: ShipBatch,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<CommandResult> {
        let cursor = self.cursor(geo, b.source)?;
        let refused = |cursor| CommandResult {
            succeeded: false,
            cursor: Some(cursor),
            ..Default::default()
        };
        if !b.is_well_formed() || b.source == self.group || b.from > cursor + 1 {
            return Ok(refused(cursor));
        }
        let mut last = cursor;
        if b.state {
            for w in b.writes {
                let v = w.version();
                self.merge(w.key, v, batch, overlay, geo)?;
            }
        } else {
            for w in b.writes.into_iter().filter(|w| w.index > cursor) {
                assert!(w.index > last, "shipped writes apply in source order");
                last = w.index;
                if w.typed.is_none() {
                    let high = self.src_hlc(geo, b.source)?;
                    // A leader stamps after observing every stamp in the log before it, so a
                    // source's writes arrive in HLC order; tombstone purges rely on it. (A
                    // typed row carries its state's highest stamp instead, and typed keys
                    // have no tombstones.)
                    debug_assert!(
                        high.is_none_or(|h| w.hlc > h),
                        "a source's writes arrive in HLC order: {:?} after {high:?}",
                        w.hlc
                    );
                    geo.src_hlc
                        .insert(b.source, high.map_or(w.hlc, |h| h.max(w.hlc)));
                    if inject::loses(self.group, w.index) {
                        continue;
                    }
                }
                let v = w.version();
                self.merge(w.key, v, batch, overlay, geo)?;
            }
        }
        let moved = cursor.max(b.to);
        assert!(moved >= cursor, "a cursor never goes back");
        if moved != cursor {
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, &keys::cursor_tag(b.source)),
                moved.to_be_bytes().to_vec(),
            );
            geo.cursors.insert(b.source, moved);
        }
        // A promise holds for this state only once the cursor covers its commit index; kept
        // in the same commit as the cursor, so a replica that has it has the writes too.
        if let Some(f) = b.fresh.filter(|f| f.commit_index <= moved) {
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, &keys::fresh_tag(b.source)),
                encode(&f),
            );
        }
        Ok(CommandResult {
            succeeded: true,
            cursor: Some(moved),
            ..Default::default()
        })
    }

    /// The record of request id `id`: when it was first applied and its outcome.
    fn request(&self, geo: &GeoChanges, id: &[u8]) -> io::Result<Option<RequestRecord>> {
        if let Some(r) = geo.requests.get(id) {
            return Ok(r.clone());
        }
        request_record(self.engine(), self.group, id).map_err(io_err)
    }

    fn request_count(&self, geo: &GeoChanges) -> io::Result<u64> {
        if let Some(c) = geo.request_count {
            return Ok(c);
        }
        let bytes = self
            .engine()
            .get(
                Table::Meta,
                &keys::meta_key(self.group, keys::META_REQUEST_COUNT),
            )
            .map_err(io_err)?;
        Ok(bytes
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Applies a command carrying a request id once: a retry within the window gets the first
    /// outcome. Records expire after the window (a few are removed with each new one) and at
    /// most [`REQUESTS_MAX`] are kept.
    #[allow(clippy::too_many_arguments)]
    fn apply_idempotent(
        &self,
        index: u64,
        id: Vec<u8>,
        at_ms: u64,
        window_ms: u64,
        cmd: Command,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<CommandResult> {
        assert!(
            !matches!(cmd, Command::Idempotent { .. }),
            "request ids do not nest"
        );
        let previous = self.request(geo, &id)?;
        if let Some((first, _, result)) = &previous {
            if at_ms.saturating_sub(*first) <= window_ms {
                return Ok(CommandResult {
                    replayed: true,
                    conflicts: Vec::new(),
                    ..result.clone()
                });
            }
        }
        let result = self.apply_command(index, cmd, batch, overlay, geo)?;
        let mut count = self.request_count(geo)?;
        if previous.is_none() {
            count += 1;
        }
        let record = (
            at_ms,
            index,
            CommandResult {
                conflicts: Vec::new(),
                ..result.clone()
            },
        );
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, &keys::request_tag(&id)),
            encode(&record),
        );
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, &keys::request_time_tag(at_ms, &id)),
            Vec::new(),
        );
        geo.requests.insert(id, Some(record));
        // Forget the oldest records: expired ones, and any beyond the bound.
        let start = keys::meta_key(self.group, keys::REQUEST_TIME_PREFIX);
        let end = prefix_end(&start).expect("meta keys end below 0xff");
        let oldest = self
            .engine()
            .scan(Table::Meta, &start, &end, REQUESTS_PRUNE_PER_APPLY)
            .map_err(io_err)?;
        for (k, _) in oldest {
            let tag = keys::user_key(&k);
            let rest = &tag[keys::REQUEST_TIME_PREFIX.len()..];
            let (t, old_id) = rest.split_at(8);
            let t = u64::from_be_bytes(t.try_into().expect("8 bytes"));
            if t.saturating_add(window_ms) >= at_ms && count <= REQUESTS_MAX {
                break;
            }
            if geo.requests.get(old_id).is_some_and(|r| r.is_none()) {
                continue; // removed earlier in this apply
            }
            batch.delete(Table::Meta, k.clone());
            // The record goes too unless a later use of the id replaced it.
            let current = self.request(geo, old_id)?;
            if current.as_ref().is_some_and(|(first, _, _)| *first == t) {
                batch.delete(
                    Table::Meta,
                    keys::meta_key(self.group, &keys::request_tag(old_id)),
                );
                geo.requests.insert(old_id.to_vec(), None);
                count = count.saturating_sub(1);
            }
        }
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_REQUEST_COUNT),
            count.to_be_bytes().to_vec(),
        );
        geo.request_count = Some(count);
        Ok(result)
    }

    fn apply_command(
        &self,
        index: u64,
        cmd: Command,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        geo: &mut GeoChanges,
    ) -> io::Result<CommandResult> {
        if let Command::Idempotent {
            id,
            at_ms,
            window_ms,
            cmd,
        } = cmd
        {
            return self.apply_idempotent(index, id, at_ms, window_ms, *cmd, batch, overlay, geo);
        }
        let is_async = is_async_group(self.group);
        let cmd = match (cmd, is_async) {
            (
                Command::Write {
                    key,
                    value,
                    hlc,
                    mut seen,
                },
                true,
            ) => {
                // The write's dot: its region and its index in this log.
                seen.add(Dot {
                    region: hlc.origin,
                    n: index,
                });
                let merged =
                    self.merge(key, Versioned::lww(hlc, value, seen), batch, overlay, geo)?;
                return Ok(CommandResult {
                    existed: merged.existed,
                    succeeded: true,
                    hlc: Some(hlc),
                    ..Default::default()
                });
            }
            (Command::Ship(b), true) => return self.apply_ship(b, batch, overlay, geo),
            (
                Command::Update {
                    key,
                    op,
                    hlc: Some(hlc),
                },
                true,
            ) => return self.apply_update_async(key, op, hlc, batch, overlay, geo),
            (Command::Update { key, op, hlc: None }, false) => {
                return self.apply_update_sync(key, op, batch, overlay)
            }
            (Command::Load { rows }, false) => {
                let changed = rows.len() as u64;
                for (key, value) in rows {
                    batch.put(Table::Data, keys::data_key(self.group, &key), value.clone());
                    overlay.insert(key, Some(value));
                }
                return Ok(CommandResult {
                    succeeded: true,
                    changed,
                    ..Default::default()
                });
            }
            (Command::Repair { source, writes }, true) if source != self.group => {
                let mut changed = 0;
                for w in writes {
                    let v = w.version();
                    changed += u64::from(self.merge(w.key, v, batch, overlay, geo)?.won);
                }
                return Ok(CommandResult {
                    succeeded: true,
                    changed,
                    ..Default::default()
                });
            }
            (
                Command::Purge {
                    sources,
                    tombstones,
                },
                true,
            ) => {
                let changed = self.apply_purge(sources, tombstones, batch, overlay, geo)?;
                return Ok(CommandResult {
                    succeeded: true,
                    changed,
                    ..Default::default()
                });
            }
            (
                cmd @ (Command::Write { .. }
                | Command::Ship(_)
                | Command::Repair { .. }
                | Command::Purge { .. }),
                false,
            )
            | (cmd @ (Command::Put { .. } | Command::Delete { .. } | Command::Cas { .. }), true)
            | (cmd @ (Command::Repair { .. } | Command::Load { .. }), true)
            | (cmd @ (Command::Update { .. } | Command::Idempotent { .. }), _) => {
                // The node routes by keyspace type; a command of the other kind (or a repair
                // from the group itself) is refused (deterministically, on every replica)
                // rather than applied half-right.
                debug_assert!(false, "{cmd} does not belong in group {}", self.group);
                tracing::error!(group = self.group, %cmd, "command of the wrong keyspace type refused");
                return Ok(CommandResult::default());
            }
            (cmd, false) => cmd,
        };
        let current = self.current(overlay, cmd.key())?;
        let existed = current.is_some();
        let (key, new_value, succeeded) = match cmd {
            Command::Put { key, value } => (key, Some(value), true),
            Command::Delete { key } => (key, None, true),
            Command::Write { .. }
            | Command::Update { .. }
            | Command::Idempotent { .. }
            | Command::Ship(_)
            | Command::Repair { .. }
            | Command::Purge { .. }
            | Command::Load { .. } => {
                unreachable!("handled above")
            }
            Command::Cas {
                key,
                expected,
                value,
            } => {
                if current != expected {
                    return Ok(CommandResult {
                        existed,
                        succeeded: false,
                        current,
                        ..Default::default()
                    });
                }
                (key, value, true)
            }
        };
        match &new_value {
            Some(v) => batch.put(Table::Data, keys::data_key(self.group, &key), v.clone()),
            None => batch.delete(Table::Data, keys::data_key(self.group, &key)),
        }
        overlay.insert(key, new_value);
        Ok(CommandResult {
            existed,
            succeeded,
            ..Default::default()
        })
    }
}

/// The join of every purged tombstone's history in async group `group`: what a write of a key
/// with no row here has seen (every write it names was applied here, since a tombstone is
/// purged only once every source has shipped past it). Without it, a key's first write after
/// a purge would look concurrent with the tombstone another region still holds.
pub fn purged_context(
    engine: &SharedEngine,
    group: GroupId,
) -> meridian_storage::Result<meridian_crdt::VersionVector> {
    let bytes = engine.get(Table::Meta, &keys::meta_key(group, keys::META_PURGED_SEEN))?;
    Ok(bytes.and_then(|b| decode(&b).ok()).unwrap_or_default())
}

/// What a local `lww` write of `key` in async group `group` has seen, stamped by the leader:
/// every version of the key merged here, and what purged tombstones had seen. The row may lack
/// a purged tombstone's dots (a write concurrent with it arrived after the purge; see
/// `Versioned::replicated`), and with no row nothing else of the key is here. Every dot in it
/// was applied here before the write, so it never hides a concurrent write.
pub fn write_context(
    engine: &SharedEngine,
    group: GroupId,
    key: &[u8],
) -> meridian_storage::Result<meridian_crdt::VersionVector> {
    let mut seen = purged_context(engine, group)?;
    if let Some(v) = read_versioned(engine, group, key)? {
        debug_assert!(v.typed.is_none(), "an lww write to an lww row");
        seen.merge(&v.context());
    }
    Ok(seen)
}

/// The record of request id `id` in `group`: (first at_ms, first index, outcome).
pub fn request_record(
    engine: &SharedEngine,
    group: GroupId,
    id: &[u8],
) -> meridian_storage::Result<Option<RequestRecord>> {
    let bytes = engine.get(Table::Meta, &keys::meta_key(group, &keys::request_tag(id)))?;
    Ok(bytes.and_then(|b| decode(&b).ok()))
}

/// The highest HLC an async group has applied (`None` before its first write).
pub fn hlc_max(engine: &SharedEngine, group: GroupId) -> meridian_storage::Result<Option<Hlc>> {
    let bytes = engine.get(Table::Meta, &keys::meta_key(group, keys::META_HLC_MAX))?;
    Ok(bytes.and_then(|b| decode(&b).ok()))
}

/// The index of the last write async group `group` has applied (0: none): what a session
/// that read its state depends on (entries after it carry no data of this region).
pub fn last_write(engine: &SharedEngine, group: GroupId) -> meridian_storage::Result<u64> {
    let bytes = engine.get(Table::Meta, &keys::meta_key(group, keys::META_LAST_WRITE))?;
    Ok(bytes
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

/// The last index of `source`'s log that async group `group` has applied (0: none).
pub fn cursor(
    engine: &SharedEngine,
    group: GroupId,
    source: GroupId,
) -> meridian_storage::Result<u64> {
    let bytes = engine.get(
        Table::Meta,
        &keys::meta_key(group, &keys::cursor_tag(source)),
    )?;
    Ok(bytes
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

/// The rows of async group `group`'s per-source meta under `tag` (`g/cursor/`, ...), each
/// decoded by `value`; a row that does not decode is left out.
fn per_source<T>(
    engine: &SharedEngine,
    group: GroupId,
    tag: &[u8],
    value: impl Fn(Vec<u8>) -> Option<T>,
) -> meridian_storage::Result<BTreeMap<GroupId, T>> {
    let start = keys::meta_key(group, tag);
    let end = prefix_end(&start).expect("meta keys end below 0xff");
    let rows = engine.scan(Table::Meta, &start, &end, usize::MAX)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| {
            let source = u64::from_be_bytes(k[k.len() - 8..].try_into().ok()?);
            Some((source, value(v)?))
        })
        .collect())
}

/// Per source group: the highest HLC of its writes async group `group` has applied by shipping.
pub fn src_hlcs(
    engine: &SharedEngine,
    group: GroupId,
) -> meridian_storage::Result<BTreeMap<GroupId, Hlc>> {
    per_source(engine, group, b"g/src_hlc/", |v| decode(&v).ok())
}

/// The latest freshness promise of each source group that async group `group` has applied.
pub fn fresh_promises(
    engine: &SharedEngine,
    group: GroupId,
) -> meridian_storage::Result<BTreeMap<GroupId, SourceFreshness>> {
    per_source(engine, group, b"g/fresh/", |v| decode(&v).ok())
}

/// Every cursor of async group `group`: (source group, last source index applied).
pub fn cursors(
    engine: &SharedEngine,
    group: GroupId,
) -> meridian_storage::Result<Vec<(GroupId, u64)>> {
    let c = per_source(engine, group, b"g/cursor/", |v| {
        Some(u64::from_be_bytes(v.try_into().ok()?))
    })?;
    Ok(c.into_iter().collect())
}

/// One key of an async group with its version (tombstones included).
pub fn read_versioned(
    engine: &SharedEngine,
    group: GroupId,
    key: &[u8],
) -> meridian_storage::Result<Option<Versioned>> {
    let bytes = engine.get(Table::Data, &keys::data_key(group, key))?;
    Ok(bytes.and_then(|b| decode_version(group, &b)))
}

fn decode_version(group: GroupId, bytes: &[u8]) -> Option<Versioned> {
    match decode::<Versioned>(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(group, error = %e, "undecodable version in an async group");
            None
        }
    }
}

/// Up to `limit` rows of an async group from `start` (inclusive), tombstones included, in key
/// order: the raw material of shipping state and anti-entropy.
pub fn scan_versioned(
    engine: &SharedEngine,
    group: GroupId,
    start: &[u8],
    limit: usize,
) -> meridian_storage::Result<Vec<(Vec<u8>, Versioned)>> {
    let from = keys::data_key(group, start);
    let rows = engine.scan(Table::Data, &from, &keys::group_end(group), limit)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| Some((keys::user_key(&k).to_vec(), decode_version(group, &v)?)))
        .collect())
}

/// Reads one key of a group from the engine.
pub fn read(
    engine: &SharedEngine,
    group: GroupId,
    key: &[u8],
) -> meridian_storage::Result<Option<Vec<u8>>> {
    if is_async_group(group) {
        return Ok(read_versioned(engine, group, key)?.and_then(|v| v.render()));
    }
    engine.get(Table::Data, &keys::data_key(group, key))
}

/// Up to `limit` stored rows of sync group `group` after key `after` (from the first key when
/// `None`), in key order: what a promotion copies into the next epoch's group.
pub fn rows_after(
    engine: &SharedEngine,
    group: GroupId,
    after: Option<&[u8]>,
    limit: usize,
) -> meridian_storage::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    debug_assert!(!is_async_group(group), "rows of a sync group");
    let start = match after {
        Some(k) => [keys::data_key(group, k).as_slice(), &[0]].concat(),
        None => keys::data_key(group, b""),
    };
    let rows = engine.scan(Table::Data, &start, &keys::group_end(group), limit)?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (keys::user_key(&k).to_vec(), v))
        .collect())
}

/// Reads up to `limit` keys of a group starting with `prefix`, in key order.
pub fn scan(
    engine: &SharedEngine,
    group: GroupId,
    prefix: &[u8],
    limit: usize,
) -> meridian_storage::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let start = keys::data_key(group, prefix);
    let end = prefix_end(&start).unwrap_or_else(|| keys::group_end(group));
    if !is_async_group(group) {
        let rows = engine.scan(Table::Data, &start, &end, limit)?;
        return Ok(rows
            .into_iter()
            .map(|(k, v)| (keys::user_key(&k).to_vec(), v))
            .collect());
    }
    // Tombstones are rows too: page until `limit` live rows or the end of the prefix.
    let mut out = Vec::new();
    let mut from = start;
    while out.len() < limit {
        let page = engine.scan(Table::Data, &from, &end, limit - out.len())?;
        let full = page.len() == limit - out.len();
        let Some((last, _)) = page.last() else { break };
        from = [last.as_slice(), &[0]].concat();
        for (k, v) in page {
            if let Some(value) = decode_version(group, &v).and_then(|v| v.render()) {
                out.push((keys::user_key(&k).to_vec(), value));
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let a = self.applied()?;
        Ok((a.last_applied, a.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        let mut applied = self.applied()?;
        let mut batch = WriteBatch::default();
        let mut overlay = HashMap::new();
        let mut geo = GeoChanges::default();
        let mut replies = Vec::new();
        let before = applied.last_applied.map(|l| l.index);
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                // A witness votes on the log; it applies nothing of it (and answers no one: it
                // never leads).
                EntryPayload::Normal(_) if self.witness => CommandResult::default(),
                EntryPayload::Normal(cmd) => {
                    if matches!(cmd.inner(), Command::Write { .. } | Command::Update { .. }) {
                        geo.last_write = Some(entry.log_id.index);
                    }
                    let found_before = geo.found.len();
                    let mut r = self.apply_command(
                        entry.log_id.index,
                        cmd,
                        &mut batch,
                        &mut overlay,
                        &mut geo,
                    )?;
                    r.conflicts = geo.found.split_off(found_before);
                    r.index = entry.log_id.index;
                    r
                }
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::default()
                }
            };
            assert!(
                applied
                    .last_applied
                    .is_none_or(|l| l.index < entry.log_id.index),
                "group {}: applied index must advance ({:?} then {})",
                self.group,
                applied.last_applied,
                entry.log_id
            );
            applied.last_applied = Some(entry.log_id);
            if let Some(r) = responder {
                replies.push((r, result));
            }
        }
        debug_assert!(applied.last_applied.map(|l| l.index) >= before);
        if let Some(i) = geo.last_write {
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, keys::META_LAST_WRITE),
                i.to_be_bytes().to_vec(),
            );
        }
        if let Some(h) = geo.hlc_max {
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, keys::META_HLC_MAX),
                encode(&h),
            );
        }
        for (source, h) in &geo.src_hlc {
            batch.put(
                Table::Meta,
                keys::meta_key(self.group, &keys::src_hlc_tag(*source)),
                encode(h),
            );
        }
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_APPLIED),
            encode(&applied),
        );
        self.committer
            .commit_deferred(batch)
            .await
            .map_err(io_err)?;
        for (responder, result) in replies {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let content: SnapshotContent = decode(&snapshot)?;
        let mut batch = WriteBatch::default();
        batch.delete_range(
            Table::Data,
            keys::group_prefix(self.group),
            keys::group_end(self.group),
        );
        let geo = keys::meta_key(self.group, keys::META_GEO);
        batch.delete_range(
            Table::Meta,
            geo.clone(),
            prefix_end(&geo).expect("meta keys end below 0xff"),
        );
        let content = if self.witness {
            SnapshotContent {
                data: Vec::new(),
                meta: Vec::new(),
            }
        } else {
            content
        };
        for (k, v) in content.data {
            batch.put(Table::Data, keys::data_key(self.group, &k), v);
        }
        for (tag, v) in content.meta {
            assert!(
                tag.starts_with(keys::META_GEO),
                "snapshots carry only replicated meta"
            );
            batch.put(Table::Meta, keys::meta_key(self.group, &tag), v);
        }
        let applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_APPLIED),
            encode(&applied),
        );
        let stored = StoredSnapshot {
            meta: meta.clone(),
            // A witness keeps no copy of the data, not even inside a snapshot.
            data: if self.witness {
                encode(&SnapshotContent {
                    data: Vec::new(),
                    meta: Vec::new(),
                })
            } else {
                snapshot
            },
        };
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_SNAPSHOT),
            encode(&stored),
        );
        self.committer.commit(batch).await.map_err(io_err)
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let bytes = self
            .engine()
            .get(
                Table::Meta,
                &keys::meta_key(self.group, keys::META_SNAPSHOT),
            )
            .map_err(io_err)?;
        let Some(bytes) = bytes else { return Ok(None) };
        let stored: StoredSnapshot = decode(&bytes)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: stored.data,
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        // The applied index and the data must come from one consistent view: read both in one
        // read transaction, so an apply running concurrently is either wholly in or wholly out.
        let applied_key = keys::meta_key(self.group, keys::META_APPLIED);
        let applied_end = prefix_end(&applied_key).expect("meta keys end below 0xff");
        let geo_key = keys::meta_key(self.group, keys::META_GEO);
        let geo_end = prefix_end(&geo_key).expect("meta keys end below 0xff");
        let views = self
            .engine()
            .scan_consistent(&[
                (Table::Meta, applied_key, applied_end),
                (
                    Table::Data,
                    keys::group_prefix(self.group),
                    keys::group_end(self.group),
                ),
                (Table::Meta, geo_key, geo_end),
            ])
            .map_err(io_err)?;
        let applied: Applied = match views[0].first() {
            Some((_, v)) => decode(v)?,
            None => Applied::default(),
        };
        let content = SnapshotContent {
            data: views[1]
                .iter()
                .map(|(k, v)| (keys::user_key(k).to_vec(), v.clone()))
                .collect(),
            meta: views[2]
                .iter()
                .map(|(k, v)| (keys::user_key(k).to_vec(), v.clone()))
                .collect(),
        };
        let data = encode(&content);
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let mut batch = WriteBatch::default();
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_SNAPSHOT),
            encode(&stored),
        );
        self.committer.commit(batch).await.map_err(io_err)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}
