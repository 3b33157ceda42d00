//! Health checks: what a workload declares (`health = { http = "/healthz", port = 8080, ... }`)
//! and the pure state machine that turns probe results into a health status.
//!
//! A workload starts `starting`. During the start period failures are not counted; the first
//! success makes it `healthy` (and ends the start period). After it, `retries` consecutive
//! failures make it `unhealthy`, which by default restarts it; a success makes it `healthy`
//! again.

use serde::{Deserialize, Serialize};

/// How a workload is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// A command run inside the workload; healthy when it exits 0.
    Exec(Vec<String>),
    /// `GET path` on the workload's port; healthy on a 2xx or 3xx answer.
    Http { path: String, port: u16 },
    /// A TCP connection to the workload's port.
    Tcp(u16),
}

/// What an unhealthy workload gets.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum OnUnhealthy {
    #[default]
    Restart,
    /// Only an event.
    None,
}

/// A declared health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    pub retries: u32,
    pub start_period_secs: u64,
    #[serde(default)]
    pub on_unhealthy: OnUnhealthy,
}

pub const DEFAULT_INTERVAL: u64 = 10;
pub const DEFAULT_TIMEOUT: u64 = 5;
pub const DEFAULT_RETRIES: u32 = 3;

/// A workload's health.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Turns probe results into status changes.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    status: HealthStatus,
    failures: u32,
    retries: u32,
    start_period_ms: u64,
    started_ms: u64,
}

impl HealthTracker {
    /// A tracker for a workload started at `started_ms`.
    pub fn new(check: &HealthCheck, started_ms: u64) -> HealthTracker {
        HealthTracker {
            status: HealthStatus::Starting,
            failures: 0,
            retries: check.retries.max(1),
            start_period_ms: check.start_period_secs * 1000,
            started_ms,
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one probe result at `now_ms`; returns the new status when it changed.
    pub fn record(&mut self, ok: bool, now_ms: u64) -> Option<HealthStatus> {
        let before = self.status;
        if ok {
            self.failures = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let in_start_period = self.status == HealthStatus::Starting
                && now_ms < self.started_ms + self.start_period_ms;
            if !in_start_period {
                self.failures += 1;
                if self.failures >= self.retries {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        (self.status != before).then_some(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u32, start_period_secs: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp(80),
            interval_secs: 1,
            timeout_secs: 1,
            retries,
            start_period_secs,
            on_unhealthy: OnUnhealthy::Restart,
        }
    }

    #[test]
    fn failures_count_after_the_start_period_and_retries_make_it_unhealthy() {
        let mut t = HealthTracker::new(&check(3, 10), 0);
        // In the start period failures do not count.
        for ms in [1000, 2000, 9000] {
            assert_eq!(t.record(false, ms), None);
        }
        assert_eq!(t.failures(), 0);
        assert_eq!(t.record(false, 10_000), None);
        assert_eq!(t.record(false, 11_000), None);
        assert_eq!(t.record(false, 12_000), Some(HealthStatus::Unhealthy));
        assert_eq!(t.record(false, 13_000), None, "reported once");
        assert_eq!(t.record(true, 14_000), Some(HealthStatus::Healthy));
        assert_eq!(t.failures(), 0);
    }

    #[test]
    fn a_success_ends_the_start_period() {
        let mut t = HealthTracker::new(&check(2, 60), 0);
        assert_eq!(t.record(true, 1000), Some(HealthStatus::Healthy));
        assert_eq!(t.record(false, 2000), None);
        assert_eq!(t.record(false, 3000), Some(HealthStatus::Unhealthy));
        // A failure between successes resets nothing but the streak.
        assert_eq!(t.record(true, 4000), Some(HealthStatus::Healthy));
        assert_eq!(t.record(false, 5000), None);
        assert_eq!(t.record(true, 6000), None);
        assert_eq!(t.record(false, 7000), None);
        assert_eq!(t.status(), HealthStatus::Healthy);
    }

    #[test]
    fn zero_retries_counts_as_one() {
        let mut t = HealthTracker::new(&check(0, 0), 0);
        assert_eq!(t.record(false, 1), Some(HealthStatus::Unhealthy));
    }
}
