//! Prometheus metrics (`GET /v1/metrics`, and the plain-HTTP `--metrics-listen` listener):
//! one scrape builds a fresh registry from what is live now (per workload: state, restarts,
//! health, and CPU, memory, pids and I/O from its cgroup ([`super::cgstats`]); dataset used
//! bytes; the pool's size and fill) plus the daemon's running counters kept in
//! [`super::telemetry`] and the ingress's reload and rejection counts, and encodes it in the
//! text exposition format.
//!
//! Dataset sizes cost the storage driver a command each on btrfs and zfs, so they are read
//! at most every [`DATASET_TTL`] and reused in between.

use super::engine::Engine;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The content type of [`render`]'s output: the Prometheus text format, which every scraper
/// and `promtool check metrics` read.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long dataset sizes are reused between scrapes.
pub const DATASET_TTL: Duration = Duration::from_secs(15);

/// A workload's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    name: String,
    kind: String,
}

/// A workload's labels with its state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    name: String,
    kind: String,
    state: String,
}

/// A dataset's labels: its key (`workloads/web/data`, `volumes/db`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    dataset: String,
}

type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

/// Dataset sizes last read, per state dir.
type DatasetCache = Mutex<Option<(Instant, PathBuf, Vec<(String, u64)>)>>;
static DATASETS: DatasetCache = Mutex::new(None);

/// The used bytes of every workload's datasets (rootfs and data together) and of every
/// volume, reused for [`DATASET_TTL`].
fn dataset_sizes(e: &Engine, workloads: &[String]) -> Vec<(String, u64)> {
    let mut cache = DATASETS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, dir, sizes)) = cache.as_ref() {
        if at.elapsed() < DATASET_TTL && dir == &e.cfg.state_dir {
            return sizes.clone();
        }
    }
    let mut sizes = Vec::new();
    for name in workloads {
        if let Ok((used, _)) = e.storage.workload_usage(name) {
            sizes.push((format!("workloads/{name}"), used));
        }
    }
    for v in e.storage.list_volumes().unwrap_or_default() {
        let id = warren_storage::DatasetId::Volume(v);
        if let Ok((used, _)) = e.storage.usage(&id) {
            sizes.push((id.key(), used));
        }
    }
    *cache = Some((Instant::now(), e.cfg.state_dir.clone(), sizes.clone()));
    sizes
}

/// One scrape, encoded (blocking: reads cgroup files and asks the storage driver).
pub fn render(e: &Arc<Engine>) -> anyhow::Result<String> {
    render_with(e, Path::new("/sys/fs/cgroup"))
}

