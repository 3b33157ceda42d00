//! Resource limits of jails as rctl(8) rules.
//!
//! A rule is `SUBJECT:SUBJECT-ID:RESOURCE:ACTION[=AMOUNT[/PER]]`. warren's `Resources` become
//! `deny` rules on the jail: `memory` → `memoryuse` (bytes), `cpus` → `pcpu` (percent of one
//! CPU, rounded up: 0.5 cores is 50, 2 cores 200), `pids` → `maxproc`. They are added with
//! `rctl -a RULE` and all removed with `rctl -r jail:NAME`.
//!
//! [`parse_rules`] reads `rctl` and `rctl -h` listings (one rule a line; `-h` writes amounts
//! the way humanize_number(3) does: `512M`, `1.5G`), [`parse_usage`] reads `rctl -u` /
//! `rctl -h -u` (`resource=amount` lines). Hostile or malformed lines are errors naming the
//! line.

use std::collections::BTreeMap;
use std::fmt;

use warren_exec::Cmd;
use warren_model::Resources;

use crate::conf::validate_name;
use crate::JailError;

/// Subjects rctl knows.
pub const SUBJECTS: &[&str] = &["process", "user", "loginclass", "jail"];

/// Resources rctl knows (rctl(8), FreeBSD 13–15).
pub const RESOURCES: &[&str] = &[
    "cputime",
    "datasize",
    "stacksize",
    "coredumpsize",
    "memoryuse",
    "memorylocked",
    "maxproc",
    "openfiles",
    "vmemoryuse",
    "pseudoterminals",
    "swapuse",
    "nthr",
    "msgqqueued",
    "msgqsize",
    "nmsgq",
    "nsem",
    "nsemop",
    "nshm",
    "shmsize",
    "wallclock",
    "pcpu",
    "readbps",
    "writebps",
    "readiops",
    "writeiops",
];

/// Actions other than the `sig*` family.
const ACTIONS: &[&str] = &["deny", "log", "devctl", "throttle"];

/// One rctl rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub subject: String,
    pub subject_id: String,
    pub resource: String,
    pub action: String,
    pub amount: Option<u64>,
    /// The `/per` subject, when it differs from the rule's own.
    pub per: Option<String>,
}

impl Rule {
    /// A `deny` rule on jail `name`.
    pub fn jail_deny(name: &str, resource: &str, amount: u64) -> Rule {
        Rule {
            subject: "jail".into(),
            subject_id: name.into(),
            resource: resource.into(),
            action: "deny".into(),
            amount: Some(amount),
            per: None,
        }
    }

