//! Exports of a desired state to other orchestrators: `warren spec export --format nomad`
//! ([`nomad`], one HCL2 job file per workload) and `--format kubernetes` ([`kubernetes`], one
//! multi-document YAML file). A way out for an operator who outgrows a few hosts.
//!
//! Pure and deterministic: a [`SpecFile`] in, text out, workloads and volumes in name order.
//! What has no equivalent in the target is never dropped silently: every such key is listed in
//! [`Export::unmapped`] and in a `cannot map` comment at the head of the file that would have
//! held it; workloads the target cannot run at all (VMs, FreeBSD jails) are left out and listed
//! in [`Export::skipped`]. `docs/export.md` is the table of what maps to what.

pub mod kubernetes;
pub mod nomad;

use std::fmt;

use crate::spec::{Kind, Source, SpecFile, WorkloadSpec};

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// A file name (no directory): `web.nomad.hcl`, `warren.yaml`.
    pub name: String,
    pub text: String,
}

/// A key of the spec the target has no equivalent for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unmapped {
    /// The dotted key as the file spells it: `workload.web.resources.pids`.
    pub key: String,
    /// Why, and what to do instead.
    pub why: String,
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

/// A workload left out of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub workload: String,
    pub why: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "workload {} skipped: {}", self.workload, self.why)
    }
}

/// The result of an export: the files, and what could not be carried over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Export {
    pub files: Vec<ExportFile>,
    pub unmapped: Vec<Unmapped>,
    pub skipped: Vec<Skipped>,
}

impl Export {
    /// Every warning an operator should read: the skipped workloads, then the unmapped keys.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.skipped.iter().map(|s| s.to_string()).collect();
        w.extend(self.unmapped.iter().map(|u| format!("cannot map {u}")));
        w
    }
}

/// Why a workload cannot be exported at all, or `None` when it can.
pub(crate) fn skip_reason(w: &WorkloadSpec) -> Option<String> {
    match w.kind {
        Kind::Container => None,
        Kind::Vm => Some(
            "a VM: plain Nomad and Kubernetes schedule containers and processes; \
             run it with Nomad's qemu driver or KubeVirt by hand"
                .into(),
        ),
        Kind::Jail => {
            Some("a FreeBSD jail: neither Nomad's nor Kubernetes' stock drivers run jails".into())
        }
    }
}

/// `workload.NAME.KEY`.
pub(crate) fn key(w: &WorkloadSpec, k: &str) -> String {
    format!("workload.{}.{k}", w.name)
}

/// Whether the workload's own declaration refers to its data dataset: it sets `data_path`
/// itself, or the path appears in the command, entrypoint, environment, working directory or
/// exec health check, or it has automatic snapshots. warren gives every workload a data dataset; an export keeps it (a
/// claim, a host volume) only when the spec shows it is used, so a stateless workload does not
/// become a stateful one.
pub(crate) fn data_used(w: &WorkloadSpec) -> bool {
    let p = w.data_path.trim_end_matches('/');
    let mentions = |s: &str| {
        s.match_indices(p).any(|(i, _)| {
            matches!(
                s[i + p.len()..].chars().next(),
                None | Some('/' | ' ' | '"' | '\'' | ';' | ':')
            )
        })
    };
    let probe_mentions = match w.health.as_ref().map(|h| &h.probe) {
        Some(crate::health::Probe::Exec(argv)) => argv.iter().any(|a| mentions(a)),
        _ => false,
    };
    !p.is_empty()
        && (w.data_path != crate::spec::default_data_path()
            || w.snapshots.is_some()
            || w.command.iter().any(|a| mentions(a))
            || w.entrypoint.iter().flatten().any(|a| mentions(a))
            || w.env.values().any(|v| mentions(v))
            || w.workdir.as_deref().is_some_and(mentions)
            || probe_mentions)
}

