//! Increases of counters over a sliding window, as Prometheus's `increase()`
//! and `resets()` do, for checks like "leader changes in 15 minutes".

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Samples of one counter per key (a node), kept for `window`.
pub struct CounterWindow {
    window: Duration,
    samples: Mutex<HashMap<String, VecDeque<(Instant, f64)>>>,
}

impl CounterWindow {
    pub fn new(window: Duration) -> Self {
        CounterWindow {
            window,
            samples: Mutex::new(HashMap::new()),
        }
    }

    /// Records `value` for `key` and returns (increase, resets) over the
    /// window. A drop in value is a reset: the counter restarted from zero.
    pub fn observe(&self, key: &str, value: f64) -> (f64, u32) {
        self.observe_at(key, value, Instant::now())
    }

    fn observe_at(&self, key: &str, value: f64, now: Instant) -> (f64, u32) {
        let mut all = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let q = all.entry(key.to_string()).or_default();
        q.push_back((now, value));
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        let mut increase = 0.0;
        let mut resets = 0;
        for pair in q.iter().collect::<Vec<_>>().windows(2) {
            let (a, b) = (pair[0].1, pair[1].1);
            if b >= a {
                increase += b - a;
            } else {
                resets += 1;
                increase += b;
            }
        }
        (increase, resets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_and_resets_within_window() {
        let w = CounterWindow::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(w.observe_at("n", 5.0, t0), (0.0, 0));
        assert_eq!(
            w.observe_at("n", 7.0, t0 + Duration::from_secs(10)),
            (2.0, 0)
        );
        // A restart: the counter starts again from 0.
        assert_eq!(
            w.observe_at("n", 1.0, t0 + Duration::from_secs(20)),
            (3.0, 1)
        );
        // The first two samples leave the window.
        assert_eq!(
            w.observe_at("n", 1.0, t0 + Duration::from_secs(75)),
            (0.0, 0)
        );
    }
}
