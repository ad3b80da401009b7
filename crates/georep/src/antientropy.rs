//! Anti-entropy: finding and repairing replicas of an async keyspace that diverged in spite of
//! shipping (a bug, a restored backup, bit rot).
//!
//! Each region's group leader periodically pulls, from every other region's group of the same
//! shard, a digest of its state: [`BUCKETS`] sums of entry hashes, a key's bucket fixed by its
//! hash. Only live values older than a settle horizon count, the same horizon on both sides, so
//! writes still being shipped do not make buckets differ. For each differing bucket (a bounded
//! number per round) it pages through the peer's rows and picks the ones that would change its
//! own visible state under last-writer-wins.
//!
//! A candidate is a divergence only if shipping should already have brought it: the peer
//! reports, read after the rows, its cursor for every source and the index of its last own
//! write, and a candidate from origin O counts only once this group's cursor for O has reached
//! the peer's (for the peer's own writes: its last write). Until then it may simply be in
//! flight; the runner waits a bounded time for the cursors, reads its own versions again, and
//! repairs what is still missing by merging it through its own consensus. So with correct
//! shipping the repair count stays 0, and a repair is always a real one; each is counted and
//! logged.
//!
//! Cost: a round scans the group's rows once for its own digest, and the peer scans once for
//! its digest and once per page of a differing bucket. The round interval bounds the rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_consensus::state_machine;
use meridian_consensus::Group;
use meridian_crdt::hlc::RegionTag;
use meridian_crdt::Versioned;
use meridian_storage::SharedEngine;
use meridian_types::wire::{Command, Shipped};
use meridian_types::GroupId;
use serde::{Deserialize, Serialize};

/// Buckets per digest: 2 KiB on the wire, and a differing bucket holds 1/256 of the rows.
pub const BUCKETS: usize = 256;
/// Rows read per page of a peer's bucket, and per local scan step.
pub const PAGE_ROWS: usize = 512;
/// Writes per repair command, and tombstones per purge command.
const REPAIR_CHUNK: usize = 256;
/// Tombstones purged per round at most.
const PURGE_MAX: usize = 4096;
/// Tombstones younger than this, by the purging leader's clock, are kept: a write of this
/// region stamped before the tombstone arrived could still be on its way into the log, and must
/// find the tombstone there.
pub const PURGE_AFTER_MS: u64 = 10_000;

/// FNV-1a: a stable hash (the same on every node and version), not a defence against
/// adversarial keys.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The bucket of `key`.
pub fn bucket_of(key: &[u8]) -> u32 {
    (fnv(FNV_START, key) % BUCKETS as u64) as u32
}

/// The hash of one row: key, HLC and value, each length-prefixed so no two rows collide by
/// shifting bytes between fields.
fn row_hash(key: &[u8], v: &Versioned) -> u64 {
    let mut h = fnv(FNV_START, &(key.len() as u64).to_be_bytes());
    h = fnv(h, key);
    if let Some(t) = &v.typed {
        // A typed row is its state: replicas that joined the same operations hold equal
        // states (deterministic encoding: sorted maps), whatever stamp each saw last.
        return fnv(h, &meridian_consensus::log_store::encode(t));
    }
    // An lww row's winner and its version vector, not `seen` (regions may know different
    // amounts of a key's history after tombstone purges; see `Versioned::replicated`).
    h = fnv(h, &meridian_consensus::log_store::encode(&v.vv));
    h = fnv(h, &v.hlc.physical_ms.to_be_bytes());
    h = fnv(h, &v.hlc.logical.to_be_bytes());
    h = fnv(h, &v.hlc.origin.0.to_be_bytes());
    match &v.value {
        Some(value) => {
            h = fnv(h, &(value.len() as u64).to_be_bytes());
            fnv(h, value)
        }
        None => fnv(h, b"tombstone"),
    }
}

/// Per-bucket sums of row hashes over the versions written at or before a horizon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub buckets: Vec<u64>,
    /// How far the replica had applied (read after the rows): tombstone purges elsewhere wait
    /// until every region has applied the tombstone.
    #[serde(default)]
    pub applied: Applied,
}

