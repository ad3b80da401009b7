use super::*;

const HOME: &str = "us-east-1";
const TICK_MS: u64 = 200;

fn regions() -> [&'static str; 3] {
    [HOME, "us-west-2", "eu-west-1"]
}

/// A region's sample: heard by every other region or by none, with a write p99.
fn sample(region: &str, heard: bool, write_p99_ms: f64) -> RegionSample {
    let others: Vec<String> = regions()
        .iter()
        .filter(|r| **r != region)
        .map(|r| r.to_string())
        .collect();
    RegionSample {
        region: region.to_string(),
        heard_by: if heard { others.clone() } else { Vec::new() },
        unheard_by: if heard { Vec::new() } else { others },
        probe_loss: if heard { 0.0 } else { 1.0 },
        write_p99_ms: heard.then_some(write_p99_ms),
        fsync_p99_ms: heard.then_some(2.0),
        error_rate: heard.then_some(0.0),
    }
}

/// Every region healthy but `home`, which is heard or not and writes at `home_p99`.
fn tick_samples(home_heard: bool, home_p99: f64) -> Vec<RegionSample> {
    regions()
        .iter()
        .map(|r| {
            if *r == HOME {
                sample(r, home_heard, home_p99)
            } else {
                sample(r, true, 8.0)
            }
        })
        .collect()
}

/// A driver in miniature: judges, decides, commits every decision to a log and applies it.
struct Harness {
    cfg: FailoverConfig,
    judge: HealthJudge,
    state: FailoverState,
    log: Vec<Entry>,
    now_ms: u64,
    zoned: Vec<ZoneKeyspace>,
}

impl Harness {
    fn new(cfg: FailoverConfig) -> Harness {
        Harness {
            cfg,
            judge: HealthJudge::default(),
            state: FailoverState::default(),
            log: Vec::new(),
            now_ms: 0,
            zoned: Vec::new(),
        }
    }

    fn commit(&mut self, action: Action, reason: &str, by: &str) {
        let (seq, prev) = self.state.next();
        let e = Entry {
            seq,
            at_ms: self.now_ms,
            action,
            reason: reason.to_string(),
            by: by.to_string(),
            inputs: self.judge.views(),
            prev: String::new(),
            hash: String::new(),
        }
        .seal(&prev);
        self.state.apply(&e);
        self.log.push(e);
    }

    /// One tick: returns the decisions committed.
    fn tick(&mut self, samples: &[RegionSample]) -> Vec<Action> {
        self.now_ms += TICK_MS;
        self.judge.observe(&self.cfg, self.now_ms, samples);
        let views = self.judge.views();
        let decided = Controller::decide_with(
            &self.cfg,
            &self.state,
            &views,
            &self.zoned,
            self.now_ms,
            self.now_ms,
        );
        let mut out = Vec::new();
        for p in decided {
            out.push(p.action.clone());
            self.commit(p.action, &p.reason, "controller@1");
        }
        out
    }

    fn run(&mut self, ms: u64, samples: &[RegionSample]) -> Vec<Action> {
        let mut out = Vec::new();
        for _ in 0..ms / TICK_MS {
            out.extend(self.tick(samples));
        }
        out
    }

    fn health(&self, region: &str) -> Health {
        self.judge.views()[region].health
    }
}

fn failovers(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Failover { .. }))
        .count()
}

// Goal: a region nobody hears from is down after `down_after_ms`, not before, and loses its
// leaders at once; the reason names the votes.
#[test]
fn a_silent_region_is_down_after_the_calibrated_time() {
    let cfg = FailoverConfig::default().calibrated(150.0, 1_000);
    assert_eq!(cfg.down_after_ms, 1_500);
    assert_eq!(
        FailoverConfig::default()
            .calibrated(150.0, 3_000)
            .down_after_ms,
        3_000
    );
    let mut h = Harness::new(cfg);
    assert!(h.run(5_000, &tick_samples(true, 8.0)).is_empty());
    let before = h.run(1_400, &tick_samples(false, 0.0));
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(h.health(HOME), Health::Healthy);
    let after = h.run(400, &tick_samples(false, 0.0));
    assert_eq!(
        after,
        vec![Action::Failover {
            region: HOME.into(),
            holddown_ms: 30_000
        }]
    );
    assert_eq!(h.health(HOME), Health::Down);
    assert!(
        h.log[0].reason.contains("unheard by"),
        "{}",
        h.log[0].reason
    );
    assert!(h.state.evacuated.contains_key(HOME));
}

