//! Control: where replicas go and where leaders should be. Pure functions of observations and
//! time, so every decision can be tested step by step.
//!
//! Architecture Invariant: nothing here does I/O or reads a clock; `now_ms` is an argument.

pub mod audit;
pub mod auth;
pub mod chain;
pub mod failover;
pub mod leadership;
pub mod meta_voters;
pub mod placement;

pub use leadership::{LeaderObservation, LeaderPlacement};
pub use meta_voters::{
    meta_voters_to_add, next_change as meta_voters_next_change, spread_ok as meta_voters_spread_ok,
    VoterChange as MetaVoterChange,
};
pub use placement::place_keyspace;
