//! The daemon's one [`Runtime`]: the host's container backend (runc, or jails on FreeBSD) and,
//! where the host has one, the VM backend (QEMU on Linux, bhyve on FreeBSD: any
//! [`VmBackend`]), chosen per run by its backend part and per id by which backend started it.
//! The engine holds this as its runtime, so every kind is supervised, adopted and stopped by
//! the same code.

use std::path::Path;
use std::sync::Arc;
use warren_runtime::{
    Backend, ExecRequest, Observed, Result, Runtime, RuntimeError, ShimState, Started, WorkloadRun,
};
use warren_vm::VmBackend;

pub struct Runtimes {
    containers: Arc<dyn Runtime>,
    vms: Option<Arc<dyn VmBackend>>,
}

impl Runtimes {
    pub fn new(containers: Arc<dyn Runtime>, vms: Option<Arc<dyn VmBackend>>) -> Runtimes {
        Runtimes { containers, vms }
    }

    /// The backend that owns `id`: the VM backend for a VM it started, else the containers'.
    fn by_id(&self, id: &str) -> &dyn Runtime {
        match &self.vms {
            Some(v) if v.owns(id) => v.as_ref(),
            _ => self.containers.as_ref(),
        }
    }

    fn by_run(&self, spec: &WorkloadRun) -> Result<&dyn Runtime> {
        match (&spec.backend, &self.vms) {
            (Backend::Vm(_), Some(v)) => Ok(v.as_ref()),
            (Backend::Vm(_), None) => Err(RuntimeError::Unsupported(format!(
                "{}: this host has no VM backend",
                spec.id
            ))),
            _ => Ok(self.containers.as_ref()),
        }
    }
}

impl Runtime for Runtimes {
    fn name(&self) -> &'static str {
        self.containers.name()
    }
    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started> {
        self.by_run(spec)?.start(spec, run_dir)
    }
    fn stop(&self, id: &str) -> Result<()> {
        self.by_id(id).stop(id)
    }
    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        self.by_id(id).kill(id, signal)
    }
    fn freeze(&self, id: &str) -> Result<()> {
        self.by_id(id).freeze(id)
    }
    fn thaw(&self, id: &str) -> Result<()> {
        self.by_id(id).thaw(id)
    }
    fn delete(&self, id: &str) -> Result<()> {
        self.by_id(id).delete(id)
    }
    fn observe(&self, id: &str) -> Result<Option<Observed>> {
        self.by_id(id).observe(id)
    }
    fn adopt(&self, state: &ShimState) -> bool {
        self.by_id(&state.id).adopt(state)
    }
    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command> {
        self.by_id(id).exec(id, req)
    }
    fn run_foreground(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<std::process::Command> {
        self.by_run(spec)?.run_foreground(spec, run_dir)
    }
    fn update_names(&self, id: &str, hosts: &str) -> Result<()> {
        self.by_id(id).update_names(id, hosts)
    }
    fn copy_out(
        &self,
        id: &str,
        req: &warren_runtime::CopyRequest,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        self.by_id(id).copy_out(id, req, out)
    }
    fn copy_in(
        &self,
        id: &str,
        req: &warren_runtime::CopyRequest,
        input: &mut (dyn std::io::Read + Send),
    ) -> Result<()> {
        self.by_id(id).copy_in(id, req, input)
    }
}
