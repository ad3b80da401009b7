//! The shipper: on the leader of a region's group, for one destination group (same shard,
//! another region), sends the group's committed writes in log order, in bounded batches with a
//! bounded window in flight, and resumes from the destination's cursor after any failure.
//!
//! Why this cannot lose or repeat a write: the destination applies a batch only if it starts
//! at or before its cursor + 1, skips what is at or below the cursor, and moves the cursor in
//! the same commit as the data (see `meridian_consensus::state_machine`). The shipper only
//! reads applied entries (committed, never rolled back) and, after any error or refusal,
//! asks the destination for its cursor before sending again. A leader change on either side
//! changes only who sends or who commits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use meridian_consensus::freshness::Stamp;
use meridian_consensus::ship::{read_committed, LogRead};
use meridian_consensus::{state_machine, Group};
use meridian_crdt::Hlc;
use meridian_storage::SharedEngine;
use meridian_types::wire::{ShipBatch, Shipped, SourceFreshness};
use meridian_types::{GroupId, NodeId};
use openraft::async_runtime::WatchReceiver;

/// The destination's answer to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipAck {
    /// The batch was applied (or was wholly at or below the cursor).
    pub accepted: bool,
    /// The destination's cursor for this source after the batch.
    pub cursor: u64,
    /// The node that committed it (the destination's leader), to send to next time.
    pub leader: Option<NodeId>,
}

/// How batches reach a destination group (the server's transport; the simulator's network).
pub trait ShipRpc: Send + Sync + 'static {
    fn ship(
        &self,
        dest: GroupId,
        hint: Option<NodeId>,
        batch: ShipBatch,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ShipAck, String>>;
}

/// Bounds on what one shipper holds and sends.
#[derive(Clone, Debug)]
pub struct ShipperLimits {
    /// Batches in flight at once.
    pub window: usize,
    /// Log entries one batch covers.
    pub batch_entries: u64,
    /// Bytes of keys and values in one batch (at least one write is always sent).
    pub batch_bytes: usize,
    /// How long to wait for a destination's answer before resuming from its cursor.
    pub timeout: Duration,
    /// Pause after a failure before asking again.
    pub retry: Duration,
    /// With nothing to ship for this long, a batch with no writes carries the source leader's
    /// latest freshness promise, so the destination can bound its staleness while idle.
    pub heartbeat: Duration,
}

impl Default for ShipperLimits {
    fn default() -> Self {
        ShipperLimits {
            window: 4,
            batch_entries: 256,
            batch_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_millis(1000),
            retry: Duration::from_millis(100),
            heartbeat: Duration::from_millis(500),
        }
    }
}

/// What a shipper knows, for lag metrics and `/v1/cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShipProgress {
    /// The destination's cursor, as last acknowledged.
    pub acked: u64,
    /// The source's applied index, as last seen.
    pub source_applied: u64,
    /// The HLC of the oldest write committed here and not yet acknowledged there.
    pub oldest_pending: Option<Hlc>,
    /// The last exchange with the destination succeeded.
    pub connected: bool,
}

impl ShipProgress {
    /// Entries the destination is behind (every entry kind counts).
    pub fn entries_behind(&self) -> u64 {
        self.source_applied.saturating_sub(self.acked)
    }

    /// Age in ms, at wall time `wall_ms`, of the oldest write not yet at the destination.
    pub fn lag_ms(&self, wall_ms: u64) -> u64 {
        self.oldest_pending
            .map_or(0, |h| wall_ms.saturating_sub(h.physical_ms))
    }
}

#[derive(Default)]
pub struct ShipStatus(Mutex<ShipProgress>);

impl ShipStatus {
    pub fn get(&self) -> ShipProgress {
        self.0.lock().unwrap().clone()
    }

    fn update(&self, f: impl FnOnce(&mut ShipProgress)) {
        f(&mut self.0.lock().unwrap())
    }
}

/// One shipper: source group (led here) to one destination group.
pub struct Shipper {
    /// This node, whose freshness clock the leader's promises are on.
    pub node: NodeId,
    pub group: Group,
    pub engine: SharedEngine,
    pub dest: GroupId,
    pub rpc: Arc<dyn ShipRpc>,
    pub limits: ShipperLimits,
    pub status: Arc<ShipStatus>,
}

/// The source leader's recent freshness promises, newest last, so a batch can carry the newest
/// one its end covers (the latest is usually ahead of what has been applied and shipped).
#[derive(Default)]
struct Promises(VecDeque<Stamp>);

impl Promises {
    const KEPT: usize = 64;

    fn sample(&mut self, latest: Option<Stamp>) {
        let Some(s) = latest else { return };
        if self.0.back().is_some_and(|b| *b == s) {
            return;
        }
        if self.0.back().is_some_and(|b| b.epoch != s.epoch) {
            self.0.clear();
        }
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0.push_back(s);
    }

