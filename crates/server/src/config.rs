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
    /// The addresses other nodes and clients reach this node at, where they differ from the
    /// listen addresses (containers, NAT, listening on 0.0.0.0): host names allowed;
    /// `{hostname}` expands to this host's name. Absent: the listen address.
    #[serde(default)]
    pub advertise_peer: Option<String>,
    #[serde(default)]
    pub advertise_http: Option<String>,
    #[serde(default)]
    pub advertise_grpc: Option<String>,
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

/// The top-level keys and sections that environment variables may set (see
/// [`NodeConfig::load_with_env`]).
const ENV_KEYS: [&str; 17] = [
    "node_id",
    "region",
    "zone",
    "data_dir",
    "listen_peer",
    "listen_http",
    "listen_grpc",
    "advertise_peer",
    "advertise_http",
    "advertise_grpc",
    "seeds",
    "bootstrap",
    "role",
    "leader_return_delay_ms",
    "max_clock_offset_ms",
    "bounded_read_wait_ms",
    "capture_frames",
];
const ENV_SECTIONS: [&str; 7] = [
    "wan",
    "tls",
    "auth",
    "encryption",
    "failover",
    "raft",
    "limits",
];

/// This host's name: `HOSTNAME`, else `/etc/hostname`.
pub fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The ordinal at the end of a host name (`meridian-us-east-1-2` -> 2), as a StatefulSet's
/// pods are named.
pub fn ordinal(host: &str) -> Option<u64> {
    host.rsplit('-').next()?.parse().ok()
}

/// A value given in the environment: TOML if it parses as a value (numbers, booleans,
/// arrays, quoted strings), else the text as a string.
fn env_value(key: &str, text: &str) -> toml::Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v) => v,
        // Seeds as a comma-separated list, the usual form in an environment.
        None if key == "seeds" => toml::Value::Array(
            text.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        ),
        None => toml::Value::String(text.to_string()),
    }
}

