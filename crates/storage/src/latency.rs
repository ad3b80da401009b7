//! A sliding window of latencies, for health signals (the p99 of recent fsyncs or writes).
//! Bounded: at most `cap` samples, none older than `window`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock: the real one in production, the simulated one under turmoil (replayable).
use tokio::time::Instant;

/// Timestamped samples: at most `cap`, none older than `window` when read.
#[derive(Debug)]
struct Samples<T> {
    window: Duration,
    cap: usize,
    items: Mutex<VecDeque<(Instant, T)>>,
}

impl<T: Copy> Samples<T> {
    fn new(window: Duration, cap: usize) -> Samples<T> {
        assert!(cap > 0, "a window holds at least one sample");
        Samples {
            window,
            cap,
            items: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
        }
    }

    fn record(&self, v: T) {
        let now = Instant::now();
        let mut s = self.items.lock().unwrap();
        if s.len() == self.cap {
            s.pop_front();
        }
        s.push_back((now, v));
        debug_assert!(s.len() <= self.cap);
    }

    /// The samples still in the window (older ones are dropped).
    fn current(&self) -> Vec<T> {
        let now = Instant::now();
        let mut s = self.items.lock().unwrap();
        while s
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            s.pop_front();
        }
        s.iter().map(|(_, v)| *v).collect()
    }
}

#[derive(Debug)]
pub struct LatencyWindow(Samples<f64>);

impl LatencyWindow {
    pub fn new(window: Duration, cap: usize) -> LatencyWindow {
        LatencyWindow(Samples::new(window, cap))
    }

    /// Records one latency, observed now.
    pub fn record(&self, d: Duration) {
        self.0.record(d.as_secs_f64() * 1000.0);
    }

    /// The `qs` quantiles (0 to 1) of the samples in the window, in milliseconds (`None`: no
    /// sample).
    pub fn quantiles_ms(&self, qs: &[f64]) -> Option<Vec<f64>> {
        let mut v = self.0.current();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(
            qs.iter()
                .map(|q| {
                    debug_assert!((0.0..=1.0).contains(q), "a quantile is within 0 and 1");
                    let rank = ((v.len() as f64) * q).ceil() as usize;
                    v[rank.clamp(1, v.len()) - 1]
                })
                .collect(),
        )
    }

    /// The 99th percentile of the samples in the window, in milliseconds (`None`: no sample).
    pub fn p99_ms(&self) -> Option<f64> {
        let mut v = self.0.current();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((v.len() as f64) * 0.99).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }
}

/// A sliding window of outcomes (succeeded or failed), for the error-rate health signal.
/// Bounded like [`LatencyWindow`].
#[derive(Debug)]
pub struct OutcomeWindow(Samples<bool>);

impl OutcomeWindow {
    pub fn new(window: Duration, cap: usize) -> OutcomeWindow {
        OutcomeWindow(Samples::new(window, cap))
    }

    pub fn record(&self, ok: bool) {
        self.0.record(ok);
    }

    /// The share of failures among the outcomes in the window, if there are at least
    /// `min_outcomes` (fewer say nothing: one failure in three writes is no signal).
    pub fn error_rate(&self, min_outcomes: usize) -> Option<f64> {
        let s = self.0.current();
        if s.len() < min_outcomes.max(1) {
            return None;
        }
        let failed = s.iter().filter(|ok| !**ok).count();
        let rate = failed as f64 / s.len() as f64;
        debug_assert!((0.0..=1.0).contains(&rate));
        Some(rate)
    }
}

impl Default for OutcomeWindow {
    /// Ten seconds, at most 4096 outcomes.
    fn default() -> Self {
        OutcomeWindow::new(Duration::from_secs(10), 4096)
    }
}

impl Default for LatencyWindow {
    /// Ten seconds, at most 4096 samples.
    fn default() -> Self {
        LatencyWindow::new(Duration::from_secs(10), 4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the error rate needs enough outcomes, counts failures among them, and forgets
    // outcomes past the window.
    #[tokio::test(start_paused = true)]
    async fn error_rate_over_the_window() {
        let w = OutcomeWindow::new(Duration::from_secs(10), 100);
        for i in 0..10 {
            w.record(i % 5 != 0);
        }
        assert_eq!(w.error_rate(20), None);
        assert_eq!(w.error_rate(10), Some(0.2));
        tokio::time::advance(Duration::from_secs(11)).await;
        w.record(true);
        assert_eq!(w.error_rate(1), Some(0.0));
    }

    // Goal: the p99 of 100 samples is the 99th smallest; the window holds at most `cap`.
    #[test]
    fn p99_and_bound() {
        let w = LatencyWindow::new(Duration::from_secs(60), 100);
        assert_eq!(w.p99_ms(), None);
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.p99_ms(), Some(99.0));
        for _ in 0..100 {
            w.record(Duration::from_millis(1));
        }
        assert_eq!(w.p99_ms(), Some(1.0));
        assert_eq!(w.0.items.lock().unwrap().len(), 100);
    }
}
