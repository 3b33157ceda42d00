//! Unit tests for the parser: one or more per rule, plus locations.

use super::*;
use crate::spec::{DesiredState, RestartPolicy, RouteSpec};

fn ok(text: &str) -> Parsed {
    match parse_spec(text, "t.toml") {
        Ok(p) => p,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn web(text: &str) -> WorkloadSpec {
    ok(text).spec.workloads["web"].clone()
}

/// Every diagnostic as `line:column: message`.
fn errors(text: &str) -> Vec<String> {
    match parse_spec(text, "t.toml") {
        Ok(p) => panic!("expected errors, got {:?}", p.spec),
        Err(e) => e
            .diagnostics
            .iter()
            .map(|d| {
                assert_eq!(d.file, "t.toml");
                format!("{}:{}: {}", d.line, d.column, d.message)
            })
            .collect(),
    }
}

/// The single diagnostic for a `[workload.web]` body (world is provided unless `body` sets a
/// source itself).
fn web_error(body: &str) -> String {
    let source = if body.contains("world") || body.contains("image") {
        ""
    } else {
        "world = \"host\"\n"
    };
    let errs = errors(&format!("[workload.web]\n{source}{body}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

mod diagnostics;
mod hooks;
mod ingress;
mod order;
mod vm;
mod volume;
mod workload;