impl NodeConfig {
    /// Reads and validates a config file; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        Self::load_with_env(Some(path), &[])
    }

    /// A config from an optional file with `env` on top (`(name, value)` pairs, normally
    /// `std::env::vars()`), as containers are configured:
    /// - `MERIDIAN_<KEY>` sets a top-level key (`MERIDIAN_NODE_ID=3`, `MERIDIAN_SEEDS=a:7000,b:7000`);
    /// - `MERIDIAN_<SECTION>__<KEY>` a key of a section (`MERIDIAN_WAN__ENABLED=true`,
    ///   `MERIDIAN_TLS__CA_FILE=/certs/ca.pem`);
    /// - `node_id = "ordinal+B"` is B plus the ordinal ending the host name (a StatefulSet pod),
    ///   `bootstrap = "ordinal==N"` is true on the pod with ordinal N only, and `{hostname}` in
    ///   a string becomes the host name.
    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<NodeConfig, String> {
        let whence = path.map_or("the environment".to_string(), |p| p.display().to_string());
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{whence}: {e}"))?
            }
            None => toml::Table::new(),
        };
        for (name, text) in env {
            let Some(rest) = name.strip_prefix("MERIDIAN_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            match rest.split_once("__") {
                Some((section, key)) if ENV_SECTIONS.contains(&section) => {
                    let t = table
                        .entry(section.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    let toml::Value::Table(t) = t else {
                        return Err(format!("{name}: `{section}` is not a section in {whence}"));
                    };
                    t.insert(key.to_string(), env_value(key, text));
                }
                None if ENV_KEYS.contains(&rest.as_str()) => {
                    table.insert(rest.clone(), env_value(&rest, text));
                }
                _ => {}
            }
        }
        let host = env
            .iter()
            .find(|(k, _)| k == "HOSTNAME")
            .map(|(_, v)| v.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(hostname);
        let need_host = |what: &str| {
            host.clone()
                .ok_or_else(|| format!("{what} needs this host's name: set HOSTNAME"))
        };
        if let Some(toml::Value::String(v)) = table.get("node_id").cloned() {
            let base: u64 = v
                .strip_prefix("ordinal+")
                .and_then(|b| b.trim().parse().ok())
                .ok_or_else(|| format!("node_id = {v:?}: give a number, or \"ordinal+B\" (B plus the host name's ordinal)"))?;
            let h = need_host("node_id = \"ordinal+B\"")?;
            let n = ordinal(&h).ok_or_else(|| {
                format!("node_id = {v:?}: the host name {h:?} does not end in -<ordinal>")
            })?;
            table.insert("node_id".into(), toml::Value::Integer((base + n) as i64));
        }
        if let Some(toml::Value::String(v)) = table.get("bootstrap").cloned() {
            let want: u64 = v
                .strip_prefix("ordinal==")
                .and_then(|b| b.trim().parse().ok())
                .ok_or_else(|| format!("bootstrap = {v:?}: give true, false or \"ordinal==N\""))?;
            let h = need_host("bootstrap = \"ordinal==N\"")?;
            table.insert(
                "bootstrap".into(),
                toml::Value::Boolean(ordinal(&h) == Some(want)),
            );
        }
        for (_, v) in table.iter_mut() {
            expand_hostname(v, host.as_deref());
        }
        // `{node_id}` (per-node file names, e.g. a certificate mounted from a shared Secret).
        if let Some(id) = table.get("node_id").and_then(toml::Value::as_integer) {
            for (_, v) in table.iter_mut() {
                expand(v, "{node_id}", &id.to_string());
            }
        }
        let cfg: NodeConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| format!("{whence}: {e}"))?;
        cfg.validated().map_err(|e| format!("{whence}: {e}"))
    }

    /// The peer address other nodes dial (and list as a seed).
    pub fn peer_addr(&self) -> String {
        self.advertise_peer
            .clone()
            .unwrap_or_else(|| self.listen_peer.clone())
    }

    /// The HTTP address clients use.
    pub fn http_addr(&self) -> String {
        self.advertise_http
            .clone()
            .unwrap_or_else(|| self.listen_http.clone())
    }

    /// The gRPC address clients use.
    pub fn grpc_addr(&self) -> String {
        self.advertise_grpc
            .clone()
            .unwrap_or_else(|| self.listen_grpc.clone())
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
        for (name, addr, advertised) in [
            ("listen_peer", &self.listen_peer, &self.advertise_peer),
            ("listen_http", &self.listen_http, &self.advertise_http),
            ("listen_grpc", &self.listen_grpc, &self.advertise_grpc),
        ] {
            let parsed: SocketAddr = addr.parse().map_err(|_| {
                format!("{name} = {addr:?} is not an address like \"127.0.0.1:7001\"")
            })?;
            if parsed.ip().is_unspecified() && advertised.is_none() {
                return Err(format!(
                    "{name} = {addr:?}: use the address peers and clients reach, not 0.0.0.0, or set advertise_{} to it",
                    &name[7..]
                ));
            }
            if let Some(a) = advertised {
                let ok = a
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(format!("advertise_{} = {a:?} is not host:port", &name[7..]));
                }
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

    // Goal: a container's environment configures a node: top-level keys, sections, seeds as
    // a list, the node id and bootstrap from a StatefulSet pod's ordinal, {hostname} in
    // advertised addresses; listening on 0.0.0.0 needs an advertised address.
    #[test]
    fn the_environment_configures_a_node() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let base = [
            ("HOSTNAME", "meridian-us-east-1-2"),
            ("MERIDIAN_NODE_ID", "ordinal+100"),
            ("MERIDIAN_REGION", "us-east-1"),
            ("MERIDIAN_DATA_DIR", "/data"),
            ("MERIDIAN_LISTEN_PEER", "0.0.0.0:7000"),
            ("MERIDIAN_LISTEN_HTTP", "0.0.0.0:8080"),
            ("MERIDIAN_LISTEN_GRPC", "0.0.0.0:9090"),
            (
                "MERIDIAN_ADVERTISE_PEER",
                "{hostname}.meridian-us-east-1:7000",
            ),
            (
                "MERIDIAN_ADVERTISE_HTTP",
                "{hostname}.meridian-us-east-1:8080",
            ),
            (
                "MERIDIAN_ADVERTISE_GRPC",
                "{hostname}.meridian-us-east-1:9090",
            ),
            ("MERIDIAN_SEEDS", "a:7000, b:7000"),
            ("MERIDIAN_BOOTSTRAP", "ordinal==0"),
            ("MERIDIAN_WAN__ENABLED", "true"),
            ("MERIDIAN_TOKEN", "not a config key"),
            ("MERIDIAN_CAPTURE_FRAMES", "/tmp/frames-{node_id}"),
        ];
        let cfg = NodeConfig::load_with_env(None, &env(&base)).unwrap();
        assert_eq!(cfg.node_id, 102);
        assert!(!cfg.bootstrap);
        assert_eq!(cfg.seeds, vec!["a:7000", "b:7000"]);
        assert!(cfg.wan.enabled);
        assert_eq!(
            cfg.peer_addr(),
            "meridian-us-east-1-2.meridian-us-east-1:7000"
        );
        assert_eq!(
            cfg.capture_frames.as_deref(),
            Some(std::path::Path::new("/tmp/frames-102"))
        );
        assert_eq!(
            cfg.http_addr(),
            "meridian-us-east-1-2.meridian-us-east-1:8080"
        );
        let mut first = env(&base);
        first[0].1 = "meridian-us-east-1-0".into();
        assert!(NodeConfig::load_with_env(None, &first).unwrap().bootstrap);
        let no_advert: Vec<_> = env(&base)
            .into_iter()
            .filter(|(k, _)| k != "MERIDIAN_ADVERTISE_HTTP")
            .collect();
        let e = NodeConfig::load_with_env(None, &no_advert).unwrap_err();
        assert!(e.contains("advertise_http"), "{e}");
        let mut bad = env(&base);
        bad[1].1 = "ordinal-1".into();
        let e = NodeConfig::load_with_env(None, &bad).unwrap_err();
        assert!(e.contains("ordinal+B"), "{e}");
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

/// Replaces `{hostname}` in every string of `v` (left as is when the name is unknown).
fn expand_hostname(v: &mut toml::Value, host: Option<&str>) {
    if let Some(h) = host {
        expand(v, "{hostname}", h);
    }
}

/// Replaces `pattern` with `with` in every string of `v`.
fn expand(v: &mut toml::Value, pattern: &str, with: &str) {
    match v {
        toml::Value::String(s) if s.contains(pattern) => *s = s.replace(pattern, with),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| expand(x, pattern, with)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| expand(x, pattern, with)),
        _ => {}
    }
}
