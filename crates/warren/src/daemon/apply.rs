//! Plan and apply (a service): validates a spec file against this host and what is already
//! stored (worlds, images, recipes, claimed ports and domains), builds missing built-in worlds
//! and pulls missing registry images, compares the file with the desired state, plans, and
//! stores the new desired state. The HTTP routes, the REPL and the spec-file watcher call
//! [`plan_or_apply`]; nothing here knows about HTTP routes.

use super::engine::Engine;
use super::error::{ApiError, ErrorKind};
use crate::wire::{ApplyRequest, ApplyResponse, Change};
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_model::plan::{self, Desired};
use warren_model::{Diagnostic, Kind, Source, SpecFile};

/// What this host cannot run, located in the file: a kind the host's capabilities `caps`
/// refuse (jails off FreeBSD, vms without QEMU or bhyve; the planner refuses the same kinds in
/// stored state with the same reason), jail options off FreeBSD (on FreeBSD every container is
/// a jail), a jailed dataset without the ZFS storage driver. Pure, so both kinds of host are
/// tested on either.
pub(crate) fn host_support(
    parsed: &warren_model::Parsed,
    os: &str,
    caps: &warren_model::HostCapabilities,
    storage_driver: &str,
) -> Vec<Diagnostic> {
    let freebsd = os == "freebsd";
    let mut diags = Vec::new();
    for (name, w) in &parsed.spec.workloads {
        let at = |field: &str| format!("workload.{name}.{field}");
        if let Some(reason) = caps.refusal(w.kind) {
            diags.push(parsed.diagnostic(&at("kind"), format!("workload.{name}.kind: {reason}")));
        }
        if w.jail.is_default() || w.kind == Kind::Vm {
            continue;
        }
        if !freebsd {
            if w.kind != Kind::Jail {
                diags.push(parsed.diagnostic(
                    &at("jail"),
                    format!(
                        "workload.{name}.jail: jail options need a FreeBSD host (this is {os}), where the workload runs as a jail"
                    ),
                ));
            }
        } else if w.jail.jailed_dataset && storage_driver != "zfs" {
            diags.push(parsed.diagnostic(
                &at("jail.jailed_dataset"),
                format!(
                    "workload.{name}.jail.jailed_dataset: a jailed dataset needs the zfs storage driver (this daemon uses {storage_driver}; start it with --storage zfs)"
                ),
            ));
        }
    }
    diags.sort_by_key(|d| (d.line, d.column));
    diags
}

/// The worlds warren can build on demand.
use warren_model::names::BUILTIN_WORLDS;

