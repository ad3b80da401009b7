//! Sub-millisecond waits for the WAN model on real time.
//!
//! Tokio's timer wheel has a 1 ms tick and rounds every sleep up to a tick, so a 0.5 ms
//! intra-region hop took 1 to 2 ms, and an async write (client hop, forward to the leader, one
//! append round trip) paid several milliseconds the deployment it models would not. One thread
//! per process sleeps on a condition variable until the earliest deadline, which Linux honours
//! to within tens of microseconds, and wakes each waiter through a oneshot channel.
//!
//! Only for real time: the simulator's clock is virtual and must keep tokio's timer.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Waits longer than this go to tokio's timer first, which is cheaper, and only their last
/// stretch to the precise one.
const COARSE_ABOVE: Duration = Duration::from_millis(3);
const COARSE_SLACK: Duration = Duration::from_millis(2);

#[derive(Default)]
struct State {
    /// (deadline, ticket), earliest first.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    waiters: BTreeMap<u64, oneshot::Sender<()>>,
    next_ticket: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("meridian-precise-timer".into())
            .spawn(move || run(&s))
            .expect("spawning the precise timer thread");
        shared
    })
}

fn run(shared: &Shared) {
    let mut state = shared.state.lock().unwrap();
    loop {
        let now = Instant::now();
        while let Some(&Reverse((due, ticket))) = state.deadlines.peek() {
            if due > now {
                break;
            }
            state.deadlines.pop();
            if let Some(tx) = state.waiters.remove(&ticket) {
                let _ = tx.send(());
            }
        }
        debug_assert_eq!(
            state.deadlines.len(),
            state.waiters.len(),
            "every deadline has exactly one waiter"
        );
        state = match state.deadlines.peek() {
            Some(&Reverse((due, _))) => {
                shared
                    .wake
                    .wait_timeout(state, due.saturating_duration_since(now))
                    .unwrap()
                    .0
            }
            None => shared.wake.wait(state).unwrap(),
        };
    }
}

/// Waits until `due`, to within tens of microseconds rather than tokio's millisecond tick.
pub async fn sleep_until(due: tokio::time::Instant) {
    let mut now = tokio::time::Instant::now();
    if due <= now {
        return;
    }
    if due - now > COARSE_ABOVE {
        tokio::time::sleep_until(due - COARSE_SLACK).await;
        now = tokio::time::Instant::now();
        if due <= now {
            return;
        }
    }
    let (tx, rx) = oneshot::channel();
    {
        let shared = shared();
        let mut state = shared.state.lock().unwrap();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.deadlines.push(Reverse((due.into_std(), ticket)));
        let fresh = state.waiters.insert(ticket, tx).is_none();
        assert!(fresh, "precise timer ticket {ticket} handed out twice");
        shared.wake.notify_one();
    }
    // The thread never drops a sender without sending, so an error cannot happen; either way
    // the wait is over.
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a sub-millisecond wait ends after its deadline, never before, and well under the
    // millisecond tokio's timer would round it up to (a generous bound for a loaded machine:
    // this is a sanity check of the mechanism, not a latency measurement).
    #[tokio::test]
    async fn short_waits_end_after_their_deadline() {
        for micros in [0u64, 50, 300, 700] {
            let start = tokio::time::Instant::now();
            let due = start + Duration::from_micros(micros);
            sleep_until(due).await;
            assert!(
                tokio::time::Instant::now() >= due,
                "woke before {micros} µs"
            );
        }
        // Concurrent waiters with interleaved deadlines each wake after their own.
        let start = tokio::time::Instant::now();
        let waits: Vec<_> = [900u64, 100, 500, 5_000]
            .into_iter()
            .map(|micros| {
                let due = start + Duration::from_micros(micros);
                tokio::spawn(async move {
                    sleep_until(due).await;
                    tokio::time::Instant::now() >= due
                })
            })
            .collect();
        for w in waits {
            assert!(w.await.unwrap());
        }
    }
}