impl Digest {
    pub fn empty() -> Digest {
        Digest {
            buckets: vec![0; BUCKETS],
            applied: Applied::default(),
        }
    }

    /// Adds a row, tombstones included: a tombstone's HLC decides which later writes it hides,
    /// so two replicas with different tombstones for one key are not the same state. Rows
    /// written after `horizon_ms` are left out: they may still be in flight.
    pub fn add(&mut self, key: &[u8], v: &Versioned, horizon_ms: u64) {
        if v.hlc.physical_ms > horizon_ms {
            return;
        }
        let b = bucket_of(key) as usize;
        self.buckets[b] = self.buckets[b].wrapping_add(row_hash(key, v));
    }

    /// The buckets in which `self` and `other` differ (all of them if the sizes differ).
    pub fn differing(&self, other: &Digest) -> Vec<u32> {
        if self.buckets.len() != other.buckets.len() {
            return (0..BUCKETS as u32).collect();
        }
        (0..self.buckets.len())
            .filter(|&i| self.buckets[i] != other.buckets[i])
            .map(|i| i as u32)
            .collect()
    }
}

/// The digest of a group's rows, scanned in pages.
pub fn digest_of(
    engine: &SharedEngine,
    group: GroupId,
    horizon_ms: u64,
) -> meridian_storage::Result<Digest> {
    let mut d = Digest::empty();
    let mut start: Vec<u8> = Vec::new();
    loop {
        let rows = state_machine::scan_versioned(engine, group, &start, PAGE_ROWS)?;
        let full = rows.len() == PAGE_ROWS;
        for (k, v) in &rows {
            d.add(k, v, horizon_ms);
        }
        match rows.last() {
            Some((k, _)) if full => start = after(k),
            _ => break,
        }
    }
    d.applied = Applied {
        cursors: state_machine::cursors(engine, group)?.into_iter().collect(),
        last_write: state_machine::last_write(engine, group)?,
    };
    Ok(d)
}

/// Whether every peer group in `peers_of_shard` has applied the write that made tombstone `v`
/// (its cursor for the tombstone's origin has reached the tombstone's index there; the origin
/// itself has it). Only then may this region forget it: a region that has not applied it may
/// still hold an older version, which anti-entropy would otherwise bring back here as missing.
pub fn applied_everywhere(
    v: &Versioned,
    origins: &Origins,
    peers_of_shard: &[GroupId],
    reported: &BTreeMap<GroupId, Applied>,
) -> bool {
    let Some(origin) = origins.group_of(v.hlc.origin) else {
        return false;
    };
    // The tombstone's own dot: its index in the origin's log (0: unknown, never purged).
    let index = v.vv.get(v.hlc.origin);
    index > 0
        && peers_of_shard.iter().all(|p| {
            *p == origin
                || reported
                    .get(p)
                    .is_some_and(|a| a.cursors.get(&origin).is_some_and(|c| *c >= index))
        })
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// How far a replica had applied when it answered: its cursor per source group and the index
/// of its own last write. Read after its rows, so the rows reflect no more than this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub cursors: BTreeMap<GroupId, u64>,
    pub last_write: u64,
}

/// One page of a peer's bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPage {
    /// Rows of the bucket after the requested key, tombstones included, in key order.
    pub rows: Vec<(Vec<u8>, Versioned)>,
    /// More rows may follow the last one.
    pub more: bool,
    pub applied: Applied,
}

/// Up to `limit` rows of `bucket` after `after_key`, then what the replica had applied.
pub fn bucket_page(
    engine: &SharedEngine,
    group: GroupId,
    bucket: u32,
    after_key: Option<&[u8]>,
    limit: usize,
) -> meridian_storage::Result<BucketPage> {
    let limit = limit.clamp(1, PAGE_ROWS);
    let mut start = after_key.map(after).unwrap_or_default();
    let mut rows = Vec::new();
    let mut more = false;
    'scan: loop {
        let page = state_machine::scan_versioned(engine, group, &start, PAGE_ROWS)?;
        let full = page.len() == PAGE_ROWS;
        let last = page.last().map(|(k, _)| after(k));
        for (k, v) in page {
            if bucket_of(&k) == bucket {
                if rows.len() == limit {
                    more = true;
                    break 'scan;
                }
                rows.push((k, v));
            }
        }
        match last {
            Some(next) if full => start = next,
            _ => break,
        }
    }
    let applied = Applied {
        cursors: state_machine::cursors(engine, group)?.into_iter().collect(),
        last_write: state_machine::last_write(engine, group)?,
    };
    Ok(BucketPage {
        rows,
        more,
        applied,
    })
}

