//! Tidy checks, run as tests by `cargo test --workspace` (and so by `cargo xtask ci`).
//!
//! - **File size:** no Rust source file in the workspace is longer than [`MAX_LINES`] unless
//!   one of its first lines carries `tidy: long-file:` followed by the reason it stays whole.
//! - **Crate layers:** every `warren-*` dependency of a crate points to a lower layer
//!   ([`CRATE_LAYERS`]), never sideways into a peer backend's internals or up.
//! - **Daemon layers:** inside the `warren` crate's daemon, a module refers only to modules of
//!   its own layer or below ([`DAEMON_LAYERS`]): api → services → engine. References are
//!   found as `super::NAME` and `crate::daemon::NAME` paths in the source text, so the check
//!   needs no compiler and runs in milliseconds.
//!
//! - **Codemap:** every integration test file is listed in ARCHITECTURE.md.
//!
//! Each check lists every offence at once, with a line number, so one run shows all the work.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Longest source file, in lines, that needs no written reason.
pub const MAX_LINES: usize = 1000;

/// How many of a file's first lines may hold its `tidy: long-file:` reason.
const REASON_WITHIN: usize = 20;

/// The marker that starts a long file's written reason.
const LONG_FILE_MARKER: &str = "tidy: long-file:";

/// Workspace crates by layer, lowest first. A crate may depend on crates of lower layers
/// only. Layer 0 knows nothing of any other warren crate; layer 1 are the backends and the
/// store, each knowing only layer 0; layer 2 are backends that implement a layer-1 trait
/// (the jail and VM runtimes); layer 3 are the binaries (CLI, daemon, shim; the guest agent).
pub const CRATE_LAYERS: &[(&str, u8)] = &[
    ("warren-model", 0),
    ("warren-exec", 0),
    ("warren-auth", 0),
    ("warren-image", 0),
    ("warren-storage", 1),
    ("warren-runtime", 1),
    ("warren-net", 1),
    ("warren-ingress", 1),
    ("warren-store", 1),
    ("warren-registry", 1),
    ("warren-jail", 2),
    ("warren-vm", 2),
    ("warren", 3),
    ("warren-agent", 3),
];

/// The daemon's modules by layer, lowest first: 0 engine (reconcile loop, observed state,
/// supervision, health probes, network and ingress sync, the resolution of a workload's
/// source), 1 services (apply and plan, datasets, images, recipes, worlds, transfer, hooks,
/// the spec file), 2 front ends (HTTP routes, streams, the remote API, the OpenAPI document,
/// the REPL, which drives the same route table in-process). `mod` is the daemon's entry point
/// that wires every layer together and is exempt.
pub const DAEMON_LAYERS: &[(&str, u8)] = &[
    ("engine", 0),
    ("health", 0),
    ("netnames", 0),
    ("netclaim", 0),
    ("network", 0),
    ("network_freebsd", 0),
    ("ingress", 0),
    ("sources", 0),
    ("oneoff", 0),
    ("runtimes", 0),
    ("events", 0),
    ("telemetry", 0),
    ("cgstats", 0),
    ("error", 1),
    ("apply", 1),
    ("archive", 1),
    ("datasets", 1),
    ("images", 1),
    ("recipes", 1),
    ("worlds", 1),
    ("transfer", 1),
    ("copy", 1),
    ("hooks", 1),
    ("specfile", 1),
    ("watch", 1),
    ("vmcheck", 1),
    ("info", 1),
    ("metrics", 1),
    ("logfile", 1),
    ("api", 2),
    ("api_tests", 2),
    ("openapi", 2),
    ("remote", 2),
    ("stream", 2),
    ("repl", 2),
];

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, sorted, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !name.starts_with("target") && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The offence of one file's text against the size rule, if any.
pub fn size_offence(path: &str, text: &str) -> Option<String> {
    let lines = text.lines().count();
    if lines <= MAX_LINES {
        return None;
    }
    let reason = text
        .lines()
        .take(REASON_WITHIN)
        .find_map(|l| l.split_once(LONG_FILE_MARKER).map(|(_, r)| r.trim()));
    match reason {
        Some(r) if r.split_whitespace().count() >= 4 => None,
        Some(_) => Some(format!(
            "{path}: {lines} lines; its `{LONG_FILE_MARKER}` reason is too short to say why"
        )),
        None => Some(format!(
            "{path}: {lines} lines (limit {MAX_LINES}); split it, or write why it stays whole \
             as `{LONG_FILE_MARKER} ...` in its first {REASON_WITHIN} lines"
        )),
    }
}

