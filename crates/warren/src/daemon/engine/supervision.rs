//! Supervision of running workloads: watching each shim until it exits (pidfd on Linux,
//! kqueue on FreeBSD) and recording how the run ended as a typed event, stopping (TERM, then
//! KILL), and the operator's start, stop, restart and delete.

use super::seams::{BoxFuture, Shims};
use super::state::read_json;
use super::{Engine, Live};
use anyhow::{anyhow, Result};
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use warren_model::event::EventKind;
use warren_model::plan::LastExit;
use warren_model::DesiredState;
use warren_runtime::{ExitInfo, Runtime, ShimState, WorkloadRun};

impl Engine {
    /// Watches a shim until it exits, then records how the container ended.
    pub(super) fn watch_shim(self: &Arc<Self>, name: &str, state: ShimState) {
        let (tx, rx) = watch::channel(false);
        let rx_for_health = rx.clone();
        self.live.lock().unwrap().insert(
            name.to_string(),
            Live {
                shim_pid: state.shim_pid,
                stopping: false,
                exited: rx,
            },
        );
        // The run's health monitor, if the workload declares a check.
        if let Ok(Some(d)) = self.store.get_desired(name) {
            match d.spec.health {
                Some(check) => crate::daemon::health::spawn(
                    self.clone(),
                    name.to_string(),
                    check,
                    d.spec.network,
                    state.started_at_ms,
                    rx_for_health,
                ),
                None => self.set_health(name, None),
            }
        }
        let engine = self.clone();
        let name = name.to_string();
        let exited = self.shims.exited(&state);
        tokio::spawn(async move {
            if let Err(e) = exited.await {
                tracing::error!(workload = name, "cannot watch shim {}: {e}", state.shim_pid);
            }
            engine.shim_exited(&name, &state).await;
            let _ = tx.send(true);
            engine.wake();
        });
    }

    pub(super) async fn shim_exited(&self, name: &str, state: &ShimState) {
        let deliberate = {
            let mut live = self.live.lock().unwrap();
            match live.get(name) {
                Some(l) if l.shim_pid == state.shim_pid => {
                    let s = l.stopping;
                    live.remove(name);
                    s
                }
                _ => false,
            }
        };
        let exit = read_json::<ExitInfo>(&self.run_dir(name).join("exit.json"));
        let now = self.clock.now_ms();
        let exit = match exit {
            Some(e) => e,
            None => {
                // The shim died without recording an exit: make sure the container is gone.
                let rt = self.runtime.clone();
                let id = self.container_id(name);
                let _ = tokio::task::spawn_blocking(move || rt.delete(&id)).await;
                self.event(
                    Some(name),
                    EventKind::error("supervisor exited without an exit status; container removed"),
                );
                ExitInfo {
                    code: 255,
                    signal: None,
                    oom_killed: false,
                    finished_at_ms: now,
                }
            }
        };
        let ran = exit.finished_at_ms.saturating_sub(state.started_at_ms);
        let backoff = self.cfg.backoff;
        self.update(name, |r| {
            if r.pid != Some(state.container_pid) && r.pid.is_some() {
                return; // a newer run already replaced this one
            }
            r.pid = None;
            if deliberate {
                r.last_exit = Some(LastExit::Deliberate);
            } else {
                r.failures = backoff.next_failures(r.failures, ran);
                r.last_exit = Some(LastExit::Exited {
                    code: exit.code,
                    signal: exit.signal,
                    oom_killed: exit.oom_killed,
                    at_ms: exit.finished_at_ms,
                });
            }
        });
        self.event(
            Some(name),
            EventKind::ended(deliberate, exit.code, exit.signal, exit.oom_killed),
        );
    }

