//! Network sync: bridge networking, hosts files and ingress routes rendered from the desired
//! state after each reconcile pass, and the repair of networking someone removed.

use super::Engine;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_model::event::EventKind;
use warren_model::plan::Desired;

impl Engine {
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
            #[cfg(target_os = "linux")]
            let (addresses, gateway) = {
                let addresses = engine.store.addresses()?;
                let rules = engine.net.ruleset(&specs, &addresses);
                if !addresses.is_empty() || engine.net.rules_loaded() {
                    engine.net.sync_rules(&rules)?;
                }
                engine.net.sync_hosts(&specs, &addresses)?;
                (addresses, engine.net.settings.subnet.gateway())
            };
            #[cfg(target_os = "freebsd")]
            let (addresses, gateway) = {
                let addresses = engine.store.addresses()?;
                let rules = engine.net.ruleset(&specs, &addresses);
                if !addresses.is_empty() || engine.net.rules_loaded() {
                    engine.net.sync_rules(&rules)?;
                }
                let storage = engine.storage.clone();
                engine
                    .net
                    .sync_hosts(&specs, &addresses, &|n| storage.rootfs_path(n))?;
                (addresses, engine.net.settings.subnet.gateway())
            };
            #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
            let (addresses, gateway): (BTreeMap<String, std::net::Ipv4Addr>, _) =
                (BTreeMap::new(), std::net::Ipv4Addr::LOCALHOST);
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
        #[cfg(target_os = "freebsd")]
        {
            let any_bridge = self.desired_all().is_ok_and(|d| {
                d.values()
                    .any(|d| d.spec.network == warren_model::NetworkMode::Bridge)
            });
            if !any_bridge && !self.net.rules_loaded() {
                return;
            }
            let engine = self.clone();
            match tokio::task::spawn_blocking(move || engine.net.repair()).await {
                Ok(Ok(fixed)) => {
                    for f in fixed {
                        self.event(None, EventKind::NetworkRepaired { what: f });
                    }
                }
                Ok(Err(e)) => self.event(None, EventKind::error(format!("network repair: {e:#}"))),
                Err(e) => self.event(None, EventKind::error(format!("network repair: {e}"))),
            }
        }
        #[cfg(target_os = "linux")]
        {
            let Ok(desired) = self.desired_all() else {
                return;
            };
            let Ok(addresses) = self.store.addresses() else {
                return;
            };
            let running: Vec<(String, u32, std::net::Ipv4Addr)> = self
                .observed_all()
                .into_iter()
                .filter(|(n, _)| {
                    desired
                        .get(n)
                        .is_some_and(|d| d.spec.network == warren_model::NetworkMode::Bridge)
                })
                .filter_map(|(n, r)| {
                    let addr = *addresses.get(&n)?;
                    Some((n, r.pid? as u32, addr))
                })
                .collect();
            if running.is_empty() && !self.net.rules_loaded() {
                return;
            }
            let engine = self.clone();
            match tokio::task::spawn_blocking(move || engine.net.repair(&running)).await {
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
}
