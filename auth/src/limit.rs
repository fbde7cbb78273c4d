//! Attempts per peer address: a token bucket per IP, refilled over a minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most `per_minute` attempts a minute per IP, in bursts of up to
/// `burst`. Cheap to clone; clones share the buckets.
#[derive(Debug, Clone)]
pub struct Limiter {
    per_minute: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

/// Buckets kept; when there are more, full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    pub fn new(per_minute: u32, burst: u32) -> Limiter {
        Limiter {
            per_minute: per_minute.max(1) as f64,
            burst: burst.max(1) as f64,
            buckets: Arc::default(),
        }
    }

    /// Takes one attempt for `ip`; false when none is left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.per_minute, self.burst);
            b.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate / 60.0 < burst);
        }
        let (tokens, at) = b.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_minute / 60.0)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_per_address() {
        let l = Limiter::new(6, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a)));
        assert!(!l.allow(a));
        assert!(l.allow(b), "another address has its own bucket");
    }
}
