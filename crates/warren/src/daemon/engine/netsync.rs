//! Network sync: bridge networking, hosts files and ingress routes rendered from the desired
//! state after each reconcile pass, and the repair of networking someone removed.

use super::{Engine, RunningOnBridge};
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_model::event::EventKind;
use warren_model::plan::Desired;
use warren_model::NetworkMode;

impl Engine {
    /// Gives the hosts file to every running VM on the bridge whose guest has not had this
    /// text yet: a container sees the shared file, a guest has its own copy. The guests are
    /// told in a task of their own, so a slow guest never holds up the pass; one that does
    /// not take the names keeps the old ones (logged) and is tried again on the next pass.
    fn push_names_to_vms(
        self: &Arc<Self>,
        specs: &[&warren_model::WorkloadSpec],
        running: &std::collections::HashSet<String>,
    ) {
        let Some(text) = self.net.hosts_text() else {
            return;
        };
        let mut due = Vec::new();
        {
            let mut given = self.vm_names.lock().unwrap();
            given.retain(|name, _| running.contains(name));
            for s in specs {
                if s.kind == warren_model::Kind::Vm
                    && s.network == NetworkMode::Bridge
                    && running.contains(&s.name)
                    && given.get(&s.name) != Some(&text)
                {
                    // Marked before it is sent, so the next pass does not send it again.
                    given.insert(s.name.clone(), text.clone());
                    due.push(s.name.clone());
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            for name in due {
                let id = engine.container_id(&name);
                if let Err(e) = engine.runtime.update_names(&id, &text) {
                    tracing::warn!(workload = %name, "new names not given to the guest: {e}");
                    engine.vm_names.lock().unwrap().remove(&name);
                }
            }
        });
    }

    /// Brings published ports, names and ingress routes in line with `desired`; each is
    /// rendered purely and applied only when its text changed.
    pub(super) async fn sync_network(
        self: &Arc<Self>,
        desired: &BTreeMap<String, Desired>,
    ) -> Result<()> {
        let engine = self.clone();
        let desired = desired.clone();
        let running: std::collections::HashSet<String> = self
            .observed_all()
            .into_iter()
            .filter(|(_, r)| r.pid.is_some())
            .map(|(n, _)| n)
            .collect();
        let router = crate::daemon::ingress::ROUTER;
        let router_run = self.observed_row(router).and_then(|r| r.pid).map(|pid| {
            crate::daemon::ingress::RouterRun {
                runtime: self.runtime.clone(),
                id: self.container_id(router),
                pid,
                rootfs: self.storage.rootfs_path(router),
            }
        });
        let volumes = self.store.volumes()?;
        let notes = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
            let mut notes = Vec::new();
            let specs: Vec<&warren_model::WorkloadSpec> =
                desired.values().map(|d| &d.spec).collect();
            let addresses = engine.store.addresses()?;
            let rules =
                crate::daemon::netnames::published(engine.net.settings(), &specs, &addresses);
            if !addresses.is_empty() || engine.net.rules_loaded() {
                engine.net.sync_rules(&rules)?;
            }
            let storage = engine.storage.clone();
            engine
                .net
                .sync_hosts(&specs, &addresses, &|n| storage.rootfs_path(n))?;
            engine.push_names_to_vms(&specs, &running);
            let gateway = engine.net.settings().subnet.gateway();
            let wanted = engine.ingress.router_spec(&specs, &volumes).is_some();
            if wanted || engine.ingress.conf_path().exists() {
                let inputs: Vec<crate::daemon::ingress::RouteInput<'_>> = specs
                    .iter()
                    .filter(|s| s.name != router)
                    .map(|s| crate::daemon::ingress::RouteInput {
                        spec: s,
                        running: running.contains(&s.name),
                        address: addresses.get(&s.name).copied(),
                    })
                    .collect();
                let routes = engine.ingress.routes(&inputs, &volumes, gateway)?;
                engine.ingress.prepare()?;
                match engine.ingress.sync(&routes, router_run.as_ref()) {
                    Ok(Some(summary)) => notes.push(summary),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(e.context(
                            "ingress configuration refused; the previous one keeps serving",
                        ))
                    }
                }
            }
            Ok(notes)
        })
        .await??;
        for n in notes {
            self.event(None, EventKind::RouteChanged { summary: n });
        }
        Ok(())
    }

    /// Re-creates networking someone removed (bridge, nft table or pf anchor, workload veths).
    pub(super) async fn repair_network(self: &Arc<Self>) {
        let Ok(desired) = self.desired_all() else {
            return;
        };
        let Ok(addresses) = self.store.addresses() else {
            return;
        };
        let on_bridge = |n: &str| {
            desired
                .get(n)
                .is_some_and(|d| d.spec.network == NetworkMode::Bridge)
        };
        let bridge_desired = desired
            .values()
            .any(|d| d.spec.network == NetworkMode::Bridge);
        let running: Vec<RunningOnBridge> = self
            .observed_all()
            .into_iter()
            .filter(|(n, _)| on_bridge(n))
            .filter_map(|(n, r)| {
                let address = *addresses.get(&n)?;
                let vm = desired
                    .get(&n)
                    .is_some_and(|d| d.spec.kind == warren_model::Kind::Vm);
                Some(RunningOnBridge {
                    pid: r.pid? as u32,
                    name: n,
                    address,
                    vm,
                })
            })
            .collect();
        let engine = self.clone();
        match tokio::task::spawn_blocking(move || engine.net.repair(bridge_desired, &running)).await
        {
            Ok(Ok(fixed)) => {
                for f in fixed {
                    self.event(None, EventKind::NetworkRepaired { what: f });
                }
            }
            Ok(Err(e)) => self.event(None, EventKind::error(format!("network repair: {e:#}"))),
            Err(e) => self.event(None, EventKind::error(format!("network repair: {e}"))),
        }
    }
}
