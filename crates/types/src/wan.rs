//! The WAN latency model: measured round-trip times between regions.
//!
//! The default matrix is `aws-rtt.toml` (cloudping medians), compiled in. One-way delay of a
//! message is half the RTT, plus jitter drawn by the caller.

use std::collections::BTreeMap;

use serde::Deserialize;

const DEFAULT_MATRIX_TOML: &str = include_str!("aws-rtt.toml");

/// Round-trip times between regions, in milliseconds. Symmetric.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyMatrix {
    rtt_ms: BTreeMap<(String, String), f64>,
    /// RTT between two nodes of one region.
    pub intra_region_rtt_ms: f64,
    /// RTT assumed for a pair of regions the matrix does not list.
    pub unknown_rtt_ms: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    rtt_ms: BTreeMap<String, f64>,
}

impl LatencyMatrix {
    /// The compiled-in matrix of measured AWS inter-region medians.
    pub fn aws_default() -> LatencyMatrix {
        Self::from_toml(DEFAULT_MATRIX_TOML).expect("the compiled-in latency matrix parses")
    }

    /// Parses a matrix in the `aws-rtt.toml` shape: `[rtt_ms]` with `"a:b" = ms` entries.
    pub fn from_toml(text: &str) -> Result<LatencyMatrix, String> {
        let file: MatrixFile = toml::from_str(text).map_err(|e| format!("latency matrix: {e}"))?;
        Self::from_pairs(file.rtt_ms)
    }

    /// Builds a matrix from `"a:b" -> rtt_ms` entries.
    pub fn from_pairs(pairs: BTreeMap<String, f64>) -> Result<LatencyMatrix, String> {
        let mut rtt_ms = BTreeMap::new();
        for (pair, ms) in pairs {
            let Some((a, b)) = pair.split_once(':') else {
                return Err(format!(
                    "latency matrix key {pair:?} must look like \"region-a:region-b\""
                ));
            };
            if !(0.0..=10_000.0).contains(&ms) {
                return Err(format!(
                    "latency matrix RTT for {pair:?} is {ms} ms; use 0 to 10000"
                ));
            }
            rtt_ms.insert(ordered(a, b), ms);
        }
        Ok(LatencyMatrix {
            rtt_ms,
            intra_region_rtt_ms: 1.0,
            unknown_rtt_ms: 100.0,
        })
    }

    /// Adds or replaces entries (a node config's `[wan.rtt_ms]` overrides).
    pub fn override_with(&mut self, other: &LatencyMatrix) {
        for (k, v) in &other.rtt_ms {
            self.rtt_ms.insert(k.clone(), *v);
        }
    }

    /// Round-trip time between two regions.
    pub fn rtt_ms(&self, a: &str, b: &str) -> f64 {
        if a == b {
            return self.intra_region_rtt_ms;
        }
        self.rtt_ms
            .get(&ordered(a, b))
            .copied()
            .unwrap_or(self.unknown_rtt_ms)
    }

    /// One-way delay of one message: RTT / 2, scaled by `1 + jitter_pct/100 * unit`, where `unit`
    /// is a caller-drawn number in [-1, 1].
    pub fn one_way_delay_ms(&self, from: &str, to: &str, jitter_pct: f64, unit: f64) -> f64 {
        let base = self.rtt_ms(from, to) / 2.0;
        (base * (1.0 + jitter_pct / 100.0 * unit.clamp(-1.0, 1.0))).max(0.0)
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the compiled-in matrix holds the measured values in both directions.
    #[test]
    fn default_matrix_is_symmetric() {
        let m = LatencyMatrix::aws_default();
        assert_eq!(m.rtt_ms("us-east-1", "us-west-2"), 64.1);
        assert_eq!(m.rtt_ms("us-west-2", "us-east-1"), 64.1);
        assert_eq!(m.rtt_ms("eu-west-1", "us-east-1"), 69.6);
        assert_eq!(
            m.one_way_delay_ms("us-east-1", "us-west-2", 0.0, 0.7),
            32.05
        );
        assert_eq!(m.rtt_ms("mars-1", "us-east-1"), m.unknown_rtt_ms);
    }

    // Goal: jitter stays within its percentage and never makes a delay negative.
    #[test]
    fn jitter_is_bounded() {
        let m = LatencyMatrix::aws_default();
        let hi = m.one_way_delay_ms("us-east-1", "eu-west-1", 10.0, 5.0);
        let lo = m.one_way_delay_ms("us-east-1", "eu-west-1", 10.0, -1.0);
        assert!((hi - 34.8 * 1.1).abs() < 1e-9 && (lo - 34.8 * 0.9).abs() < 1e-9);
        assert_eq!(m.one_way_delay_ms("a", "b", 500.0, -1.0), 0.0);
    }

    // Goal: malformed matrix entries are rejected with the offending key.
    #[test]
    fn bad_keys_are_rejected() {
        let e = LatencyMatrix::from_toml("[rtt_ms]\n\"us-east-1\" = 3.0\n").unwrap_err();
        assert!(e.contains("us-east-1"), "{e}");
    }
}
