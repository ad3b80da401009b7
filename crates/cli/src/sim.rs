//! `meridian sim`: runs the deterministic simulator over one seed or many and reports.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use anyhow::{bail, Result};
use meridian_sim::history::{Call, Ret};
use meridian_sim::{run, Options, Outcome, Workload};

pub struct Args {
    pub seed: Option<u64>,
    pub seeds: u64,
    pub first: Option<u64>,
    pub ops: usize,
    pub safety_s: u64,
    pub workload: meridian_sim::Workload,
    pub inject_shipping_loss: bool,
    pub region_loss: bool,
    pub flapping: bool,
    pub gray: bool,
    pub meta_minority: bool,
    pub promotion: bool,
    pub witness: bool,
    pub staggered_join: bool,
}

fn replay_flags(args: &Args) -> String {
    let workload = match args.workload {
        Workload::Sync => " --workload sync",
        Workload::Async => " --workload async",
        Workload::Mixed => "",
    };
    let flag = |on: bool, name: &'static str| if on { name } else { "" };
    format!(
        "{workload}{}{}{}{}{}{}{}{}",
        flag(args.inject_shipping_loss, " --inject-shipping-loss"),
        flag(args.region_loss, " --region-loss"),
        flag(args.flapping, " --flapping"),
        flag(args.gray, " --gray"),
        flag(args.meta_minority, " --meta-minority"),
        flag(args.promotion, " --promotion"),
        flag(args.witness, " --witness"),
        flag(args.staggered_join, " --staggered-join"),
    )
}

fn print_outcome(o: &Outcome, verbose: bool, flags: &str) {
    let async_note = match (o.async_regions.is_empty(), o.antientropy_repairs) {
        (true, _) => String::new(),
        (false, 0) => format!(", async in {}", o.async_regions.join("+")),
        (false, n) => format!(
            ", async in {} ({n} keys repaired by anti-entropy)",
            o.async_regions.join("+")
        ),
    };
    let verdict = if o.violations.is_empty() {
        "ok"
    } else {
        "VIOLATION"
    };
    println!(
        "seed {}: {} nodes, {} shard(s){async_note}, {} ops ({} unknown), {} faults, {:.1} s simulated in {:.1} s, history {:016x}: {verdict}",
        o.seed,
        o.nodes,
        o.shards,
        o.ops,
        o.ops_unknown,
        o.faults.len(),
        o.simulated.as_secs_f64(),
        o.wall.as_secs_f64(),
        o.digest
    );
    if verbose || !o.violations.is_empty() {
        for f in &o.faults {
            println!("    fault {f}");
        }
    }
    if !o.rto_ms.is_empty() {
        let each: Vec<String> = o
            .rto_ms
            .iter()
            .map(|(shard, ms)| format!("shard {shard} {ms} ms"))
            .collect();
        println!("    rto after the home region's loss: {}", each.join(", "));
    }
    if let Some(d) = o.gray_decision_ms {
        let left = o
            .gray_left_ms
            .map_or("never".to_string(), |l| format!("{l} ms"));
        println!("    gray home region: failover decided {d} ms after the stall, leaders out after {left}");
    }
    if o.promotion_epoch > 0 {
        println!(
            "    promoted to epoch {}: {} writes in the reported lost tail, {} of them acknowledged",
            o.promotion_epoch, o.lost_reported, o.lost_acked
        );
    }
    for v in &o.violations {
        println!("    violation: {v}");
    }
    if !o.violations.is_empty() {
        println!("    replay: meridian sim --seed {}{flags}", o.seed);
    }
    if o.inconclusive_keys > 0 {
        println!(
            "    {} key(s) too large for the linearizability search (neither passed nor failed)",
            o.inconclusive_keys
        );
    }
}

