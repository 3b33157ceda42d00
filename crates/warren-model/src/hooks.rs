//! Event hooks: what a workload asks warren to do when something happens to it, and the pure
//! schedule arithmetic (cron expressions and fixed intervals) behind `on = "schedule"`.
//!
//! ```toml
//! hooks = [
//!   { on = "crash", exec = ["sh", "-c", "cp /data/core /data/last-core"], timeout = "30s" },
//!   { on = "health", webhook = "http://192.0.2.1:9000/alerts" },
//!   { on = "schedule", cron = "0 3 * * *", snapshot = "nightly" },
//!   { on = "schedule", cron = "0 3 * * *", timezone = "Europe/Berlin", snapshot = "local" },
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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
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

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

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
    /// A five-field cron expression, read in its time zone (UTC when none is named).
    Cron(CronSchedule),
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

/// The names of a cron expression's five fields, in order, with their allowed ranges.
const CRON_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// A parsed cron expression: minute, hour, day of month, month, day of week (0 or 7 = Sunday).
/// Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma list
/// of those; month and weekday names (`JAN`, `MON`) and `L`, `W`, `#` work as in common cron
/// implementations. As in cron, when both day fields are restricted a day matching either runs.
/// The text is kept as written; equality and hashing go by the text.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    /// Boxed: the parsed pattern is a few hundred bytes and schedules are moved around.
    cron: Box<croner::Cron>,
}

