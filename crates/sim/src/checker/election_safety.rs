//! At most one leader per term in every group.
//!
//! Property: Election Safety, Ongaro & Ousterhout, "In Search of an Understandable Consensus
//! Algorithm" (USENIX ATC 2014), Figure 3: at most one leader can be elected in a given term.
//! Observed by sampling every running node's own claim to lead (role and term) many times a
//! second of simulated time.

use std::collections::{BTreeMap, BTreeSet};

use meridian_types::{GroupId, NodeId};

#[derive(Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<(GroupId, u64), BTreeSet<NodeId>>,
    violations: Vec<String>,
}

impl ElectionSafety {
    /// Records that `node` claimed to lead `group` in `term`.
    pub fn observe(&mut self, group: GroupId, term: u64, node: NodeId) {
        let leaders = self.leaders.entry((group, term)).or_default();
        if leaders.insert(node) && leaders.len() == 2 {
            self.violations.push(format!(
                "group {group} has two leaders in term {term}: nodes {leaders:?}"
            ));
        }
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the same leader seen again is fine; a second leader in one term is caught.
    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut e = ElectionSafety::default();
        e.observe(1, 3, 10);
        e.observe(1, 3, 10);
        e.observe(1, 4, 11);
        e.observe(2, 3, 11);
        assert!(e.violations().is_empty());
        e.observe(1, 4, 12);
        assert_eq!(e.violations().len(), 1);
    }
}
