//! The raft log of one group, in the node's shared engine, written through the group committer.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use meridian_storage::{GroupCommitter, Table, WriteBatch};
use meridian_types::GroupId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys;
use crate::typ::{Entry, LogId, TypeConfig, Vote};

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("consensus records always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    bincode::deserialize(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn io_err(e: meridian_storage::StorageError) -> io::Error {
    io::Error::other(e)
}

/// A group's log. Cloning shares the same storage (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    committer: GroupCommitter,
}

impl LogStore {
    pub fn new(group: GroupId, committer: GroupCommitter) -> LogStore {
        LogStore { group, committer }
    }

    fn read_meta<T: DeserializeOwned>(&self, tag: &[u8]) -> io::Result<Option<T>> {
        let bytes = self.committer.engine().get(Table::Meta, &keys::meta_key(self.group, tag)).map_err(io_err)?;
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
        rows.iter().map(|(_, v)| decode::<Entry>(v)).collect()
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
            .last(Table::Log, &keys::log_key(self.group, 0), &keys::group_end(self.group))
            .map_err(io_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(decode::<Entry>(&v)?.log_id),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_meta(keys::META_VOTE, vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.write_meta(keys::META_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.read_meta::<Option<LogId>>(keys::META_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put(Table::Log, keys::log_key(self.group, entry.log_id.index()), encode(&entry));
        }
        let done = Box::new(move |r: meridian_storage::Result<()>| callback.io_completed(r.map_err(io_err)));
        self.committer.submit(batch, done).await.map_err(io_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let mut batch = WriteBatch::default();
        batch.delete_range(Table::Log, keys::log_key(self.group, from), keys::group_end(self.group));
        self.committer.commit(batch).await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, keys::meta_key(self.group, keys::META_PURGED), encode(&log_id));
        batch.delete_range(Table::Log, keys::log_key(self.group, 0), keys::log_key(self.group, log_id.index() + 1));
        self.committer.commit(batch).await.map_err(io_err)
    }
}