/// The rows of a peer that win over this replica's versions (tombstones too: a newer
/// tombstone hides writes an older one would not).
pub fn candidates(
    remote: Vec<(Vec<u8>, Versioned)>,
    local: impl Fn(&[u8]) -> Option<Versioned>,
) -> Vec<(Vec<u8>, Versioned)> {
    remote
        .into_iter()
        .filter(|(k, r)| meridian_crdt::row::changes(local(k).as_ref(), r))
        .collect()
}

/// The keyspace's groups of one shard: which group each region's writes come from.
#[derive(Clone, Debug)]
pub struct Origins {
    /// (origin tag, that region's group of this shard).
    pub groups: Vec<(RegionTag, GroupId)>,
}

impl Origins {
    pub fn group_of(&self, origin: RegionTag) -> Option<GroupId> {
        self.groups
            .iter()
            .find(|(t, _)| *t == origin)
            .map(|(_, g)| *g)
    }
}

/// The cursors this group (`local`) must have reached before `candidates` from `peer` count as
/// a divergence rather than writes in flight: per origin group, the peer's cursor for it (for
/// the peer's own writes, its last write). `None`: a candidate's origin is not a region of the
/// keyspace, which only a corrupted row can produce; it is a divergence at once.
pub fn cursors_needed(
    candidates: &[(Vec<u8>, Versioned)],
    origins: &Origins,
    local: GroupId,
    peer: GroupId,
    applied: &Applied,
) -> BTreeMap<GroupId, u64> {
    let mut need = BTreeMap::new();
    for (_, v) in candidates {
        // The regions whose writes the version holds: the winner's, and every region in its
        // context (an lww row's merged losers, a typed row's operations).
        let context = v.context();
        let regions = std::iter::once(v.hlc.origin).chain(context.entries().map(|(r, _)| r));
        for region in regions {
            let Some(origin) = origins.group_of(region) else {
                continue;
            };
            if origin == local {
                // This group applied every write of its own log: a newer own write elsewhere
                // is a divergence already.
                continue;
            }
            let at = if origin == peer {
                applied.last_write
            } else {
                applied.cursors.get(&origin).copied().unwrap_or(0)
            };
            let e = need.entry(origin).or_insert(0);
            *e = (*e).max(at);
        }
    }
    need
}

/// Whether `have` (this group's cursors) has reached every cursor in `need`.
pub fn reached(need: &BTreeMap<GroupId, u64>, have: &BTreeMap<GroupId, u64>) -> bool {
    need.iter()
        .all(|(g, at)| have.get(g).copied().unwrap_or(0) >= *at)
}

