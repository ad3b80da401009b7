//! Every size limit of requests, messages, queues and batches, defined once.

use serde::{Deserialize, Serialize};

/// Limits a node enforces on what clients send it. Configurable per node (`[limits]` in the
/// node's config file); the defaults are what a client can rely on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest key a client may write or read.
    pub key_bytes_max: usize,
    /// Largest value a client may write.
    pub value_bytes_max: usize,
    /// Most entries one scan returns.
    pub scan_limit_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: KEY_BYTES_MAX,
            value_bytes_max: VALUE_BYTES_MAX,
            scan_limit_max: SCAN_LIMIT_MAX,
        }
    }
}

pub const KEY_BYTES_MAX: usize = 4 * 1024;
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
pub const SCAN_LIMIT_MAX: usize = 10_000;
/// Default scan limit when a request names none.
pub const SCAN_LIMIT_DEFAULT: usize = 100;

/// Largest frame between nodes: an append message at its byte budget plus framing.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest HTTP request body a node reads (a value plus slack for JSON encoding of CAS).
pub const HTTP_BODY_BYTES_MAX: usize = 3 * VALUE_BYTES_MAX;
/// Requests in flight on one node's peer transport per connection, before senders wait.
pub const PEER_QUEUE_MAX: usize = 1024;
/// Concurrent inbound peer requests served per connection.
pub const PEER_INFLIGHT_MAX: usize = 512;
/// Write batches waiting for the group-commit writer, before submitters wait.
pub const COMMIT_QUEUE_MAX: usize = 4096;
/// Batches merged into one storage commit (one fsync).
pub const COMMIT_BATCHES_MAX: usize = 512;
/// Raft entries in one append message (a new leader's probes of a follower's log carry 8, a
/// constant of openraft's: see ARCHITECTURE "Failover timing").
pub const APPEND_ENTRIES_MAX: u64 = 256;
/// Encoded bytes of entries in one append message beyond its first entry (the log reader stops
/// there), so a batch of large values fits a frame: 256 values of 1 MiB would not, and the
/// follower would drop the connection on every retry of that batch.
pub const APPEND_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Shards a keyspace may have.
pub const SHARDS_MAX: u16 = 256;
/// Times a request is forwarded between nodes before it fails as unavailable.
pub const FORWARD_HOPS_MAX: u32 = 8;

const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX < FRAME_BYTES_MAX);
// The byte budget, one oversized entry past it (a compare-and-swap holds two values) and framing.
const _: () =
    assert!(APPEND_BYTES_MAX + 2 * (KEY_BYTES_MAX + VALUE_BYTES_MAX) + 4096 < FRAME_BYTES_MAX);
const _: () = assert!(HTTP_BODY_BYTES_MAX > VALUE_BYTES_MAX);
const _: () = assert!(COMMIT_BATCHES_MAX <= COMMIT_QUEUE_MAX);
const _: () = assert!(SCAN_LIMIT_DEFAULT <= SCAN_LIMIT_MAX);