/// Parses and validates a file against this host. Builds missing built-in worlds and pulls
/// missing registry images unless `dry_run`; returns what was missing, for the plan (which
/// shows those builds and pulls as steps), and the warnings to report.
async fn validate(
    engine: &Arc<Engine>,
    req: &ApplyRequest,
) -> Result<(SpecFile, plan::Missing, Vec<String>), ApiError> {
    let parsed = warren_model::parse_spec(&req.text, &req.file)
        .map_err(|e| ApiError::invalid(e.diagnostics))?;
    let storage = engine.storage.clone();
    let existing = tokio::task::spawn_blocking(move || storage.list_worlds())
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut diags = host_support(
        &parsed,
        std::env::consts::OS,
        &engine.caps,
        engine.storage.driver(),
    );
    let mut to_build = Vec::new();
    let mut to_pull: Vec<String> = Vec::new();
    let mut missing = plan::Missing::default();
    for (name, w) in &parsed.spec.workloads {
        let at = |field: &str| format!("workload.{name}.{field}");
        // A full VM boots its own disk: no source to look for.
        let Some(source) = w.rootfs_source() else {
            continue;
        };
        match source {
            Source::World(world) => {
                if !existing.iter().any(|e| e == world) {
                    if BUILTIN_WORLDS.contains(&world.as_str()) {
                        missing.worlds.insert(world.clone());
                        if !to_build.contains(world) {
                            to_build.push(world.clone());
                        }
                    } else if super::worlds::buildable(world) {
                        diags.push(parsed.diagnostic(
                            &at("world"),
                            format!(
                                "workload.{name}.world: world {world:?} is not built yet: build it with `warren world create {world}` (it downloads a system and takes minutes)"
                            ),
                        ));
                    } else {
                        diags.push(parsed.diagnostic(
                            &at("world"),
                            format!(
                                "workload.{name}.world: world {world:?} does not exist (existing: {}; built in: {})",
                                if existing.is_empty() { "none".to_string() } else { existing.join(", ") },
                                BUILTIN_WORLDS.join(", ")
                            ),
                        ));
                    }
                }
            }
            Source::Recipe(r) => {
                if let Err(m) = super::recipes::resolve_ref(&engine.store, r) {
                    diags.push(
                        parsed.diagnostic(&at("recipe"), format!("workload.{name}.recipe: {m:#}")),
                    );
                }
            }
            Source::Image(r) => {
                let stored = super::images::normalize_reference(r)
                    .map_err(|m| m.to_string())
                    .and_then(|n| match engine.store.image(&n) {
                        Ok(Some(_)) => Ok(()),
                        // A reference naming a registry is pulled (below) when applying.
                        Ok(None) if super::images::registry_of(&n).is_some() => {
                            missing.images.insert(r.clone());
                            if !to_pull.contains(&n) {
                                to_pull.push(n.clone());
                            }
                            Ok(())
                        }
                        Ok(None) => Err(format!(
                            "image {n:?} is not stored: import it with `warren image import FILE` or pull it with `warren image pull HOST/{n}`"
                        )),
                        Err(e) => Err(e.to_string()),
                    });
                if let Err(m) = stored {
                    diags.push(
                        parsed.diagnostic(&at("image"), format!("workload.{name}.image: {m}")),
                    );
                }
            }
        }
    }
    diags.extend(network_conflicts(engine, &parsed, req.prune)?);
    let (host_diags, warnings) = host_checks(engine, &parsed, req.prune)?;
    diags.extend(host_diags);
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line, d.column));
        return Err(ApiError::invalid(diags));
    }
    if !req.dry_run {
        for world in to_build {
            create_world_now(engine, &world).await?;
        }
        for reference in to_pull {
            let progress: Arc<dyn Fn(String) + Send + Sync> =
                Arc::new(|l: String| tracing::info!("apply: {l}"));
            let req = super::images::PullRequest {
                reference: reference.clone(),
                ..Default::default()
            };
            if let Err(e) = super::images::pull(engine, req, progress).await {
                let field = parsed
                    .spec
                    .workloads
                    .iter()
                    .find(|(_, w)| {
                        matches!(&w.source, Source::Image(r)
                            if super::images::normalize_reference(r).as_deref() == Ok(reference.as_str()))
                    })
                    .map(|(n, _)| format!("workload.{n}.image"))
                    .unwrap_or_default();
                return Err(ApiError::invalid(vec![
                    parsed.diagnostic(&field, format!("{field}: {e:#}"))
                ]));
            }
            engine.event(
                None,
                warren_model::event::EventKind::ImagePulled {
                    reference: reference.to_string(),
                    id: None,
                    new_layers: None,
                },
            );
        }
    }
    Ok((parsed.spec, missing, warnings))
}

/// The checks against this host ([`super::vmcheck`]): the boot files of the file's VMs
/// exist, and the workloads set to run (this file's, and the stored ones that stay) fit the
/// host's resource budget. Returns the errors and the warnings (CPUs overcommitted).
fn host_checks(
    engine: &Arc<Engine>,
    parsed: &warren_model::Parsed,
    prune: bool,
) -> Result<(Vec<Diagnostic>, Vec<String>), ApiError> {
    let file = &parsed.spec;
    let host = super::vmcheck::VmHost {
        lookup: &super::vmcheck::lookup,
    };
    let mut diags = super::vmcheck::check(parsed, &host);
    let current = engine.store.desired()?;
    let others: Vec<&warren_model::WorkloadSpec> = current
        .values()
        .map(|d| &d.spec)
        .filter(|s| !prune && !file.workloads.contains_key(&s.name))
        .collect();
    let budget = warren_model::budget::check(
        parsed,
        &others,
        &super::vmcheck::host_size(&*engine.exec),
        &super::vmcheck::stored_reserve(&engine.store)?.unwrap_or_default(),
    );
    diags.extend(budget.errors);
    Ok((diags, budget.warnings))
}