// Goal: one observer that cannot reach a region, while the other observer can, does not make
// it down (a broken link is not a dead region).
#[test]
fn one_observers_broken_link_is_outvoted() {
    let mut h = Harness::new(FailoverConfig::default());
    let mut s = tick_samples(true, 8.0);
    s[0].heard_by = vec!["eu-west-1".into()];
    s[0].unheard_by = vec!["us-west-2".into()];
    assert!(h.run(20_000, &s).is_empty());
    assert_eq!(h.health(HOME), Health::Healthy);
}

// Goal: a gray home region (writes ten times slower, heartbeats fine) turns degraded and loses
// its leaders once it has been degraded for `degraded_for_ms`, not before.
#[test]
fn a_gray_region_loses_its_leaders_after_the_degraded_time() {
    let cfg = FailoverConfig::default();
    let mut h = Harness::new(cfg.clone());
    assert!(h.run(10_000, &tick_samples(true, 8.0)).is_empty());
    // p99 of 8 ms becomes 120 ms.
    let slow = tick_samples(true, 120.0);
    let mut degraded_at = None;
    let mut decided_at = None;
    for _ in 0..(60_000 / TICK_MS) {
        let d = h.tick(&slow);
        if degraded_at.is_none() && h.health(HOME) == Health::Degraded {
            degraded_at = Some(h.now_ms);
        }
        if decided_at.is_none() && failovers(&d) == 1 {
            decided_at = Some(h.now_ms);
        }
    }
    let (degraded_at, decided_at) = (degraded_at.unwrap(), decided_at.unwrap());
    assert_eq!(decided_at - degraded_at, cfg.degraded_for_ms);
    assert!(h.log[0].reason.contains("degraded"), "{}", h.log[0].reason);
    assert_eq!(
        failovers(&h.log.iter().map(|e| e.action.clone()).collect::<Vec<_>>()),
        1
    );
}

// Goal: a noisy signal (one sample in three ten times slow, at random) never degrades the
// region: hysteresis turns noise into a steady judgement.
#[test]
fn a_noisy_signal_makes_no_decision() {
    let mut h = Harness::new(FailoverConfig::default());
    let mut rng = Lcg(7);
    let mut states = Vec::new();
    for _ in 0..(600_000 / TICK_MS) {
        let p99 = if rng.below(3) == 0 { 150.0 } else { 8.0 };
        assert!(h.tick(&tick_samples(true, p99)).is_empty());
        states.push(h.health(HOME));
    }
    assert!(states.iter().all(|s| *s == Health::Healthy));
}

