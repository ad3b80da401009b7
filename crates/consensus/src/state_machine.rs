//! A group's state machine: the group's keys in the shared engine's data table.
//!
//! Applying a batch of entries is one durable commit holding the data changes and the new
//! applied index, so after a crash the data and the applied index agree.

use std::collections::HashMap;
use std::io;

use futures::{Stream, StreamExt};
use meridian_storage::{prefix_end, GroupCommitter, SharedEngine, Table, WriteBatch};
use meridian_types::wire::{Command, CommandResult};
use meridian_types::GroupId;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::log_store::{decode, encode, io_err};
use crate::typ::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// What the state machine has applied, stored with the data it describes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
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
}

impl StateMachine {
    pub fn new(group: GroupId, committer: GroupCommitter) -> StateMachine {
        StateMachine { group, committer }
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
        read(self.engine(), self.group, key).map_err(io_err)
    }

    fn apply_command(
        &self,
        cmd: Command,
        batch: &mut WriteBatch,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> io::Result<CommandResult> {
        let current = self.current(overlay, cmd.key())?;
        let existed = current.is_some();
        let (key, new_value, succeeded) = match cmd {
            Command::Put { key, value } => (key, Some(value), true),
            Command::Delete { key } => (key, None, true),
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
            current: None,
        })
    }
}

/// Reads one key of a group from the engine.
pub fn read(
    engine: &SharedEngine,
    group: GroupId,
    key: &[u8],
) -> meridian_storage::Result<Option<Vec<u8>>> {
    engine.get(Table::Data, &keys::data_key(group, key))
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
    let rows = engine.scan(Table::Data, &start, &end, limit)?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (keys::user_key(&k).to_vec(), v))
        .collect())
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
        let mut replies = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                EntryPayload::Normal(cmd) => self.apply_command(cmd, &mut batch, &mut overlay)?,
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::default()
                }
            };
            applied.last_applied = Some(entry.log_id);
            if let Some(r) = responder {
                replies.push((r, result));
            }
        }
        batch.put(
            Table::Meta,
            keys::meta_key(self.group, keys::META_APPLIED),
            encode(&applied),
        );
        self.committer.commit(batch).await.map_err(io_err)?;
        for (responder, result) in replies {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = decode(&snapshot)?;
        let mut batch = WriteBatch::default();
        batch.delete_range(
            Table::Data,
            keys::group_prefix(self.group),
            keys::group_end(self.group),
        );
        for (k, v) in pairs {
            batch.put(Table::Data, keys::data_key(self.group, &k), v);
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
            data: snapshot,
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
        let views = self
            .engine()
            .scan_consistent(&[
                (Table::Meta, applied_key, applied_end),
                (
                    Table::Data,
                    keys::group_prefix(self.group),
                    keys::group_end(self.group),
                ),
            ])
            .map_err(io_err)?;
        let applied: Applied = match views[0].first() {
            Some((_, v)) => decode(v)?,
            None => Applied::default(),
        };
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = views[1]
            .iter()
            .map(|(k, v)| (keys::user_key(k).to_vec(), v.clone()))
            .collect();
        let data = encode(&pairs);
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
