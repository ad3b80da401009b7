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

fn default_read() -> ReadConsistency {
    ReadConsistency::Linearizable
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
    #[serde(default = "default_read")]
    pub read: ReadConsistency,
}

impl KeyspacePolicy {
    /// Checks the policy against itself and the regions the cluster has. Every error names the
    /// offending field and what would be accepted.
    pub fn validate(&self, cluster_regions: &BTreeSet<String>) -> Result<(), KvError> {
        let invalid = |m: String| Err(KvError::InvalidArgument(m));
        validate_name(&self.name)?;
        if self.replication == Replication::Async {
            return Err(KvError::FailedPrecondition(
                "replication = \"async\" is not available in this version of Meridian; use replication = \"sync\"".into(),
            ));
        }
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
        if self.survive == Survive::Region && self.regions.len() < 3 {
            return invalid(format!(
                "survive = \"region\" needs voters in at least 3 regions, but `regions` has {}; add regions or use survive = \"zone\"",
                self.regions.len()
            ));
        }
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return invalid(format!(
                "`shards` is {}; it must be between 1 and {SHARDS_MAX}",
                self.shards
            ));
        }
        if self.read == ReadConsistency::Session {
            return Err(KvError::FailedPrecondition(
                "read = \"session\" is not available in this version; use linearizable, bounded:<ms> or eventual".into(),
            ));
        }
        Ok(())
    }
}

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
        assert_eq!(p.read, ReadConsistency::Linearizable);
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
}
