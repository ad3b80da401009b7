//! YCSB-style workloads: the operation mix and the key chooser, pure and seeded, so every
//! target is driven by the same sequence of operations for the same seed.

use std::str::FromStr;

use rand::rngs::StdRng;
use rand::Rng;

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// YCSB A: 50% reads, 50% updates.
    A,
    /// YCSB B: 95% reads, 5% updates.
    B,
    /// YCSB C: reads only.
    C,
    /// Updates only.
    Write,
}

impl Workload {
    /// Percentage of operations that are reads.
    pub fn read_pct(self) -> u32 {
        match self {
            Workload::A => 50,
            Workload::B => 95,
            Workload::C => 100,
            Workload::Write => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::Write => "write",
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Ok(Workload::A),
            "b" => Ok(Workload::B),
            "c" => Ok(Workload::C),
            "write" | "w" => Ok(Workload::Write),
            other => Err(format!(
                "unknown workload {other:?}; use a (50/50 read/update), b (95/5), c (read-only) or write"
            )),
        }
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    /// Skewed as in YCSB (theta 0.99), with ranks scattered over the key space so the hot keys
    /// are not neighbours (and not all in one shard).
    Zipfian,
}

impl FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" => Ok(Distribution::Zipfian),
            other => Err(format!(
                "unknown distribution {other:?}; use zipfian or uniform"
            )),
        }
    }
}

/// The YCSB skew constant.
const ZIPFIAN_THETA: f64 = 0.99;

/// Draws ranks in `0..n` with probability proportional to `1 / (rank + 1)^theta`, by the
/// closed-form approximation of Gray et al., "Quickly Generating Billion-Record Synthetic
/// Databases" (SIGMOD 1994), which YCSB uses.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub fn new(n: u64) -> Zipfian {
        assert!(n >= 2, "a zipfian distribution needs at least 2 items");
        let theta = ZIPFIAN_THETA;
        let zeta_n = zeta(n, theta);
        let zeta_2 = zeta(2, theta);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
        }
    }

    pub fn rank(&self, rng: &mut StdRng) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// One operation to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Read(u64),
    Update(u64),
}

/// The operation stream of one client.
pub struct Generator {
    workload: Workload,
    keys: u64,
    zipfian: Option<Zipfian>,
}

/// Scatters rank `r` over `0..n` (a fixed bijection would need n prime; a hash is enough here,
/// collisions only make a few keys a little hotter).
fn scatter(r: u64, n: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&r.to_le_bytes()) % n
}

impl Generator {
    pub fn new(workload: Workload, keys: u64, distribution: Distribution) -> Generator {
        let zipfian =
            (distribution == Distribution::Zipfian && keys >= 2).then(|| Zipfian::new(keys));
        Generator {
            workload,
            keys,
            zipfian,
        }
    }

    pub fn next(&self, rng: &mut StdRng) -> Operation {
        let key = match &self.zipfian {
            Some(z) => scatter(z.rank(rng), self.keys),
            None => rng.gen_range(0..self.keys),
        };
        if rng.gen_range(0..100) < self.workload.read_pct() {
            Operation::Read(key)
        } else {
            Operation::Update(key)
        }
    }
}

/// The key for index `i`, as YCSB names them.
pub fn key_name(i: u64) -> String {
    format!("user{i:010}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    // Goal: the mixes match their definitions; method: count 20 000 seeded draws.
    #[test]
    fn mixes_match_their_read_share() {
        for (w, pct) in [
            (Workload::A, 50.0),
            (Workload::B, 95.0),
            (Workload::C, 100.0),
            (Workload::Write, 0.0),
        ] {
            let g = Generator::new(w, 1000, Distribution::Uniform);
            let mut rng = StdRng::seed_from_u64(7);
            let reads = (0..20_000)
                .filter(|_| matches!(g.next(&mut rng), Operation::Read(_)))
                .count();
            let share = reads as f64 / 200.0;
            assert!((share - pct).abs() < 1.5, "{w:?}: {share}% reads");
        }
    }

    // Goal: the zipfian chooser is skewed as YCSB's: the hottest rank takes about
    // 1/zeta(n) of the draws (~13% for n = 1000) and every draw is in range.
    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let z = Zipfian::new(1000);
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.rank(&mut rng) as usize] += 1;
        }
        let top = counts[0] as f64 / 100_000.0;
        let expected = 1.0 / zeta(1000, ZIPFIAN_THETA);
        assert!(
            (top - expected).abs() < 0.01,
            "rank 0: {top}, expected {expected}"
        );
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
    }

    // Goal: the same seed gives the same stream, so targets are driven alike.
    #[test]
    fn streams_are_reproducible() {
        let g = Generator::new(Workload::A, 500, Distribution::Zipfian);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100).map(|_| g.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
