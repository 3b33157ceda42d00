//! Start order: a workload's `after` (the workloads it starts after, as names or
//! `{ name, wait }` tables) and `wait` (the default condition of its entries), and the
//! file-wide checks over them: every name declared, no workload after itself, no cycle, a
//! `healthy` wait only on a workload with a health check and a `completed` wait only on one
//! that stays down after it exits.

use super::*;
use crate::spec::{Dependency, RestartPolicy, WaitFor};

/// One well-formed entry of a workload's `after`, kept for the file-wide checks.
pub(super) struct AfterUse {
    /// The workload that waits.
    pub(super) workload: String,
    /// The entry's path (`workload.web.after[1]`) and offset.
    pub(super) path: Path,
    pub(super) offset: usize,
    pub(super) dependency: Dependency,
}

/// An `after` entry as written: its path and offset, the name, and its own `wait` if given.
pub(super) type AfterEntry = (Path, usize, String, Option<WaitFor>);

const AFTER_EXAMPLE: &str = r#"; e.g. after = ["db", { name = "migrate", wait = "completed" }]"#;

impl Walker<'_> {
    /// `after = ["db", { name = "migrate", wait = "completed" }]`: the well-formed entries,
    /// each named once.
    pub(super) fn after(&mut self, path: &Path, value: &Value<'_>) -> Vec<AfterEntry> {
        let DeValue::Array(items) = value.get_ref() else {
            let hint = if matches!(value.get_ref(), DeValue::String(_)) {
                r#"; use an array, e.g. after = ["db"]"#
            } else {
                AFTER_EXAMPLE
            };
            self.wrong_type(path, value, "an array of workload names", hint);
            return Vec::new();
        };
        let mut entries: Vec<AfterEntry> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let entry = match item.get_ref() {
                DeValue::String(s) => Some((s.to_string(), None)),
                DeValue::Table(table) => self.after_table(&ipath, item, table),
                _ => {
                    self.wrong_type(
                        &ipath,
                        item,
                        "a workload name or a table { name, wait }",
                        "",
                    );
                    None
                }
            };
            let Some((name, wait)) = entry else { continue };
            if entries.iter().any(|(_, _, n, _)| *n == name) {
                self.error(
                    item.span().start,
                    &ipath,
                    format!("{name:?} is listed twice"),
                );
                continue;
            }
            entries.push((ipath, item.span().start, name, wait));
        }
        entries
    }

    /// `{ name = "migrate", wait = "completed" }`.
    fn after_table(
        &mut self,
        path: &Path,
        item: &Value<'_>,
        table: &DeTable<'_>,
    ) -> Option<(String, Option<WaitFor>)> {
        let mut name = None;
        let mut wait = None;
        let mut ok = true;
        let mut misspelled = false;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let kpath = path.key(field);
            self.record(&kpath, k, v);
            match field {
                "name" => {
                    name = self.string(&kpath, v).map(str::to_string);
                    ok &= name.is_some();
                }
                "wait" => {
                    wait = self.one_of::<WaitFor>(&kpath, v);
                    ok &= wait.is_some();
                }
                _ => {
                    self.unknown_key(k, &kpath, AFTER_KEYS);
                    misspelled = true;
                    ok = false;
                }
            }
        }
        if name.is_none() && !misspelled && !table.iter().any(|(k, _)| k.get_ref() == "name") {
            self.error(
                item.span().start,
                path,
                r#"needs `name`, the workload to start after; e.g. { name = "db", wait = "healthy" }"#,
            );
        }
        match (ok, name) {
            (true, Some(n)) => Some((n, wait)),
            _ => None,
        }
    }

    /// A workload's `after` entries with `wait` (at `wait_at`, its default) applied, recorded
    /// for the file-wide checks; `wait` without `after` is refused.
    pub(super) fn start_order(
        &mut self,
        workload: &str,
        path: &Path,
        after: Option<Vec<AfterEntry>>,
        wait: Option<(usize, Option<WaitFor>)>,
    ) -> Vec<Dependency> {
        let default = wait.and_then(|(_, w)| w).unwrap_or_default();
        let Some(entries) = after else {
            // (A malformed `wait` is reported already.)
            if let Some((at, Some(_))) = wait {
                self.error(
                    at,
                    &path.key("wait"),
                    "`wait` is only meaningful with `after`; it is the condition the workloads \
                     in `after` must meet",
                );
            }
            return Vec::new();
        };
        let mut deps = Vec::new();
        for (epath, offset, name, own) in entries {
            let dependency = Dependency::new(&name, own.unwrap_or(default));
            deps.push(dependency.clone());
            self.after_uses.push(AfterUse {
                workload: workload.to_string(),
                path: epath,
                offset,
                dependency,
            });
        }
        deps
    }

    /// The checks of every `after` entry against the whole file: `declared` holds every
    /// workload name of the file (valid or not), `workloads` the well-formed ones.
    pub(super) fn check_order(
        &mut self,
        declared: &[String],
        workloads: &BTreeMap<String, WorkloadSpec>,
    ) {
        let uses = std::mem::take(&mut self.after_uses);
        let candidates: Vec<&str> = declared.iter().map(String::as_str).collect();
        // The edges that name a declared workload other than the dependent itself.
        let mut edges: Vec<&AfterUse> = Vec::new();
        for u in &uses {
            let dep = &u.dependency;
            if dep.name == u.workload {
                self.error(
                    u.offset,
                    &u.path,
                    format!("workload {:?} cannot start after itself", u.workload),
                );
                continue;
            }
            if !declared.contains(&dep.name) {
                let others: Vec<&str> = candidates
                    .iter()
                    .copied()
                    .filter(|n| *n != u.workload)
                    .collect();
                let hint = match suggest::did_you_mean(&dep.name, &others) {
                    Some(s) => format!("; did you mean {s:?}?"),
                    None if others.is_empty() => "; the file declares no other workload".into(),
                    None => format!("; the file declares {}", others.join(", ")),
                };
                self.error(
                    u.offset,
                    &u.path,
                    format!("no workload named {:?} in this file{hint}", dep.name),
                );
                continue;
            }
            edges.push(u);
            // The condition against the dependency (when it parsed: otherwise its own errors
            // already fail the file).
            let Some(target) = workloads.get(&dep.name) else {
                continue;
            };
            match dep.wait {
                WaitFor::Healthy if target.health.is_none() => self.error(
                    u.offset,
                    &u.path,
                    format!(
                        "waits for {:?} to be healthy, but it has no health check; give \
                         [workload.{}] a `health` check or wait for \"started\"",
                        dep.name, dep.name
                    ),
                ),
                WaitFor::Completed if target.restart == RestartPolicy::Always => self.error(
                    u.offset,
                    &u.path,
                    format!(
                        "waits for {:?} to complete, but it restarts after every exit \
                         (restart = \"always\"); give it restart = \"never\" or \"on-failure\"",
                        dep.name
                    ),
                ),
                _ => {}
            }
        }
        self.check_cycles(&edges);
    }

    /// Reports every cycle of `after` edges once, at the entry that closes it (in file
    /// order), naming the whole cycle (`a -> b -> a`).
    fn check_cycles(&mut self, edges: &[&AfterUse]) {
        let mut graph: BTreeMap<&str, Vec<&AfterUse>> = BTreeMap::new();
        let mut by_offset: Vec<&AfterUse> = edges.to_vec();
        by_offset.sort_by_key(|u| u.offset);
        for u in &by_offset {
            graph.entry(u.workload.as_str()).or_default().push(u);
        }
        // Depth-first from each workload in the order it first appears; 1 = on the current
        // path, 2 = done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut reported: Vec<(Path, usize, String)> = Vec::new();
        for u in &by_offset {
            let start = u.workload.as_str();
            if state.contains_key(start) {
                continue;
            }
            let mut stack: Vec<&str> = Vec::new();
            visit(start, &graph, &mut state, &mut stack, &mut reported);
        }
        for (path, offset, cycle) in reported {
            self.error(offset, &path, format!("start order has a cycle: {cycle}"));
        }

        fn visit<'a>(
            node: &'a str,
            graph: &BTreeMap<&'a str, Vec<&'a AfterUse>>,
            state: &mut BTreeMap<&'a str, u8>,
            stack: &mut Vec<&'a str>,
            reported: &mut Vec<(Path, usize, String)>,
        ) {
            state.insert(node, 1);
            stack.push(node);
            for edge in graph.get(node).into_iter().flatten() {
                let next = edge.dependency.name.as_str();
                match state.get(next) {
                    Some(1) => {
                        let from = stack.iter().position(|n| *n == next).unwrap_or(0);
                        let mut names: Vec<&str> = stack[from..].to_vec();
                        names.push(next);
                        reported.push((edge.path.clone(), edge.offset, names.join(" -> ")));
                    }
                    Some(_) => {}
                    None => visit(next, graph, state, stack, reported),
                }
            }
            stack.pop();
            state.insert(node, 2);
        }
    }
}
