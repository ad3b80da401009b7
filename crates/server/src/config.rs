//! A node's configuration file (`meridian server --config node.toml`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meridian_types::wan::LatencyMatrix;
use meridian_types::{Limits, NodeId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique, stable, non-zero.
    pub node_id: NodeId,
    pub region: String,
    /// Defaults to `<region>a`.
    #[serde(default)]
    pub zone: String,
    pub data_dir: PathBuf,
    /// Node-to-node transport; also the address other nodes list as a seed.
    pub listen_peer: String,
    pub listen_http: String,
    pub listen_grpc: String,
    /// Peer addresses of nodes already in the cluster, for joining.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Set on exactly one node of a new cluster: it initialises the metadata group.
    #[serde(default)]
    pub bootstrap: bool,
    #[serde(default)]
    pub wan: WanConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub raft: RaftTiming,
    /// How long a home-region voter must stay caught up before leadership returns to it.
    #[serde(default = "default_return_delay")]
    pub leader_return_delay_ms: u64,
    /// The largest clock offset to a leader that this node accepts when it bounds the staleness
    /// of what it serves: beyond it (or with the offset unknown), bounded reads go to the
    /// leader.
    #[serde(default = "default_max_clock_offset")]
    pub max_clock_offset_ms: u64,
    /// How long a bounded-staleness read may wait for a replica within its bound (the leader,
    /// when the local replica is too stale) before it fails as unavailable.
    #[serde(default = "default_bounded_read_wait")]
    pub bounded_read_wait_ms: u64,
    /// How often the leader of each async group compares its state with the other regions'
    /// (anti-entropy; see `meridian_georep::antientropy`).
    #[serde(default = "default_antientropy_interval")]
    pub antientropy_interval_ms: u64,
    /// Writes younger than this are left out of anti-entropy digests (they may be in flight).
    #[serde(default = "default_antientropy_settle")]
    pub antientropy_settle_ms: u64,
    /// Conflict ledger entries kept per async group (shard and region); the oldest beyond are
    /// dropped and counted.
    #[serde(default = "default_conflict_ledger_max")]
    pub conflict_ledger_max: u64,
    /// Conflict ledger entries older than this are not served (and age out as new ones come).
    #[serde(default = "default_conflict_ledger_max_age")]
    pub conflict_ledger_max_age_s: u64,
    /// How long a write's request id (`meridian-request-id`) is remembered: a retry within
    /// this window returns the first outcome and is not applied again.
    #[serde(default = "default_request_id_window")]
    pub request_id_window_s: u64,
    /// Region health and failover decisions (see `meridian_control::failover`).
    #[serde(default)]
    pub failover: meridian_control::failover::FailoverConfig,
    /// `data` (the default) or `witness`: a witness votes and keeps logs but holds no
    /// key-value state and never leads (see a policy's `witness_region`).
    #[serde(default)]
    pub role: meridian_types::catalog::NodeRole,
    /// Tokens and roles (see `crate::auth`).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// TLS on every listener, mutual between nodes (see `crate::tls`). Absent: plaintext.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Encryption at rest (see `crate::encryption`). Absent: values are stored in the clear.
    #[serde(default)]
    pub encryption: Option<crate::encryption::EncryptionConfig>,
    /// Debugging and residency tests: every frame this node reads from a peer is appended to
    /// this file as received (up to 512 MiB). Never in production: it holds what crossed the
    /// network, data included.
    #[serde(default)]
    pub capture_frames: Option<PathBuf>,
}

fn default_request_id_window() -> u64 {
    600
}

fn default_conflict_ledger_max() -> u64 {
    meridian_consensus::state_machine::LEDGER_MAX_DEFAULT
}

fn default_conflict_ledger_max_age() -> u64 {
    7 * 24 * 3600
}

fn default_antientropy_interval() -> u64 {
    30_000
}

fn default_antientropy_settle() -> u64 {
    5_000
}

fn default_return_delay() -> u64 {
    3000
}

fn default_max_clock_offset() -> u64 {
    500
}

fn default_bounded_read_wait() -> u64 {
    1000
}