impl CronExpr {
    /// Parses a five-field expression; the error names the field at fault.
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .sloppy_ranges(true)
            .build();
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 || text.contains('@') {
            return Err(format!(
                "a cron expression has five fields (minute hour day-of-month month day-of-week), found {} in {text:?}",
                parts.len()
            ));
        }
        match parser.parse(text) {
            Ok(cron) => Ok(CronExpr {
                text: text.to_string(),
                cron: Box::new(cron),
            }),
            Err(e) => {
                // Name the first field that fails on its own (the others left as `*`).
                let reason = cron_reason(&e);
                for (i, (name, lo, hi)) in CRON_FIELDS.iter().enumerate() {
                    let mut alone = ["*"; 5];
                    alone[i] = parts[i];
                    if let Err(e) = parser.parse(&alone.join(" ")) {
                        return Err(format!(
                            "{name}: {:?} is not valid ({lo}-{hi}): {}",
                            parts[i],
                            cron_reason(&e)
                        ));
                    }
                }
                Err(format!("cron expression {text:?}: {reason}"))
            }
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A parser error's message without its category prefix or final full stop, lower-cased.
fn cron_reason(e: &croner::errors::CronError) -> String {
    let text = e.to_string();
    let text = text
        .split_once(": ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(text);
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl std::hash::Hash for CronExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// An IANA time zone (`Europe/Berlin`, `America/New_York`, `UTC`), validated against the
/// zone database compiled into warren.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeZone {
    name: String,
    tz: chrono_tz::Tz,
}

impl TimeZone {
    pub fn parse(name: &str) -> Result<TimeZone, String> {
        let tz = name.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(r#"{name:?} is not an IANA time zone name (such as "Europe/Berlin" or "UTC")"#)
        })?;
        Ok(TimeZone {
            name: name.to_string(),
            tz,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A cron schedule: the expression and the time zone its fields are read in, both parsed
/// when the spec is parsed (or loaded) and kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    pub expr: CronExpr,
    /// `None` reads the expression in UTC.
    pub zone: Option<TimeZone>,
}

impl CronSchedule {
    /// A schedule in UTC.
    pub fn utc(expr: CronExpr) -> CronSchedule {
        CronSchedule { expr, zone: None }
    }

    /// The first matching minute strictly after `after` (unix seconds), as unix seconds.
    /// Wall-clock times skipped by a daylight-saving change run once when the clock jumps;
    /// repeated ones run once. An impossible date such as Feb 30 gives `None`.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = chrono::DateTime::from_timestamp(after, 0)?;
        let tz = self.zone.as_ref().map_or(chrono_tz::Tz::UTC, |z| z.tz);
        self.expr
            .cron
            .find_next_occurrence(&start.with_timezone(&tz), false)
            .ok()
            .map(|t| t.timestamp())
    }
}

/// The stored form: the bare expression for a UTC schedule (as before time zones existed),
/// or the expression with its zone.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum CronRepr {
    Utc(String),
    Zoned { expr: String, timezone: String },
}

impl Serialize for CronSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let expr = self.expr.text.clone();
        match &self.zone {
            None => CronRepr::Utc(expr),
            Some(z) => CronRepr::Zoned {
                expr,
                timezone: z.name.clone(),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (expr, zone) = match CronRepr::deserialize(d)? {
            CronRepr::Utc(expr) => (expr, None),
            CronRepr::Zoned { expr, timezone } => (expr, Some(timezone)),
        };
        Ok(CronSchedule {
            expr: CronExpr::parse(&expr).map_err(serde::de::Error::custom)?,
            zone: zone
                .map(|z| TimeZone::parse(&z))
                .transpose()
                .map_err(serde::de::Error::custom)?,
        })
    }
}

impl schemars::JsonSchema for CronSchedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CronSchedule".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        CronRepr::json_schema(generator)
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
            Schedule::Cron(c) => c.next_after(after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC wall-clock time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("valid date")
            .and_utc()
            .timestamp()
    }

    fn cron(expr: &str) -> CronSchedule {
        CronSchedule::utc(CronExpr::parse(expr).unwrap())
    }

    fn zoned(expr: &str, zone: &str) -> CronSchedule {
        CronSchedule {
            expr: CronExpr::parse(expr).unwrap(),
            zone: Some(TimeZone::parse(zone).unwrap()),
        }
    }

    #[test]
    fn cron_next_times() {
        let c = cron("0 3 * * *");
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
        // Strictly after, from the middle of a minute.
        let minutely = cron("* * * * *");
        assert_eq!(
            minutely.next_after(at(2026, 1, 1, 0, 3) + 30),
            Some(at(2026, 1, 1, 0, 4))
        );
        let every5 = cron("*/5 * * * *");
        assert_eq!(
            every5.next_after(at(2026, 1, 1, 0, 3)),
            Some(at(2026, 1, 1, 0, 5))
        );
        // A single start with a step runs from there to the end of the range.
        let from50 = cron("50/5 * * * *");
        assert_eq!(
            from50.next_after(at(2026, 1, 1, 0, 56)),
            Some(at(2026, 1, 1, 1, 50))
        );
        // 2026-11-22 is a Sunday; Monday 9:30.
        let monday = cron("30 9 * * 1");
        assert_eq!(
            monday.next_after(at(2026, 11, 22, 12, 0)),
            Some(at(2026, 11, 23, 9, 30))
        );
        let sunday7 = cron("0 0 * * 7");
        assert_eq!(
            sunday7.next_after(at(2026, 11, 23, 0, 0)),
            Some(at(2026, 11, 29, 0, 0))
        );
        // New year, leap day, month lists and ranges.
        let ny = cron("0 0 1 1 *");
        assert_eq!(
            ny.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2027, 1, 1, 0, 0))
        );
        let leap = cron("0 12 29 2 *");
        assert_eq!(
            leap.next_after(at(2026, 3, 1, 0, 0)),
            Some(at(2028, 2, 29, 12, 0))
        );
        let q = cron("15 8-10/2 1,15 1-12/3 *");
        assert_eq!(
            q.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2027, 1, 1, 8, 15))
        );
        // Either day field when both are restricted.
        let either = cron("0 0 13 * 5");
        assert_eq!(
            either.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2026, 11, 27, 0, 0))
        );
        assert_eq!(cron("0 0 30 2 *").next_after(0), None);
    }

    #[test]
    fn cron_in_a_time_zone_follows_daylight_saving() {
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer; summer time starts
        // on 2026-03-29 and ends on 2026-10-25.
        let berlin = zoned("0 3 * * *", "Europe/Berlin");
        assert_eq!(
            berlin.next_after(at(2026, 3, 28, 2, 0)),
            Some(at(2026, 3, 29, 1, 0))
        );
        assert_eq!(
            berlin.next_after(at(2026, 10, 24, 1, 0)),
            Some(at(2026, 10, 25, 2, 0))
        );
        // The same expression in UTC does not move.
        assert_eq!(
            cron("0 3 * * *").next_after(at(2026, 3, 28, 3, 0)),
            Some(at(2026, 3, 29, 3, 0))
        );
        // 02:30 does not exist in Berlin on 2026-03-29: the job runs once that day, when the
        // clock jumps, and not a second time before the next day.
        let gap = zoned("30 2 * * *", "Europe/Berlin");
        let first = gap.next_after(at(2026, 3, 28, 12, 0)).unwrap();
        assert!(
            (at(2026, 3, 29, 0, 0)..at(2026, 3, 29, 2, 0)).contains(&first),
            "{first}"
        );
        assert_eq!(gap.next_after(first), Some(at(2026, 3, 30, 0, 30)));
        let ny = zoned("0 0 1 1 *", "America/New_York");
        assert_eq!(
            ny.next_after(at(2026, 6, 1, 0, 0)),
            Some(at(2027, 1, 1, 5, 0))
        );
    }

    #[test]
    fn cron_errors_name_the_field() {
        for (expr, want) in [
            ("* * * *", "five fields"),
            ("0 0 * * * *", "five fields"),
            ("@daily", "five fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "minute: \"a\""),
            ("5-1 * * * *", "minute: \"5-1\""),
        ] {
            let e = CronExpr::parse(expr).unwrap_err();
            assert!(e.contains(want), "{expr}: {e}");
        }
        assert!(TimeZone::parse("Mars/Olympus")
            .unwrap_err()
            .contains("IANA"));
        assert!(TimeZone::parse("").is_err());
        assert_eq!(TimeZone::parse("UTC").unwrap().name(), "UTC");
    }

    #[test]
    fn schedules_store_as_before_and_keep_their_zone() {
        let utc = Schedule::Cron(cron("0 3 * * *"));
        let json = serde_json::to_string(&utc).unwrap();
        assert_eq!(json, r#"{"cron":"0 3 * * *"}"#);
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), utc);
        let berlin = Schedule::Cron(zoned("0 3 * * *", "Europe/Berlin"));
        let json = serde_json::to_string(&berlin).unwrap();
        assert_eq!(
            json,
            r#"{"cron":{"expr":"0 3 * * *","timezone":"Europe/Berlin"}}"#
        );
        let back: Schedule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, berlin);
        assert_eq!(
            back.next_after(at(2026, 3, 28, 2, 0), 0),
            Some(at(2026, 3, 29, 1, 0))
        );
        assert!(serde_json::from_str::<Schedule>(r#"{"cron":"61 * * * *"}"#).is_err());
        assert!(serde_json::from_str::<Schedule>(
            r#"{"cron":{"expr":"0 3 * * *","timezone":"Nowhere"}}"#
        )
        .is_err());
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let s = Schedule::Every(10);
        assert_eq!(s.next_after(100, 100), Some(110));
        assert_eq!(s.next_after(109, 100), Some(110));
        assert_eq!(s.next_after(110, 100), Some(120));
    }
}
