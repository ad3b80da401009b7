//! The simulator: the second composition root. It runs the real node code in a turmoil world
//! (simulated sockets with per-link latency from the WAN matrix, a skewable clock, the memory
//! engine), drives it with clients and a nemesis from one seed, and checks what happened.
//! Modelled on TigerBeetle's VOPR and openraft's tests-turmoil: a safety phase with faults, then
//! a liveness phase without them in which the cluster must converge.
//!
//! A failing seed replays with `meridian sim --seed N`.
//!
//! Architecture Invariant: everything a run does follows from its seed: topology, workload,
//! faults, message latencies and order (turmoil's seeded world), openraft's election timeouts
//! (`meridian_consensus::runtime::install_seed`) and the transport's jitter.

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod world;

pub use world::{run, Options, Outcome, Workload};

/// Simulated time since the running simulation started (`None` outside one): log lines of a
/// simulated run carry it, so intervals between them mean something.
pub fn sim_elapsed() -> Option<std::time::Duration> {
    turmoil::sim_elapsed()
}
