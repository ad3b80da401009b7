//! Pure merge logic for asynchronous keyspaces: the hybrid logical clock that orders writes
//! across regions, the last-writer-wins register that merges them, and the first pieces of the
//! other conflict types (issue 9): version vectors, PN-counters, multi-value registers and add-wins
//! observed-remove sets, not yet wired to keyspaces.
//!
//! Architecture Invariant: `crdt` does no I/O, reads no clock and draws no randomness; wall
//! time is an argument, so the simulator and property tests drive it.

pub mod counter;
pub mod hlc;
pub mod lww;
pub mod mv;
pub mod orset;
pub mod vv;

pub use counter::PnCounter;
pub use hlc::{Hlc, HlcClock, Observed, RegionTag};
pub use lww::Versioned;
pub use mv::MvRegister;
pub use orset::OrSet;
pub use vv::{Causal, Dot, VersionVector};
