//! Pure merge logic for asynchronous keyspaces: the hybrid logical clock that orders writes
//! across regions and the last-writer-wins register that merges them (the other conflict
//! types come with issue 9).
//!
//! Architecture Invariant: `crdt` does no I/O, reads no clock and draws no randomness; wall
//! time is an argument, so the simulator and property tests drive it.

pub mod hlc;
pub mod lww;

pub use hlc::{Hlc, HlcClock, Observed, RegionTag};
pub use lww::Versioned;