/// The keys no target maps: the pids limit, snapshots, hooks, FreeBSD jail options.
pub(crate) fn common_unmapped(w: &WorkloadSpec, out: &mut Vec<Unmapped>) {
    if let Some(p) = w.resources.pids {
        out.push(Unmapped {
            key: key(w, "resources.pids"),
            why: format!("{p} processes: no per-workload process limit (a node-wide setting)"),
        });
    }
    if w.snapshots.is_some() {
        out.push(Unmapped {
            key: key(w, "snapshots"),
            why: "automatic snapshots: use the storage's own snapshot schedule".into(),
        });
    }
    if !w.hooks.is_empty() {
        out.push(Unmapped {
            key: key(w, "hooks"),
            why: format!("{} event hook(s): no equivalent", w.hooks.len()),
        });
    }
    if !w.jail.is_default() {
        out.push(Unmapped {
            key: key(w, "jail"),
            why: "FreeBSD jail options: the workload runs as a Linux container".into(),
        });
    }
}

/// The keys of the volumes no target maps (snapshots, sites), in name order.
pub(crate) fn volume_unmapped(spec: &SpecFile, out: &mut Vec<Unmapped>) {
    for v in spec.volumes.values() {
        if v.snapshots.is_some() {
            out.push(Unmapped {
                key: format!("volume.{}.snapshots", v.name),
                why: "automatic snapshots: use the storage's own snapshot schedule".into(),
            });
        }
        if let Some(site) = &v.site {
            out.push(Unmapped {
                key: format!("volume.{}.site", v.name),
                why: format!(
                    "the volume served on {}: no built-in static file server; run one \
                     (nginx, caddy) that mounts the volume",
                    site.domains.join(", ")
                ),
            });
        }
    }
}

/// What a world or recipe source needs to become an image, and the image name the export uses
/// for it; `None` for an image source.
pub(crate) fn built_image(source: &Source) -> Option<(String, String)> {
    match source {
        Source::Image(_) => None,
        Source::World(n) => Some((
            format!("warren/world-{n}:latest"),
            format!(
                "world {n:?}: make an image of it (`warren world export {n} -o {n}.tar`, \
                 then `docker import {n}.tar warren/world-{n}:latest`) and push it"
            ),
        )),
        Source::Recipe(r) => {
            let base = r.split_whitespace().next().unwrap_or(r).replace('/', "-");
            Some((
                format!("warren/recipe-{base}:latest"),
                format!("recipe {r:?}: build its root filesystem into an image and push it"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SnapshotPolicy;

    #[test]
    fn the_data_dataset_is_used_when_the_spec_refers_to_it() {
        let mut w = WorkloadSpec::new("a", Source::World("busybox".into()));
        assert!(!data_used(&w));
        w.command = vec!["sh".into(), "-c".into(), "ls /database".into()];
        assert!(!data_used(&w), "another path that starts alike");
        w.command = vec!["sh".into(), "-c".into(), "date >> /data/log".into()];
        assert!(data_used(&w));
        w.command.clear();
        w.env.insert("DIR".into(), "/data".into());
        assert!(data_used(&w));
        w.env.clear();
        w.snapshots = Some(SnapshotPolicy {
            every_secs: 60,
            keep: 1,
        });
        assert!(data_used(&w));
        w.snapshots = None;
        w.data_path = "/var/lib/db".into();
        assert!(data_used(&w), "a data_path of its own");
    }

    #[test]
    fn only_containers_are_exported() {
        let mut w = WorkloadSpec::new("a", Source::World("busybox".into()));
        assert!(skip_reason(&w).is_none());
        w.kind = Kind::Vm;
        assert!(skip_reason(&w).unwrap().starts_with("a VM"));
        w.kind = Kind::Jail;
        assert!(skip_reason(&w).unwrap().starts_with("a FreeBSD jail"));
    }

    #[test]
    fn built_images_are_named_after_the_source() {
        assert_eq!(built_image(&Source::Image("x".into())), None);
        let (img, _) = built_image(&Source::World("busybox".into())).unwrap();
        assert_eq!(img, "warren/world-busybox:latest");
        let (img, need) = built_image(&Source::Recipe("infra/exporter 1.8".into())).unwrap();
        assert_eq!(img, "warren/recipe-infra-exporter:latest");
        assert!(need.starts_with("recipe \"infra/exporter 1.8\""));
    }
}
