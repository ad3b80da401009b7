//! The simulator's own guarantees: a seed replays exactly, and a short run of the real node code
//! under faults passes every checker.

use std::time::Duration;

use meridian_sim::{run, Options, Workload};

fn short() -> Options {
    Options {
        workload: Workload::Mixed,
        ops: 80,
        safety: Duration::from_secs(12),
        liveness_max: Duration::from_secs(60),
    }
}

// Goal: everything follows from the seed: two runs of one seed produce the same history, the
// same faults and the same simulated time, so `meridian sim --seed N` replays a failure.
#[test]
fn a_seed_replays_exactly() {
    let a = run(11, &short());
    let b = run(11, &short());
    assert!(a.ops > 0, "the clients completed no operation");
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.simulated, b.simulated);
    assert_eq!(a.digest, b.digest, "seed 11 ran differently twice");
    let c = run(12, &short());
    assert_ne!(
        a.digest, c.digest,
        "different seeds produced the same history"
    );
}

// Goal: a run with faults completes operations, converges and breaks no invariant (the
// checkers' ability to fail is shown by their unit tests).
#[test]
fn a_short_run_passes_the_checkers() {
    let o = run(3, &short());
    assert!(
        o.violations.is_empty(),
        "seed 3 failed: {:?}; replay: meridian sim --seed 3",
        o.violations
    );
    assert!(o.ops >= 30, "only {} operations were recorded", o.ops);
    assert!(o.ops > o.ops_unknown, "no operation returned");
}