    /// Checks every part; the error names the field.
    pub fn validate(&self) -> Result<(), JailError> {
        if !SUBJECTS.contains(&self.subject.as_str()) {
            return Err(crate::invalid(
                "rctl subject",
                format!("{:?} is not one of {SUBJECTS:?}", self.subject),
            ));
        }
        if self.subject_id.is_empty()
            || self
                .subject_id
                .chars()
                .any(|c| matches!(c, ':' | '=' | '/' | ',') || c.is_control() || c.is_whitespace())
        {
            return Err(crate::invalid(
                "rctl subject id",
                format!("{:?} cannot be used in a rule", self.subject_id),
            ));
        }
        if !RESOURCES.contains(&self.resource.as_str()) {
            return Err(crate::invalid(
                "rctl resource",
                format!("{:?} is not an rctl resource", self.resource),
            ));
        }
        let sig = self
            .action
            .strip_prefix("sig")
            .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase()));
        if !ACTIONS.contains(&self.action.as_str()) && !sig {
            return Err(crate::invalid(
                "rctl action",
                format!(
                    "{:?} is not deny, log, devctl, throttle or sigNAME",
                    self.action
                ),
            ));
        }
        if let Some(p) = &self.per {
            if !SUBJECTS.contains(&p.as_str()) {
                return Err(crate::invalid(
                    "rctl per",
                    format!("{p:?} is not one of {SUBJECTS:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.subject, self.subject_id, self.resource, self.action
        )?;
        if let Some(a) = self.amount {
            write!(f, "={a}")?;
            if let Some(p) = &self.per {
                write!(f, "/{p}")?;
            }
        }
        Ok(())
    }
}

/// The rules limiting jail `name` to `r`, in a fixed order (memoryuse, pcpu, maxproc).
pub fn rules_for(name: &str, r: &Resources) -> Result<Vec<Rule>, JailError> {
    validate_name(name)?;
    let mut out = Vec::new();
    if let Some(m) = r.memory {
        if m == 0 {
            return Err(crate::invalid("resources.memory", "0 bytes"));
        }
        out.push(Rule::jail_deny(name, "memoryuse", m));
    }
    if let Some(c) = r.cpus {
        if !c.is_finite() || c <= 0.0 || c > 1_000_000.0 {
            return Err(crate::invalid(
                "resources.cpus",
                format!("{c} is not a positive number of cores"),
            ));
        }
        // Rounded to a millionth first, so 16.94 cores (1694.0000000000002 in binary) is 1694.
        let pcpu = ((c * 100.0 * 1e6).round() / 1e6).ceil() as u64;
        out.push(Rule::jail_deny(name, "pcpu", pcpu));
    }
    if let Some(p) = r.pids {
        if p == 0 {
            return Err(crate::invalid("resources.pids", "0 processes"));
        }
        out.push(Rule::jail_deny(name, "maxproc", p));
    }
    Ok(out)
}

/// `rctl -a RULE`.
pub fn add_cmd(rule: &Rule) -> Result<Cmd, JailError> {
    rule.validate()?;
    Ok(Cmd::new("rctl").args(["-a".to_string(), rule.to_string()]))
}

/// `rctl -r jail:NAME`: removes every rule of the jail (succeeds when there is none).
pub fn remove_jail_cmd(name: &str) -> Result<Cmd, JailError> {
    validate_name(name)?;
    Ok(Cmd::new("rctl").args(["-r".to_string(), format!("jail:{name}")]))
}

/// `rctl -h -u jail:NAME`: the jail's current usage, humanized.
pub fn usage_cmd(name: &str) -> Result<Cmd, JailError> {
    validate_name(name)?;
    Ok(Cmd::new("rctl").args(["-h".to_string(), "-u".to_string(), format!("jail:{name}")]))
}

/// `rctl`: every rule on the host.
pub fn list_cmd() -> Cmd {
    Cmd::new("rctl")
}

fn line_err(line: usize, reason: impl Into<String>) -> JailError {
    JailError::Output {
        command: "rctl".into(),
        reason: format!("line {line}: {}", reason.into()),
    }
}

/// Parses an amount: a plain number, or a humanized one (`512M`, `1.5G`, `100k`; binary
/// multiples as humanize_number(3) and expand_number(3) use).
pub fn parse_amount(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        c if c.is_ascii_digit() => (s, 1u64),
        c => {
            let exp = match c.to_ascii_uppercase() {
                'B' => 0,
                'K' => 1,
                'M' => 2,
                'G' => 3,
                'T' => 4,
                'P' => 5,
                'E' => 6,
                _ => return None,
            };
            (&s[..s.len() - 1], 1024u64.pow(exp))
        }
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    match num.split_once('.') {
        None => num.parse::<u64>().ok()?.checked_mul(mult),
        Some((int, frac)) => {
            if int.is_empty() || frac.is_empty() || frac.contains('.') || mult == 1 {
                return None;
            }
            let whole = int.parse::<u64>().ok()?.checked_mul(mult)?;
            let f: f64 = format!("0.{frac}").parse().ok()?;
            whole.checked_add((f * mult as f64).round() as u64)
        }
    }
}

/// Parses one rule as `rctl` prints it.
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let [subject, id, resource, rest] = parts.as_slice() else {
        return Err(format!(
            "{text:?}: expected SUBJECT:ID:RESOURCE:ACTION[=AMOUNT[/PER]]"
        ));
    };
    let (action, amount, per) = match rest.split_once('=') {
        None => (*rest, None, None),
        Some((a, v)) => {
            let (amt, per) = match v.split_once('/') {
                Some((amt, p)) => (amt, Some(p.to_string())),
                None => (v, None),
            };
            let n = parse_amount(amt).ok_or_else(|| format!("{amt:?} is not an amount"))?;
            (a, Some(n), per)
        }
    };
    let rule = Rule {
        subject: subject.to_string(),
        subject_id: id.to_string(),
        resource: resource.to_string(),
        action: action.to_string(),
        amount,
        per,
    };
    rule.validate().map_err(|e| e.to_string())?;
    Ok(rule)
}

/// Parses an `rctl` / `rctl -h` listing.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, JailError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_rule(l).map_err(|e| line_err(i + 1, e)))
        .collect()
}