    /// The newest promise whose commit index is at or below `to`.
    fn covered_by(&self, to: u64, node: NodeId) -> Option<SourceFreshness> {
        self.0
            .iter()
            .rev()
            .find(|s| s.commit_index <= to)
            .map(|s| SourceFreshness {
                node,
                commit_index: s.commit_index,
                at_ms: s.at_ms,
                epoch: s.epoch,
            })
    }
}

/// A batch in flight and the oldest write it carries.
struct InFlight {
    to: u64,
    first: Option<Hlc>,
    writes: u64,
}

impl Shipper {
    fn applied(&self) -> u64 {
        self.group
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map_or(0, |l| l.index())
    }

    /// Ships until this node stops leading the source group.
    pub async fn run(self) {
        let mut hint: Option<NodeId> = None;
        while self.group.raft.is_leader() {
            match self.session(&mut hint).await {
                Ok(()) => {}
                Err(e) => {
                    // Try another node of the destination next time.
                    hint = None;
                    tracing::debug!(source = self.group.id, dest = self.dest, error = %e, "shipping paused; resuming from the destination's cursor");
                    let pending = self.peek_oldest().await;
                    self.status.update(|s| {
                        s.connected = false;
                        if let Some(p) = pending {
                            s.oldest_pending = Some(p);
                        }
                    });
                    tokio::time::sleep(self.limits.retry).await;
                }
            }
        }
    }

    /// The oldest write after the last acknowledged cursor, read from the log.
    async fn peek_oldest(&self) -> Option<Hlc> {
        let acked = self.status.get().acked;
        let applied = self.applied();
        if acked >= applied {
            return None;
        }
        let read = read_committed(
            &self.group.log,
            &self.engine,
            self.group.id,
            acked + 1,
            applied,
            64,
            1,
        );
        match read.await {
            Ok(LogRead::Batch(b)) => b.writes.first().map(|w| w.hlc),
            _ => None,
        }
    }