/// The checks that need what is already stored or running on the host: a published port or a
/// routed domain already claimed by a workload outside this file (or by the ingress), and a
/// newly published port the host itself already listens on.
fn network_conflicts(
    engine: &Arc<Engine>,
    parsed: &warren_model::Parsed,
    prune: bool,
) -> Result<Vec<Diagnostic>, ApiError> {
    let file = &parsed.spec;
    let current = engine.store.desired()?;
    let mut diags = Vec::new();
    // Workloads that stay as they are: stored, not in this file, not pruned.
    let others: Vec<&warren_model::WorkloadSpec> = if prune {
        Vec::new()
    } else {
        current
            .values()
            .map(|d| &d.spec)
            .filter(|s| !file.workloads.contains_key(&s.name))
            .collect()
    };
    let ingress = &engine.cfg.ingress;
    let routed = file
        .workloads
        .values()
        .chain(others.iter().copied())
        .any(|w| !w.route.domains.is_empty())
        || file.volumes.values().any(|v| v.site.is_some());
    let mut claimed: Vec<(String, warren_model::PortMapping)> = Vec::new();
    for o in &others {
        claimed.extend(
            o.ports
                .iter()
                .map(|m| (format!("workload {:?}", o.name), *m)),
        );
    }
    if routed {
        for port in [ingress.http_port, ingress.https_port] {
            claimed.push((
                "the ingress".to_string(),
                warren_model::PortMapping {
                    host_ip: ingress.listen.map(std::net::IpAddr::V4),
                    host_port: port,
                    container_port: port,
                    proto: warren_model::ports::Proto::Tcp,
                },
            ));
        }
    }
    #[cfg(target_os = "linux")]
    let listeners = warren_net::ports::host_listeners().unwrap_or_default();
    #[cfg(not(target_os = "linux"))]
    let listeners: Vec<warren_net::ports::Listener> = Vec::new();
    for (name, w) in &file.workloads {
        let at = format!("workload.{name}.ports");
        for m in &w.ports {
            if let Some((by, theirs)) = claimed.iter().find(|(_, c)| c.overlaps(m)) {
                diags.push(parsed.diagnostic(
                    &at,
                    format!(
                        "workload.{name}.ports: host port {}/{} is already published by {by} ({theirs})",
                        m.host_port, m.proto
                    ),
                ));
                continue;
            }
            let already_ours = current.get(name).is_some_and(|d| d.spec.ports.contains(m));
            if already_ours {
                continue;
            }
            let hits = warren_net::ports::host_conflicts(&[(name.as_str(), *m)], &listeners);
            if let Some(h) = hits.first() {
                diags.push(parsed.diagnostic(
                    &at,
                    format!(
                        "workload.{name}.ports: host port {}/{} is already in use on this host (a socket listens on {})",
                        m.host_port, m.proto, h.listener
                    ),
                ));
            }
        }
        for domain in &w.route.domains {
            let taken = others
                .iter()
                .find(|o| o.route.domains.contains(domain) && o.route.path == w.route.path);
            if let Some(o) = taken {
                diags.push(parsed.diagnostic(
                    &format!("workload.{name}.domains"),
                    format!(
                        "workload.{name}.domains: domain {domain:?} (path {:?}) is already routed to workload {:?}",
                        w.route.path, o.name
                    ),
                ));
            }
        }
    }
    Ok(diags)
}

