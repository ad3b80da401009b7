//! Residency: nothing of an async keyspace is stored in a region outside its `regions`.
//!
//! Property: the keyspace policy's placement rule (../shared/design/brief.md, "Policies"):
//! regions not listed hold no replica, so neither the data nor the log of any of its groups
//! may appear in their nodes' storage. Checked on every node's engine at the end.

/// One node's storage, as found at the end: its region and how many rows (data, log and
/// meta) of the keyspace's groups it holds.
#[derive(Clone, Debug)]
pub struct NodeHoldings {
    pub node: u64,
    pub region: String,
    pub rows: usize,
}

pub fn check(allowed: &[String], nodes: &[NodeHoldings]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.rows > 0 && !allowed.contains(&n.region))
        .map(|n| {
            format!(
                "node {} in {} holds {} row(s) of an async keyspace whose regions are {allowed:?}",
                n.node, n.region, n.rows
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: rows in a listed region pass; any row outside fails.
    #[test]
    fn rows_outside_the_regions_fail() {
        let allowed = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
        let n = |region: &str, rows| NodeHoldings {
            node: 1,
            region: region.into(),
            rows,
        };
        assert!(check(&allowed, &[n("us-east-1", 10), n("us-west-2", 0)]).is_empty());
        assert_eq!(check(&allowed, &[n("us-west-2", 1)]).len(), 1);
    }
}