/// The `warren-*` crates named in the `[dependencies]` table of a Cargo.toml text (dev- and
/// build-dependencies are not layering: tests may use anything).
pub fn crate_deps(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps =
                t == "[dependencies]" || t.starts_with("[target.") && t.ends_with(".dependencies]");
            continue;
        }
        if !in_deps {
            continue;
        }
        let name: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if name.starts_with("warren") && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The daemon modules `text` refers to, with 1-based line numbers: `crate::daemon::x`, and
/// `super::x` (or a `use super::{x, y}` group) climbing exactly to the daemon from a file
/// `depth` directories below it (`engine.rs` and `engine/mod.rs` are at depth 0,
/// `engine/reconcile.rs` at depth 1, where `super::x` is a part of the engine itself).
pub fn daemon_refs(text: &str, depth: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut at = 0;
        while at < code.len() {
            let rest = &code[at..];
            let (after, climbs) = if let Some(r) = rest.strip_prefix("crate::daemon::") {
                (r, None)
            } else if rest.starts_with("super::")
                && !code[..at]
                    .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                let mut r = rest;
                let mut n = 0;
                while let Some(x) = r.strip_prefix("super::") {
                    r = x;
                    n += 1;
                }
                (r, Some(n))
            } else {
                at += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            };
            at = code.len() - after.len();
            if climbs.is_some_and(|n| n != depth + 1) {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        out.push((i + 1, name));
                    }
                }
            } else {
                let name = ident(after);
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The daemon module a file under `daemon/` belongs to (`engine/reconcile.rs` → `engine`)
/// and its depth below the daemon (see [`daemon_refs`]).
fn daemon_module(rel: &Path) -> Option<(String, usize)> {
    let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
    let first = parts.first()?.trim_end_matches(".rs").to_string();
    let depth = match parts.last() {
        Some(&"mod.rs") => parts.len().saturating_sub(2),
        _ => parts.len() - 1,
    };
    Some((first, depth))
}

/// Offences against the daemon layer rule for the module `module` with source `text`.
pub fn daemon_offences(file: &str, module: &str, depth: usize, text: &str) -> Vec<String> {
    let layers: BTreeMap<&str, u8> = DAEMON_LAYERS.iter().copied().collect();
    let Some(&own) = layers.get(module) else {
        return if module == "mod" {
            Vec::new()
        } else {
            vec![format!(
                "{file}: daemon module `{module}` has no layer in tidy::DAEMON_LAYERS"
            )]
        };
    };
    daemon_refs(text, depth)
        .into_iter()
        .filter_map(|(line, target)| {
            let &theirs = layers.get(target.as_str())?;
            (theirs > own).then(|| {
                format!(
                    "{file}:{line}: `{module}` (layer {own}) refers to `{target}` (layer \
                     {theirs}) above it"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &Path) -> String {
        p.strip_prefix(root()).unwrap_or(p).display().to_string()
    }

    #[test]
    fn no_source_file_passes_the_size_limit_without_a_reason() {
        let mut files = Vec::new();
        for dir in ["crates", "xtask"] {
            rust_files(&root().join(dir), &mut files);
        }
        assert!(files.len() > 50, "found only {} source files", files.len());
        let offences: Vec<String> = files
            .iter()
            .filter_map(|p| size_offence(&rel(p), &fs::read_to_string(p).unwrap()))
            .collect();
        assert!(offences.is_empty(), "{}", offences.join("\n"));
    }

    #[test]
    fn crates_depend_only_on_lower_layers() {
        let layers: BTreeMap<&str, u8> = CRATE_LAYERS.iter().copied().collect();
        let mut offences = Vec::new();
        let mut seen = 0;
        for entry in fs::read_dir(root().join("crates")).unwrap().flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = fs::read_to_string(&manifest) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(&own) = layers.get(name.as_str()) else {
                offences.push(format!("crates/{name}: no layer in tidy::CRATE_LAYERS"));
                continue;
            };
            seen += 1;
            for dep in crate_deps(&text) {
                match layers.get(dep.as_str()) {
                    Some(&theirs) if theirs < own => {}
                    Some(&theirs) => offences.push(format!(
                        "crates/{name} (layer {own}) depends on {dep} (layer {theirs}), not below it"
                    )),
                    None => offences.push(format!("crates/{name}: unknown dependency {dep}")),
                }
            }
        }
        assert!(seen >= 10, "found only {seen} crates");
        assert!(offences.is_empty(), "{}", offences.join("\n"));
    }

    #[test]
    fn daemon_modules_refer_only_to_their_layer_and_below() {
        let daemon = root().join("crates/warren/src/daemon");
        let mut files = Vec::new();
        rust_files(&daemon, &mut files);
        assert!(files.len() > 10, "found only {} daemon files", files.len());
        let mut offences = Vec::new();
        for p in &files {
            let (module, depth) = daemon_module(p.strip_prefix(&daemon).unwrap()).unwrap();
            let text = fs::read_to_string(p).unwrap();
            offences.extend(daemon_offences(&rel(p), &module, depth, &text));
        }
        assert!(offences.is_empty(), "{}", offences.join("\n"));
    }

    #[test]
    fn every_integration_test_file_is_in_the_codemap() {
        let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
        let mut missing = Vec::new();
        let mut seen = 0;
        for entry in fs::read_dir(root().join("crates")).unwrap().flatten() {
            let Ok(tests) = fs::read_dir(entry.path().join("tests")) else {
                continue;
            };
            for t in tests.flatten() {
                let p = t.path();
                if p.extension().is_some_and(|e| e == "rs") {
                    seen += 1;
                    let rel = rel(&p);
                    if !arch.contains(&format!("`{rel}`")) {
                        missing.push(rel);
                    }
                }
            }
        }
        assert!(seen > 20, "found only {seen} test files");
        missing.sort();
        assert!(
            missing.is_empty(),
            "test files missing from ARCHITECTURE.md's \"Test files\": {}",
            missing.join(", ")
        );
    }

    // The checks themselves: each must catch what it is for.

    #[test]
    fn a_long_file_needs_a_real_reason() {
        let long = "fn f() {}\n".repeat(MAX_LINES + 1);
        assert!(size_offence("a.rs", &long).is_some());
        let short_reason = format!("// {LONG_FILE_MARKER} big\n{long}");
        assert!(size_offence("a.rs", &short_reason).is_some());
        let reason =
            format!("//! {LONG_FILE_MARKER} one table of cases read top to bottom\n{long}");
        assert!(size_offence("a.rs", &reason).is_none());
        let late = format!(
            "{}// {LONG_FILE_MARKER} one table of cases read top to bottom\n{long}",
            "\n".repeat(REASON_WITHIN)
        );
        assert!(size_offence("a.rs", &late).is_some());
        assert!(size_offence("a.rs", &"x\n".repeat(MAX_LINES)).is_none());
    }

    #[test]
    fn upward_references_are_found_in_every_spelling() {
        let text = "use super::api::ApiError;\n\
                    use super::{engine::Engine, repl};\n\
                    let x = crate::daemon::stream::f();\n\
                    // super::api in a comment is not code\n\
                    use super::super::cli;\n";
        let refs = daemon_refs(text, 0);
        assert_eq!(
            refs,
            vec![
                (1, "api".to_string()),
                (2, "engine".to_string()),
                (2, "repl".to_string()),
                (3, "stream".to_string()),
            ]
        );
        let offences = daemon_offences("engine.rs", "engine", 0, text);
        assert_eq!(offences.len(), 3, "{offences:?}");
        assert!(offences[0].contains("engine.rs:1"), "{offences:?}");
        assert!(daemon_offences("api.rs", "api", 0, text).is_empty());
        assert_eq!(daemon_offences("x.rs", "newthing", 0, "").len(), 1);
        // From engine/reconcile.rs, `super::x` is the engine's own part and
        // `super::super::x` is the daemon's module x.
        let nested = "use super::state::State;\nuse super::super::api::ApiError;\n";
        assert_eq!(daemon_refs(nested, 1), vec![(2, "api".to_string())]);
        assert_eq!(
            daemon_offences("engine/reconcile.rs", "engine", 1, nested).len(),
            1
        );
        assert_eq!(
            daemon_module(Path::new("engine/reconcile.rs")),
            Some(("engine".to_string(), 1))
        );
        assert_eq!(
            daemon_module(Path::new("engine/mod.rs")),
            Some(("engine".to_string(), 0))
        );
    }

    #[test]
    fn crate_dependencies_are_read_from_the_dependencies_tables_only() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nwarren-model.workspace = true\n\
                        warren-exec = { path = \"../warren-exec\" }\nserde = \"1\"\n\n\
                        [target.'cfg(target_os = \"linux\")'.dependencies]\nwarren-net.workspace = true\n\n\
                        [dev-dependencies]\nwarren-storage.workspace = true\n";
        assert_eq!(
            crate_deps(manifest),
            vec!["warren-model", "warren-exec", "warren-net"]
        );
    }
}
