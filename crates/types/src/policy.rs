//! Keyspace policy: replication, placement and read settings, and their validation.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::SHARDS_MAX;
use crate::KvError;

/// How a keyspace replicates across regions.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    /// One consensus group per shard whose voters span regions.
    #[default]
    Sync,
    /// Per-region groups with asynchronous shipping between regions.
    Async,
}

/// What failure a sync keyspace survives without losing an acknowledged write.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Survive {
    /// Voters in at least three regions; the loss of any one region loses nothing.
    #[default]
    Region,
    /// Voters in the home region only; learners elsewhere.
    Zone,
}

/// How a `survive = "zone"` keyspace is promoted when its home region is lost.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    /// A pending decision an operator approves (`meridian failover approve ID`).
    #[default]
    Manual,
    /// Once the home region has been down for `promotion_after_ms`.
    Auto,
}

/// `promotion_after_ms` when `promotion = "auto"` does not say.
pub const PROMOTION_AFTER_MS_DEFAULT: u64 = 30_000;

/// How concurrent writes to one key of an async keyspace are merged.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    /// Last-writer-wins by HLC.
    #[default]
    Lww,
    /// A PN-counter: `incr` only.
    Counter,
    /// An add-wins observed-remove set: `set` (add and remove members) only.
    Set,
    /// A multi-value register: concurrent writes kept as siblings (async keyspaces only).
    Mv,
}

impl Conflict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Conflict::Lww => "lww",
            Conflict::Counter => "counter",
            Conflict::Set => "set",
            Conflict::Mv => "mv",
        }
    }
}

/// What happens when a region falls further behind than `lag_budget_ms`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnLagBudget {
    /// Record an event and set a metric.
    #[default]
    Alert,
    /// Delay writes in the source region (bounded) until the lag is back under budget.
    Throttle,
    /// Fail writes in the source region with a retriable error.
    Reject,
}

/// Read consistency, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read began.
    Linearizable,
    /// At most this many milliseconds stale.
    Bounded { staleness_ms_max: u64 },
    /// Read-your-writes and monotonic reads for one client session.
    Session,
    /// Any replica's state, however stale.
    Eventual,
}

impl ReadConsistency {
    /// Whether a keyspace whose policy offers `self` can serve a read asking for `requested`:
    /// a request may ask for a weaker consistency, never a stronger one.
    pub fn allows(self, requested: ReadConsistency) -> bool {
        use ReadConsistency::*;
        match (self, requested) {
            (Linearizable, _) => true,
            (
                Bounded {
                    staleness_ms_max: a,
                },
                Bounded {
                    staleness_ms_max: b,
                },
            ) => b >= a,
            (Bounded { .. }, Session | Eventual) => true,
            (Session, Session | Eventual) => true,
            (Eventual, Eventual) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ReadConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadConsistency::Linearizable => write!(f, "linearizable"),
            ReadConsistency::Bounded { staleness_ms_max } => {
                write!(f, "bounded:{staleness_ms_max}")
            }
            ReadConsistency::Session => write!(f, "session"),
            ReadConsistency::Eventual => write!(f, "eventual"),
        }
    }
}

impl FromStr for ReadConsistency {
    type Err = KvError;

    fn from_str(s: &str) -> Result<Self, KvError> {
        match s {
            "linearizable" => Ok(ReadConsistency::Linearizable),
            "session" => Ok(ReadConsistency::Session),
            "eventual" => Ok(ReadConsistency::Eventual),
            _ => {
                let ms = s
                    .strip_prefix("bounded:")
                    .and_then(|ms| ms.parse::<u64>().ok());
                match ms {
                    Some(staleness_ms_max) => Ok(ReadConsistency::Bounded { staleness_ms_max }),
                    None => Err(KvError::InvalidArgument(format!(
                        "unknown consistency {s:?}; use linearizable, bounded:<ms> (e.g. bounded:500), session or eventual"
                    ))),
                }
            }
        }
    }
}

impl Serialize for ReadConsistency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReadConsistency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_shards() -> u16 {
    4
}

/// A keyspace's policy as a client states it (`POST /v1/keyspaces`, `meridian keyspace create`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyspacePolicy {
    pub name: String,
    #[serde(default)]
    pub replication: Replication,
    #[serde(default)]
    pub survive: Survive,
    #[serde(default)]
    pub home_region: Option<String>,
    pub regions: Vec<String>,
    #[serde(default = "default_shards")]
    pub shards: u16,
    /// The default read consistency; absent: linearizable for sync, session for async.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadConsistency>,
    /// The key type and, for async keyspaces, how concurrent writes merge: `lww` (values),
    /// `counter`, `set`, or `mv` (async only).
    #[serde(default)]
    pub conflict: Conflict,
    /// Async only: the replication lag (ms) a region may fall behind before `on_lag_budget`
    /// acts. Signed, so a negative number is refused with a message instead of a parse error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_budget_ms: Option<i64>,
    #[serde(default)]
    pub on_lag_budget: OnLagBudget,
    /// `survive = "region"` only: a region (one of `regions`, not the home) whose voter is a
    /// witness node: it votes and keeps the log but holds no data, so two regions pay for the
    /// data and the third only for a vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_region: Option<String>,
    /// `survive = "zone"` only: how the keyspace is promoted when its home region is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// `promotion = "auto"` only: how long (ms) the home region must be down first. Signed, so
    /// a negative number is refused with a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_after_ms: Option<i64>,
}

