//! The nemesis: a schedule of faults drawn from the seed, applied to the simulated world during
//! the safety phase and all undone before the liveness phase.
//!
//! Faults follow one another (each lasts 1-5 s, with 0.5-2 s of calm between), which keeps a
//! failing seed readable; their kinds cover partitions of every shape, crashes with restart,
//! the loss and return of a whole region, delay spikes, and clock skew and jumps.

use std::fmt;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// One fault, on node indices.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Nodes in different sides cannot exchange anything (one node, a minority, a majority or
    /// a whole region on one side).
    Partition {
        side: Vec<usize>,
        what: &'static str,
    },
    /// Frames from `from` to `to` are dropped; the other direction flows.
    OneWay { from: Vec<usize>, to: Vec<usize> },
    /// Each node reaches only its two neighbours in a ring: overlapping majorities.
    Ring,
    /// Nodes crash (losing everything not durable) and restart when the fault ends.
    Crash {
        nodes: Vec<usize>,
        what: &'static str,
    },
    /// Links from `nodes` to everyone take `factor` times their usual latency.
    DelaySpike { nodes: Vec<usize>, factor: u32 },
    /// A node's wall clock runs `offset_ms` off (skew), set at once (a jump).
    ClockJump { node: usize, offset_ms: i64 },
    /// Gray failure: every durable commit on `nodes` takes `delay_ms` longer (a disk that
    /// stalls), while their links and heartbeats stay fine.
    DiskStall { nodes: Vec<usize>, delay_ms: u64 },
    /// The metadata group's leader and as many of its other voters as stay a minority are cut
    /// off from everyone else: which nodes is decided when the fault begins (it becomes a
    /// `Partition` then).
    MetaMinority,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { side, what } => write!(f, "partition {what} {side:?} from the rest"),
            Fault::OneWay { from, to } => write!(f, "one-way cut {from:?} -> {to:?}"),
            Fault::Ring => write!(f, "ring of overlapping majorities"),
            Fault::Crash { nodes, what } => write!(f, "crash {what} {nodes:?}"),
            Fault::DelaySpike { nodes, factor } => write!(f, "delay spike x{factor} on {nodes:?}"),
            Fault::ClockJump { node, offset_ms } => {
                write!(f, "clock of node {node} jumps {offset_ms} ms")
            }
            Fault::DiskStall { nodes, delay_ms } => {
                write!(
                    f,
                    "disks of {nodes:?} stall {delay_ms} ms per commit (gray)"
                )
            }
            Fault::MetaMinority => write!(f, "partition the metadata group's leader in a minority"),
        }
    }
}

/// A fault and when it is in force, in ms of simulated time.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub start_ms: u64,
    pub end_ms: u64,
    pub fault: Fault,
}

/// The faults of one run: `regions[i]` is node i's region index.
pub fn schedule(rng: &mut StdRng, regions: &[usize], until_ms: u64) -> Vec<Scheduled> {
    let n = regions.len();
    let mut at = rng.gen_range(1_000..3_000);
    let mut faults = Vec::new();
    while at < until_ms {
        let len = rng.gen_range(1_000..5_000);
        let fault = draw(rng, regions);
        faults.push(Scheduled {
            start_ms: at,
            end_ms: (at + len).min(until_ms),
            fault,
        });
        at += len + rng.gen_range(500..2_000);
    }
    debug_assert!(faults.iter().all(|f| match &f.fault {
        Fault::Partition { side, .. } | Fault::Crash { nodes: side, .. } =>
            side.iter().all(|i| *i < n),
        _ => true,
    }));
    faults
}

fn some_nodes(rng: &mut StdRng, n: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(rng);
    all.truncate(count);
    all.sort();
    all
}

fn draw(rng: &mut StdRng, regions: &[usize]) -> Fault {
    let n = regions.len();
    let region = rng.gen_range(0..3);
    let in_region: Vec<usize> = (0..n).filter(|i| regions[*i] == region).collect();
    match rng.gen_range(0..10) {
        0 => Fault::Partition {
            side: some_nodes(rng, n, 1),
            what: "one node",
        },
        1 => Fault::Partition {
            side: some_nodes(rng, n, (n - 1) / 2),
            what: "a minority",
        },
        2 => Fault::Partition {
            side: some_nodes(rng, n, n / 2 + 1),
            what: "a majority",
        },
        3 => Fault::Partition {
            side: in_region,
            what: "a whole region",
        },
        4 => {
            let count = rng.gen_range(1..n);
            let from = some_nodes(rng, n, count);
            let to = (0..n).filter(|i| !from.contains(i)).collect();
            Fault::OneWay { from, to }
        }
        5 => Fault::Ring,
        6 => Fault::Crash {
            nodes: some_nodes(rng, n, 1),
            what: "a node",
        },
        7 => Fault::Crash {
            nodes: in_region,
            what: "a whole region",
        },
        8 => {
            let count = rng.gen_range(1..=n);
            Fault::DelaySpike {
                nodes: some_nodes(rng, n, count),
                factor: rng.gen_range(3..=10),
            }
        }
        _ => Fault::ClockJump {
            node: rng.gen_range(0..n),
            offset_ms: rng.gen_range(-5_000..=5_000),
        },
    }
}

/// The pairs of nodes that cannot exchange frames (both directions) under `fault`.
pub fn cut_pairs(fault: &Fault, n: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    match fault {
        Fault::Partition { side, .. } => {
            for a in side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    pairs.push((*a, b));
                }
            }
        }
        Fault::Ring => {
            for a in 0..n {
                for b in a + 1..n {
                    let distance = (b - a).min(n - (b - a));
                    if distance > 1 {
                        pairs.push((a, b));
                    }
                }
            }
        }
        _ => {}
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    // Goal: a schedule is a function of the seed, faults do not overlap, and every kind occurs.
    #[test]
    fn schedules_are_seeded_sequential_and_varied() {
        let regions = [0, 0, 1, 1, 2];
        let a = schedule(&mut StdRng::seed_from_u64(5), &regions, 20_000);
        let b = schedule(&mut StdRng::seed_from_u64(5), &regions, 20_000);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        for w in a.windows(2) {
            assert!(w[0].end_ms < w[1].start_ms);
        }
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..200 {
            for s in schedule(&mut StdRng::seed_from_u64(seed), &regions, 20_000) {
                kinds.insert(std::mem::discriminant(&s.fault));
            }
        }
        assert_eq!(kinds.len(), 6);
    }

    // Goal: a ring of 5 cuts exactly the non-adjacent pairs, so every node keeps 2 neighbours.
    #[test]
    fn ring_keeps_neighbours() {
        let cut = cut_pairs(&Fault::Ring, 5);
        assert_eq!(cut.len(), 5);
        assert!(!cut.contains(&(0, 4)) && !cut.contains(&(0, 1)) && cut.contains(&(0, 2)));
    }
}
