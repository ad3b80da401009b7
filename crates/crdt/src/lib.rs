//! Pure merge logic for asynchronous keyspaces: the hybrid logical clock that orders writes
//! across regions (and, as they are built, the conflict types that merge them).
//!
//! Architecture Invariant: `crdt` does no I/O, reads no clock and draws no randomness; wall
//! time is an argument, so the simulator and property tests drive it.

pub mod hlc;

pub use hlc::{Hlc, HlcClock, Observed, RegionTag};