    /// Stops a workload: the runtime's graceful stop (TERM for containers and jails), then
    /// KILL when the shim has not exited within the grace period.
    pub async fn stop(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        let rx = {
            let mut live = self.live.lock().unwrap();
            live.get_mut(name).map(|l| {
                l.stopping = true;
                l.exited.clone()
            })
        };
        let id = self.container_id(name);
        match rx {
            Some(mut rx) => {
                self.stop_request(&id).await;
                let mut first = rx.clone();
                let exited = tokio::time::timeout(self.cfg.stop_timeout, first.wait_for(|v| *v))
                    .await
                    .is_ok();
                if !exited {
                    self.event(
                        Some(name),
                        EventKind::Killing {
                            grace_ms: self.cfg.stop_timeout.as_millis() as u64,
                        },
                    );
                    self.kill(&id, "KILL").await;
                    let exited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v))
                        .await
                        .is_ok();
                    if !exited {
                        return Err(anyhow!("container did not exit after KILL"));
                    }
                }
            }
            None => {
                let rt = self.runtime.clone();
                tokio::task::spawn_blocking(move || rt.delete(&id)).await??;
                self.update(name, |r| {
                    r.pid = None;
                    r.last_exit = Some(LastExit::Deliberate);
                });
            }
        }
        tracing::debug!(workload = name, "stopped: {reason}");
        Ok(())
    }

    /// Asks the runtime to stop the workload cleanly, without waiting ([`Runtime::stop`]).
    async fn stop_request(&self, id: &str) {
        let rt = self.runtime.clone();
        let id = id.to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || rt.stop(&id)).await {
            tracing::warn!("stop failed: {e}");
        }
    }

    pub(super) async fn kill(&self, id: &str, sig: &str) {
        let rt = self.runtime.clone();
        let (id, sig) = (id.to_string(), sig.to_string());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || rt.kill(&id, &sig)).await {
            tracing::warn!("signal failed: {e}");
        }
    }

    /// Starts a workload now (operator request): clears any exit so the policy does not hold it.
    pub async fn start_now(self: &Arc<Self>, name: &str) -> Result<()> {
        let _g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        self.update(name, |r| {
            if r.pid.is_none() {
                r.last_exit = Some(LastExit::Deliberate);
                r.failures = 0;
            }
        });
        drop(_g);
        self.wake();
        Ok(())
    }

    /// Waits, at most `within`, until the reconciler has carried out an operator request:
    /// `done` holds for the workload's status and observed row. Returns its status then (also
    /// when the time is up), or `Err(message)` of a failure event for it that came first. The
    /// API and the REPL both wait here, so `stop!` means what `warren stop` means.
    pub async fn settle(
        self: &Arc<Self>,
        name: &str,
        within: Duration,
        done: impl Fn(&crate::wire::Status, Option<&warren_store::ObservedRow>) -> bool,
    ) -> Result<Result<crate::wire::Status, String>> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let d = self
                .desired_all()?
                .remove(name)
                .ok_or_else(|| anyhow!("no workload named {name:?}"))?;
            let status = self.status(&d);
            if done(&status, self.observed_row(name).as_ref()) {
                return Ok(Ok(status));
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(Ok(status)),
                Ok(Ok(ev)) if ev.workload.as_deref() == Some(name) && ev.kind.is_error() => {
                    return Ok(Err(ev.kind.to_string()));
                }
                Ok(_) => {}
            }
        }
    }

    /// Records the desired state as stopped (operator stop); the planner stops it.
    pub async fn stop_now(self: &Arc<Self>, name: &str) -> Result<()> {
        self.store.set_state(name, DesiredState::Stopped)?;
        self.wake();
        Ok(())
    }

    /// Restarts a running workload for `reason` (a failed health check): counted as a restart.
    pub async fn restart_for(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        self.restart_with(name, reason).await?;
        self.update(name, |r| r.restarts += 1);
        self.event(
            Some(name),
            EventKind::Restarted {
                reason: reason.to_string(),
            },
        );
        Ok(())
    }

    /// Asks for a restart (operator restart): the desired state becomes running and the
    /// workload's restart generation grows, so the planner stops (if running) and starts it
    /// once, whatever its restart policy and backoff say. Returns the new restart generation.
    pub async fn restart_now(self: &Arc<Self>, name: &str) -> Result<u64> {
        let g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        let generation = self.store.request_restart(name)?;
        self.update(name, |r| r.failures = 0);
        drop(g);
        self.wake();
        Ok(generation)
    }

    pub(super) async fn restart_with(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        let g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        if self.live.lock().unwrap().contains_key(name) {
            self.stop(name, reason).await?;
        }
        let d = self
            .desired_all()?
            .remove(name)
            .ok_or_else(|| anyhow!("no such workload"))?;
        if self
            .observed_row(name)
            .and_then(|r| r.provisioned)
            .as_deref()
            == Some(&d.hash)
        {
            self.update(name, |r| r.failures = 0);
            // Held back by the start order: the planner starts it once its dependencies are.
            if self.unmet_dependencies(&d.spec).is_none() {
                self.start(&d, reason).await?;
            }
        }
        drop(g);
        self.wake();
        Ok(())
    }

    /// Deletes a workload: removes it from the desired state and waits for the planned stop
    /// and removal; `purge` then deletes its data dataset (data, not runtime: no step of a plan).
    pub async fn delete_now(self: &Arc<Self>, name: &str, purge: bool) -> Result<bool> {
        let g = self.lock(name).await;
        let existed = self.store.get_desired(name)?.is_some() || self.observed_row(name).is_some();
        self.store.apply(&[], &[name.to_string()])?;
        drop(g);
        if existed {
            self.wait_removed(name).await?;
        }
        if purge {
            let _g = self.lock(name).await;
            let storage = self.storage.clone();
            let n = name.to_string();
            tokio::task::spawn_blocking(move || storage.delete_data(&n)).await??;
            // No data owned by its range is left.
            self.store.release_userns_slot(name)?;
        }
        Ok(existed)
    }

    /// Wakes the reconciler and waits until a workload no longer desired is removed (its
    /// observed state is forgotten), or its removal fails.
    pub(super) async fn wait_removed(self: &Arc<Self>, name: &str) -> Result<()> {
        let mut events = self.subscribe();
        self.wake();
        let deadline =
            tokio::time::Instant::now() + self.cfg.stop_timeout + Duration::from_secs(30);
        while self.observed_row(name).is_some() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Err(anyhow!("{name} was not removed in time")),
                Ok(Ok(ev)) if ev.workload.as_deref() == Some(name) && ev.kind.is_error() => {
                    return Err(anyhow!("{}", ev.kind));
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// The shims of the host's runtime: started through [`Runtime::start`], watched through a
/// pidfd (Linux) or a kqueue (FreeBSD), and reaped when this daemon started them.
pub struct RuntimeShims {
    runtime: Arc<dyn Runtime>,
    /// The shims this daemon started, by pid, until they are reaped.
    children: Mutex<HashMap<i32, std::process::Child>>,
}

impl RuntimeShims {
    pub fn new(runtime: Arc<dyn Runtime>) -> RuntimeShims {
        RuntimeShims {
            runtime,
            children: Mutex::new(HashMap::new()),
        }
    }
}

impl Shims for RuntimeShims {
    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> anyhow::Result<ShimState> {
        let started = self.runtime.start(spec, run_dir)?;
        self.children
            .lock()
            .unwrap()
            .insert(started.state.shim_pid, started.shim);
        Ok(started.state)
    }

    fn alive(&self, state: &ShimState) -> bool {
        self.runtime.adopt(state)
    }

    fn exited(&self, state: &ShimState) -> BoxFuture<'static, std::io::Result<()>> {
        let pid = state.shim_pid;
        let child = self.children.lock().unwrap().remove(&pid);
        Box::pin(async move {
            let watched = wait_exit(pid).await;
            if let Some(mut c) = child {
                let _ = tokio::task::spawn_blocking(move || c.wait()).await;
            }
            watched
        })
    }
}

/// Resolves when process `pid` has exited: readiness of a pidfd (Linux) or of a kqueue
/// watching `NOTE_EXIT` (FreeBSD). No polling either way.
async fn wait_exit(pid: i32) -> std::io::Result<()> {
    let Some(fd) = exit_fd(pid)? else {
        return Ok(()); // already gone
    };
    // SAFETY: the AsyncFd owns the fd and nothing else closes or replaces it.
    let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = afd.readable().await?;
    Ok(())
}

/// An fd that becomes readable when `pid` exits; None if it has already exited.
#[cfg(target_os = "linux")]
fn exit_fd(pid: i32) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: fd was just returned by the kernel and is owned by nothing else.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// An fd that becomes readable when `pid` exits; None if it has already exited.
#[cfg(target_os = "freebsd")]
fn exit_fd(pid: i32) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: kqueue() returns a new fd or -1.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: kq was just returned by the kernel and is owned by nothing else.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: an all-zero kevent is a valid value to fill in.
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = pid as libc::uintptr_t;
    ev.filter = libc::EVFILT_PROC;
    ev.flags = libc::EV_ADD | libc::EV_ONESHOT;
    ev.fflags = libc::NOTE_EXIT;
    use std::os::fd::AsRawFd;
    // SAFETY: registers one event on our kqueue; no events are returned.
    let r = unsafe {
        libc::kevent(
            kq.as_raw_fd(),
            &ev,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(kq))
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn exit_fd(_pid: i32) -> std::io::Result<Option<OwnedFd>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "watching process exits needs Linux or FreeBSD",
    ))
}