// Goal: leaders come back only after the hold-down of healthy time; a region that fails again
// within a hold-down of coming back gets double the hold-down, up to the cap.
#[test]
fn holddown_doubles_on_repeated_failure_up_to_the_cap() {
    let cfg = FailoverConfig {
        holddown_ms: 10_000,
        holddown_max_ms: 40_000,
        ..FailoverConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.run(2_000, &tick_samples(true, 8.0));
    let mut holddowns = Vec::new();
    for _ in 0..5 {
        let down = h.run(3_000, &tick_samples(false, 0.0));
        assert_eq!(failovers(&down), 1, "{down:?}");
        let Action::Failover { holddown_ms, .. } = &down[0] else {
            unreachable!()
        };
        holddowns.push(*holddown_ms);
        // Healthy for just under the hold-down: no failback yet.
        let early = h.run(*holddown_ms - TICK_MS, &tick_samples(true, 8.0));
        assert!(early.is_empty(), "{early:?}");
        let back = h.run(2 * TICK_MS, &tick_samples(true, 8.0));
        assert_eq!(
            back,
            vec![Action::Failback {
                region: HOME.into()
            }]
        );
        // Fails again at once: within the hold-down.
    }
    assert_eq!(holddowns, vec![10_000, 20_000, 40_000, 40_000, 40_000]);
    // Healthy for a whole hold-down after returning: the next failure starts from the base.
    h.run(41_000, &tick_samples(true, 8.0));
    let down = h.run(3_000, &tick_samples(false, 0.0));
    assert_eq!(
        down,
        vec![Action::Failover {
            region: HOME.into(),
            holddown_ms: 10_000
        }]
    );
}

// Goal: a region that flaps (down and up every 1 to 10 s) for 10 simulated minutes causes at
// most one failover per hold-down window.
#[test]
fn a_flapping_region_fails_over_at_most_once_per_holddown() {
    for seed in 1..=20 {
        let cfg = FailoverConfig::default();
        let mut h = Harness::new(cfg.clone());
        h.run(5_000, &tick_samples(true, 8.0));
        let mut rng = Lcg(seed);
        let mut up = true;
        let mut failover_times = Vec::new();
        let end = h.now_ms + 600_000;
        while h.now_ms < end {
            let phase = 1_000 + rng.below(9_001);
            up = !up;
            for _ in 0..phase / TICK_MS {
                for a in h.tick(&tick_samples(up, 8.0)) {
                    if let Action::Failover { holddown_ms, .. } = a {
                        failover_times.push((h.now_ms, holddown_ms));
                    }
                }
            }
        }
        for w in failover_times.windows(2) {
            let ((t0, hold0), (t1, _)) = (w[0], w[1]);
            assert!(
                t1 - t0 >= hold0,
                "seed {seed}: failovers at {t0} and {t1} ms, closer than the hold-down {hold0} ms"
            );
        }
        assert!(!failover_times.is_empty(), "seed {seed}: never failed over");
    }
}

// Goal: while paused, decisions wait as pending (once each, with their reason), nothing is
// executed; approve executes the decision, reject drops it; resume lets the controller act.
#[test]
fn paused_decisions_wait_for_an_operator() {
    let mut h = Harness::new(FailoverConfig::default());
    h.run(2_000, &tick_samples(true, 8.0));
    h.commit(Action::Pause, "maintenance", "operator:alice");
    assert!(!h.state.may_move_leaders());
    let waited = h.run(10_000, &tick_samples(false, 0.0));
    assert_eq!(waited.len(), 1, "{waited:?}");
    let Action::Pending { id, decision } = &waited[0] else {
        panic!("{waited:?}")
    };
    assert!(matches!(**decision, Action::Failover { .. }));
    assert!(
        h.state.evacuated.is_empty(),
        "nothing executes while paused"
    );
    assert!(h.log.last().unwrap().reason.starts_with("paused"));
    let (id, decision) = (*id, decision.clone());
    h.commit(
        Action::Approve {
            id,
            decision: decision.clone(),
        },
        "approved",
        "operator:alice",
    );
    assert!(h.state.pending.is_empty());
    assert!(h.state.evacuated.contains_key(HOME));
    assert!(
        h.state.may_move_leaders(),
        "an approved decision is carried out"
    );
    // Carried out, it no longer applies: approving it again is refused by the driver.
    assert!(!h.state.applies(&decision));
    // Back up and healthy past the hold-down: the failback waits too, and is rejected.
    let waited = h.run(40_000, &tick_samples(true, 8.0));
    assert_eq!(waited.len(), 1, "{waited:?}");
    let Action::Pending { id, .. } = &waited[0] else {
        panic!("{waited:?}")
    };
    let id = *id;
    h.commit(Action::Reject { id }, "not yet", "operator:bob");
    assert!(h.state.pending.is_empty());
    assert!(h.state.evacuated.contains_key(HOME));
    h.commit(Action::Resume, "done", "operator:bob");
    // A rejected decision is not proposed again for a base hold-down.
    let quiet = h.run(30_000 - TICK_MS, &tick_samples(true, 8.0));
    assert!(quiet.is_empty(), "{quiet:?}");
    let back = h.tick(&tick_samples(true, 8.0));
    assert_eq!(
        back,
        vec![Action::Failback {
            region: HOME.into()
        }]
    );
    assert_eq!(verify(&h.log), Ok(h.log.len()));
}

// Goal: an exported log that was edited, had an entry removed, or had two entries swapped
// fails verification naming the first entry concerned; the intact log verifies.
#[test]
fn tampering_is_found_and_named() {
    let mut h = Harness::new(FailoverConfig::default());
    h.commit(Action::Pause, "a", "operator:a");
    h.commit(Action::Resume, "b", "operator:a");
    h.run(5_000, &tick_samples(false, 0.0));
    h.run(40_000, &tick_samples(true, 8.0));
    h.commit(Action::Pause, "c", "operator:a");
    assert!(h.log.len() >= 5);
    assert_eq!(verify(&h.log), Ok(h.log.len()));
    for i in 0..h.log.len() {
        let mut edited = h.log.clone();
        edited[i].reason.push('!');
        let err = verify(&edited).unwrap_err();
        assert!(
            err.contains(&format!("entry {i} ")) && err.contains("edited"),
            "{err}"
        );

        if i > 0 {
            let mut removed = h.log.clone();
            removed.remove(i);
            if i < removed.len() {
                let err = verify(&removed).unwrap_err();
                assert!(err.contains(&format!("entry {} ", i + 1)), "{err}");
            }
            let mut swapped = h.log.clone();
            swapped.swap(i - 1, i);
            assert!(verify(&swapped).is_err());
        }
    }
    // Re-sealing an edited entry breaks the link to the next one.
    let mut resealed = h.log.clone();
    resealed[1].reason = "forged".into();
    let prev = resealed[1].prev.clone();
    resealed[1] = resealed[1].clone().seal(&prev);
    let err = verify(&resealed).unwrap_err();
    assert!(err.contains("entry 2 "), "{err}");
}

// Goal: leaders belong home unless it is evacuated, then in the nearest region that is not.
#[test]
fn preferred_region_skips_evacuated_regions() {
    let mut s = FailoverState::default();
    let nearest: Vec<String> = ["us-east-1", "us-west-2", "eu-west-1"]
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(s.preferred_region(HOME, &nearest), Some(HOME));
    let ev = Evacuated {
        since_ms: 0,
        holddown_ms: 1,
        decision: 0,
    };
    s.evacuated.insert(HOME.into(), ev.clone());
    assert_eq!(s.preferred_region(HOME, &nearest), Some("us-west-2"));
    s.evacuated.insert("us-west-2".into(), ev.clone());
    assert_eq!(s.preferred_region(HOME, &nearest), Some("eu-west-1"));
    s.evacuated.insert("eu-west-1".into(), ev);
    assert_eq!(s.preferred_region(HOME, &nearest), None);
}

/// A tiny deterministic generator for the tests (the crate draws no randomness).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

// Goal: every region slowing down together (a machine-wide or cloud-wide stall) is no one
// region's gray failure; leaders arriving in a region (its write p99 rising to its peers')
// neither.
#[test]
fn slowness_shared_with_the_peers_is_not_degraded() {
    let mut h = Harness::new(FailoverConfig::default());
    h.run(10_000, &tick_samples(true, 8.0));
    let all_slow: Vec<RegionSample> = regions().iter().map(|r| sample(r, true, 150.0)).collect();
    assert!(h.run(60_000, &all_slow).is_empty());
    assert_eq!(h.health(HOME), Health::Healthy);
}

// Goal: an entry's hash survives a trip through JSON text (floats included), so an exported
// log verifies.
#[test]
fn hashes_survive_json_round_trips() {
    let mut h = Harness::new(FailoverConfig::default());
    h.run(5_000, &tick_samples(true, 8.123_456_789_012_3));
    h.run(5_000, &tick_samples(false, 0.0));
    assert!(!h.log.is_empty());
    let text = serde_json::to_string(&h.log).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let back: Vec<Entry> = serde_json::from_value(value).unwrap();
    assert_eq!(verify(&back), Ok(h.log.len()));
}

// Goal: a region whose writes fail (a tenth of them, latencies fine) is degraded and loses its
// leaders after the degraded time; an occasional failing sample (one in four ticks) and a rate
// at the limit do not degrade it.
#[test]
fn a_region_whose_writes_fail_is_degraded() {
    let with_errors = |rate: f64| {
        let mut s = tick_samples(true, 8.0);
        s[0].error_rate = Some(rate);
        s
    };
    let cfg = FailoverConfig::default();
    let mut h = Harness::new(cfg.clone());
    assert!(h.run(10_000, &tick_samples(true, 8.0)).is_empty());
    let mut decided = Vec::new();
    for i in 0..(120_000 / TICK_MS) {
        let rate = if i % 4 == 0 { 0.5 } else { 0.0 };
        decided.extend(h.tick(&with_errors(rate)));
    }
    assert!(h.run(60_000, &with_errors(cfg.error_rate_max)).is_empty());
    assert!(decided.is_empty(), "{decided:?}");
    assert_eq!(h.health(HOME), Health::Healthy);
    let d = h.run(
        cfg.window_ms + cfg.degraded_for_ms + 1_000,
        &with_errors(0.1),
    );
    assert_eq!(failovers(&d), 1, "{d:?}");
    assert!(h.log.last().unwrap().reason.contains("degraded"));
    assert_eq!(h.judge.views()[HOME].error_rate, Some(0.1));
}

fn zoned(after_ms: Option<u64>, to: Option<&str>) -> ZoneKeyspace {
    ZoneKeyspace {
        name: "ledger".into(),
        home: HOME.into(),
        epoch: 0,
        after_ms,
        to: to.map(str::to_string),
    }
}

fn promotions(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| match a {
            Action::Pending { decision, .. } => matches!(**decision, Action::Promote { .. }),
            a => matches!(a, Action::Promote { .. }),
        })
        .collect()
}

