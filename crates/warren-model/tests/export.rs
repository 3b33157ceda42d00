//! Golden exports of `examples/homelab.toml` to Nomad job files and Kubernetes manifests
//! (`tests/export/homelab/`; `WARREN_BLESS=1` rewrites them from the current output, then
//! review the diff), and their validation: every Nomad file parses as HCL with the jobspec's
//! structure, every Kubernetes object validates against the official JSON schema of its kind
//! (`tests/export/k8s-schemas/`, see its README).

use std::fs;
use std::path::{Path, PathBuf};

use warren_model::export::{kubernetes, nomad, Export};
use warren_model::{parse_spec, SpecFile};

fn homelab() -> SpecFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/homelab.toml");
    let text = fs::read_to_string(&path).expect("examples/homelab.toml");
    parse_spec(&text, "homelab.toml").expect("homelab parses").spec
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export/homelab")
}

/// Compares (or with `WARREN_BLESS=1` rewrites) every file of `export` with its golden copy.
fn check_golden(export: &Export) {
    let dir = golden_dir();
    let bless = std::env::var_os("WARREN_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for f in &export.files {
        let path = dir.join(&f.name);
        if bless {
            fs::write(&path, &f.text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let want = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
        if want != f.text {
            stale.push(f.name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "exports differ from their goldens: {stale:?} (WARREN_BLESS=1 rewrites them; review the diff)"
    );
}

#[test]
fn nomad_export_of_homelab_matches_golden() {
    let spec = homelab();
    let export = nomad::export(&spec);
    let names: Vec<&str> = export.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api.nomad.hcl",
            "clock.nomad.hcl",
            "publisher.nomad.hcl",
            "web.nomad.hcl",
            "client-host-volumes.hcl"
        ]
    );
    check_golden(&export);
    // Deterministic.
    assert_eq!(export, nomad::export(&spec));
}

#[test]
fn kubernetes_export_of_homelab_matches_golden() {
    let spec = homelab();
    let export = kubernetes::export(&spec);
    assert_eq!(export.files.len(), 1);
    check_golden(&export);
    assert_eq!(export, kubernetes::export(&spec));
}

#[test]
fn homelab_unmapped_keys_are_listed() {
    let spec = homelab();
    for export in [nomad::export(&spec), kubernetes::export(&spec)] {
        let keys: Vec<&str> = export.unmapped.iter().map(|u| u.key.as_str()).collect();
        for k in [
            "workload.web.resources.pids",
            "workload.api.resources.pids",
            "volume.files.site",
        ] {
            assert!(keys.contains(&k), "{k} not listed in {keys:?}");
        }
        for u in &export.unmapped {
            let listed = export.files.iter().any(|f| f.text.contains(&u.to_string()));
            assert!(listed, "{u} is not in any file's comments");
        }
    }
}
