//! The record of what clients asked and what they were told: the input of every checker.
//!
//! Times are microseconds of simulated time, on one clock shared by every simulated host.

use std::collections::BTreeMap;

use meridian_crdt::Hlc;

/// What a client asked for, on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Put(String),
    Get,
    /// A read that accepts state up to `bound_ms` old (`consistency=bounded:<ms>`).
    StaleGet {
        bound_ms: u64,
    },
    /// Write `value` if the key holds `expected` (`None`: the key is absent).
    Cas {
        expected: Option<String>,
        value: String,
    },
    /// Async keyspace: a put (`Some`) or delete (`None`) in the client's region.
    Write(Option<String>),
    /// Async keyspace: a read with the client's session token (read-your-writes, monotonic).
    SessionGet,
    /// Async keyspace: a read of whatever the local replica holds.
    EventualGet,
    /// Async keyspace: a read that accepts state up to `bound_ms` old.
    BoundedGet {
        bound_ms: u64,
    },
    /// Async counter keyspace: add this amount.
    Incr(i64),
    /// Async set keyspace: add or remove this element.
    SetAdd(String),
    SetRemove(String),
    /// Async multi-value register keyspace: write this value without a context.
    MvPut(String),
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ret {
    Put,
    Get(Option<String>),
    /// The value a bounded read returned and the staleness the node said it served.
    StaleGet {
        value: Option<String>,
        staleness_ms: u64,
    },
    Cas {
        succeeded: bool,
    },
    /// An async write was acknowledged with this HLC.
    Written {
        hlc: Hlc,
    },
    /// A counter update was acknowledged.
    Incremented,
    /// A set update was acknowledged.
    SetUpdated,
    /// A register write was acknowledged with this HLC.
    MvWritten {
        hlc: Hlc,
    },
    /// An async read: the value and the HLC of the version read (a delete's too; `None`: the
    /// key was never written there).
    Read {
        value: Option<String>,
        version: Option<Hlc>,
    },
}

/// One operation. `returned: None` means the client never learned the outcome (a timeout or a
/// lost connection on a write): it may or may not have taken effect, at any time after its
/// invocation. Reads that failed are left out of the history: they changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub client: u64,
    pub key: String,
    pub call: Call,
    pub invoked_us: u64,
    pub returned: Option<(u64, Ret)>,
}

impl Op {
    pub fn returned_us(&self) -> u64 {
        self.returned.as_ref().map_or(u64::MAX, |(t, _)| *t)
    }

    /// The value this operation wrote if it took effect.
    pub fn written(&self) -> Option<&str> {
        match &self.call {
            Call::Put(v) | Call::Cas { value: v, .. } => Some(v),
            Call::Write(v) => v.as_deref(),
            Call::Get
            | Call::StaleGet { .. }
            | Call::SessionGet
            | Call::EventualGet
            | Call::BoundedGet { .. }
            | Call::Incr(_)
            | Call::SetAdd(_)
            | Call::SetRemove(_)
            | Call::MvPut(_) => None,
        }
    }

    /// The operation certainly took effect: an acknowledged put or a successful CAS.
    /// The value a read returned (`None` for writes, and reads of an absent key).
    pub fn read_value(&self) -> Option<&str> {
        match &self.returned {
            Some((_, Ret::Get(Some(v))))
            | Some((_, Ret::StaleGet { value: Some(v), .. }))
            | Some((_, Ret::Read { value: Some(v), .. })) => Some(v),
            _ => None,
        }
    }

    pub fn acknowledged_write(&self) -> bool {
        matches!(
            (&self.call, &self.returned),
            (Call::Put(_), Some((_, Ret::Put)))
                | (Call::Cas { .. }, Some((_, Ret::Cas { succeeded: true })))
        )
    }

    /// The HLC of an acknowledged async write.
    pub fn written_hlc(&self) -> Option<Hlc> {
        match (&self.call, &self.returned) {
            (Call::Write(_), Some((_, Ret::Written { hlc }))) => Some(*hlc),
            _ => None,
        }
    }

    /// An async write whose outcome the client never learned.
    pub fn unknown_write(&self) -> bool {
        matches!(self.call, Call::Write(_)) && self.returned.is_none()
    }

    /// A read that promises no more than bounded staleness: the linearizability checker leaves
    /// it to the bounded-staleness checker.
    pub fn is_stale_read(&self) -> bool {
        matches!(self.call, Call::StaleGet { .. })
    }
}

/// Operations grouped by key, each group in invocation order.
pub fn by_key(history: &[Op]) -> BTreeMap<&str, Vec<&Op>> {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    for ops in keys.values_mut() {
        ops.sort_by_key(|o| o.invoked_us);
    }
    keys
}

/// Builds an operation for checker tests: `to` is `(returned_us, ret)`, `None` if unanswered.
#[cfg(test)]
pub(crate) fn op(client: u64, call: Call, from: u64, to: Option<(u64, Ret)>) -> Op {
    Op {
        client,
        key: "k".into(),
        call,
        invoked_us: from,
        returned: to,
    }
}