/// [`render`] with the cgroup mount at `cgroup_root`.
pub fn render_with(e: &Arc<Engine>, cgroup_root: &Path) -> anyhow::Result<String> {
    let mut reg = Registry::with_prefix("warren");
    let desired = e.desired_all()?;

    let state = Family::<StateLabels, Gauge>::default();
    let up = Family::<WorkloadLabels, Gauge>::default();
    let restarts = Family::<WorkloadLabels, Counter>::default();
    let healthy = Family::<WorkloadLabels, Gauge>::default();
    let cpu = Family::<WorkloadLabels, CounterF>::default();
    let memory = Family::<WorkloadLabels, Gauge>::default();
    let pids = Family::<WorkloadLabels, Gauge>::default();
    let io_read = Family::<WorkloadLabels, Counter>::default();
    let io_write = Family::<WorkloadLabels, Counter>::default();
    for d in desired.values() {
        let s = e.status(d);
        let l = WorkloadLabels {
            name: s.name.clone(),
            kind: s.kind.clone(),
        };
        state
            .get_or_create(&StateLabels {
                name: s.name.clone(),
                kind: s.kind.clone(),
                state: s.state.clone(),
            })
            .set(1);
        up.get_or_create(&l).set(i64::from(s.state == "running"));
        restarts.get_or_create(&l).inc_by(u64::from(s.restarts));
        if let Some(h) = &s.health {
            healthy.get_or_create(&l).set(i64::from(h == "healthy"));
        }
        if s.pid.is_none() {
            continue;
        }
        let path = format!("/warren-{}/{}", e.cfg.instance, s.name);
        let c = super::cgstats::read(cgroup_root, &path);
        if let Some(v) = c.cpu_seconds {
            cpu.get_or_create(&l).inc_by(v);
        }
        if let Some(v) = c.memory_bytes {
            memory.get_or_create(&l).set(v as i64);
        }
        if let Some(v) = c.pids {
            pids.get_or_create(&l).set(v as i64);
        }
        if let Some(v) = c.io_read_bytes {
            io_read.get_or_create(&l).inc_by(v);
        }
        if let Some(v) = c.io_write_bytes {
            io_write.get_or_create(&l).inc_by(v);
        }
    }
    reg.register(
        "workload_state",
        "The workload's state (the series with the current state is 1)",
        state,
    );
    reg.register(
        "workload_up",
        "Whether the workload runs (1) or not (0)",
        up,
    );
    reg.register(
        "workload_restarts",
        "Restarts of the workload after it exited",
        restarts,
    );
    reg.register(
        "workload_healthy",
        "Whether the workload's health check passes (1) or not (0)",
        healthy,
    );
    reg.register(
        "workload_cpu_seconds",
        "CPU time the workload's cgroup used",
        cpu,
    );
    reg.register(
        "workload_memory_bytes",
        "Memory the workload's cgroup uses, less inactive file cache",
        memory,
    );
    reg.register(
        "workload_pids",
        "Processes and threads in the workload",
        pids,
    );
    reg.register(
        "workload_io_read_bytes",
        "Bytes the workload read from block devices",
        io_read,
    );
    reg.register(
        "workload_io_written_bytes",
        "Bytes the workload wrote to block devices",
        io_write,
    );

    let datasets = Family::<DatasetLabels, Gauge>::default();
    let names: Vec<String> = desired.keys().cloned().collect();
    for (key, used) in dataset_sizes(e, &names) {
        datasets
            .get_or_create(&DatasetLabels { dataset: key })
            .set(used as i64);
    }
    reg.register(
        "dataset_used_bytes",
        "Bytes a workload's datasets (rootfs and data) or a volume use",
        datasets,
    );
    if let Ok(u) = e.storage.pool_usage() {
        let size = Gauge::<i64>::default();
        size.set(u.size as i64);
        let used = Gauge::<i64>::default();
        used.set(u.used as i64);
        let fill = GaugeF::default();
        fill.set(u.fill_percent() / 100.0);
        reg.register("pool_size_bytes", "Size of the storage pool", size);
        reg.register("pool_used_bytes", "Bytes used in the storage pool", used);
        reg.register(
            "pool_fill_ratio",
            "Used share of the storage pool (0 to 1)",
            fill,
        );
    }

    let t = &e.telemetry;
    let uptime = GaugeF::default();
    uptime.set(t.uptime().as_secs_f64());
    reg.register(
        "daemon_uptime_seconds",
        "Seconds since the daemon started",
        uptime,
    );
    reg.register(
        "reconcile_passes",
        "Reconcile passes run",
        t.reconcile_passes.clone(),
    );
    reg.register(
        "reconcile_duration_seconds",
        "How long a reconcile pass took to plan and dispatch",
        t.reconcile_seconds.clone(),
    );
    reg.register("applies", "Spec files applied", t.applies.clone());
    reg.register(
        "api_requests",
        "API requests answered, by route and status",
        t.api_requests.clone(),
    );
    reg.register(
        "api_request_duration_seconds",
        "Time to answer an API request (to the response headers), by route",
        t.api_seconds.clone(),
    );
    reg.register("events", "Events recorded, by kind", t.events.clone());
    let count = |a: &AtomicU64| {
        let c = Counter::<u64>::default();
        c.inc_by(a.load(Ordering::Relaxed));
        c
    };
    reg.register(
        "ingress_reloads",
        "Times nginx was told to reload its configuration",
        count(&e.ingress.reloads),
    );
    reg.register(
        "ingress_rejected_configs",
        "Ingress configurations nginx's check refused",
        count(&e.ingress.rejected),
    );

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(prometheus_text(&out))
}

/// The Prometheus text format (0.0.4) of an OpenMetrics text: a counter family is named with
/// its `_total` suffix in its `# HELP` and `# TYPE` lines (as its samples are), and the
/// `# EOF` marker is dropped.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_text_format() {
        let om = "# HELP warren_applies Spec files applied.\n# TYPE warren_applies counter\n\
                  warren_applies_total 2\n# HELP warren_pool_size_bytes Size.\n\
                  # TYPE warren_pool_size_bytes gauge\nwarren_pool_size_bytes 5\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP warren_applies_total Spec files applied.\n# TYPE warren_applies_total counter\n\
             warren_applies_total 2\n# HELP warren_pool_size_bytes Size.\n\
             # TYPE warren_pool_size_bytes gauge\nwarren_pool_size_bytes 5\n"
        );
    }
}
