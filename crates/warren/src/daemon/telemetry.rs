//! The daemon's own counters and facts, owned here and updated where things happen: the
//! engine counts reconcile passes (with a duration histogram) and events by kind, the apply
//! service counts applies, the API layer counts requests by route and status with their
//! latency, and the daemon's entry point records when it started and where the remote API
//! and the metrics listener are. Front ends read it ([`super::metrics`], [`super::info`]);
//! this module imports none of them.
//!
//! The handles are `prometheus-client` metrics: cheap clones of shared atomics, registered
//! into a fresh registry at every scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An API request's route (the path template) and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// An API request's route, method and response status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// An event's kind word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub kind: String,
}

/// Where the remote API listens and who it says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFacts {
    pub address: String,
    pub host_id: String,
    pub fingerprint: String,
}

/// Latency buckets from 1 ms to about 33 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The daemon's counters and facts (one per engine).
pub struct Telemetry {
    /// When the engine was built (the daemon's start, for its uptime).
    pub started: Instant,
    /// The same moment in Unix milliseconds.
    pub started_ms: u64,
    pub reconcile_passes: Counter,
    pub reconcile_seconds: Histogram,
    pub applies: Counter,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_seconds: LatencyFamily,
    pub events: Family<EventLabels, Counter>,
    /// The remote API, once it listens.
    pub remote: OnceLock<RemoteFacts>,
    /// The plain-HTTP metrics listener, once it listens.
    pub metrics_listen: OnceLock<String>,
    /// Set when the first reconcile pass has finished (the daemon's readiness).
    pub first_pass: tokio::sync::SetOnce<()>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            started: Instant::now(),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            reconcile_passes: Counter::default(),
            reconcile_seconds: latency(),
            applies: Counter::default(),
            api_requests: Family::default(),
            api_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            events: Family::default(),
            remote: OnceLock::new(),
            metrics_listen: OnceLock::new(),
            first_pass: tokio::sync::SetOnce::new(),
        }
    }
}

impl Telemetry {
    /// Counts one reconcile pass that took `took`.
    pub fn reconcile_pass(&self, took: Duration) {
        self.reconcile_passes.inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
        let _ = self.first_pass.set(());
    }

    /// Counts one event of kind `kind`.
    pub fn event(&self, kind: &str) {
        self.events
            .get_or_create(&EventLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts one answered API request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.api_seconds
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_events_and_passes() {
        let t = Telemetry::default();
        t.request("GET", "/v1/info", 200, Duration::from_millis(3));
        t.request("GET", "/v1/info", 200, Duration::from_millis(5));
        t.event("started");
        t.reconcile_pass(Duration::from_millis(1));
        let labels = RequestLabels {
            method: "GET".into(),
            route: "/v1/info".into(),
            status: "200".into(),
        };
        assert_eq!(t.api_requests.get_or_create(&labels).get(), 2);
        assert_eq!(
            t.events
                .get_or_create(&EventLabels {
                    kind: "started".into()
                })
                .get(),
            1
        );
        assert_eq!(t.reconcile_passes.get(), 1);
    }
}