// Goal: a manual zone keyspace whose home is down gets one pending promotion (never executed
// by the controller itself); once approved it is not proposed again for that epoch.
#[test]
fn manual_promotion_waits_for_approval_once() {
    let cfg = FailoverConfig::default().calibrated(150.0, 1_000);
    let mut h = Harness::new(cfg);
    h.zoned = vec![zoned(None, Some("us-west-2"))];
    assert!(h.run(3_000, &tick_samples(true, 8.0)).is_empty());
    let decided = h.run(10_000, &tick_samples(false, 0.0));
    let p = promotions(&decided);
    assert_eq!(p.len(), 1, "{decided:?}");
    let Action::Pending { id, decision } = p[0].clone() else {
        panic!("manual promotions wait: {p:?}")
    };
    assert_eq!(
        *decision,
        Action::Promote {
            keyspace: "ledger".into(),
            from: HOME.into(),
            to: "us-west-2".into(),
            epoch: 1
        }
    );
    assert!(
        h.state.promoted.is_empty(),
        "nothing promoted before approval"
    );
    h.commit(
        Action::Approve { id, decision },
        "approved",
        "operator:alice",
    );
    assert_eq!(h.state.promoted.get("ledger"), Some(&1));
    assert!(!h.state.applies(&Action::Promote {
        keyspace: "ledger".into(),
        from: HOME.into(),
        to: "us-west-2".into(),
        epoch: 1
    }));
    let later = h.run(10_000, &tick_samples(false, 0.0));
    assert!(promotions(&later).is_empty(), "{later:?}");
}