impl KeyspacePolicy {
    /// Checks the policy against itself and the regions the cluster has. Every error names the
    /// offending field and what would be accepted.
    pub fn validate(&self, cluster_regions: &BTreeSet<String>) -> Result<(), KvError> {
        let invalid = |m: String| Err(KvError::InvalidArgument(m));
        validate_name(&self.name)?;
        if self.regions.is_empty() {
            return invalid(
                "`regions` is empty; list the regions where the keyspace may store data".into(),
            );
        }
        let unique: BTreeSet<&String> = self.regions.iter().collect();
        if unique.len() != self.regions.len() {
            return invalid(format!(
                "`regions` lists a region twice: {:?}",
                self.regions
            ));
        }
        for region in &self.regions {
            if !cluster_regions.contains(region) {
                return invalid(format!(
                    "region {region:?} in `regions` has no nodes in this cluster; known regions: {cluster_regions:?}"
                ));
            }
        }
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return invalid(format!(
                "`shards` is {}; it must be between 1 and {SHARDS_MAX}",
                self.shards
            ));
        }
        match self.replication {
            Replication::Async => self.validate_async(),
            Replication::Sync => self.validate_sync(),
        }
    }

    /// For a `survive = "zone"` sync keyspace: `Some(ms)` when promotion is automatic after
    /// the home region has been down that long, `None` when an operator approves it.
    pub fn promotion_after(&self) -> Option<u64> {
        match self.promotion.unwrap_or_default() {
            Promotion::Manual => None,
            Promotion::Auto => Some(
                self.promotion_after_ms
                    .map_or(PROMOTION_AFTER_MS_DEFAULT, |ms| ms.max(0) as u64),
            ),
        }
    }

    /// The read consistency a request without one gets.
    pub fn default_read(&self) -> ReadConsistency {
        match (self.read, self.replication) {
            (Some(r), _) => r,
            (None, Replication::Sync) => ReadConsistency::Linearizable,
            (None, Replication::Async) => ReadConsistency::Session,
        }
    }

    /// Whether a read may ask for `requested`: never stronger than the keyspace offers, and
    /// never linearizable on an async keyspace.
    pub fn allows_read(&self, requested: ReadConsistency) -> Result<(), KvError> {
        if self.replication == Replication::Async {
            if requested == ReadConsistency::Linearizable {
                return Err(KvError::FailedPrecondition(ASYNC_LINEARIZABLE.into()));
            }
            // Every region accepts writes, so bounded, session and eventual reads are all
            // served from replicas; none is stronger than another here.
            return Ok(());
        }
        let offered = self.default_read();
        if offered.allows(requested) || requested == ReadConsistency::Session {
            return Ok(());
        }
        Err(KvError::FailedPrecondition(format!(
            "the keyspace offers {offered} reads at most; ask for {offered} or weaker"
        )))
    }

    fn validate_async(&self) -> Result<(), KvError> {
        let invalid = |m: String| Err(KvError::InvalidArgument(m));
        if self.promotion.is_some()
            || self.promotion_after_ms.is_some()
            || self.witness_region.is_some()
        {
            return invalid(
                "`promotion` and `witness_region` apply to sync keyspaces; an async keyspace accepts writes in every region and needs no promotion or witness".into(),
            );
        }
        if self.home_region.is_some() {
            return invalid(
                "`home_region` has no meaning for an async keyspace: every region in `regions` accepts writes; remove it, or use replication = \"sync\" to keep writes in one region".into(),
            );
        }
        if self.regions.len() < 2 {
            return invalid(format!(
                "replication = \"async\" needs at least 2 `regions` to replicate between, but `regions` has {}; add a region or use replication = \"sync\"",
                self.regions.len()
            ));
        }
        if self.regions.len() > crate::ids::ASYNC_REGIONS_MAX {
            return invalid(format!(
                "`regions` lists {} regions; an async keyspace may list at most {}",
                self.regions.len(),
                crate::ids::ASYNC_REGIONS_MAX
            ));
        }
        if let Some(b) = self.lag_budget_ms {
            if b <= 0 {
                return invalid(format!(
                    "`lag_budget_ms` is {b}; it must be a positive number of milliseconds (e.g. 1000), or left out for no budget"
                ));
            }
        }
        if self.read == Some(ReadConsistency::Linearizable) {
            return invalid(format!("read = \"linearizable\": {ASYNC_LINEARIZABLE}"));
        }
        Ok(())
    }

    fn validate_sync(&self) -> Result<(), KvError> {
        let invalid = |m: String| Err(KvError::InvalidArgument(m));
        if self.conflict == Conflict::Mv {
            return invalid(
                "conflict = \"mv\" applies to async keyspaces only: a sync keyspace orders every write through consensus, so no two are concurrent; use conflict = \"lww\", or replication = \"async\"".into(),
            );
        }
        if self.lag_budget_ms.is_some() {
            return invalid(
                "`lag_budget_ms` applies to async keyspaces only; remove it or use replication = \"async\"".into(),
            );
        }
        let Some(home) = &self.home_region else {
            return invalid(
                "`home_region` is required for a sync keyspace; name one of `regions`".into(),
            );
        };
        if !self.regions.contains(home) {
            return invalid(format!(
                "`home_region` {home:?} is not in `regions` {:?}; the home region must be one of them",
                self.regions
            ));
        }
        if let Some(w) = &self.witness_region {
            if self.survive != Survive::Region {
                return invalid(
                    "`witness_region` applies to survive = \"region\" keyspaces (a witness lets a third region vote without holding data); remove it or use survive = \"region\"".into(),
                );
            }
            if !self.regions.contains(w) {
                return invalid(format!(
                    "`witness_region` {w:?} is not in `regions` {:?}: a witness stores log entries, so residency applies to it; add it to `regions`",
                    self.regions
                ));
            }
            if Some(w) == self.home_region.as_ref() {
                return invalid(format!(
                    "`witness_region` {w:?} is the home region; leaders live in the home region and a witness never leads: choose another region"
                ));
            }
        }
        if self.survive != Survive::Zone && self.promotion.is_some() {
            return invalid(
                "`promotion` applies to survive = \"zone\" keyspaces only (a survive = \"region\" keyspace keeps a quorum through a region's loss and needs none); remove it".into(),
            );
        }
        if let Some(ms) = self.promotion_after_ms {
            if self.promotion != Some(Promotion::Auto) {
                return invalid(
                    "`promotion_after_ms` applies to promotion = \"auto\" only; set promotion = \"auto\" or remove it".into(),
                );
            }
            if ms < 1000 {
                return invalid(format!(
                    "`promotion_after_ms` is {ms}; it must be at least 1000 ms (a promotion may lose the unshipped tail, so it must not follow a blip)"
                ));
            }
        }
        if self.survive == Survive::Region && self.regions.len() < 3 {
            return invalid(format!(
                "survive = \"region\" needs voters in at least 3 regions, but `regions` has {}; add regions or use survive = \"zone\"",
                self.regions.len()
            ));
        }
        Ok(())
    }
}

