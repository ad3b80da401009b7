//! The raft log of one group, in the node's shared engine, written through the group committer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use meridian_storage::{GroupCommitter, Table, WriteBatch};
use meridian_types::GroupId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys;
use crate::typ::{Entry, LogId, TypeConfig, Vote};

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
}

impl LogStore {
    pub fn new(group: GroupId, committer: GroupCommitter) -> LogStore {
        LogStore {
            group,
            committer,
            unflushed: Arc::new(Mutex::new(BTreeMap::new())),
        }
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
        let done = Box::new(move |r: meridian_storage::Result<()>| {
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
        self.committer.submit(batch, done).await.map_err(io_err)
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
