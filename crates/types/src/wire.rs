//! Types that cross layers: commands replicated through consensus, their results, and what a
//! read or write reply reports about where it was served.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

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
}

impl Command {
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => key,
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
        }
    }
}

impl std::fmt::Display for CommandResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "existed={} succeeded={}", self.existed, self.succeeded)
    }
}
