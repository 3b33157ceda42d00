//! The bench's targets, in one table, and the check of what a run measured against them.
//!
//! Every ratio or figure the bench compares with a target is recorded under its key
//! ([`Results::record`], which also gives the "(target <= 1.3: met)" text printed next to
//! it); [`Results::summary`] lists each measured value against its target at the end, and
//! `cargo xtask bench --check` fails when any of them missed. Targets whose part did not run
//! (or whose baseline, like podman, is not installed) are listed as not measured and do not
//! fail the check.

use std::fmt::Write;

/// Which side of its bound a value must stay on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn met(self, value: f64) -> bool {
        match self {
            Bound::AtMost(b) => value <= b,
            Bound::AtLeast(b) => value >= b,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::AtMost(b) => write!(f, "<= {b}"),
            Bound::AtLeast(b) => write!(f, ">= {b}"),
        }
    }
}

/// One target: its key, what is measured, and the bound.
#[derive(Debug)]
pub struct Target {
    pub key: &'static str,
    pub what: &'static str,
    pub bound: Bound,
}

/// Every target of `cargo xtask bench`.
pub const TARGETS: &[Target] = &[
    Target {
        key: "run",
        what: "warren run --rm / runc run (time)",
        bound: Bound::AtMost(1.3),
    },
    Target {
        key: "run-podman",
        what: "podman run --rm / warren run --rm (time)",
        bound: Bound::AtLeast(3.0),
    },
    Target {
        key: "snapshot",
        what: "snapshot of 1 GiB / of 10 MiB (time)",
        bound: Bound::AtMost(1.5),
    },
    Target {
        key: "clone",
        what: "clone of 1 GiB / of 10 MiB (time)",
        bound: Bound::AtMost(1.5),
    },
    Target {
        key: "export",
        what: "warren export / btrfs send | zstd (throughput)",
        bound: Bound::AtLeast(0.8),
    },
    Target {
        key: "import",
        what: "warren import / zstd -d | btrfs receive (throughput)",
        bound: Bound::AtLeast(0.8),
    },
    Target {
        key: "idle-rss",
        what: "idle daemon RSS with 50 workloads (MB)",
        bound: Bound::AtMost(30.0),
    },
    Target {
        key: "shim-pss",
        what: "shim PSS, median (MB)",
        bound: Bound::AtMost(2.0),
    },
    Target {
        key: "vm-boot",
        what: "warren apply → VM agent greeting / bare QEMU (time)",
        bound: Bound::AtMost(1.1),
    },
];

/// The target under `key`. Keys are fixed in the bench's code, so an unknown one is a bug.
pub fn target(key: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("no bench target {key:?}"))
}

/// What one bench run measured, by target key.
#[derive(Debug, Default)]
pub struct Results {
    measured: Vec<(&'static str, f64)>,
}

impl Results {
    /// Records `value` for the target `key`; the text printed next to it, such as
    /// "(target <= 1.3: met)".
    pub fn record(&mut self, key: &str, value: f64) -> String {
        let t = target(key);
        self.measured.retain(|(k, _)| *k != t.key);
        self.measured.push((t.key, value));
        format!("(target {}: {})", t.bound, verdict(t.bound.met(value)))
    }

    /// The targets measured and missed.
    pub fn missed(&self) -> Vec<&'static Target> {
        TARGETS
            .iter()
            .filter(|t| self.value(t.key).is_some_and(|v| !t.bound.met(v)))
            .collect()
    }

    fn value(&self, key: &str) -> Option<f64> {
        self.measured
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// Every target with its measured value (or "not measured") and verdict, one a line.
    pub fn summary(&self) -> String {
        let mut s = String::from("\ntargets\n");
        for t in TARGETS {
            let (value, verdict_text) = match self.value(t.key) {
                Some(v) => (format!("{v:.2}"), verdict(t.bound.met(v))),
                None => ("-".to_string(), "not measured"),
            };
            let _ = writeln!(
                s,
                "  {:<52} {:>8}  target {:<7} {}",
                t.what,
                value,
                t.bound.to_string(),
                verdict_text
            );
        }
        s
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        for (i, t) in TARGETS.iter().enumerate() {
            assert!(
                TARGETS[i + 1..].iter().all(|u| u.key != t.key),
                "{} twice",
                t.key
            );
        }
    }

    #[test]
    fn a_ratio_past_its_bound_is_missed() {
        let mut r = Results::default();
        assert_eq!(r.record("run", 1.29), "(target <= 1.3: met)");
        assert!(r.missed().is_empty());
        assert_eq!(r.record("run", 1.31), "(target <= 1.3: MISSED)");
        assert_eq!(r.missed().len(), 1);
        assert_eq!(r.missed()[0].key, "run");
        assert_eq!(r.record("export", 0.79), "(target >= 0.8: MISSED)");
        r.record("run", 1.2);
        assert_eq!(
            r.missed().iter().map(|t| t.key).collect::<Vec<_>>(),
            ["export"]
        );
        assert_eq!(r.record("idle-rss", 30.0), "(target <= 30: met)");
    }

    #[test]
    fn the_summary_lists_every_target_measured_or_not() {
        let mut r = Results::default();
        r.record("run", 1.7);
        r.record("idle-rss", 12.5);
        let s = r.summary();
        assert_eq!(
            s.lines().filter(|l| l.starts_with("  ")).count(),
            TARGETS.len()
        );
        let run = s.lines().find(|l| l.contains("runc run")).unwrap();
        assert!(run.contains("1.70") && run.contains("<= 1.3") && run.ends_with("MISSED"));
        let rss = s.lines().find(|l| l.contains("RSS")).unwrap();
        assert!(rss.contains("12.50") && rss.ends_with("met"), "{rss}");
        let clone = s.lines().find(|l| l.contains("clone")).unwrap();
        assert!(clone.ends_with("not measured"));
        assert!(r.missed().iter().all(|t| t.key == "run"));
    }

    #[test]
    #[should_panic(expected = "no bench target")]
    fn an_unknown_key_is_a_bug() {
        Results::default().record("nonesuch", 1.0);
    }
}
