//! Gray failure: a home region whose disks stall (every durable commit ten times slower and
//! more) while its heartbeats flow loses its leaders as if it were down, through a committed
//! `failover` decision, neither before it can have been degraded for the configured time nor
//! long after: within `judged_within_ms` (enough bad samples to be judged degraded) plus
//! `degraded_for_ms` plus `commit_within_ms` of the stall; and the leaders of the sync keyspace
//! have all left the region within `move_within_ms` of the decision, and stay out while it is
//! gray (leaders that had left earlier, by an election, do not count).
//!
//! Property: issue 10's "a home region that stays degraded longer than a configured time loses
//! its leaders to the next region as if it were down"; the gray-failure framing is Huang et al.,
//! "Gray Failure: The Achilles' Heel of Cloud-Scale Systems" (HotOS 2017).

use std::collections::BTreeMap;

use meridian_control::failover::{Action, Entry};

pub struct GrayRun<'a> {
    pub region: &'a str,
    /// Simulated time the stall began.
    pub stall_at_us: u64,
    pub degraded_for_ms: u64,
    /// How soon after the stall the region is judged degraded at the latest: the first slow
    /// commits reported by probes, then enough bad samples in the window.
    pub judged_within_ms: u64,
    /// How long committing the decision may take (the metadata leader may sit in the gray
    /// region, its own commits stalled) and seeing it (the log is polled).
    pub commit_within_ms: u64,
    pub move_within_ms: u64,
    /// The committed decision log, and when each entry was first seen committed.
    pub chain: &'a [Entry],
    pub seen_us: &'a BTreeMap<u64, u64>,
    /// (µs, every shard led outside the region) from the stall until the faults ended.
    pub samples: &'a [(u64, bool)],
}

/// The first sample at or after `decided_us` with every leader outside the region.
pub fn left_us(samples: &[(u64, bool)], decided_us: u64) -> Option<u64> {
    samples
        .iter()
        .find(|(t, out)| *t >= decided_us && *out)
        .map(|(t, _)| *t)
}

fn fails_over(a: &Action, region: &str) -> bool {
    match a {
        Action::Failover { region: r, .. } => r == region,
        Action::Approve { decision, .. } => fails_over(decision, region),
        _ => false,
    }
}

/// The first failover of `region` seen committed at or after `since_us`, and when.
fn first_failover<'a>(
    region: &str,
    since_us: u64,
    chain: &'a [Entry],
    seen_us: &BTreeMap<u64, u64>,
) -> Option<(&'a Entry, u64)> {
    chain.iter().find_map(|e| {
        let at = *seen_us.get(&e.seq)?;
        (at >= since_us && fails_over(&e.action, region)).then_some((e, at))
    })
}

/// When the first failover of `region` after `since_us` was seen committed.
pub fn decision_us(
    region: &str,
    since_us: u64,
    chain: &[Entry],
    seen_us: &BTreeMap<u64, u64>,
) -> Option<u64> {
    first_failover(region, since_us, chain, seen_us).map(|(_, at)| at)
}