/// The emulated WAN between regions, applied to every frame this node sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WanConfig {
    pub enabled: bool,
    /// Each delay is scaled by a uniform factor in `1 ± jitter_pct/100`.
    pub jitter_pct: f64,
    pub intra_region_rtt_ms: f64,
    /// Overrides of the compiled-in matrix: `"region-a:region-b" = rtt_ms`.
    pub rtt_ms: BTreeMap<String, f64>,
    /// Seed of the jitter draws.
    pub seed: u64,
}

impl Default for WanConfig {
    fn default() -> Self {
        WanConfig {
            enabled: true,
            jitter_pct: 5.0,
            intra_region_rtt_ms: 1.0,
            rtt_ms: BTreeMap::new(),
            seed: 1,
        }
    }
}

impl WanConfig {
    pub fn matrix(&self) -> Result<LatencyMatrix, String> {
        let mut m = LatencyMatrix::aws_default();
        m.override_with(&LatencyMatrix::from_pairs(self.rtt_ms.clone())?);
        m.intra_region_rtt_ms = self.intra_region_rtt_ms;
        Ok(m)
    }
}

/// Consensus timing. Unset (the default): each group's timing follows from the round trips
/// between its regions in the latency matrix (see `meridian_consensus::election`). Set all three
/// to fix every group's timing instead.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
}

