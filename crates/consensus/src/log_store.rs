//! The raft log of one group, in the node's shared engine, written through the group committer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use meridian_storage::{GroupCommitter, Table, WriteBatch};
use meridian_types::limits::APPEND_BYTES_MAX;
use meridian_types::GroupId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys;
use crate::typ::{Entry, LogId, TypeConfig, Vote};

/// Log entries read from the engine at once when building an append message: small, so a
/// range of large values is read only as far as the byte budget reaches.
const LOG_READ_CHUNK: u64 = 16;

/// The codec of log entries and consensus records (bincode).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("consensus records always encode")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    bincode::deserialize(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn io_err(e: meridian_storage::StorageError) -> io::Error {
    io::Error::other(e)
}

/// A group's log. Cloning shares the same storage (the reader is a clone).
///
/// openraft reads entries back (to replicate them) as soon as `append` returns, before they are
/// durable. Entries therefore sit in `unflushed` from `append` until their commit completes, and
/// reads see them there; only the flush callback tells openraft they are durable.
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    committer: GroupCommitter,
    unflushed: Arc<Mutex<BTreeMap<u64, Entry>>>,
    appends: Arc<AppendProgress>,
}

/// Appends of a group's log in flight and completed, for the proposer's batching: it gathers
/// the next batch while the log is busy writing (see `proposer`).
#[derive(Debug, Default)]
pub struct AppendProgress {
    in_flight: std::sync::atomic::AtomicUsize,
    completed: std::sync::atomic::AtomicU64,
    pub changed: tokio::sync::Notify,
}

impl AppendProgress {
    /// Appends completed so far (a counter that only grows).
    pub fn completed(&self) -> u64 {
        self.completed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether no append is being written.
    pub fn idle(&self) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    fn begin(&self) {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn end(&self) {
        let before = self
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        assert!(before > 0, "an append ended that never began");
        self.completed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

impl LogStore {
    pub fn new(group: GroupId, committer: GroupCommitter) -> LogStore {
        LogStore {
            group,
            committer,
            unflushed: Arc::new(Mutex::new(BTreeMap::new())),
            appends: Arc::new(AppendProgress::default()),
        }
    }

    /// The progress of this log's appends.
    pub fn appends(&self) -> Arc<AppendProgress> {
        self.appends.clone()
    }

    fn read_meta<T: DeserializeOwned>(&self, tag: &[u8]) -> io::Result<Option<T>> {
        let bytes = self
            .committer
            .engine()
            .get(Table::Meta, &keys::meta_key(self.group, tag))
            .map_err(io_err)?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn write_meta<T: Serialize>(&self, tag: &[u8], value: &T) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, keys::meta_key(self.group, tag), encode(value));
        self.committer.commit(batch).await.map_err(io_err)
    }
}

fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e + 1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = index_range(&range);
        // Unflushed entries first: an entry leaves `unflushed` only after its commit is visible
        // in the engine, so reading the engine second cannot miss it. (Read the other way
        // round, an entry flushed between the two reads was in neither, and openraft's
        // replication slept 10 ms on the empty answer.)
        let unflushed: Vec<(u64, Entry)> = self
            .unflushed
            .lock()
            .unwrap()
            .range(start..end.unwrap_or(u64::MAX))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let start_key = keys::log_key(self.group, start);
        let end_key = match end {
            Some(e) => keys::log_key(self.group, e),
            None => keys::group_end(self.group),
        };
        let rows = self
            .committer
            .engine()
            .scan(Table::Log, &start_key, &end_key, usize::MAX)
            .map_err(io_err)?;
        let mut entries = BTreeMap::new();
        for (k, v) in &rows {
            entries.insert(keys::log_index_of(k), decode::<Entry>(v)?);
        }
        entries.extend(unflushed);
        Ok(entries.into_values().collect())
    }

    /// What one append message carries: entries from `start` on, at most `APPEND_BYTES_MAX`
    /// encoded bytes of them (always at least one), read a chunk at a time so a long range of
    /// large values is never held whole. openraft sends what this returns and learns the range
    /// covered from it.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = start;
        while next < end {
            let chunk_end = end.min(next + LOG_READ_CHUNK);
            let chunk = self.try_get_log_entries(next..chunk_end).await?;
            let full = chunk.len() as u64 == chunk_end - next;
            for entry in chunk {
                let size = bincode::serialized_size(&entry).map_or(usize::MAX, |n| n as usize);
                if !out.is_empty() && bytes.saturating_add(size) > APPEND_BYTES_MAX {
                    return Ok(out);
                }
                debug_assert!(
                    out.last()
                        .is_none_or(|p: &Entry| p.log_id.index + 1 == entry.log_id.index),
                    "log entries are read without holes"
                );
                bytes = bytes.saturating_add(size);
                out.push(entry);
            }
            if !full {
                break;
            }
            next = chunk_end;
        }
        debug_assert!(out.len() as u64 <= end.saturating_sub(start));
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.read_meta(keys::META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(keys::META_PURGED)?;
        let last = self
            .committer
            .engine()
            .last(
                Table::Log,
                &keys::log_key(self.group, 0),
                &keys::group_end(self.group),
            )
            .map_err(io_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(decode::<Entry>(&v)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_meta(keys::META_VOTE, vote).await
    }

    // `save_committed` and `read_committed` keep openraft's defaults (not persisted): the state
    // machine stores its applied index with the data in one commit, which is all a restart
    // needs, and persisting the commit index would put a third fsync on every write's path.

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        {
            let mut unflushed = self.unflushed.lock().unwrap();
            for entry in entries {
                let index = entry.log_id.index();
                batch.put(Table::Log, keys::log_key(self.group, index), encode(&entry));
                appended.push((index, entry.log_id));
                unflushed.insert(index, entry);
            }
        }
        let unflushed = self.unflushed.clone();
        let appends = self.appends.clone();
        appends.begin();
        let done = Box::new(move |r: meridian_storage::Result<()>| {
            appends.end();
            if r.is_ok() {
                // Now readable from the engine. An entry truncated and re-appended meanwhile
                // has another log id and stays.
                let mut unflushed = unflushed.lock().unwrap();
                for (index, log_id) in appended {
                    if unflushed.get(&index).is_some_and(|e| e.log_id == log_id) {
                        unflushed.remove(&index);
                    }
                }
            }
            callback.io_completed(r.map_err(io_err))
        });
        let submitted = self.committer.submit(batch, done).await.map_err(io_err);
        if submitted.is_err() {
            // Never queued: `done` was dropped without running.
            self.appends.end();
        }
        submitted
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        self.unflushed.lock().unwrap().split_off(&from);
        let mut batch = WriteBatch::default();
        batch.delete_range(
            Table::Log,
            keys::log_key(self.group, from),
            keys::group_end(self.group),
        );
        self.committer.commit(batch).await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.unflushed
            .lock()
            .unwrap()
            .retain(|index, _| *index > log_id.index());
        let mut batch = WriteBatch::default();
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_PURGED),
            encode(&log_id),
        );
        batch.delete_range(
            Table::Log,
            keys::log_key(self.group, 0),
            keys::log_key(self.group, log_id.index() + 1),
        );
        self.committer.commit(batch).await.map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_storage::MemEngine;
    use meridian_types::wire::Command;
    use openraft::entry::RaftEntry;
    use openraft::EntryPayload;

    fn put(index: u64, value_bytes: usize) -> Entry {
        let log_id = LogId::new(
            openraft::vote::leader_id_std::CommittedLeaderId::new(1),
            index,
        );
        let mut e = Entry::new_blank(log_id);
        e.payload = EntryPayload::Normal(Command::Put {
            key: index.to_be_bytes().to_vec(),
            value: vec![7; value_bytes],
        });
        e
    }

    async fn store_with(entries: &[Entry]) -> LogStore {
        let committer = GroupCommitter::start(Arc::new(MemEngine::new()), "log-test".into());
        let group = 3 << 16;
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put(Table::Log, keys::log_key(group, e.log_id.index), encode(e));
        }
        committer.commit(batch).await.unwrap();
        LogStore::new(group, committer)
    }

