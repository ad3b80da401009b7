//! Types that cross layers: commands replicated through consensus, their results, and what a
//! read or write reply reports about where it was served.

use serde::{Deserialize, Serialize};

use meridian_crdt::{Conflict, Hlc, Op, Typed, VersionVector, Versioned};

use crate::ids::{GroupId, NodeId};

/// A mutation of one key, replicated through a group's log and applied by its state machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Writes `value` (or deletes, when `None`) only if the current value equals `expected`
    /// (`None` means absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    },
    /// A put (`Some`) or delete (`None`) of an async keyspace, stamped with its HLC by the
    /// leader of the region's group that accepted it. Merged last-writer-wins.
    Write {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        hlc: Hlc,
        /// What the write had seen: the key's version vector of every write merged in the
        /// leader's state when it was stamped. The write's own dot (its region, its index in
        /// this log) completes its vector.
        seen: VersionVector,
    },
    /// An operation on a typed key (counter, set, multi-value register). Async keyspaces:
    /// stamped like a write and merged by the type; sync keyspaces (counter and set only):
    /// `hlc` is `None` and the stored value is the rendered one, ordered by consensus.
    Update {
        key: Vec<u8>,
        op: Op,
        hlc: Option<Hlc>,
    },
    /// Writes another region's group committed, shipped in its log order (see [`ShipBatch`]).
    Ship(ShipBatch),
    /// Versions anti-entropy found missing here, read from `source` (another region's group of
    /// the same shard): merged last-writer-wins like any shipped write; no cursor moves.
    Repair {
        source: GroupId,
        writes: Vec<Shipped>,
    },
    /// A client write with a request id: applied once; a retry with the same id within
    /// `window_ms` of the first (by the proposers' clocks, `at_ms`) gets the first outcome and
    /// changes nothing. The record of ids is replicated group meta, so it survives leader
    /// changes and restarts.
    Idempotent {
        id: Vec<u8>,
        at_ms: u64,
        window_ms: u64,
        cmd: Box<Command>,
    },
    /// Removes tombstones no write still to arrive can be older than: each is removed only if
    /// it is still the key's version and every group in `sources` (the keyspace's other
    /// regions' groups of the shard) has shipped here a write with an HLC at least its own.
    Purge {
        sources: Vec<GroupId>,
        tombstones: Vec<(Vec<u8>, Hlc)>,
    },
    /// Rows (key, stored value) of a sync group's state carried into the group of a new epoch
    /// by a promotion (see `server/src/promotion.rs`): each is written as it is, in order.
    Load {
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// One write as shipped: the source log index that committed it, and the write.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shipped {
    pub index: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub hlc: Hlc,
    /// An lww write's version vector (what it had seen, and its own dot).
    pub vv: VersionVector,
    /// A shipped lww row's history (every write merged into it); a shipped write's is its
    /// own vector.
    pub seen: VersionVector,
    /// A typed key's whole state as the source held it when shipping (merged by the type's
    /// join, so a state that already includes later operations is harmless); `hlc` is then
    /// the state's highest stamp.
    pub typed: Option<Typed>,
}

impl Shipped {
    /// The version this shipped write merges as.
    pub fn version(&self) -> Versioned {
        Versioned {
            hlc: self.hlc,
            value: self.value.clone(),
            vv: self.vv.clone(),
            seen: self.seen.clone(),
            typed: self.typed.clone(),
        }
    }

    /// A stored row as shipped (state transfer, repair): index 0.
    pub fn of_row(key: Vec<u8>, v: &Versioned) -> Shipped {
        Shipped {
            index: 0,
            key,
            value: v.value.clone(),
            hlc: v.hlc,
            vv: v.vv.clone(),
            seen: v.seen.clone(),
            typed: v.typed.clone(),
        }
    }
}

/// A run of a source group's log, delivered to a destination group of the same shard in
/// another region. The destination keeps a cursor per source (the last source index applied)
/// in the same commit as the merged data: a batch that starts past `cursor + 1` would leave a
/// gap and is refused; writes at or below the cursor are skipped, so nothing applies twice.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShipBatch {
    pub source: GroupId,
    /// First source index the batch covers (entries that are not writes are covered too).
    pub from: u64,
    /// Last source index covered; the cursor moves here. `to < from` carries nothing and
    /// asks only for the cursor.
    pub to: u64,
    /// The writes in `from..=to`, in index order.
    pub writes: Vec<Shipped>,
    /// The writes are rows of the source's state (any origin, index 0), sent because the
    /// log from `from` was compacted: merged whatever the cursor, which moves to `to` with the
    /// last chunk (earlier chunks carry `to < from`).
    pub state: bool,
    /// The source leader's freshness promise, sent when the batch takes the cursor to or past
    /// its commit index (a batch with no writes, sent when idle, carries only this). The
    /// destination keeps the latest, with the cursor, for `bounded:<ms>` reads.
    #[serde(default)]
    pub fresh: Option<SourceFreshness>,
}