impl NodeConfig {
    /// Reads and validates a config file; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg: NodeConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.validated()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Fills defaults and checks every field.
    pub fn validated(mut self) -> Result<NodeConfig, String> {
        if self.node_id == 0 {
            return Err("node_id must be a positive integer, unique in the cluster".into());
        }
        if self.region.is_empty() {
            return Err("region is empty; name the node's region, e.g. \"us-east-1\"".into());
        }
        if self.zone.is_empty() {
            self.zone = format!("{}a", self.region);
        }
        crate::auth::AuthState::load(&self.auth).map_err(|e| format!("[auth]: {e}"))?;
        if let Some(e) = &self.encryption {
            e.kek(&self.data_dir)
                .map_err(|e| format!("[encryption]: {e}"))?;
        }
        if let Some(t) = &self.tls {
            let me = crate::transport::Endpoint {
                node: self.node_id,
                region: self.region.clone(),
            };
            crate::tls::Tls::load(t, &me).map_err(|e| format!("[tls]: {e}"))?;
        }
        for (name, addr) in [
            ("listen_peer", &self.listen_peer),
            ("listen_http", &self.listen_http),
            ("listen_grpc", &self.listen_grpc),
        ] {
            let parsed: SocketAddr = addr.parse().map_err(|_| {
                format!("{name} = {addr:?} is not an address like \"127.0.0.1:7001\"")
            })?;
            if parsed.ip().is_unspecified() {
                return Err(format!(
                    "{name} = {addr:?}: use the address peers and clients reach, not 0.0.0.0"
                ));
            }
        }
        if !self.bootstrap && self.seeds.is_empty() {
            return Err("a node needs `seeds` (peer addresses of cluster members) unless it has `bootstrap = true`".into());
        }
        let r = &self.raft;
        match (
            r.heartbeat_interval_ms,
            r.election_timeout_min_ms,
            r.election_timeout_max_ms,
        ) {
            (None, None, None) => {}
            (Some(hb), Some(min), Some(max)) if hb > 0 && hb * 3 <= min && min < max => {}
            (Some(_), Some(_), Some(_)) => {
                return Err("[raft] needs heartbeat_interval_ms * 3 <= election_timeout_min_ms < election_timeout_max_ms".into())
            }
            _ => {
                return Err("[raft] sets heartbeat_interval_ms, election_timeout_min_ms and election_timeout_max_ms together, or none of them (timing then follows the regions' round trips)".into())
            }
        }
        if !(1..=60_000).contains(&self.max_clock_offset_ms) {
            return Err(format!(
                "max_clock_offset_ms = {} is out of range: give 1 to 60000 (500 is typical with NTP)",
                self.max_clock_offset_ms
            ));
        }
        if !(100..=86_400_000).contains(&self.antientropy_interval_ms) {
            return Err(format!(
                "antientropy_interval_ms = {} is out of range: give 100 to 86400000 (30000 is the default)",
                self.antientropy_interval_ms
            ));
        }
        if !(1..=10_000_000).contains(&self.conflict_ledger_max) {
            return Err(format!(
                "conflict_ledger_max = {} is out of range: give 1 to 10000000 entries per group (10000 is the default)",
                self.conflict_ledger_max
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.request_id_window_s) {
            return Err(format!(
                "request_id_window_s = {} is out of range: give 1 to 604800 seconds (600, ten minutes, is the default)",
                self.request_id_window_s
            ));
        }
        if self.conflict_ledger_max_age_s == 0 {
            return Err("conflict_ledger_max_age_s = 0 would serve no conflict; give a number of seconds (604800, a week, is the default)".into());
        }
        if self.antientropy_settle_ms > 3_600_000 {
            return Err(format!(
                "antientropy_settle_ms = {} is out of range: give 0 to 3600000 (5000 is the default)",
                self.antientropy_settle_ms
            ));
        }
        let wait_max = crate::node::REQUEST_TIMEOUT.as_millis() as u64;
        if !(1..=wait_max).contains(&self.bounded_read_wait_ms) {
            return Err(format!(
                "bounded_read_wait_ms = {} is out of range: give 1 to {wait_max} (the request timeout)",
                self.bounded_read_wait_ms
            ));
        }
        self.wan.matrix()?;
        Ok(self)
    }

    /// The `[raft]` timing, when the config fixes it.
    pub fn group_options(&self) -> Option<meridian_consensus::GroupOptions> {
        Some(meridian_consensus::GroupOptions {
            heartbeat_interval_ms: self.raft.heartbeat_interval_ms?,
            election_timeout_min_ms: self.raft.election_timeout_min_ms?,
            election_timeout_max_ms: self.raft.election_timeout_max_ms?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
region = "us-east-1"
data_dir = "/tmp/x"
listen_peer = "127.0.0.1:7001"
listen_http = "127.0.0.1:8001"
listen_grpc = "127.0.0.1:9001"
bootstrap = true
[wan]
jitter_pct = 2.0
[wan.rtt_ms]
"us-east-1:us-west-2" = 70.0
"#;

    // Goal: a minimal config parses, fills the zone and applies matrix overrides.
    #[test]
    fn config_parses_with_defaults() {
        let cfg: NodeConfig = toml::from_str(GOOD).unwrap();
        let cfg = cfg.validated().unwrap();
        assert_eq!(cfg.zone, "us-east-1a");
        assert_eq!(
            cfg.wan.matrix().unwrap().rtt_ms("us-west-2", "us-east-1"),
            70.0
        );
    }

    // Goal: bad configs are rejected with the field named.
    #[test]
    fn bad_configs_name_the_field() {
        let unknown = toml::from_str::<NodeConfig>(&format!("{GOOD}\n[extra]\nx=1\n"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("extra"), "{unknown}");
        let cfg: NodeConfig =
            toml::from_str(&GOOD.replace("127.0.0.1:8001", "0.0.0.0:8001")).unwrap();
        assert!(cfg.validated().unwrap_err().contains("listen_http"));
        let cfg: NodeConfig = toml::from_str(&GOOD.replace("bootstrap = true", "")).unwrap();
        assert!(cfg.validated().unwrap_err().contains("seeds"));
        let cfg: NodeConfig = toml::from_str(&format!("max_clock_offset_ms = 0\n{GOOD}")).unwrap();
        assert!(cfg.validated().unwrap_err().contains("max_clock_offset_ms"));
        let cfg: NodeConfig =
            toml::from_str(&format!("bounded_read_wait_ms = 999999\n{GOOD}")).unwrap();
        assert!(cfg
            .validated()
            .unwrap_err()
            .contains("bounded_read_wait_ms"));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    // Goal: the config files of the README's local-cluster tour stay valid.
    #[test]
    fn example_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local-cluster");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let cfg = NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(cfg.wan.enabled);
            loaded += 1;
        }
        assert_eq!(loaded, 3);
    }
}