    // Goal: an append message stays within its byte budget however large the values, carries at
    // least one entry, and carries a long run of small entries whole (one probe round trip).
    #[tokio::test]
    async fn append_reads_are_bounded_in_bytes_not_only_in_entries() {
        let big: Vec<Entry> = (1..=40).map(|i| put(i, 1024 * 1024)).collect();
        let mut store = store_with(&big).await;
        let got = store.limited_get_log_entries(1, 41).await.unwrap();
        assert!(!got.is_empty() && got.len() < 40, "{} entries", got.len());
        let bytes: u64 = got
            .iter()
            .map(|e| bincode::serialized_size(e).unwrap())
            .sum();
        assert!(bytes as usize <= APPEND_BYTES_MAX, "{bytes} bytes");
        assert_eq!(got.first().unwrap().log_id.index, 1);
        assert_eq!(got.last().unwrap().log_id.index, got.len() as u64);
        // A single entry larger than the rest of the budget still goes.
        let got = store.limited_get_log_entries(40, 41).await.unwrap();
        assert_eq!(got.len(), 1);

        let small: Vec<Entry> = (1..=3000).map(|i| put(i, 100)).collect();
        let mut store = store_with(&small).await;
        let got = store.limited_get_log_entries(1000, 3001).await.unwrap();
        assert_eq!(got.len(), 2001);
        assert_eq!(got.last().unwrap().log_id.index, 3000);
        // Past the end of the log: what there is.
        let got = store.limited_get_log_entries(2990, 4000).await.unwrap();
        assert_eq!(got.len(), 11);
    }
}
