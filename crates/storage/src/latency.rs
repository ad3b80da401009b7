//! A sliding window of latencies, for health signals (the p99 of recent fsyncs or writes).
//! Bounded: at most `cap` samples, none older than `window`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock: the real one in production, the simulated one under turmoil (replayable).
use tokio::time::Instant;

#[derive(Debug)]
pub struct LatencyWindow {
    window: Duration,
    cap: usize,
    samples: Mutex<VecDeque<(Instant, f64)>>,
}

impl LatencyWindow {
    pub fn new(window: Duration, cap: usize) -> LatencyWindow {
        assert!(cap > 0, "a latency window holds at least one sample");
        LatencyWindow {
            window,
            cap,
            samples: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
        }
    }

    /// Records one latency, observed now.
    pub fn record(&self, d: Duration) {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap();
        if s.len() == self.cap {
            s.pop_front();
        }
        s.push_back((now, d.as_secs_f64() * 1000.0));
        debug_assert!(s.len() <= self.cap);
    }

    /// The 99th percentile of the samples in the window, in milliseconds (`None`: no sample).
    pub fn p99_ms(&self) -> Option<f64> {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap();
        while s
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            s.pop_front();
        }
        if s.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = s.iter().map(|(_, ms)| *ms).collect();
        v.sort_by(f64::total_cmp);
        let rank = ((v.len() as f64) * 0.99).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }
}

/// A sliding window of outcomes (succeeded or failed), for the error-rate health signal.
/// Bounded like [`LatencyWindow`].
#[derive(Debug)]
pub struct OutcomeWindow {
    window: Duration,
    cap: usize,
    samples: Mutex<VecDeque<(Instant, bool)>>,
}

impl OutcomeWindow {
    pub fn new(window: Duration, cap: usize) -> OutcomeWindow {
        assert!(cap > 0, "an outcome window holds at least one sample");
        OutcomeWindow {
            window,
            cap,
            samples: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
        }
    }

    pub fn record(&self, ok: bool) {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap();
        if s.len() == self.cap {
            s.pop_front();
        }
        s.push_back((now, ok));
        debug_assert!(s.len() <= self.cap);
    }

    /// The share of failures among the outcomes in the window, if there are at least
    /// `min_outcomes` (fewer say nothing: one failure in three writes is no signal).
    pub fn error_rate(&self, min_outcomes: usize) -> Option<f64> {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap();
        while s
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            s.pop_front();
        }
        if s.len() < min_outcomes.max(1) {
            return None;
        }
        let failed = s.iter().filter(|(_, ok)| !ok).count();
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
        assert_eq!(w.samples.lock().unwrap().len(), 100);
    }
}
