//! The simulator's own guarantees: a seed replays exactly, and a short run of the real node code
//! under faults passes every checker.

use std::time::Duration;

use meridian_sim::{run, Options, Workload};

const SEED_WITH_LOSS: u64 = 5;

fn short() -> Options {
    Options {
        workload: Workload::Mixed,
        ops: 80,
        safety: Duration::from_secs(12),
        liveness_max: Duration::from_secs(60),
        inject_shipping_loss: false,
        region_loss: false,
        flapping: false,
        gray: false,
        meta_minority: false,
        promotion: false,
        witness: false,
        staggered_join: false,
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

// Goal: the gray-failure nemesis (a disk stall on the runtime's clock) replays exactly too, and
// its run passes every checker, the gray-failover one included.
#[test]
fn a_gray_run_replays_exactly() {
    let opts = Options {
        workload: Workload::Sync,
        gray: true,
        safety: Duration::from_secs(25),
        ..short()
    };
    let a = run(3, &opts);
    let b = run(3, &opts);
    assert_eq!(a.digest, b.digest, "gray seed 3 ran differently twice");
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert!(a.gray_decision_ms.is_some() && a.gray_left_ms.is_some());
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

// Goal: anti-entropy repairs what shipping lost. With a shipping bug injected (the second
// region drops some shipped writes while its cursor moves on), the run still converges to the
// highest-HLC write of every key, and the repairs are counted; without anti-entropy the same
// seed leaves the regions apart (the convergence checker fails it).
#[test]
fn anti_entropy_repairs_an_injected_shipping_loss() {
    let opts = Options {
        workload: Workload::Async,
        inject_shipping_loss: true,
        ..short()
    };
    let o = run(SEED_WITH_LOSS, &opts);
    assert!(
        o.violations.is_empty(),
        "seed {SEED_WITH_LOSS} failed: {:?}; replay: meridian sim --seed {SEED_WITH_LOSS} --workload async --inject-shipping-loss",
        o.violations
    );
    assert!(
        o.antientropy_repairs > 0,
        "seed {SEED_WITH_LOSS} lost no write that mattered; pick a seed whose run repairs"
    );
}
