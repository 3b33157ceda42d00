//! devfs rulesets: which device nodes a jail's `/dev` shows.
//!
//! A [`Ruleset`] renders as a `/etc/devfs.rules` section (`[name=number]` then `add ...`
//! lines, read by `/etc/rc.d/devfs` at boot) and as the `devfs rule -s N ...` commands that load
//! it into the running kernel right away: `delset` first, so loading twice is loading once.
//! warren's default ([`Ruleset::warren_default`]) hides everything and unhides the nodes a
//! service needs (the same set as the stock `devfsrules_jail` minus `bpf`).

use std::fmt::Write as _;

use warren_exec::Cmd;

use crate::{invalid, JailError};

/// The ruleset number warren's jails use unless configured otherwise (stock rulesets are 1-4).
pub const DEFAULT_RULESET: u32 = 4711;

/// One devfs rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevfsRule {
    /// `add hide`: hides every node.
    HideAll,
    /// `add path PATTERN unhide`.
    Unhide(String),
    /// `add path PATTERN hide`.
    Hide(String),
}

/// A numbered, named ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub name: String,
    pub number: u32,
    pub rules: Vec<DevfsRule>,
}

/// The nodes warren's default ruleset shows.
const UNHIDE: &[&str] = &[
    "log", "null", "zero", "crypto", "random", "urandom", "ptyp*", "ptyq*", "ptyr*", "ptys*",
    "ttyp*", "ttyq*", "ttyr*", "ttys*", "pts", "pts/*", "fd", "fd/*", "stdin", "stdout", "stderr",
];

fn validate_pattern(p: &str) -> Result<(), JailError> {
    let ok = !p.is_empty()
        && p.len() <= 255
        && !p.starts_with('/')
        && !p.split('/').any(|c| c.is_empty() || c == "..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_*?.-/[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "devfs path",
            format!("{p:?} is not a relative device pattern (letters, digits, '_.-/' and globs)"),
        ))
    }
}

impl Ruleset {
    /// Hide everything, then unhide the basic and terminal nodes.
    pub fn warren_default(number: u32) -> Ruleset {
        let mut rules = vec![DevfsRule::HideAll];
        rules.extend(UNHIDE.iter().map(|p| DevfsRule::Unhide(p.to_string())));
        Ruleset {
            name: "warren_jail".into(),
            number,
            rules,
        }
    }

    /// Checks the name, number and patterns.
    pub fn validate(&self) -> Result<(), JailError> {
        if self.name.is_empty()
            || !self.name.starts_with(|c: char| c.is_ascii_alphabetic())
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "devfs ruleset name",
                format!("{:?}: letters, digits and '_'", self.name),
            ));
        }
        if self.number == 0 || self.number > 65535 {
            return Err(invalid(
                "devfs ruleset number",
                format!("{} is not 1-65535", self.number),
            ));
        }
        for r in &self.rules {
            if let DevfsRule::Unhide(p) | DevfsRule::Hide(p) = r {
                validate_pattern(p)?;
            }
        }
        Ok(())
    }

    fn rule_words(r: &DevfsRule) -> Vec<String> {
        match r {
            DevfsRule::HideAll => vec!["add".into(), "hide".into()],
            DevfsRule::Unhide(p) => vec!["add".into(), "path".into(), p.clone(), "unhide".into()],
            DevfsRule::Hide(p) => vec!["add".into(), "path".into(), p.clone(), "hide".into()],
        }
    }

    /// The `/etc/devfs.rules` section; patterns with glob characters in single quotes.
    pub fn render_rules_file(&self) -> Result<String, JailError> {
        self.validate()?;
        let mut s = format!("[{}={}]\n", self.name, self.number);
        for r in &self.rules {
            let words: Vec<String> = Self::rule_words(r)
                .into_iter()
                .map(|w| {
                    if w.contains(['*', '?', '[']) {
                        format!("'{w}'")
                    } else {
                        w
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", words.join(" "));
        }
        Ok(s)
    }

    /// `devfs rule -s N delset`, then one `devfs rule -s N add ...` per rule.
    pub fn load_cmds(&self) -> Result<Vec<Cmd>, JailError> {
        self.validate()?;
        let n = self.number.to_string();
        let mut cmds = vec![Cmd::new("devfs").args(["rule", "-s", &n, "delset"])];
        for r in &self.rules {
            cmds.push(
                Cmd::new("devfs")
                    .args(["rule", "-s", &n])
                    .args(Self::rule_words(r)),
            );
        }
        Ok(cmds)
    }

    /// `devfs -m MOUNTPOINT rule -s N applyset`: applies the ruleset to a mounted devfs.
    pub fn apply_cmd(&self, mountpoint: &std::path::Path) -> Result<Cmd, JailError> {
        self.validate()?;
        Ok(Cmd::new("devfs").arg("-m").arg(mountpoint).args([
            "rule",
            "-s",
            &self.number.to_string(),
            "applyset",
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ruleset_renders_as_file_and_commands() {
        let r = Ruleset::warren_default(DEFAULT_RULESET);
        let text = r.render_rules_file().unwrap();
        assert!(
            text.starts_with("[warren_jail=4711]\nadd hide\nadd path log unhide\n"),
            "{text}"
        );
        assert!(text.contains("add path 'pts/*' unhide\n"), "{text}");
        assert_eq!(text.lines().count(), 2 + UNHIDE.len());
        let cmds: Vec<String> = r
            .load_cmds()
            .unwrap()
            .iter()
            .map(|c| c.argv_string())
            .collect();
        assert_eq!(cmds[0], "devfs rule -s 4711 delset");
        assert_eq!(cmds[1], "devfs rule -s 4711 add hide");
        assert_eq!(cmds[2], "devfs rule -s 4711 add path log unhide");
        assert_eq!(
            cmds.last().unwrap(),
            "devfs rule -s 4711 add path stderr unhide"
        );
        assert_eq!(
            r.apply_cmd(std::path::Path::new("/j/dev"))
                .unwrap()
                .argv_string(),
            "devfs -m /j/dev rule -s 4711 applyset"
        );
    }

    #[test]
    fn hostile_rulesets_are_refused() {
        let mut r = Ruleset::warren_default(5);
        r.rules.push(DevfsRule::Unhide("../../etc".into()));
        assert!(r
            .load_cmds()
            .unwrap_err()
            .to_string()
            .contains("devfs path"));
        let mut r = Ruleset::warren_default(5);
        r.rules
            .push(DevfsRule::Unhide("mem unhide; add path kmem".into()));
        assert!(r.render_rules_file().is_err());
        let mut r = Ruleset::warren_default(0);
        assert!(r.load_cmds().unwrap_err().to_string().contains("number"));
        r.number = 9;
        r.name = "x]\n[y".into();
        assert!(r
            .render_rules_file()
            .unwrap_err()
            .to_string()
            .contains("name"));
    }
}
