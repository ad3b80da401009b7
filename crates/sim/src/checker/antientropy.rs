//! Anti-entropy repairs nothing while shipping is correct.
//!
//! Anti-entropy exists for divergence shipping did not prevent (a bug, a restored backup, bit
//! rot); the issue that specified it says "with correct shipping the count should stay 0". A
//! repair in a run without an injected shipping fault means either shipping lost a write or
//! anti-entropy took a write in flight for a divergence (its cursor rule is wrong); both are
//! bugs. With the fault injected, repairs are expected, and the convergence checkers judge
//! whether they were enough.

/// `repairs`: keys anti-entropy changed on every node over the run; `injected`: the run
/// dropped shipped writes on purpose.
pub fn check(repairs: u64, injected: bool) -> Vec<String> {
    if injected || repairs == 0 {
        return Vec::new();
    }
    vec![format!(
        "anti-entropy repaired {repairs} key(s) although no shipping fault was injected: shipping lost writes, or anti-entropy mistook writes in flight for divergence"
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a repair without an injected fault is a violation; none, or any number with the
    // fault injected, is not.
    #[test]
    fn repairs_without_a_fault_fail() {
        assert_eq!(check(0, false), Vec::<String>::new());
        assert!(check(2, false)[0].contains("repaired 2 key(s)"));
        assert!(check(5, true).is_empty());
    }
}