async fn create_world_now(engine: &Arc<Engine>, world: &str) -> Result<(), ApiError> {
    let storage = engine.storage.clone();
    let exec = engine.exec.clone();
    let w = world.to_string();
    tokio::task::spawn_blocking(move || {
        warren_storage::worlds::create_world(&*storage, &w, exec.as_ref())
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?
    .map_err(|e| {
        // A full disk is the operator's to fix (507); any other failure to build a built-in
        // world makes this file unappliable here.
        let kind = match super::error::storage_kind(&e) {
            ErrorKind::OutOfSpace => ErrorKind::OutOfSpace,
            _ => ErrorKind::Invalid,
        };
        ApiError::new(kind, format!("world {world}: {e}"))
    })?;
    engine.event(
        None,
        warren_model::event::EventKind::WorldCreated {
            name: world.to_string(),
        },
    );
    Ok(())
}

/// Compares a file with the stored desired state.
fn changes(
    spec: &SpecFile,
    current: &BTreeMap<String, Desired>,
    volumes: &BTreeMap<String, warren_model::VolumeSpec>,
    prune: bool,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, v) in &spec.volumes {
        let change = match volumes.get(name) {
            None => "create",
            Some(old) if old != v => "update",
            Some(_) => continue,
        };
        out.push(Change {
            workload: format!("volume/{name}"),
            change: change.into(),
            fields: vec![],
        });
    }
    if prune {
        for name in volumes.keys().filter(|v| !spec.volumes.contains_key(*v)) {
            out.push(Change {
                workload: format!("volume/{name}"),
                change: "remove".into(),
                fields: vec![],
            });
        }
    }
    for (name, w) in &spec.workloads {
        out.push(match current.get(name) {
            None => Change {
                workload: name.clone(),
                change: "create".into(),
                fields: vec![],
            },
            Some(d) => {
                let fields = plan::spec_diff(&d.spec, w);
                Change {
                    workload: name.clone(),
                    change: if fields.is_empty() {
                        "unchanged"
                    } else {
                        "update"
                    }
                    .into(),
                    fields,
                }
            }
        });
    }
    for name in current.keys() {
        if !spec.workloads.contains_key(name) {
            out.push(Change {
                workload: name.clone(),
                change: if prune { "remove" } else { "orphan" }.into(),
                fields: vec![],
            });
        }
    }
    out
}

pub(crate) async fn plan_or_apply(
    engine: Arc<Engine>,
    req: ApplyRequest,
    apply: bool,
) -> Result<ApplyResponse, ApiError> {
    let (spec, missing, warnings) = validate(&engine, &req).await?;
    let current = engine.store.desired()?;
    let changes = changes(&spec, &current, &engine.store.volumes()?, req.prune);
    let removed: Vec<String> = changes
        .iter()
        .filter(|c| c.change == "remove" && !c.workload.starts_with("volume/"))
        .map(|c| c.workload.clone())
        .collect();
    // The desired state this file would produce.
    let mut next: BTreeMap<String, Desired> = current.clone();
    for name in &removed {
        next.remove(name);
    }
    let generation = engine.store.generation()? + 1;
    for (name, w) in &spec.workloads {
        let unchanged = current.get(name).map(|d| d.spec == *w).unwrap_or(false);
        if !unchanged {
            next.insert(name.clone(), Desired::new(w.clone(), generation));
        }
    }
    let mut next_volumes = engine.store.volumes()?;
    if req.prune {
        next_volumes.retain(|v, _| spec.volumes.contains_key(v));
    }
    next_volumes.extend(spec.volumes.clone());
    engine.desired_for_plan(&mut next, &next_volumes);
    let observed = engine
        .observed_all()
        .into_keys()
        .filter_map(|k| Some((k.clone(), engine.planner_view(&k)?)))
        .collect();
    let planned = plan::plan(
        &next,
        &observed,
        &engine.caps,
        &missing,
        warren_store::now_ms(),
        &engine.cfg.backoff,
    );
    let (steps, refused, waiting) = (planned.steps, planned.refused, planned.waiting);
    if !apply || req.dry_run {
        return Ok(ApplyResponse {
            changes,
            steps,
            refused,
            waiting,
            generation: engine.store.generation()?,
            applied: false,
            warnings,
        });
    }
    let specs: Vec<_> = spec.workloads.values().cloned().collect();
    let vols: Vec<_> = spec.volumes.values().cloned().collect();
    let created_vols = engine.ensure_volumes(&vols).await?;
    let forget_vols: Vec<String> = if req.prune {
        engine
            .store
            .volumes()?
            .into_keys()
            .filter(|v| !spec.volumes.contains_key(v))
            .collect()
    } else {
        Vec::new()
    };
    let stored = engine
        .store
        .apply(&specs, &removed)
        .and_then(|o| engine.store.put_volumes(&vols, &forget_vols).map(|_| o))
        .and_then(|o| match &spec.host {
            Some(r) => super::vmcheck::store_reserve(&engine.store, r).map(|_| o),
            None => Ok(o),
        });
    let outcome = match stored {
        Ok(o) => o,
        Err(err) => {
            for v in &created_vols {
                let _ = engine.storage.delete_volume(v);
            }
            return Err(err.into());
        }
    };
    engine.event(
        None,
        warren_model::event::EventKind::Applied {
            file: req.file.clone(),
            generation: outcome.generation,
            created: outcome.created.len(),
            updated: outcome.updated.len(),
            removed: outcome.removed.len(),
        },
    );
    engine.telemetry.applies.inc();
    engine.wake();
    Ok(ApplyResponse {
        changes,
        steps,
        refused,
        waiting,
        generation: outcome.generation,
        applied: true,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::host_support;
    use warren_model::HostCapabilities;

    const FILE: &str = r#"[workload.cell]
kind = "jail"
world = "freebsd-14"

[workload.cell.jail]
allow = ["raw_sockets"]
jailed_dataset = true

[workload.web]
world = "freebsd-14"
jail = { vnet = false }

[workload.guest]
kind = "vm"
image = "alpine:3.20"
"#;

    fn messages(os: &str, driver: &str) -> Vec<String> {
        let parsed = warren_model::parse_spec(FILE, "w.toml").unwrap();
        host_support(&parsed, os, &HostCapabilities::for_host(os, false), driver)
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn jails_and_their_options_are_refused_off_freebsd() {
        assert_eq!(
            messages("linux", "btrfs"),
            [
                "w.toml:2:8: workload.cell.kind: kind \"jail\" is not supported on this host (linux): jails need a FreeBSD host",
                "w.toml:11:1: workload.web.jail: jail options need a FreeBSD host (this is linux), where the workload runs as a jail",
                "w.toml:14:8: workload.guest.kind: kind \"vm\" needs QEMU, and qemu-system-x86_64 is not installed on this host: install it (apt-get install qemu-system-x86, or scripts/install-deps) and restart the daemon",
            ]
        );
    }

    #[test]
    fn freebsd_runs_jails_and_wants_zfs_for_a_jailed_dataset() {
        assert_eq!(
            messages("freebsd", "zfs"),
            ["w.toml:14:8: workload.guest.kind: kind \"vm\" needs bhyve, and /usr/sbin/bhyve is missing on this host: install FreeBSD's base system with bhyve (amd64) and restart the daemon"]
        );
        assert_eq!(
            messages("freebsd", "dir"),
            [
                "w.toml:7:18: workload.cell.jail.jailed_dataset: a jailed dataset needs the zfs storage driver (this daemon uses dir; start it with --storage zfs)",
                "w.toml:14:8: workload.guest.kind: kind \"vm\" needs bhyve, and /usr/sbin/bhyve is missing on this host: install FreeBSD's base system with bhyve (amd64) and restart the daemon",
            ]
        );
    }

    /// With the hypervisor found, the same file's vm is accepted on either host.
    #[test]
    fn vms_run_where_the_hypervisor_is() {
        let parsed = warren_model::parse_spec(FILE, "w.toml").unwrap();
        for os in ["linux", "freebsd"] {
            let caps = HostCapabilities::for_host(os, true);
            let diags = host_support(&parsed, os, &caps, "zfs");
            assert!(
                diags.iter().all(|d| !d.message.contains("workload.guest")),
                "{os}: {diags:?}"
            );
        }
    }
}
