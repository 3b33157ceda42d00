//! Tests of the start order: `after` entries as names and tables, `wait` as their default,
//! and the file-wide checks (unknown names, self-reference, cycles, conditions the dependency
//! cannot meet).

use super::*;
use crate::spec::{Dependency, WaitFor};

/// A file of `[workload.NAME]` tables, each with `world = "host"` and the given body.
fn file(workloads: &[(&str, &str)]) -> String {
    workloads
        .iter()
        .map(|(name, body)| format!("[workload.{name}]\nworld = \"host\"\n{body}\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

const HEALTHY_DB: &str = r#"health = { exec = ["true"] }"#;

#[test]
fn names_and_tables_with_the_default_wait() {
    let text = file(&[
        ("db", HEALTHY_DB),
        ("migrate", "restart = \"never\""),
        ("cache", ""),
        (
            "web",
            r#"wait = "healthy"
after = ["db", { name = "migrate", wait = "completed" }, { name = "cache", wait = "started" }]"#,
        ),
    ]);
    let spec = ok(&text).spec;
    assert_eq!(
        spec.workloads["web"].after,
        [
            Dependency::new("db", WaitFor::Healthy),
            Dependency::new("migrate", WaitFor::Completed),
            Dependency::new("cache", WaitFor::Started),
        ]
    );
    assert!(spec.workloads["db"].after.is_empty());
    // Without `wait`, a name waits for "started".
    let text = file(&[
        ("db", ""),
        ("web", r#"after = ["db", { name = "db2" }]"#),
        ("db2", ""),
    ]);
    assert_eq!(
        ok(&text).spec.workloads["web"].after,
        [
            Dependency::new("db", WaitFor::Started),
            Dependency::new("db2", WaitFor::Started),
        ]
    );
    // An empty list is allowed, and `wait` with it is harmless.
    let text = file(&[("web", "after = []\nwait = \"completed\"")]);
    assert!(ok(&text).spec.workloads["web"].after.is_empty());
}

#[test]
fn entries_are_located() {
    let text = file(&[("db", ""), ("web", "after = [\n  \"db\",\n]")]);
    let p = ok(&text);
    assert_eq!(p.locate("workload.web.after[0]"), (8, 3));
}

#[test]
fn unknown_names_are_located_with_a_hint() {
    let text = file(&[("db", ""), ("web", r#"after = ["cache", "dbb"]"#)]);
    assert_eq!(
        errors(&text),
        [
            "7:10: workload.web.after[0]: no workload named \"cache\" in this file; the file declares db",
            "7:19: workload.web.after[1]: no workload named \"dbb\" in this file; did you mean \"db\"?",
        ]
    );
    assert_eq!(
        web_error(r#"after = [{ name = "db" }]"#),
        "3:10: workload.web.after[0]: no workload named \"db\" in this file; the file declares no other workload"
    );
    // A workload with errors of its own is still a name others may wait for.
    let text = file(&[("db", "kind = \"nope\""), ("web", r#"after = ["db"]"#)]);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("workload.db.kind"), "{errs:?}");
}

#[test]
fn self_reference_and_duplicates_are_refused() {
    assert_eq!(
        web_error(r#"after = ["web"]"#),
        "3:10: workload.web.after[0]: workload \"web\" cannot start after itself"
    );
    let text = file(&[
        ("db", ""),
        (
            "web",
            r#"after = ["db", { name = "db", wait = "started" }]"#,
        ),
    ]);
    assert_eq!(
        errors(&text),
        ["7:16: workload.web.after[1]: \"db\" is listed twice"]
    );
}

#[test]
fn cycles_name_the_whole_cycle_at_the_closing_entry() {
    let text = file(&[("a", r#"after = ["b"]"#), ("b", r#"after = ["a"]"#)]);
    assert_eq!(
        errors(&text),
        ["7:10: workload.b.after[0]: start order has a cycle: a -> b -> a"]
    );
    let text = file(&[
        ("a", r#"after = ["b"]"#),
        ("b", r#"after = ["c"]"#),
        ("c", r#"after = ["x", "a"]"#),
        ("x", ""),
    ]);
    assert_eq!(
        errors(&text),
        ["11:15: workload.c.after[1]: start order has a cycle: a -> b -> c -> a"]
    );
    // Two workloads after one shared dependency is no cycle.
    let text = file(&[
        ("db", ""),
        ("api", r#"after = ["db"]"#),
        ("web", r#"after = ["api", "db"]"#),
    ]);
    assert_eq!(ok(&text).spec.workloads["web"].after.len(), 2);
}

#[test]
fn conditions_the_dependency_cannot_meet_are_refused() {
    let text = file(&[
        ("db", ""),
        ("web", r#"after = [{ name = "db", wait = "healthy" }]"#),
    ]);
    assert_eq!(
        errors(&text),
        [
            "7:10: workload.web.after[0]: waits for \"db\" to be healthy, but it has no health \
          check; give [workload.db] a `health` check or wait for \"started\""
        ]
    );
    // The default from `wait` is checked the same way.
    let text = file(&[("db", ""), ("web", "wait = \"healthy\"\nafter = [\"db\"]")]);
    assert!(errors(&text)[0].contains("to be healthy, but it has no health check"));
    let text = file(&[
        ("job", ""),
        ("web", r#"after = [{ name = "job", wait = "completed" }]"#),
    ]);
    assert_eq!(
        errors(&text),
        [
            "7:10: workload.web.after[0]: waits for \"job\" to complete, but it restarts after \
          every exit (restart = \"always\"); give it restart = \"never\" or \"on-failure\""
        ]
    );
    let text = file(&[
        ("job", "restart = \"on-failure\""),
        ("web", r#"after = [{ name = "job", wait = "completed" }]"#),
    ]);
    assert_eq!(
        ok(&text).spec.workloads["web"].after,
        [Dependency::new("job", WaitFor::Completed)]
    );
}

#[test]
fn malformed_entries_and_wait() {
    assert_eq!(
        web_error(r#"after = "db""#),
        "3:9: workload.web.after: expected an array of workload names, found string; use an array, e.g. after = [\"db\"]"
    );
    assert_eq!(
        web_error("after = [1]"),
        "3:10: workload.web.after[0]: expected a workload name or a table { name, wait }, found integer"
    );
    assert_eq!(
        web_error(r#"after = [{ wait = "healthy" }]"#),
        "3:10: workload.web.after[0]: needs `name`, the workload to start after; e.g. { name = \"db\", wait = \"healthy\" }"
    );
    assert_eq!(
        web_error(r#"after = [{ name = "db", wiat = "healthy" }]"#),
        "3:25: workload.web.after[0].wiat: unknown key; did you mean `wait`?"
    );
    assert_eq!(
        web_error(r#"after = [{ name = "db", wait = "helthy" }]"#),
        "3:32: workload.web.after[0].wait: unknown value \"helthy\"; did you mean \"healthy\"?"
    );
    assert_eq!(
        web_error(r#"wait = "healthy""#),
        "3:1: workload.web.wait: `wait` is only meaningful with `after`; it is the condition \
         the workloads in `after` must meet"
    );
    assert_eq!(
        web_error(r#"wait = "done""#),
        "3:8: workload.web.wait: unknown value \"done\"; expected one of started, healthy, completed"
    );
    assert_eq!(
        web_error(r#"atfer = ["db"]"#),
        "3:1: workload.web.atfer: unknown key; did you mean `after`?"
    );
}
