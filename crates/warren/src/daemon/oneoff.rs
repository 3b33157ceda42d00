//! One-off workloads: a `run --rm`, a hook job and a recipe build all start from the same
//! [`WorkloadRun`], named, placed in the daemon's cgroup tree and identified the way every
//! other workload of this daemon is; their callers change only what differs (binds, network,
//! user namespace, environment, terminal). The backend runs it in the foreground through
//! [`warren_runtime::Runtime::run_foreground`], so no caller knows how a backend lays it out.

use super::engine::Engine;
use std::path::PathBuf;
use warren_runtime::WorkloadRun;

/// The spec of the one-off workload `name` running `args` on `rootfs`.
pub fn spec(engine: &Engine, name: &str, rootfs: PathBuf, args: Vec<String>) -> WorkloadRun {
    WorkloadRun::one_off(
        engine.container_id(name),
        format!("/warren-{}/{name}", engine.cfg.instance),
        name,
        rootfs,
        args,
    )
}
