//! Golden exports of `examples/homelab.toml` to Nomad job files and Kubernetes manifests
//! (`tests/export/homelab/`; `WARREN_BLESS=1` rewrites them from the current output, then
//! review the diff), and their validation: every Nomad file parses as HCL with the jobspec's
//! structure, every Kubernetes object validates against the official JSON schema of its kind
//! (`tests/export/k8s-schemas/`, see its README).

use std::fs;
use std::path::Path;

use warren_model::export::{kubernetes, nomad, Export};
use warren_model::{parse_spec, SpecFile};

fn homelab() -> SpecFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/homelab.toml");
    let text = fs::read_to_string(&path).expect("examples/homelab.toml");
    parse_spec(&text, "homelab.toml")
        .expect("homelab parses")
        .spec
}

/// Compares (or with `WARREN_BLESS=1` rewrites) every file of `export` with its golden copy
/// in `tests/export/SET/`.
fn check_golden(set: &str, export: &Export) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/export")
        .join(set);
    fs::create_dir_all(&dir).expect("golden directory");
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
    check_golden("homelab", &export);
    // Deterministic.
    assert_eq!(export, nomad::export(&spec));
}

#[test]
fn kubernetes_export_of_homelab_matches_golden() {
    let spec = homelab();
    let export = kubernetes::export(&spec);
    assert_eq!(export.files.len(), 1);
    check_golden("homelab", &export);
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

fn kitchen_sink() -> SpecFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export/kitchen-sink.toml");
    let text = fs::read_to_string(&path).expect("kitchen-sink.toml");
    match parse_spec(&text, "kitchen-sink.toml") {
        Ok(p) => p.spec,
        Err(e) => panic!("kitchen-sink.toml: {e:?}"),
    }
}

/// The attribute names and block identifiers of a body.
fn names(body: &hcl::Body) -> (Vec<&str>, Vec<&str>) {
    (
        body.attributes().map(|a| a.key()).collect(),
        body.blocks().map(|b| b.identifier()).collect(),
    )
}

/// Fails unless every attribute and block of `body` is one the jobspec allows at `at`.
fn allowed(body: &hcl::Body, at: &str, attrs: &[&str], blocks: &[&str]) {
    let (a, b) = names(body);
    for k in a {
        assert!(
            attrs.contains(&k),
            "{at}: attribute {k} is not in the jobspec"
        );
    }
    for k in b {
        assert!(blocks.contains(&k), "{at}: block {k} is not in the jobspec");
    }
}

fn label(b: &hcl::Block) -> String {
    assert_eq!(b.labels().len(), 1, "{} takes one label", b.identifier());
    b.labels()[0].as_str().to_string()
}

fn string_attr(body: &hcl::Body, k: &str) -> Option<String> {
    body.attributes()
        .find(|a| a.key() == k)
        .map(|a| match a.expr() {
            hcl::Expression::String(s) => s.clone(),
            e => panic!("{k} is not a string: {e:?}"),
        })
}

