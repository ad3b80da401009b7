//! Durable storage behind one trait: an ordered key-value engine with atomic, durable batch
//! commits, and a group committer that shares one commit (one fsync) among concurrent writers.
//!
//! Architecture Invariant: nothing outside this crate names redb; layers above see [`Engine`].
//! Architecture Invariant: [`Engine::commit`] returns only after the batch is durable (fsynced);
//! callers acknowledge writes only after it returns.

pub mod committer;
pub mod conformance;
pub mod encrypted;
pub mod latency;
mod mem;
mod redb_engine;

use std::sync::Arc;

pub use committer::GroupCommitter;
pub use encrypted::{EncryptedEngine, Kek};
pub use latency::{LatencyWindow, OutcomeWindow};
pub use mem::MemEngine;
pub use redb_engine::RedbEngine;

/// The tables every engine holds. Keys and values are bytes; callers prefix keys with a group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Raft log entries, keyed by group and index.
    Log,
    /// Per-group consensus metadata: vote, committed, purged, applied, snapshot.
    Meta,
    /// User data, keyed by group and user key.
    Data,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Log, Table::Meta, Table::Data];
}

/// One mutation inside a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        table: Table,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Mutations applied atomically: after a crash either all of a committed batch is visible or,
/// if the commit did not return, possibly none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
}

impl WriteBatch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { table, key, value });
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(Op::Delete { table, key });
    }

    pub fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(Op::DeleteRange { table, start, end });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

/// A table and a `[start, end)` key range in it.
pub type KeyRange = (Table, Vec<u8>, Vec<u8>);

/// Errors of storage operations. All are fatal to the operation; the node reports them as
/// internal errors and does not acknowledge the write.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StorageError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// An ordered key-value engine with durable atomic commits.
pub trait Engine: Send + Sync + 'static {
    /// The value at `key`, reflecting every commit that has returned.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` entries with keys in `[start, end)`, in key order.
    fn scan(&self, table: Table, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Row>>;

    /// The last entry with a key in `[start, end)`.
    fn last(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<Row>>;

    /// Every entry in each of `ranges` (`[start, end)` per table), all read from one consistent
    /// view: a commit is either wholly visible in the result or not at all.
    fn scan_consistent(&self, ranges: &[KeyRange]) -> Result<Vec<Vec<Row>>>;

    /// Applies all `batches`, in order, as one atomic transaction, and returns after it is
    /// durable, together with every deferred commit before it. One call is one fsync, however
    /// many batches it carries.
    fn commit(&self, batches: &[WriteBatch]) -> Result<()>;

    /// Applies all `batches` as one atomic transaction, visible to reads when this returns but
    /// durable only with the next [`Engine::commit`]. A crash before that loses this commit
    /// whole (never a part of it), and every deferred commit after it; nothing durable is lost.
    /// For state that can be rebuilt from a durable record (a state machine from its log).
    fn commit_deferred(&self, batches: &[WriteBatch]) -> Result<()> {
        self.commit(batches)
    }

    /// Visits up to `limit` entries of `table` from `start` on, in key order, and replaces
    /// each value for which `f` returns a new one, all in one atomic durable transaction, so
    /// that no commit lands between a value's read and its replacement. Returns how many
    /// entries were visited and the key to continue from (`None`: the table's end was reached).
    fn rewrite(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
        f: &mut crate::RewriteFn<'_>,
    ) -> Result<(usize, Option<Vec<u8>>)>;
}

/// What [`Engine::rewrite`] asks of each entry: its replacement value, if any.
pub type RewriteFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Option<Vec<u8>>> + 'a;

/// The key right after `key` in byte order (where a scan that visited `key` continues).
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

pub type SharedEngine = Arc<dyn Engine>;

/// The smallest key greater than every key starting with `prefix` (for `[prefix, end)` scans).
/// `None` when no such key exists (the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: prefix_end bounds exactly the keys that start with the prefix.
    #[test]
    fn prefix_end_bounds_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
