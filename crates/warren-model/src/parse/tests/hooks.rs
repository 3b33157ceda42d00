//! Tests of `[workload.NAME.health]` and `[[workload.NAME.hooks]]`.

use super::*;

#[test]
fn health_checks_parse_with_defaults() {
    use crate::health::*;
    let w = web(r#"[workload.web]
world = "host"
health = { http = "/healthz", port = 8080, interval = "2s", retries = 5, start_period = "1m", on_unhealthy = "none" }
"#);
    assert_eq!(
        w.health,
        Some(HealthCheck {
            probe: Probe::Http {
                path: "/healthz".into(),
                port: 8080
            },
            interval_secs: 2,
            timeout_secs: DEFAULT_TIMEOUT,
            retries: 5,
            start_period_secs: 60,
            on_unhealthy: OnUnhealthy::None,
        })
    );
    let w = web("[workload.web]\nworld = \"host\"\nnetwork = \"none\"\nhealth = { exec = [\"pg_isready\", \"-q\"] }\n");
    let h = w.health.clone().unwrap();
    assert_eq!(h.probe, Probe::Exec(vec!["pg_isready".into(), "-q".into()]));
    assert_eq!(
        (h.interval_secs, h.retries),
        (DEFAULT_INTERVAL, DEFAULT_RETRIES)
    );
    // Health checks never recreate the container.
    let mut a = w.clone();
    a.health = None;
    assert_eq!(a.hash(), w.hash());
}

#[test]
fn hooks_parse() {
    use crate::hooks::*;
    let w = web(r#"[workload.web]
world = "host"
hooks = [
  { on = "crash", exec = ["sh", "-c", "true"], timeout = "30s" },
  { on = "schedule", cron = "0 3 * * *", snapshot = "nightly" },
  { on = "schedule", every = "15m", host = ["/bin/true"] },
  { on = "health", webhook = "http://192.0.2.1:9000/alerts" },
  { on = "stop", restart = true },
]
"#);
    assert_eq!(w.hooks.len(), 5);
    assert_eq!(w.hooks[0].on, HookEvent::Crash);
    assert_eq!(w.hooks[0].timeout_secs, 30);
    assert_eq!(
        w.hooks[1].schedule,
        Some(Schedule::Cron(CronSchedule::utc(
            CronExpr::parse("0 3 * * *").unwrap()
        )))
    );
    assert_eq!(w.hooks[1].action, HookAction::Snapshot("nightly".into()));
    assert_eq!(w.hooks[2].schedule, Some(Schedule::Every(900)));
    assert_eq!(w.hooks[3].timeout_secs, DEFAULT_HOOK_TIMEOUT);
    assert_eq!(w.hooks[4].action, HookAction::Restart);
    // Hooks never recreate the container.
    let mut a = w.clone();
    a.hooks.clear();
    assert_eq!(a.hash(), w.hash());
}

#[test]
fn cron_hooks_take_a_time_zone() {
    use crate::hooks::*;
    let w = web(r#"[workload.web]
world = "host"
hooks = [
  { on = "schedule", timezone = "Europe/Berlin", cron = "0 3 * * *", snapshot = "nightly" },
]
"#);
    let Some(Schedule::Cron(c)) = &w.hooks[0].schedule else {
        panic!("{:?}", w.hooks[0].schedule);
    };
    assert_eq!(c.expr.as_str(), "0 3 * * *");
    assert_eq!(c.zone.as_ref().map(|z| z.name()), Some("Europe/Berlin"));
    assert_eq!(
        web_error(
            r#"hooks = [{ on = "schedule", cron = "0 3 * * *", timezone = "Europe/Nowhere", restart = true }]"#
        ),
        "3:60: workload.web.hooks[0].timezone: \"Europe/Nowhere\" is not an IANA time zone name \
         (such as \"Europe/Berlin\" or \"UTC\")"
    );
    assert_eq!(
        web_error(r#"hooks = [{ on = "schedule", cron = "0 3 * * 9", restart = true }]"#),
        "3:36: workload.web.hooks[0].cron: day of week: \"9\" is not valid (0-7): number out of bounds"
    );
    assert_eq!(
        web_error(
            r#"hooks = [{ on = "schedule", every = "1h", timezone = "UTC", restart = true }]"#
        ),
        "3:43: workload.web.hooks[0].timezone: `timezone` belongs to a `cron` schedule; \
         e.g. cron = \"0 3 * * *\", timezone = \"Europe/Berlin\""
    );
}