    /// Asks the destination for its cursor, then ships from it until an error.
    async fn session(&self, hint: &mut Option<NodeId>) -> Result<(), String> {
        let t = self.limits.timeout;
        let hello = ShipBatch {
            source: self.group.id,
            from: 1,
            to: 0,
            writes: Vec::new(),
            state: false,
            fresh: None,
        };
        let ack = self.rpc.ship(self.dest, *hint, hello, t).await?;
        *hint = ack.leader.or(*hint);
        let mut next = ack.cursor + 1;
        // The first index no batch sent in this session has covered yet.
        let mut uncovered = next;
        self.status.update(|s| {
            s.acked = ack.cursor;
            s.connected = true;
            // Set again by the first batch sent; a stale stamp from before would read as lag.
            s.oldest_pending = None;
        });
        let mut inflight: FuturesOrdered<BoxFuture<'static, Result<ShipAck, String>>> =
            FuturesOrdered::new();
        let mut meta: VecDeque<InFlight> = VecDeque::new();
        // The end of a range with no write, skipped while batches were in flight: counts as
        // delivered once they are.
        let mut skipped_to: Option<u64> = None;
        let mut metrics = self.group.raft.metrics();
        let mut promises = Promises::default();
        let mut last_sent = tokio::time::Instant::now();
        loop {
            if !self.group.raft.is_leader() {
                return Ok(());
            }
            promises.sample(self.group.stamper.latest());
            let applied = self.applied();
            self.status.update(|s| s.source_applied = applied);
            while inflight.len() < self.limits.window && next <= applied {
                let read = read_committed(
                    &self.group.log,
                    &self.engine,
                    self.group.id,
                    next,
                    applied,
                    self.limits.batch_entries,
                    self.limits.batch_bytes,
                )
                .await
                .map_err(|e| format!("reading the log: {e}"))?;
                let batch = match read {
                    LogRead::Batch(b) => b,
                    LogRead::Purged { last_purged } => {
                        // Drain what is in flight first, so the state follows it.
                        while let Some(r) = inflight.next().await {
                            r?;
                        }
                        next = self.ship_state(hint, last_purged).await? + 1;
                        uncovered = next;
                        meta.clear();
                        continue;
                    }
                };
                assert_eq!(batch.from, next, "a cursor never skips");
                next = batch.to + 1;
                let mut batch = batch;
                if !batch.writes.is_empty() {
                    // Cover the skipped write-less entries too: no gap at the destination.
                    assert!(uncovered <= batch.from, "ranges are sent in order");
                    batch.from = uncovered;
                    uncovered = batch.to + 1;
                }
                if batch.writes.is_empty() {
                    // Nothing to ship (blank, membership and shipped-in entries): sending it
                    // would commit an entry at the destination whose own shippers would then
                    // send an empty batch back, and so on, forever. The destination's cursor
                    // only needs to pass writes; the next batch with a write covers this range.
                    if meta.is_empty() {
                        self.status.update(|s| {
                            s.acked = s.acked.max(batch.to);
                            s.oldest_pending = None;
                        });
                    } else {
                        skipped_to = Some(batch.to);
                    }
                    continue;
                }
                meta.push_back(InFlight {
                    to: batch.to,
                    first: batch.writes.first().map(|w| w.hlc),
                    writes: batch.writes.len() as u64,
                });
                if meta.len() == 1 {
                    let first = meta[0].first;
                    self.status.update(|s| s.oldest_pending = first);
                }
                debug_assert!(
                    meta.iter().all(|m| m.writes > 0 || m.first.is_none()),
                    "only batches with writes, or idle promises, travel"
                );
                batch.fresh = promises.covered_by(batch.to, self.node);
                last_sent = tokio::time::Instant::now();
                inflight.push_back(self.rpc.ship(self.dest, *hint, batch, t));
            }
            // Caught up and idle: renew the destination's freshness promise.
            if inflight.is_empty() && next > applied && last_sent.elapsed() >= self.limits.heartbeat
            {
                last_sent = tokio::time::Instant::now();
                if let Some(fresh) = promises.covered_by(next - 1, self.node) {
                    let beat = ShipBatch {
                        source: self.group.id,
                        from: uncovered,
                        to: next - 1,
                        writes: Vec::new(),
                        state: false,
                        fresh: Some(fresh),
                    };
                    uncovered = next;
                    meta.push_back(InFlight {
                        to: beat.to,
                        first: None,
                        writes: 0,
                    });
                    inflight.push_back(self.rpc.ship(self.dest, *hint, beat, t));
                }
            }
            tokio::select! {
                Some(r) = inflight.next(), if !inflight.is_empty() => {
                    let ack = r?;
                    let sent = meta.pop_front().expect("one record per batch in flight");
                    *hint = ack.leader.or(*hint);
                    if !ack.accepted || ack.cursor < sent.to {
                        return Err(format!("destination at cursor {} refused the batch ending at {}", ack.cursor, sent.to));
                    }
                    let oldest = meta.iter().find_map(|m| m.first);
                    let skipped = if meta.is_empty() { skipped_to.take() } else { None };
                    self.status.update(|s| {
                        s.acked = s.acked.max(ack.cursor).max(skipped.unwrap_or(0));
                        s.oldest_pending = oldest;
                        s.connected = true;
                    });
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                // Re-check leadership, and renew the promise, now and then when idle.
                _ = tokio::time::sleep(self.limits.heartbeat.min(Duration::from_millis(500))) => {}
            }
        }
    }

    /// Sends the source's whole state in bounded chunks (the log was compacted past the
    /// destination's cursor) and moves the cursor to the applied index read before the first
    /// chunk: every write at or below it is in the state the chunks carry. Returns that index.
    async fn ship_state(&self, hint: &mut Option<NodeId>, last_purged: u64) -> Result<u64, String> {
        let as_of = self.applied();
        assert!(
            as_of >= last_purged,
            "applied {as_of} below purged {last_purged}"
        );
        tracing::info!(
            source = self.group.id,
            dest = self.dest,
            as_of,
            "log compacted past the destination's cursor; shipping state"
        );
        let mut start: Vec<u8> = Vec::new();
        loop {
            let rows = state_machine::scan_versioned(
                &self.engine,
                self.group.id,
                &start,
                self.limits.batch_entries as usize,
            )
            .map_err(|e| format!("reading state: {e}"))?;
            let last_chunk = rows.len() < self.limits.batch_entries as usize;
            if let Some((k, _)) = rows.last() {
                start = [k.as_slice(), &[0]].concat();
            }
            let batch = ShipBatch {
                source: self.group.id,
                from: 0,
                to: if last_chunk { as_of } else { 0 },
                writes: rows
                    .into_iter()
                    .map(|(key, v)| Shipped::of_row(key, &v))
                    .collect(),
                state: true,
                fresh: None,
            };
            let ack = self
                .rpc
                .ship(self.dest, *hint, batch, self.limits.timeout)
                .await?;
            *hint = ack.leader.or(*hint);
            if !ack.accepted {
                return Err(format!(
                    "destination refused a state chunk at cursor {}",
                    ack.cursor
                ));
            }
            if last_chunk {
                assert!(ack.cursor >= as_of, "the last chunk moves the cursor");
                self.status.update(|s| s.acked = s.acked.max(ack.cursor));
                return Ok(ack.cursor);
            }
        }
    }
}