// Goal: an auto zone keyspace is promoted once its home has been down for its
// promotion_after_ms, not before, and never without a region to promote to.
#[test]
fn auto_promotion_follows_the_configured_down_time() {
    let cfg = FailoverConfig::default().calibrated(150.0, 1_000);
    let mut h = Harness::new(cfg.clone());
    h.zoned = vec![zoned(Some(5_000), Some("us-west-2"))];
    h.run(3_000, &tick_samples(true, 8.0));
    let mut down_at = None;
    let mut promoted_at = None;
    for _ in 0..100 {
        let d = h.tick(&tick_samples(false, 0.0));
        if down_at.is_none() && h.health(HOME) == Health::Down {
            down_at = Some(h.now_ms);
        }
        if !promotions(&d).is_empty() {
            assert!(matches!(
                promotions(&d)[0],
                Action::Promote { epoch: 1, .. }
            ));
            promoted_at = Some(h.now_ms);
            break;
        }
    }
    let (down, promoted) = (down_at.unwrap(), promoted_at.expect("promoted"));
    assert!(
        promoted - down >= 5_000,
        "down at {down}, promoted at {promoted}"
    );
    assert!(
        promoted - down <= 5_000 + TICK_MS,
        "down at {down}, promoted at {promoted}"
    );

    let mut nowhere = Harness::new(cfg);
    nowhere.zoned = vec![zoned(Some(1_000), None)];
    nowhere.run(3_000, &tick_samples(true, 8.0));
    let d = nowhere.run(20_000, &tick_samples(false, 0.0));
    assert!(promotions(&d).is_empty(), "{d:?}");
}