pub fn run_cli(args: Args) -> Result<()> {
    let opts = Options {
        workload: args.workload,
        ops: args.ops,
        safety: Duration::from_secs(args.safety_s),
        inject_shipping_loss: args.inject_shipping_loss,
        region_loss: args.region_loss,
        flapping: args.flapping,
        gray: args.gray,
        meta_minority: args.meta_minority,
        promotion: args.promotion,
        witness: args.witness,
        staggered_join: args.staggered_join,
        ..Options::default()
    };
    let flags = replay_flags(&args);
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => {
            let first = args
                .first
                .unwrap_or_else(|| RandomState::new().hash_one(0u8) % 1_000_000_000);
            (first..first + args.seeds).collect()
        }
    };
    let (mut ops, mut violations, mut failing) = (0, 0, Vec::new());
    let (mut bounded, mut bounded_by_followers) = (0usize, 0usize);
    let (mut async_ops, mut async_reads) = (0usize, 0usize);
    let mut repairs = 0u64;
    let (mut counter_ops, mut conflicts) = (0usize, 0u64);
    let (mut recall_expected, mut recall_found, mut recall_both) = (0usize, 0usize, 0usize);
    let (mut decisions, mut failovers, mut failbacks) = (0usize, 0usize, 0usize);
    let mut async_bounded = 0usize;
    let mut rtos: Vec<u64> = Vec::new();
    let mut gray_decisions: Vec<u64> = Vec::new();
    let mut gray_left: Vec<u64> = Vec::new();
    let (mut promoted, mut lost_reported, mut lost_acked) = (0usize, 0usize, 0usize);
    let (mut simulated, mut wall) = (Duration::ZERO, Duration::ZERO);
    for seed in &seeds {
        let o = run(*seed, &opts);
        print_outcome(&o, args.seed.is_some(), &flags);
        repairs += o.antientropy_repairs;
        if o.promotion_epoch > 0 {
            promoted += 1;
            lost_reported += o.lost_reported;
            lost_acked += o.lost_acked;
        }
        counter_ops += o.typed_history.len();
        conflicts += o.conflicts_recorded;
        recall_expected += o.recall_expected;
        recall_found += o.recall_found;
        recall_both += o.recall_in_both;
        decisions += o.failover_decisions;
        failovers += o.failovers_executed;
        failbacks += o.failbacks_executed;
        rtos.extend(o.rto_ms.iter().map(|(_, ms)| *ms));
        gray_decisions.extend(o.gray_decision_ms);
        gray_left.extend(o.gray_left_ms);
        ops += o.ops;
        async_ops += o.async_history.len();
        for op in &o.async_history {
            if let Some((_, Ret::Read { .. })) = &op.returned {
                async_reads += 1;
                if matches!(op.call, Call::BoundedGet { .. }) {
                    async_bounded += 1;
                }
            }
        }
        for op in &o.history {
            if let Some((_, Ret::StaleGet { staleness_ms, .. })) = &op.returned {
                bounded += 1;
                // The leader serves with staleness 0; a follower always reports more.
                bounded_by_followers += usize::from(*staleness_ms > 0);
            }
        }
        simulated += o.simulated;
        wall += o.wall;
        if !o.violations.is_empty() {
            violations += o.violations.len();
            failing.push(o.seed);
        }
    }
    println!(
        "seeds run: {}, operations checked: {ops} (bounded reads answered: {bounded}, {bounded_by_followers} of them by followers; async: {async_ops}, {async_reads} of them reads, {async_bounded} bounded; typed updates (counter, set, mv): {counter_ops}; conflict ledger entries: {conflicts}, ledger recall on certainly concurrent duels: {recall_found}/{recall_expected} (in both writers' ledgers: {recall_both}); failover log entries: {decisions} ({failovers} failovers, {failbacks} failbacks executed); anti-entropy repairs: {repairs}), violations: {violations}, simulated {:.0} s in {:.0} s wall ({:.1}x)",
        seeds.len(),
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64().max(0.001)
    );
    if args.region_loss {
        println!("{}", rto_summary(&mut rtos));
    }
    if args.promotion {
        println!(
            "promotions: {promoted} of {} seeds promoted; lost tails reported {lost_reported} writes, {lost_acked} of them acknowledged (every lost acknowledged write is in a reported tail, or the seed fails)",
            seeds.len()
        );
    }
    if args.gray {
        let (mut d, mut l) = (gray_decisions, gray_left);
        println!(
            "gray home region, from the stall: failover decided {}; leaders out {}",
            percentiles(&mut d),
            percentiles(&mut l)
        );
    }
    if !failing.is_empty() {
        bail!("seeds with violations: {failing:?}; replay one with `meridian sim --seed N{flags}`");
    }
    Ok(())
}

/// p50, p99 and max of the recovery times (nearest rank), over every shard of every seed.
fn rto_summary(rtos: &mut [u64]) -> String {
    if rtos.is_empty() {
        return "rto: no shard recovered (see the violations)".into();
    }
    format!(
        "rto after the loss of the home region, over {} shard recoveries: {}",
        rtos.len(),
        percentiles(rtos)
    )
}

/// "p50 A ms, p99 B ms, max C ms" (nearest rank).
fn percentiles(ms: &mut [u64]) -> String {
    if ms.is_empty() {
        return "none".into();
    }
    ms.sort_unstable();
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    format!(
        "p50 {} ms, p99 {} ms, max {} ms",
        rank(0.50),
        rank(0.99),
        ms[ms.len() - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: nearest-rank percentiles: p50 of 1..=10 is 5, p99 is 10; one sample is all three.
    #[test]
    fn rto_percentiles_are_nearest_rank() {
        let mut ten: Vec<u64> = (1..=10).rev().collect();
        assert!(rto_summary(&mut ten).ends_with("p50 5 ms, p99 10 ms, max 10 ms"));
        assert!(rto_summary(&mut [7]).ends_with("p50 7 ms, p99 7 ms, max 7 ms"));
        assert!(rto_summary(&mut []).contains("no shard"));
    }
}
