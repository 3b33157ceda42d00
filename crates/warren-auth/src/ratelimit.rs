//! Failed-authentication limits per client address: after [`FREE_FAILURES`] failures within
//! [`WINDOW`] seconds an address is refused without checking for a while that doubles with
//! every further failure (up to [`MAX_PENALTY`]); a success clears its record.

use std::collections::HashMap;
use std::net::IpAddr;

/// Failures allowed in a window before refusals start.
pub const FREE_FAILURES: u32 = 5;
/// The window failures are counted in, seconds.
pub const WINDOW: u64 = 60;
/// The longest refusal, seconds.
pub const MAX_PENALTY: u64 = 300;
/// Addresses tracked at most (the oldest records are dropped first).
const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    first: u64,
    failures: u32,
    blocked_until: u64,
}

/// See the module docs. Times are unix seconds.
#[derive(Debug, Default)]
pub struct RateLimiter {
    records: HashMap<IpAddr, Record>,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// `Err(seconds to wait)` while `ip` is refused.
    pub fn check(&self, ip: IpAddr, now: u64) -> Result<(), u64> {
        match self.records.get(&ip) {
            Some(r) if r.blocked_until > now => Err(r.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn failure(&mut self, ip: IpAddr, now: u64) {
        if self.records.len() >= CAPACITY && !self.records.contains_key(&ip) {
            self.records
                .retain(|_, r| r.blocked_until > now || r.first + WINDOW > now);
            if self.records.len() >= CAPACITY {
                if let Some(oldest) = self
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.first)
                    .map(|(k, _)| *k)
                {
                    self.records.remove(&oldest);
                }
            }
        }
        let r = self.records.entry(ip).or_insert(Record {
            first: now,
            failures: 0,
            blocked_until: 0,
        });
        if r.first + WINDOW <= now && r.blocked_until <= now {
            *r = Record {
                first: now,
                failures: 0,
                blocked_until: 0,
            };
        }
        r.failures += 1;
        if r.failures > FREE_FAILURES {
            let over = r.failures - FREE_FAILURES - 1;
            let penalty = (1u64 << over.min(16)).min(MAX_PENALTY);
            r.blocked_until = now + penalty;
        }
    }

    /// Records a success from `ip`.
    pub fn success(&mut self, ip: IpAddr) {
        self.records.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_free_ones_block_for_growing_times() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut l = RateLimiter::new();
        for _ in 0..FREE_FAILURES {
            l.failure(ip, 1000);
            assert!(l.check(ip, 1000).is_ok());
        }
        l.failure(ip, 1000);
        assert_eq!(l.check(ip, 1000), Err(1));
        l.failure(ip, 1001);
        assert_eq!(l.check(ip, 1001), Err(2));
        assert!(
            l.check(other, 1001).is_ok(),
            "other addresses are not affected"
        );
        for _ in 0..40 {
            l.failure(ip, 1002);
        }
        assert_eq!(l.check(ip, 1002), Err(MAX_PENALTY));
        assert!(l.check(ip, 1002 + MAX_PENALTY).is_ok());
        l.success(ip);
        assert!(l.check(ip, 1003).is_ok());
        // Failures spread beyond the window do not add up.
        let mut l = RateLimiter::new();
        for i in 0..20 {
            l.failure(ip, 10_000 + i * WINDOW);
        }
        assert!(l.check(ip, 10_000 + 20 * WINDOW).is_ok());
    }
}
