//! Errors of key-value operations as a client sees them.
//!
//! Each variant maps to one HTTP status and one gRPC code in the API layer. A message says what
//! was wrong and, where it helps, what to do.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum KvError {
    /// The request itself is wrong (bad key, oversized value, malformed policy). Not retriable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The keyspace or key does not exist. Not retriable.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the cluster's state does not allow it (keyspace exists,
    /// consistency stronger than the keyspace offers). Not retriable as is.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No leader could be reached in time (election, partition, region loss). Retriable.
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside the node (storage failure). Retriable on another node.
    #[error("{0}")]
    Internal(String),
}

impl KvError {
    /// Whether a client may retry the same request and expect it to succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, KvError::Unavailable(_) | KvError::Internal(_))
    }
}