/// Checks a job file against the structure of Nomad's jobspec (the blocks and attributes it
/// may hold at each level, the references between them); the host volumes it mounts.
fn validate_job(name: &str, text: &str) -> Vec<String> {
    let body = hcl::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    allowed(&body, "top", &[], &["job"]);
    let jobs: Vec<&hcl::Block> = body.blocks().collect();
    assert_eq!(jobs.len(), 1, "{name}: one job");
    let job = jobs[0];
    let wname = name.trim_end_matches(".nomad.hcl");
    assert_eq!(label(job), wname);
    allowed(job.body(), "job", &["datacenters", "type"], &["group"]);
    let ty = string_attr(job.body(), "type").expect("job type");
    assert!(
        ["service", "batch"].contains(&ty.as_str()),
        "{name}: type {ty}"
    );
    let groups: Vec<&hcl::Block> = job.body().blocks().collect();
    assert_eq!(groups.len(), 1, "{name}: one group");
    let g = groups[0].body();
    allowed(
        g,
        "group",
        &["count"],
        &[
            "network",
            "volume",
            "restart",
            "reschedule",
            "service",
            "task",
        ],
    );
    let mut port_labels = Vec::new();
    let mut volume_labels = Vec::new();
    let mut mounted = Vec::new();
    for b in g.blocks() {
        match b.identifier() {
            "network" => {
                allowed(b.body(), "network", &["mode", "hostname"], &["port"]);
                let mode = string_attr(b.body(), "mode").expect("network mode");
                assert!(["bridge", "host", "none"].contains(&mode.as_str()));
                for p in b.body().blocks() {
                    allowed(p.body(), "port", &["static", "to"], &[]);
                    port_labels.push(label(p));
                }
            }
            "volume" => {
                allowed(b.body(), "volume", &["type", "source", "read_only"], &[]);
                assert_eq!(string_attr(b.body(), "type").as_deref(), Some("host"));
                assert_eq!(string_attr(b.body(), "source"), Some(label(b)));
                volume_labels.push(label(b));
            }
            "restart" => allowed(
                b.body(),
                "restart",
                &["attempts", "interval", "delay", "mode"],
                &[],
            ),
            "reschedule" => allowed(b.body(), "reschedule", &["attempts", "unlimited"], &[]),
            "service" => {
                allowed(
                    b.body(),
                    "service",
                    &["name", "provider", "port", "tags"],
                    &["check"],
                );
                let port = string_attr(b.body(), "port").expect("service port");
                assert!(
                    port_labels.contains(&port),
                    "{name}: service port {port} undeclared"
                );
                for c in b.body().blocks() {
                    allowed(
                        c.body(),
                        "check",
                        &["type", "path", "port", "interval", "timeout"],
                        &["check_restart"],
                    );
                    let t = string_attr(c.body(), "type").expect("check type");
                    assert!(["http", "tcp"].contains(&t.as_str()));
                    let port = string_attr(c.body(), "port").expect("check port");
                    assert!(
                        port_labels.contains(&port),
                        "{name}: check port {port} undeclared"
                    );
                    for r in c.body().blocks() {
                        allowed(r.body(), "check_restart", &["limit", "grace"], &[]);
                    }
                }
            }
            "task" => {
                assert_eq!(label(b), wname);
                let t = b.body();
                allowed(
                    t,
                    "task",
                    &["driver", "user", "env"],
                    &["config", "env", "resources", "volume_mount"],
                );
                let driver = string_attr(t, "driver").expect("driver");
                for c in t.blocks() {
                    match c.identifier() {
                        "config" if driver == "docker" => {
                            allowed(
                                c.body(),
                                "docker config",
                                &[
                                    "image",
                                    "entrypoint",
                                    "command",
                                    "args",
                                    "work_dir",
                                    "readonly_rootfs",
                                    "hostname",
                                ],
                                &[],
                            );
                            assert!(string_attr(c.body(), "image").is_some());
                        }
                        "config" if driver == "exec" => {
                            allowed(c.body(), "exec config", &["command", "args"], &[]);
                            assert!(string_attr(c.body(), "command").is_some());
                        }
                        "config" => panic!("{name}: driver {driver}"),
                        "resources" => allowed(c.body(), "resources", &["cpu", "memory"], &[]),
                        "volume_mount" => {
                            allowed(
                                c.body(),
                                "volume_mount",
                                &["volume", "destination", "read_only"],
                                &[],
                            );
                            mounted.push(string_attr(c.body(), "volume").expect("volume"));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    mounted.sort();
    volume_labels.sort();
    assert_eq!(
        mounted, volume_labels,
        "{name}: mounts and group volumes differ"
    );
    volume_labels
}

/// Every job file follows the jobspec; the client file declares every host volume they mount.
fn validate_nomad(export: &Export) {
    let mut needed = Vec::new();
    for f in &export.files {
        if f.name != nomad::CLIENT_FILE {
            needed.extend(validate_job(&f.name, &f.text));
        }
    }
    needed.sort();
    needed.dedup();
    let client = export.files.iter().find(|f| f.name == nomad::CLIENT_FILE);
    let mut declared = Vec::new();
    if let Some(f) = client {
        let body = hcl::parse(&f.text).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        allowed(&body, "client file", &[], &["client"]);
        for c in body.blocks() {
            allowed(c.body(), "client", &[], &["host_volume"]);
            for v in c.body().blocks() {
                allowed(v.body(), "host_volume", &["path", "read_only"], &[]);
                declared.push(label(v));
            }
        }
    }
    assert_eq!(declared, needed, "declared host volumes");
}

#[test]
fn nomad_exports_follow_the_jobspec() {
    validate_nomad(&nomad::export(&homelab()));
    validate_nomad(&nomad::export(&kitchen_sink()));
}

#[test]
fn nomad_strings_read_back_as_the_spec_wrote_them() {
    let spec = kitchen_sink();
    let export = nomad::export(&spec);
    let db = export
        .files
        .iter()
        .find(|f| f.name == "db.nomad.hcl")
        .expect("db job");
    let v: serde_json::Value = hcl::from_str(&db.text).expect("evaluates");
    let env = &v["job"]["db"]["group"]["db"]["task"]["db"]["env"];
    let want = &spec.workloads["db"].env;
    assert_eq!(env.as_object().map(|o| o.len()), Some(want.len()));
    for (k, val) in want {
        assert_eq!(env[k.as_str()].as_str(), Some(val.as_str()), "env {k}");
    }
    let args = &v["job"]["db"]["group"]["db"]["task"]["db"]["config"]["args"];
    assert_eq!(args[1].as_str(), Some("max_connections=50"));
}

/// The official schemas of the kinds an export writes (Kubernetes 1.33, strict: unknown fields
/// are errors).
fn k8s_validators() -> std::collections::BTreeMap<String, jsonschema::Validator> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export/k8s-schemas/v1.33-strict.json");
    let bundle: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("schemas")).expect("schema JSON");
    let mut out = std::collections::BTreeMap::new();
    for (kind, schema) in bundle["kinds"].as_object().expect("kinds") {
        let mut s = schema.clone();
        s["definitions"] = bundle["definitions"].clone();
        let v = jsonschema::validator_for(&s).unwrap_or_else(|e| panic!("{kind}: {e}"));
        out.insert(kind.clone(), v);
    }
    out
}

fn validate_k8s(objects: &[serde_json::Value]) {
    let validators = k8s_validators();
    let mut claims = Vec::new();
    let mut services = Vec::new();
    for o in objects {
        let kind = o["kind"].as_str().expect("kind");
        let name = o["metadata"]["name"].as_str().expect("name");
        let v = validators
            .get(kind)
            .unwrap_or_else(|| panic!("no schema for {kind}"));
        let errors: Vec<String> = v
            .iter_errors(o)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{kind} {name}: {errors:#?}");
        match kind {
            "PersistentVolumeClaim" => claims.push(name.to_string()),
            "Service" => services.push((name.to_string(), o["spec"]["ports"].clone())),
            _ => {}
        }
    }
    for o in objects {
        let pod = &o["spec"]["template"]["spec"];
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                assert!(claims.iter().any(|n| n == c), "claim {c} is not exported");
            }
        }
        if o["kind"] == "Ingress" {
            for r in o["spec"]["rules"].as_array().expect("rules") {
                for p in r["http"]["paths"].as_array().expect("paths") {
                    let b = &p["backend"]["service"];
                    let (_, ports) = services
                        .iter()
                        .find(|(n, _)| n == b["name"].as_str().unwrap())
                        .expect("the backend's Service");
                    assert!(ports
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|sp| sp["port"] == b["port"]["number"]));
                }
            }
        }
    }
}

#[test]
fn kubernetes_objects_validate_against_the_official_schemas() {
    validate_k8s(&kubernetes::objects(&homelab()));
    validate_k8s(&kubernetes::objects(&kitchen_sink()));
}

#[test]
fn the_schemas_reject_a_broken_object() {
    let mut objects = kubernetes::objects(&homelab());
    let d = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    d["spec"]["replicas"] = serde_json::json!("one");
    let v = &k8s_validators()["Deployment"];
    assert!(!v.is_valid(d));
    d["spec"]["replicas"] = serde_json::json!(1);
    assert!(v.is_valid(d));
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicee"] = serde_json::json!("x");
    assert!(!v.is_valid(d), "strict: unknown fields are errors");
}

#[test]
fn kitchen_sink_exports_match_golden() {
    let spec = kitchen_sink();
    check_golden("kitchen-sink", &nomad::export(&spec));
    check_golden("kitchen-sink", &kubernetes::export(&spec));
}

#[test]
fn kitchen_sink_refusals_and_skips() {
    let spec = kitchen_sink();
    for export in [nomad::export(&spec), kubernetes::export(&spec)] {
        let skipped: Vec<&str> = export.skipped.iter().map(|s| s.workload.as_str()).collect();
        assert_eq!(skipped, ["bsd", "vm1"]);
        let keys: Vec<&str> = export.unmapped.iter().map(|u| u.key.as_str()).collect();
        for k in [
            "workload.db.hooks",
            "workload.db.snapshots",
            "workload.db.resources.pids",
            "volume.repos.snapshots",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        let all: String = export.files.iter().map(|f| f.text.as_str()).collect();
        assert!(
            !all.contains("\"vm1\""),
            "a skipped workload is not exported"
        );
        assert!(all.contains("Skipped: workload vm1 skipped"));
    }
}