const ASYNC_LINEARIZABLE: &str = "an async keyspace accepts writes in every region and ships them between regions afterwards, so no replica can promise a linearizable read; use session (read-your-writes), bounded:<ms> or eventual, or a sync keyspace";

/// A keyspace name: 1 to 128 characters of letters, digits, `-`, `_` and `.`.
pub fn validate_name(name: &str) -> Result<(), KvError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KvError::InvalidArgument(format!(
            "keyspace name {name:?} is invalid; use 1 to 128 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> BTreeSet<String> {
        ["us-east-1", "us-west-2", "eu-west-1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn parse(json: &str) -> Result<KeyspacePolicy, serde_json::Error> {
        serde_json::from_str(json)
    }

    // Goal: a full sync policy parses with defaults and validates.
    #[test]
    fn sync_policy_validates() {
        let p = parse(r#"{"name":"orders","home_region":"us-east-1","regions":["us-east-1","us-west-2","eu-west-1"]}"#).unwrap();
        assert_eq!(p.shards, 4);
        assert_eq!(p.default_read(), ReadConsistency::Linearizable);
        p.validate(&regions()).unwrap();
    }

    // Goal: each invalid policy named in the foundation issue is rejected with a message naming the field.
    #[test]
    fn invalid_policies_say_what_is_wrong() {
        let two =
            parse(r#"{"name":"a","home_region":"us-east-1","regions":["us-east-1","us-west-2"]}"#)
                .unwrap();
        let e = two.validate(&regions()).unwrap_err().to_string();
        assert!(e.contains("at least 3 regions"), "{e}");
        let outside = parse(r#"{"name":"a","home_region":"ap-south-1","regions":["us-east-1","us-west-2","eu-west-1"]}"#).unwrap();
        let e = outside.validate(&regions()).unwrap_err().to_string();
        assert!(e.contains("home_region"), "{e}");
        let unknown = parse(r#"{"name":"a","colour":"blue","regions":["us-east-1"]}"#)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("colour"), "{unknown}");
        let bad_name = parse(
            r#"{"name":"a b","home_region":"us-east-1","regions":["us-east-1"],"survive":"zone"}"#,
        )
        .unwrap();
        assert!(bad_name.validate(&regions()).is_err());
    }

    // Goal: an async policy validates with session reads by default; each invalid async
    // policy names the field and what would be accepted.
    #[test]
    fn async_policies_validate_and_refuse_what_has_no_meaning() {
        let ok = parse(r#"{"name":"carts","replication":"async","regions":["us-east-1","eu-west-1"],"lag_budget_ms":1000,"on_lag_budget":"throttle"}"#).unwrap();
        ok.validate(&regions()).unwrap();
        for t in ["counter", "set", "mv"] {
            parse(&format!(r#"{{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"conflict":"{t}"}}"#)).unwrap().validate(&regions()).unwrap();
        }
        for t in ["counter", "set"] {
            parse(&format!(r#"{{"name":"a","home_region":"us-east-1","regions":["us-east-1"],"survive":"zone","conflict":"{t}"}}"#)).unwrap().validate(&regions()).unwrap();
        }
        assert_eq!(ok.default_read(), ReadConsistency::Session);
        assert!(ok.allows_read(ReadConsistency::Linearizable).is_err());
        assert!(ok.allows_read("bounded:100".parse().unwrap()).is_ok());
        let cases = [
            (
                r#"{"name":"a","replication":"async","home_region":"us-east-1","regions":["us-east-1","eu-west-1"]}"#,
                "home_region",
            ),
            (
                r#"{"name":"a","replication":"async","regions":["us-east-1"]}"#,
                "at least 2",
            ),
            (
                r#"{"name":"a","home_region":"us-east-1","regions":["us-east-1"],"survive":"zone","conflict":"mv"}"#,
                "async keyspaces only",
            ),
            (
                r#"{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"lag_budget_ms":-5}"#,
                "lag_budget_ms",
            ),
            (
                r#"{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"read":"linearizable"}"#,
                "linearizable",
            ),
        ];
        for (json, field) in cases {
            let e = parse(json)
                .unwrap()
                .validate(&regions())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        let e = parse(r#"{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"conflict":"newest"}"#).unwrap_err().to_string();
        assert!(e.contains("lww"), "{e}");
        let e = parse(r#"{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"on_lag_budget":"panic"}"#).unwrap_err().to_string();
        assert!(e.contains("throttle"), "{e}");
    }

    // Goal: consistency strings round-trip and weaker-than-offered is allowed, stronger is not.
    #[test]
    fn consistency_parses_and_orders() {
        let b: ReadConsistency = "bounded:250".parse().unwrap();
        assert_eq!(b.to_string(), "bounded:250");
        assert!(ReadConsistency::Linearizable.allows(b));
        assert!(!b.allows(ReadConsistency::Linearizable));
        assert!(!b.allows("bounded:100".parse().unwrap()));
        assert!("fresh".parse::<ReadConsistency>().is_err());
    }

    // Goal: promotion settings belong to survive = "zone" keyspaces only, with a sane delay.
    #[test]
    fn promotion_policies_validate() {
        let zone = r#""name":"z","home_region":"us-east-1","regions":["us-east-1","us-west-2"],"survive":"zone""#;
        let manual = parse(&format!("{{{zone}}}")).unwrap();
        manual.validate(&regions()).unwrap();
        assert_eq!(manual.promotion_after(), None);
        let auto = parse(&format!(r#"{{{zone},"promotion":"auto"}}"#)).unwrap();
        auto.validate(&regions()).unwrap();
        assert_eq!(auto.promotion_after(), Some(PROMOTION_AFTER_MS_DEFAULT));
        let soon = parse(&format!(
            r#"{{{zone},"promotion":"auto","promotion_after_ms":5000}}"#
        ))
        .unwrap();
        assert_eq!(soon.promotion_after(), Some(5000));
        for (bad, says) in [
            (format!(r#"{{{zone},"promotion":"auto","promotion_after_ms":10}}"#), "at least 1000"),
            (format!(r#"{{{zone},"promotion_after_ms":5000}}"#), "promotion = \"auto\" only"),
            (
                r#"{"name":"r","home_region":"us-east-1","regions":["us-east-1","us-west-2","eu-west-1"],"promotion":"manual"}"#.to_string(),
                "survive = \"zone\" keyspaces only",
            ),
            (
                r#"{"name":"a","replication":"async","regions":["us-east-1","eu-west-1"],"promotion":"auto"}"#.to_string(),
                "needs no promotion",
            ),
        ] {
            let e = parse(&bad).unwrap().validate(&regions()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
