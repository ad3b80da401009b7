//! A committed entry never changes: no two replicas ever apply different entries at one index.
//!
//! Property: State Machine Safety, Ongaro & Ousterhout (USENIX ATC 2014), Figure 3 and §5.4.3:
//! if a server has applied a log entry at a given index to its state machine, no other server
//! will ever apply a different log entry for the same index. Entries are identified by their
//! log id (index and the leader that proposed them); every sample of every replica's last
//! applied entry is compared with what any replica applied at that index before.

use std::collections::BTreeMap;

use meridian_types::{GroupId, NodeId};

#[derive(Default)]
pub struct CommittedStable {
    applied: BTreeMap<(GroupId, u64), (String, NodeId)>,
    violations: Vec<String>,
}

impl CommittedStable {
    /// Records that `node` has applied the entry proposed by `proposer` at `index` of `group`.
    pub fn observe(&mut self, group: GroupId, index: u64, proposer: &str, node: NodeId) {
        match self.applied.get(&(group, index)) {
            None => {
                self.applied
                    .insert((group, index), (proposer.to_string(), node));
            }
            Some((seen, by)) if seen != proposer => self.violations.push(format!(
                "group {group} index {index}: node {by} applied the entry of leader {seen}, node {node} that of leader {proposer}"
            )),
            Some(_) => {}
        }
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: replicas agreeing pass; a different entry at an applied index is caught.
    #[test]
    fn a_changed_entry_is_caught() {
        let mut c = CommittedStable::default();
        c.observe(1, 5, "T2-N1", 1);
        c.observe(1, 5, "T2-N1", 2);
        c.observe(1, 6, "T3-N2", 2);
        assert!(c.violations().is_empty());
        c.observe(1, 5, "T3-N2", 3);
        assert_eq!(c.violations().len(), 1);
    }
}
