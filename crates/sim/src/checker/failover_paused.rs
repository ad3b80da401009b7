//! While failover is paused, no automatic placement action: between a pause and the next resume
//! the controller only files pending decisions, and only operators' approvals execute.
//!
//! Property: issue 10's operator control ("while paused, automatic decisions wait as pending
//! ... nothing is executed until an operator approves one").

use std::collections::BTreeMap;

use meridian_control::failover::{Action, Entry};

pub fn check(chain: &BTreeMap<u64, &Entry>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut paused = false;
    for e in chain.values() {
        match &e.action {
            Action::Pause => paused = true,
            Action::Resume => paused = false,
            a @ (Action::Failover { .. } | Action::Failback { .. }) if paused => {
                problems.push(format!(
                    "decision {} ({} by {}) executed automatically while failover was paused",
                    e.seq,
                    a.name(),
                    e.by
                ));
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::failover_chain::testing::*;

    // Goal: a failover while paused is reported; pending then approved, or after a resume,
    // passes.
    #[test]
    fn nothing_automatic_executes_while_paused() {
        let paused = log(&[Action::Pause, failover(4_000)]);
        let v = check(&chain(&paused));
        assert!(v[0].contains("decision 1 (failover"), "{v:?}");
        let approved = log(&[
            Action::Pause,
            Action::Pending {
                id: 1,
                decision: Box::new(failover(4_000)),
            },
            Action::Approve {
                id: 1,
                decision: Box::new(failover(4_000)),
            },
            Action::Resume,
            failback(),
        ]);
        assert!(check(&chain(&approved)).is_empty());
    }
}
