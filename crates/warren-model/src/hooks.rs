//! Event hooks: what a workload asks warren to do when something happens to it, and the pure
//! schedule arithmetic (cron expressions and fixed intervals) behind `on = "schedule"`.
//!
//! ```toml
//! hooks = [
//!   { on = "crash", exec = ["sh", "-c", "cp /data/core /data/last-core"], timeout = "30s" },
//!   { on = "health", webhook = "http://192.0.2.1:9000/alerts" },
//!   { on = "schedule", cron = "0 3 * * *", snapshot = "nightly" },
//!   { on = "schedule", every = "15m", exec = ["/usr/local/bin/tidy"] },
//!   { on = "schedule", cron = "30 2 * * *", job = ["sh", "-c", "tar czf /data/backup.tgz /data/db"] },
//!   { on = "exit", host = ["/usr/local/bin/notify", "web"] },   # needs --allow-host-hooks
//!   { on = "stop", restart = true },
//!   { on = "change", path = "/data/conf", exec = ["nginx", "-s", "reload"] },
//!   { on = "crash", scheme = "(snapshot! w \"crashed\")" },
//! ]
//! ```

use serde::{Deserialize, Serialize};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HookEvent {
    /// The main process started.
    Start,
    /// The workload was stopped deliberately.
    Stop,
    /// The main process exited on its own (any code).
    Exit,
    /// The main process exited on its own with a non-zero code, a signal or the memory limit.
    Crash,
    /// The health status changed.
    Health,
    /// On a schedule.
    Schedule,
    /// A file under `path` (inside the workload) changed.
    Change,
}

pub const HOOK_EVENTS: &[(&str, HookEvent)] = &[
    ("start", HookEvent::Start),
    ("stop", HookEvent::Stop),
    ("exit", HookEvent::Exit),
    ("crash", HookEvent::Crash),
    ("health", HookEvent::Health),
    ("schedule", HookEvent::Schedule),
    ("change", HookEvent::Change),
];

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HookAction {
    /// Restart the workload.
    Restart,
    /// Run a command inside the workload.
    Exec(Vec<String>),
    /// Run a command on the host (the daemon must be started with `--allow-host-hooks`).
    Host(Vec<String>),
    /// POST the event as JSON to an http:// URL.
    Webhook(String),
    /// Snapshot the workload; the label is `PREFIX-<unix time>`.
    Snapshot(String),
    /// Evaluate a Scheme expression in the live REPL image, with `w` bound to the workload's
    /// name and `ev` to the event message.
    Scheme(String),
    /// Run a command in an ephemeral container from the workload's world (or image, or recipe
    /// build) with its data dataset mounted, removed when it exits (scheduled jobs).
    Job(Vec<String>),
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// A five-field cron expression, in UTC.
    Cron(String),
    /// Every N seconds.
    Every(u64),
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct Hook {
    pub on: HookEvent,
    pub action: HookAction,
    /// Only for `on = "schedule"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Only for `on = "change"`: the watched path inside the workload (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub timeout_secs: u64,
}

pub const DEFAULT_HOOK_TIMEOUT: u64 = 60;

/// A parsed cron expression: minute, hour, day of month, month, day of week (0 or 7 = Sunday).
/// Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of
/// those. As in cron, when both day fields are restricted a day matching either runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    dom_any: bool,
    dow_any: bool,
}

fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; hi as usize + 1];
    let any = text == "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: step {s:?} must be a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let num = |x: &str| {
                x.parse::<u32>()
                    .map_err(|_| format!("{name}: {x:?} is not a number"))
            };
            (num(a)?, num(b)?)
        } else {
            let n = range
                .parse::<u32>()
                .map_err(|_| format!("{name}: {range:?} is not a number, range or *"))?;
            (n, if step > 1 { hi } else { n })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {part:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            set[v as usize] = true;
            v += step;
        }
    }
    Ok((set, any))
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "a cron expression has five fields (minute hour day-of-month month day-of-week), found {} in {expr:?}",
                parts.len()
            ));
        }
        let (minutes, _) = field(parts[0], "minute", 0, 59)?;
        let (hours, _) = field(parts[1], "hour", 0, 23)?;
        let (days, dom_any) = field(parts[2], "day of month", 1, 31)?;
        let (months, _) = field(parts[3], "month", 1, 12)?;
        let (mut weekdays, dow_any) = field(parts[4], "day of week", 0, 7)?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            dom_any,
            dow_any,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days[day as usize];
        let dow = self.weekdays[weekday as usize];
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after` (unix seconds, UTC), as unix seconds.
    /// Searches up to five years ahead (an impossible date such as Feb 30 gives `None`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut t = (after.div_euclid(60) + 1) * 60;
        let limit = after + 5 * 366 * 86_400;
        while t <= limit {
            let (y, mo, d) = civil_from_days(t.div_euclid(86_400));
            let secs = t.rem_euclid(86_400);
            let (h, mi) = ((secs / 3600) as u32, ((secs % 3600) / 60) as u32);
            let weekday = ((t.div_euclid(86_400) + 4).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday
            if !self.months[mo as usize] {
                // Jump to the first day of the next month.
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                t = days_from_civil(ny, nm, 1) * 86_400;
                continue;
            }
            if !self.day_matches(d, weekday) {
                t = (t.div_euclid(86_400) + 1) * 86_400;
                continue;
            }
            if !self.hours[h as usize] {
                t = (t.div_euclid(3600) + 1) * 3600;
                continue;
            }
            if !self.minutes[mi as usize] {
                t += 60;
                continue;
            }
            return Some(t);
        }
        None
    }
}

impl Schedule {
    /// The next time (unix seconds) strictly after `after`; `anchor` is when an interval
    /// schedule started counting.
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => {
                let n = (*n).max(1) as i64;
                let k = (after - anchor).div_euclid(n) + 1;
                Some(anchor + k * n)
            }
            Schedule::Cron(expr) => Cron::parse(expr).ok()?.next_after(after),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1000, 0, 1, 59, 365, 10_957, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn cron_next_times() {
        let c = Cron::parse("0 3 * * *").unwrap();
        let t = at(2026, 11, 22, 10, 0);
        assert_eq!(c.next_after(t), Some(at(2026, 11, 23, 3, 0)));
        assert_eq!(
            c.next_after(at(2026, 11, 23, 2, 59)),
            Some(at(2026, 11, 23, 3, 0))
        );
        assert_eq!(
            c.next_after(at(2026, 11, 23, 3, 0)),
            Some(at(2026, 11, 24, 3, 0))
        );
        let every5 = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every5.next_after(at(2026, 1, 1, 0, 3)),
            Some(at(2026, 1, 1, 0, 5))
        );
        // 2026-11-22 is a Sunday; Monday 9:30.
        let monday = Cron::parse("30 9 * * 1").unwrap();
        assert_eq!(
            monday.next_after(at(2026, 11, 22, 12, 0)),
            Some(at(2026, 11, 23, 9, 30))
        );
        let sunday7 = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday7.next_after(at(2026, 11, 23, 0, 0)),
            Some(at(2026, 11, 29, 0, 0))
        );
        // New year, leap day, month lists and ranges.
        let ny = Cron::parse("0 0 1 1 *").unwrap();
        assert_eq!(
            ny.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2027, 1, 1, 0, 0))
        );
        let leap = Cron::parse("0 12 29 2 *").unwrap();
        assert_eq!(
            leap.next_after(at(2026, 3, 1, 0, 0)),
            Some(at(2028, 2, 29, 12, 0))
        );
        let q = Cron::parse("15 8-10/2 1,15 1-12/3 *").unwrap();
        assert_eq!(
            q.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2027, 1, 1, 8, 15))
        );
        // Either day field when both are restricted.
        let either = Cron::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            either.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2026, 11, 27, 0, 0))
        );
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(0), None);
    }

    #[test]
    fn cron_errors_name_the_field() {
        for (expr, want) in [
            ("* * * *", "five fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "not a number"),
            ("5-1 * * * *", "outside"),
        ] {
            let e = Cron::parse(expr).unwrap_err();
            assert!(e.contains(want), "{expr}: {e}");
        }
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let s = Schedule::Every(10);
        assert_eq!(s.next_after(100, 100), Some(110));
        assert_eq!(s.next_after(109, 100), Some(110));
        assert_eq!(s.next_after(110, 100), Some(120));
    }
}