/// The rules of jail `name` in a listing.
pub fn jail_rules(rules: &[Rule], name: &str) -> Vec<Rule> {
    rules
        .iter()
        .filter(|r| r.subject == "jail" && r.subject_id == name)
        .cloned()
        .collect()
}

/// Parses `rctl -u` / `rctl -h -u` output: `resource=amount` a line.
pub fn parse_usage(text: &str) -> Result<BTreeMap<String, u64>, JailError> {
    let mut out = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let (k, v) = l
            .trim()
            .split_once('=')
            .ok_or_else(|| line_err(i + 1, format!("{l:?}: expected RESOURCE=AMOUNT")))?;
        if !RESOURCES.contains(&k) {
            return Err(line_err(i + 1, format!("{k:?} is not an rctl resource")));
        }
        let n =
            parse_amount(v).ok_or_else(|| line_err(i + 1, format!("{v:?} is not an amount")))?;
        if out.insert(k.to_string(), n).is_some() {
            return Err(line_err(i + 1, format!("{k} given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_deny_rules() {
        let r = Resources {
            memory: Some(512 << 20),
            cpus: Some(0.5),
            pids: Some(256),
            disk: Some(1 << 30),
        };
        let rules: Vec<String> = rules_for("warren-web", &r)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            rules,
            [
                "jail:warren-web:memoryuse:deny=536870912",
                "jail:warren-web:pcpu:deny=50",
                "jail:warren-web:maxproc:deny=256"
            ]
        );
        let two = Resources {
            cpus: Some(1.999),
            ..Resources::default()
        };
        assert_eq!(rules_for("w", &two).unwrap()[0].amount, Some(200));
        assert!(rules_for("w", &Resources::default()).unwrap().is_empty());
        assert_eq!(
            add_cmd(&Rule::jail_deny("w", "maxproc", 5))
                .unwrap()
                .argv_string(),
            "rctl -a jail:w:maxproc:deny=5"
        );
        assert_eq!(
            remove_jail_cmd("w").unwrap().argv_string(),
            "rctl -r jail:w"
        );
        assert_eq!(usage_cmd("w").unwrap().argv_string(), "rctl -h -u jail:w");
    }

    #[test]
    fn bad_resources_and_rules_are_refused() {
        for r in [
            Resources {
                memory: Some(0),
                ..Resources::default()
            },
            Resources {
                cpus: Some(f64::NAN),
                ..Resources::default()
            },
            Resources {
                cpus: Some(-1.0),
                ..Resources::default()
            },
            Resources {
                pids: Some(0),
                ..Resources::default()
            },
        ] {
            assert!(rules_for("w", &r).is_err(), "{r:?}");
        }
        assert!(rules_for("a:b", &Resources::default()).is_err());
        for bad in [
            "jail:w:memoryuse",
            "jail:w:memoryuse:deny=12Q",
            "jail:w:memoryuse:deny=-1",
            "jail:w:coffee:deny=1",
            "prison:w:memoryuse:deny=1",
            "jail:w:memoryuse:explode=1",
            "jail:w:memoryuse:deny=1/galaxy",
            "jail:w:memoryuse:deny=99999999999999999999",
            "jail::memoryuse:deny=1",
            "jail:w:memoryuse:deny=1.5",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
        let e = parse_rules("jail:w:maxproc:deny=1\n\njail:w:nope:deny=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("nope"), "{e}");
        let e = parse_usage("maxproc=1\nmaxproc=2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("512M"), Some(512 << 20));
        assert_eq!(parse_amount("1.5G"), Some(3 << 29));
        assert_eq!(parse_amount("100k"), Some(102400));
        assert_eq!(parse_amount("0"), Some(0));
        assert_eq!(parse_amount("16E"), None);
        assert_eq!(parse_amount(""), None);
        assert_eq!(parse_amount("M"), None);
    }
}