/// A source group leader's promise: every write it acknowledged before `at_ms` (on the
/// freshness clock of node `node`, incarnation `epoch`) has an index at or below
/// `commit_index` (see `meridian_consensus::freshness`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceFreshness {
    pub node: NodeId,
    pub commit_index: u64,
    pub at_ms: u64,
    pub epoch: u64,
}

impl ShipBatch {
    /// The batch is in order and inside its range.
    pub fn is_well_formed(&self) -> bool {
        if self.state {
            return self.writes.iter().all(|w| w.index == 0);
        }
        self.writes.windows(2).all(|w| w[0].index < w[1].index)
            && self
                .writes
                .iter()
                .all(|w| w.index >= self.from && w.index <= self.to)
    }
}

impl Command {
    /// The key of a single-key command; a shipped batch has none (empty).
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key }
            | Command::Cas { key, .. }
            | Command::Write { key, .. }
            | Command::Update { key, .. } => key,
            Command::Idempotent { cmd, .. } => cmd.key(),
            Command::Ship(_)
            | Command::Repair { .. }
            | Command::Purge { .. }
            | Command::Load { .. } => &[],
        }
    }
}

/// The state machine's answer to one command.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandResult {
    /// Whether the key existed before the command.
    pub existed: bool,
    /// For CAS: whether the swap happened.
    pub succeeded: bool,
    /// For a failed CAS: the current value.
    pub current: Option<Vec<u8>>,
    /// The log index that committed the command (filled in by the node, for session tokens).
    #[serde(default)]
    pub index: u64,
    /// For an async write: its HLC. For a shipped batch: unused.
    #[serde(default)]
    pub hlc: Option<Hlc>,
    /// For a shipped batch: the destination's cursor for the source after it.
    #[serde(default)]
    pub cursor: Option<u64>,
    /// For a repair: how many keys it changed; for a purge: how many tombstones it removed.
    #[serde(default)]
    pub changed: u64,
    /// The conflicts merging this command resolved (and recorded in the ledger).
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
    /// For a refused operation (a counter update leaving the i64 range): why.
    #[serde(default)]
    pub refused: Option<String>,
    /// A retry of a request id already applied: this is the first outcome, and nothing was
    /// applied again.
    #[serde(default)]
    pub replayed: bool,
}

impl Command {
    /// The command itself, inside a request id's wrapper.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Idempotent { cmd, .. } => cmd.inner(),
            c => c,
        }
    }
}

/// Where a request was served, reported in every response.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServedBy {
    pub region: String,
    pub node: NodeId,
    /// For a non-linearizable read: how stale the served state was, at most, in milliseconds.
    pub staleness_ms: Option<u64>,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = String::from_utf8_lossy(self.key());
        match self {
            Command::Put { value, .. } => write!(f, "put {key:?} ({} bytes)", value.len()),
            Command::Delete { .. } => write!(f, "delete {key:?}"),
            Command::Cas { .. } => write!(f, "cas {key:?}"),
            Command::Write { value: Some(v), .. } => {
                write!(f, "write {key:?} ({} bytes)", v.len())
            }
            Command::Write { value: None, .. } => write!(f, "write {key:?} (delete)"),
            Command::Update { op, .. } => write!(f, "{} update of {key:?}", op.type_name()),
            Command::Idempotent { cmd, .. } => write!(f, "{cmd} (with a request id)"),
            Command::Ship(b) => write!(
                f,
                "ship {} writes of group {} ({}..={})",
                b.writes.len(),
                b.source,
                b.from,
                b.to
            ),
            Command::Repair { source, writes } => {
                write!(f, "repair {} writes from group {source}", writes.len())
            }
            Command::Purge { tombstones, .. } => {
                write!(f, "purge {} tombstones", tombstones.len())
            }
            Command::Load { rows } => write!(f, "load {} rows", rows.len()),
        }
    }
}

impl std::fmt::Display for CommandResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "existed={} succeeded={}", self.existed, self.succeeded)
    }
}