/// The peer side, over the transport.
pub trait AntiEntropyRpc: Send + Sync {
    fn digest(
        &self,
        group: GroupId,
        horizon_ms: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Digest, String>>;

    fn bucket(
        &self,
        group: GroupId,
        bucket: u32,
        after: Option<Vec<u8>>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<BucketPage, String>>;
}

#[derive(Clone, Debug)]
pub struct AntiEntropyLimits {
    /// Between rounds.
    pub interval: Duration,
    /// Rows written less than this long ago are left out of digests.
    pub settle: Duration,
    /// Differing buckets examined per peer per round.
    pub buckets_per_round: usize,
    /// Per call to a peer.
    pub timeout: Duration,
    /// How long to wait for this group's cursors to reach a peer's before giving up on a
    /// bucket until the next round.
    pub cursor_wait: Duration,
}

impl Default for AntiEntropyLimits {
    fn default() -> Self {
        AntiEntropyLimits {
            interval: Duration::from_secs(30),
            settle: Duration::from_secs(5),
            buckets_per_round: 8,
            timeout: Duration::from_secs(2),
            cursor_wait: Duration::from_secs(2),
        }
    }
}

/// What anti-entropy has done for one group, for metrics and `/v1/cluster`.
#[derive(Default)]
pub struct AntiEntropyStatus {
    pub rounds: AtomicU64,
    /// Keys whose visible value a repair changed.
    pub repairs: AtomicU64,
    /// Differing buckets found in the last round, over every peer.
    pub differing: AtomicU64,
    /// Tombstones purged.
    pub purged: AtomicU64,
}

/// One region's peer group of the same shard.
#[derive(Clone, Debug)]
pub struct Peer {
    pub region: String,
    pub group: GroupId,
}

/// Anti-entropy for one group led here, against its peers in the other regions.
pub struct AntiEntropy {
    pub group: Group,
    pub engine: SharedEngine,
    pub keyspace: String,
    pub region: String,
    pub peers: Vec<Peer>,
    pub origins: Origins,
    pub rpc: Arc<dyn AntiEntropyRpc>,
    pub limits: AntiEntropyLimits,
    pub status: Arc<AntiEntropyStatus>,
    /// Wall-clock milliseconds (the node's clock), for the settle horizon.
    pub wall_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Which differing buckets a round starts at, so a bounded round still reaches every one.
    pub rotation: Mutex<usize>,
    /// The latest cursors each peer reported (with its digest), for tombstone purges.
    pub peer_applied: Mutex<BTreeMap<GroupId, Applied>>,
}

impl AntiEntropy {
    /// Runs rounds until this node stops leading the group.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(self.limits.interval).await;
            if !self.group.raft.is_leader() {
                tracing::debug!(
                    group = self.group.id,
                    "anti-entropy stops: no longer the leader"
                );
                return;
            }
            for peer in &self.peers {
                tracing::trace!(
                    group = self.group.id,
                    peer = peer.group,
                    "anti-entropy round starts"
                );
                if let Err(e) = self.round(peer).await {
                    tracing::debug!(group = self.group.id, peer = peer.group, error = %e, "anti-entropy round incomplete; next round retries");
                }
            }
            // After the rounds: purges use the cursors the peers just reported.
            if let Err(e) = self.purge().await {
                tracing::debug!(group = self.group.id, error = %e, "tombstone purge incomplete; next round retries");
            }
            self.status.rounds.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Compares with one peer and repairs what diverged.
    pub async fn round(&self, peer: &Peer) -> Result<u64, String> {
        let horizon = (self.wall_ms)().saturating_sub(self.limits.settle.as_millis() as u64);
        let theirs = self
            .rpc
            .digest(peer.group, horizon, self.limits.timeout)
            .await?;
        self.peer_applied
            .lock()
            .unwrap()
            .insert(peer.group, theirs.applied.clone());
        let ours = digest_of(&self.engine, self.group.id, horizon).map_err(|e| e.to_string())?;
        let differing = ours.differing(&theirs);
        self.status
            .differing
            .store(differing.len() as u64, Ordering::Relaxed);
        if differing.is_empty() {
            return Ok(0);
        }
        let start = {
            let mut r = self.rotation.lock().unwrap();
            *r = r.wrapping_add(1);
            *r % differing.len()
        };
        let mut repaired = 0;
        for i in 0..differing.len().min(self.limits.buckets_per_round) {
            let bucket = differing[(start + i) % differing.len()];
            repaired += self.repair_bucket(peer, bucket).await?;
        }
        tracing::debug!(
            group = self.group.id,
            peer = peer.group,
            differing = differing.len(),
            repaired,
            horizon,
            "anti-entropy round"
        );
        Ok(repaired)
    }

    async fn repair_bucket(&self, peer: &Peer, bucket: u32) -> Result<u64, String> {
        let mut after: Option<Vec<u8>> = None;
        let mut repaired = 0;
        loop {
            let page = self
                .rpc
                .bucket(peer.group, bucket, after.clone(), self.limits.timeout)
                .await?;
            after = page.rows.last().map(|(k, _)| k.clone());
            let local = |k: &[u8]| {
                state_machine::read_versioned(&self.engine, self.group.id, k)
                    .ok()
                    .flatten()
            };
            let found = self.wanted(page.rows, local)?;
            if !found.is_empty() {
                repaired += self.repair(peer, found, &page.applied).await?;
            }
            if !page.more {
                return Ok(repaired);
            }
        }
    }

    /// The peer rows that win here, less tombstones of keys this group has no row for that every
    /// source has shipped past: purged here (or never needed: absent reads as deleted).
    fn wanted(
        &self,
        rows: Vec<(Vec<u8>, Versioned)>,
        local: impl Fn(&[u8]) -> Option<Versioned>,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, String> {
        let passed =
            state_machine::src_hlcs(&self.engine, self.group.id).map_err(|e| e.to_string())?;
        let shipped_past = |h: &meridian_crdt::Hlc| {
            self.peers
                .iter()
                .all(|p| passed.get(&p.group).is_some_and(|s| s >= h))
        };
        let mut found = candidates(rows, &local);
        found.retain(|(k, v)| !(v.is_tombstone() && shipped_past(&v.hlc) && local(k).is_none()));
        Ok(found)
    }

    /// Proposes the removal of tombstones old enough that no write still to arrive can be
    /// older: every other region has shipped here a write with a higher HLC (their writes
    /// arrive in HLC order), and this region's own in-flight writes are younger (see
    /// [`PURGE_AFTER_MS`]). Each is checked again when the purge applies.
    pub async fn purge(&self) -> Result<u64, String> {
        let passed =
            state_machine::src_hlcs(&self.engine, self.group.id).map_err(|e| e.to_string())?;
        let sources: Vec<GroupId> = self.peers.iter().map(|p| p.group).collect();
        let wall = (self.wall_ms)();
        let peers = self.peer_applied.lock().unwrap().clone();
        let eligible = |v: &Versioned| {
            let h = &v.hlc;
            h.physical_ms.saturating_add(PURGE_AFTER_MS) < wall
                && sources
                    .iter()
                    .all(|s| passed.get(s).is_some_and(|p| p >= h))
                && applied_everywhere(v, &self.origins, &sources, &peers)
        };
        let mut dead: Vec<(Vec<u8>, meridian_crdt::Hlc)> = Vec::new();
        let mut start: Vec<u8> = Vec::new();
        while dead.len() < PURGE_MAX {
            let rows =
                state_machine::scan_versioned(&self.engine, self.group.id, &start, PAGE_ROWS)
                    .map_err(|e| e.to_string())?;
            let full = rows.len() == PAGE_ROWS;
            if let Some((k, _)) = rows.last() {
                start = after(k);
            }
            dead.extend(
                rows.into_iter()
                    .filter(|(_, v)| v.is_tombstone() && eligible(v))
                    .map(|(k, v)| (k, v.hlc))
                    .take(PURGE_MAX - dead.len()),
            );
            if !full {
                break;
            }
        }
        tracing::trace!(
            group = self.group.id,
            eligible = dead.len(),
            ?passed,
            wall,
            "tombstone purge scan"
        );
        let mut purged = 0;
        for chunk in dead.chunks(REPAIR_CHUNK) {
            let cmd = Command::Purge {
                sources: sources.clone(),
                tombstones: chunk.to_vec(),
            };
            let resp = tokio::time::timeout(self.limits.timeout, self.group.raft.client_write(cmd))
                .await
                .map_err(|_| "a purge did not commit in time".to_string())?
                .map_err(|e| format!("proposing a purge: {e}"))?;
            purged += resp.data.changed;
        }
        if purged > 0 {
            self.status.purged.fetch_add(purged, Ordering::Relaxed);
            metrics::counter!("meridian_tombstones_purged_total",
                "keyspace" => self.keyspace.clone(),
                "region" => self.region.clone())
            .increment(purged);
            tracing::debug!(group = self.group.id, purged, "tombstones purged");
        }
        Ok(purged)
    }

    /// Waits for this group's cursors to reach the peer's, then merges what is still missing.
    async fn repair(
        &self,
        peer: &Peer,
        found: Vec<(Vec<u8>, Versioned)>,
        applied: &Applied,
    ) -> Result<u64, String> {
        let need = cursors_needed(&found, &self.origins, self.group.id, peer.group, applied);
        let deadline = tokio::time::Instant::now() + self.limits.cursor_wait;
        loop {
            let have: BTreeMap<GroupId, u64> = state_machine::cursors(&self.engine, self.group.id)
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
            if reached(&need, &have) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "this group's cursors {have:?} did not reach the peer's {need:?} in time; the differences may be in flight"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Shipping may have delivered some meanwhile: only what is still missing is a repair.
        let local = |k: &[u8]| {
            state_machine::read_versioned(&self.engine, self.group.id, k)
                .ok()
                .flatten()
        };
        let missing = self.wanted(found, local)?;
        let mut changed = 0;
        for chunk in missing.chunks(REPAIR_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .take(5)
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect();
            let writes = chunk
                .iter()
                .map(|(k, v)| Shipped::of_row(k.clone(), v))
                .collect();
            let cmd = Command::Repair {
                source: peer.group,
                writes,
            };
            // A leader cut off from its majority may wait for a commit without end.
            let resp = tokio::time::timeout(self.limits.timeout, self.group.raft.client_write(cmd))
                .await
                .map_err(|_| "a repair did not commit in time".to_string())?
                .map_err(|e| format!("proposing a repair: {e}"))?;
            let n = resp.data.changed;
            if n > 0 {
                changed += n;
                self.status.repairs.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("meridian_antientropy_repairs_total",
                    "keyspace" => self.keyspace.clone(),
                    "source_region" => peer.region.clone(),
                    "dest_region" => self.region.clone())
                .increment(n);
                tracing::warn!(
                    keyspace = %self.keyspace,
                    group = self.group.id,
                    from_region = %peer.region,
                    repaired = n,
                    keys = ?keys,
                    "anti-entropy repaired keys that shipping had not made converge"
                );
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::Hlc;

    fn v(physical_ms: u64, region: &str, value: Option<&str>) -> Versioned {
        Versioned::lww(
            Hlc {
                physical_ms,
                logical: 0,
                origin: RegionTag::of(region),
            },
            value.map(|s| s.as_bytes().to_vec()),
            Default::default(),
        )
    }

    // Goal: digests of equal states are equal whatever the order rows are added in; rows after
    // the horizon do not count; a tombstone does; a changed value shows in exactly its key's
    // bucket.
    #[test]
    fn digests_compare_settled_state() {
        let rows = [
            (b"a".to_vec(), v(10, "x", Some("1"))),
            (b"b".to_vec(), v(20, "y", Some("2"))),
            (b"c".to_vec(), v(30, "x", None)),
        ];
        let mut one = Digest::empty();
        for (k, r) in &rows {
            one.add(k, r, 100);
        }
        let mut two = Digest::empty();
        for (k, r) in rows.iter().rev() {
            two.add(k, r, 100);
        }
        assert_eq!(one, two);
        // A tombstone on one side and nothing on the other differ.
        let mut three = Digest::empty();
        three.add(b"a", &rows[0].1, 100);
        three.add(b"b", &rows[1].1, 100);
        assert_eq!(one.differing(&three), vec![bucket_of(b"c")]);
        // A row newer than the horizon is left out.
        three.add(b"c", &rows[2].1, 100);
        three.add(b"d", &v(150, "x", Some("4")), 100);
        assert_eq!(one, three);
        // Another value of b differs in b's bucket only.
        let mut four = Digest::empty();
        four.add(b"a", &rows[0].1, 100);
        four.add(b"b", &v(20, "y", Some("other")), 100);
        four.add(b"c", &rows[2].1, 100);
        assert_eq!(one.differing(&four), vec![bucket_of(b"b")]);
    }

    // Goal: a candidate is a peer row newer than the local version, tombstones included; never
    // an older row or an equal one.
    #[test]
    fn candidates_are_newer_peer_versions() {
        let local: BTreeMap<Vec<u8>, Versioned> = [
            (b"old".to_vec(), v(10, "x", Some("1"))),
            (b"new".to_vec(), v(50, "x", Some("1"))),
            (b"same".to_vec(), v(30, "x", Some("s"))),
            (b"deleted".to_vec(), v(40, "x", Some("d"))),
        ]
        .into_iter()
        .collect();
        let remote = vec![
            (b"absent".to_vec(), v(5, "y", Some("a"))),
            (b"deleted".to_vec(), v(45, "y", None)),
            (b"gone".to_vec(), v(45, "y", None)),
            (b"new".to_vec(), v(20, "y", Some("older"))),
            (b"old".to_vec(), v(20, "y", Some("2"))),
            (b"same".to_vec(), v(30, "x", Some("s"))),
        ];
        let found = candidates(remote, |k| local.get(k).cloned());
        let keys: Vec<&[u8]> = found.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"absent"[..], b"deleted", b"gone", b"old"]);
    }

    // Goal: a candidate from a third region waits for this group's cursor for that region to
    // reach the peer's; one of the peer's own writes waits for the peer's last write; one of
    // this group's own writes needs nothing.
    #[test]
    fn candidates_wait_for_the_cursors_that_would_have_brought_them() {
        let origins = Origins {
            groups: vec![
                (RegionTag::of("x"), 1),
                (RegionTag::of("y"), 2),
                (RegionTag::of("z"), 3),
            ],
        };
        let applied = Applied {
            cursors: [(1, 70), (3, 40)].into_iter().collect(),
            last_write: 90,
        };
        let found = vec![
            (b"a".to_vec(), v(1, "x", Some("mine"))),
            (b"b".to_vec(), v(1, "y", Some("peer's"))),
            (b"c".to_vec(), v(1, "z", Some("third"))),
        ];
        // This group is x's (1), the peer y's (2).
        let need = cursors_needed(&found, &origins, 1, 2, &applied);
        assert_eq!(need, [(2, 90), (3, 40)].into_iter().collect());
        let behind: BTreeMap<GroupId, u64> = [(2, 90), (3, 39)].into_iter().collect();
        assert!(!reached(&need, &behind));
        let caught_up: BTreeMap<GroupId, u64> = [(2, 95), (3, 40)].into_iter().collect();
        assert!(reached(&need, &caught_up));
    }
}

#[cfg(test)]
mod purge_tests {
    use super::*;
    use meridian_crdt::{Dot, Hlc, VersionVector};

    // Goal: a tombstone may be forgotten only once every other region has applied it: the
    // origin counts as having it, a peer whose cursor for the origin is below its index (or
    // that has not reported) holds it back, and a tombstone without its own dot never goes.
    #[test]
    fn purge_waits_until_every_region_applied_the_tombstone() {
        let (us, eu, ap) = (
            RegionTag::of("us"),
            RegionTag::of("eu"),
            RegionTag::of("ap"),
        );
        let origins = Origins {
            groups: vec![(us, 1), (eu, 2), (ap, 3)],
        };
        let mut vv = VersionVector::new();
        vv.add(Dot { region: eu, n: 40 });
        let hlc = Hlc {
            physical_ms: 5,
            logical: 0,
            origin: eu,
        };
        let t = Versioned::lww(hlc, None, vv);
        // This is region us (group 1); its peers are eu (the origin) and ap.
        let peers = [2, 3];
        let ap_at = |c: u64| {
            BTreeMap::from([(
                3,
                Applied {
                    cursors: BTreeMap::from([(2, c)]),
                    last_write: 0,
                },
            )])
        };
        assert!(applied_everywhere(&t, &origins, &peers, &ap_at(40)));
        assert!(!applied_everywhere(&t, &origins, &peers, &ap_at(39)));
        assert!(!applied_everywhere(&t, &origins, &peers, &BTreeMap::new()));
        let no_dot = Versioned::lww(hlc, None, VersionVector::new());
        assert!(!applied_everywhere(&no_dot, &origins, &peers, &ap_at(40)));
    }
}