pub fn check(run: &GrayRun) -> Vec<String> {
    let decision = first_failover(run.region, run.stall_at_us, run.chain, run.seen_us);
    let Some((e, at)) = decision else {
        return vec![format!(
            "the gray home region {} (disks stalled, heartbeats fine) never lost its leaders: no failover decision after the stall",
            run.region
        )];
    };
    let mut problems = Vec::new();
    let after_ms = (at - run.stall_at_us) / 1000;
    // The log is polled: an entry is seen up to a poll after it committed.
    if after_ms + 500 < run.degraded_for_ms {
        problems.push(format!(
            "{} failed over {after_ms} ms after its disks stalled (decision {}: {}), before it could have been degraded for the configured {} ms",
            run.region, e.seq, e.reason, run.degraded_for_ms
        ));
    }
    let limit = run.judged_within_ms + run.degraded_for_ms + run.commit_within_ms;
    if after_ms > limit {
        problems.push(format!(
            "{} failed over only {after_ms} ms after its disks stalled (decision {}), later than being judged degraded ({} ms) plus the degraded time ({} ms) plus committing ({} ms)",
            run.region, e.seq, run.judged_within_ms, run.degraded_for_ms, run.commit_within_ms
        ));
    }
    match left_us(run.samples, at) {
        Some(left) if left <= at + run.move_within_ms * 1000 => {
            // And they stay out while the region is gray (no failback can be decided then).
            if let Some((back, _)) = run.samples.iter().find(|(t, out)| *t > left && !*out) {
                problems.push(format!(
                    "a leader was back in {} {} ms after failover decision {}, while it was still gray",
                    run.region,
                    (back - at) / 1000,
                    e.seq
                ));
            }
        }
        Some(left) => problems.push(format!(
            "leaders left {} {} ms after failover decision {}, more than {} ms",
            run.region,
            (left.saturating_sub(at)) / 1000,
            e.seq,
            run.move_within_ms
        )),
        None => problems.push(format!(
            "failover decision {} was committed but the leaders never all left {}",
            e.seq, run.region
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_control::failover::GENESIS;

    fn entry(seq: u64, action: Action) -> Entry {
        Entry {
            seq,
            at_ms: 0,
            action,
            reason: "degraded".into(),
            by: "controller@2".into(),
            inputs: BTreeMap::new(),
            prev: String::new(),
            hash: String::new(),
        }
        .seal(GENESIS)
    }

    /// Leaders out from `left` µs on (never, for `None`), sampled every 100 ms to 30 s.
    fn samples(left: Option<u64>) -> Vec<(u64, bool)> {
        (100..300)
            .map(|i| {
                let t = i * 100_000;
                (t, left.is_some_and(|l| t >= l))
            })
            .collect()
    }

    fn run<'a>(
        chain: &'a [Entry],
        seen: &'a BTreeMap<u64, u64>,
        samples: &'a [(u64, bool)],
    ) -> GrayRun<'a> {
        GrayRun {
            region: "east",
            stall_at_us: 10_000_000,
            degraded_for_ms: 3_000,
            judged_within_ms: 8_000,
            commit_within_ms: 1_000,
            move_within_ms: 5_000,
            chain,
            seen_us: seen,
            samples,
        }
    }

    // Goal: a failover of the gray region between the degraded time and the limit, with the
    // leaders gone soon after, passes; too early, too late, none, or leaders that stay fail.
    #[test]
    fn the_gray_region_loses_its_leaders_in_time() {
        let chain = [
            entry(0, Action::Pause),
            entry(
                1,
                Action::Failover {
                    region: "east".into(),
                    holddown_ms: 4_000,
                },
            ),
        ];
        let at = |ms: u64| BTreeMap::from([(0, 1_000_000), (1, 10_000_000 + ms * 1000)]);
        let ok = at(9_000);
        let out_at = |us| samples(Some(us));
        assert!(check(&run(&chain, &ok, &out_at(20_000_000))).is_empty());
        let early = at(1_000);
        assert!(check(&run(&chain, &early, &out_at(12_000_000)))[0].contains("before it could"));
        let late = at(13_000);
        assert!(check(&run(&chain, &late, &out_at(24_000_000)))[0].contains("later than"));
        assert!(check(&run(&chain, &ok, &samples(None)))[0].contains("never all left"));
        assert!(check(&run(&chain, &ok, &out_at(29_000_000)))[0].contains("more than"));
        assert!(check(&run(&chain[..1], &ok, &samples(None)))[0].contains("no failover decision"));
        // Out before the decision (an election) but back in, then out late: too late.
        let mut early_out = out_at(11_000_000);
        for s in early_out
            .iter_mut()
            .filter(|(t, _)| *t >= 15_000_000 && *t < 27_000_000)
        {
            s.1 = false;
        }
        assert!(check(&run(&chain, &ok, &early_out))[0].contains("more than"));
        // Out in time, then a leader back while still gray.
        let mut back = out_at(20_000_000);
        back[150].1 = false;
        assert!(check(&run(&chain, &ok, &back))[0].contains("still gray"));
        // Another region's failover does not count.
        let other = [entry(
            0,
            Action::Failover {
                region: "west".into(),
                holddown_ms: 4_000,
            },
        )];
        let seen = BTreeMap::from([(0, 15_000_000)]);
        let none = samples(None);
        assert!(check(&run(&other, &seen, &none))[0].contains("no failover decision"));
    }
}
