//! `[[workload.NAME.hooks]]` and `[workload.NAME.health]`.

use super::*;

impl Walker<'_> {
    /// `hooks = [ { on = EVENT, ACTION, [cron | every], [timeout] }, ... ]`.
    pub(super) fn hooks(&mut self, path: &Path, value: &Value<'_>) -> Vec<crate::hooks::Hook> {
        use crate::hooks::*;
        use strum::VariantNames;
        let example = r#"; e.g. hooks = [{ on = "crash", exec = ["sh", "-c", "..."] }]"#;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(path, value, "an array of hook tables", example);
            return Vec::new();
        };
        let mut hooks = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let Some(table) = self.table(&ipath, item, example) else {
                continue;
            };
            let errors_before = self.diagnostics.len();
            let mut on = None;
            let mut actions: Vec<(usize, &str, Option<HookAction>)> = Vec::new();
            let mut schedule: Option<(usize, Option<Schedule>)> = None;
            let mut timeout = DEFAULT_HOOK_TIMEOUT;
            let mut watch: Option<(usize, Option<String>)> = None;
            let mut zone: Option<(usize, Option<TimeZone>)> = None;
            for (k, v) in table.iter() {
                let field: &str = k.get_ref();
                let hpath = ipath.key(field);
                self.record(&hpath, k, v);
                let at = k.span().start;
                match field {
                    "on" => on = self.one_of(&hpath, v),
                    "restart" => {
                        let yes = self.boolean(&hpath, v);
                        if yes == Some(false) {
                            self.error(
                                v.span().start,
                                &hpath,
                                "restart = false does nothing; leave the hook out",
                            );
                        }
                        actions.push((
                            at,
                            "restart",
                            yes.filter(|y| *y).map(|_| HookAction::Restart),
                        ));
                    }
                    "exec" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "exec", c.map(HookAction::Exec)));
                    }
                    "host" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "host", c.map(HookAction::Host)));
                    }
                    "job" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "job", c.map(HookAction::Job)));
                    }
                    "webhook" => {
                        let u = self.checked_string(&hpath, v, |s| {
                            let rest = s
                                .strip_prefix("http://")
                                .ok_or_else(|| format!("webhook {s:?} must be an http:// URL"))?;
                            if rest.is_empty()
                                || s.chars().any(|c| c.is_whitespace() || c.is_control())
                            {
                                return Err(format!("webhook {s:?} is not a URL"));
                            }
                            Ok(())
                        });
                        actions.push((at, "webhook", u.map(HookAction::Webhook)));
                    }
                    "snapshot" => {
                        let l = self.checked_string(
                            &hpath,
                            v,
                            crate::names::check_snapshot_label_prefix,
                        );
                        actions.push((at, "snapshot", l.map(HookAction::Snapshot)));
                    }
                    "scheme" => {
                        let x = self.checked_string(&hpath, v, |s| {
                            if s.trim().is_empty() {
                                Err("the Scheme expression is empty".into())
                            } else {
                                Ok(())
                            }
                        });
                        actions.push((at, "scheme", x.map(HookAction::Scheme)));
                    }
                    "cron" => {
                        let c = self.string(&hpath, v).and_then(|s| {
                            CronExpr::parse(s)
                                .map_err(|r| self.error(v.span().start, &hpath, r))
                                .ok()
                        });
                        if schedule.is_some() {
                            self.error(at, &hpath, "a hook has either `cron` or `every`");
                        }
                        schedule = Some((at, c.map(|c| Schedule::Cron(CronSchedule::utc(c)))));
                    }
                    "timezone" => {
                        let z = self.string(&hpath, v).and_then(|s| {
                            TimeZone::parse(s)
                                .map_err(|r| self.error(v.span().start, &hpath, r))
                                .ok()
                        });
                        zone = Some((at, z));
                    }
                    "every" | "timeout" => {
                        let DeValue::String(s) = v.get_ref() else {
                            self.wrong_type(&hpath, v, r#"a duration such as "10s""#, "");
                            continue;
                        };
                        match values::parse_duration(s) {
                            Ok(0) => self.error(v.span().start, &hpath, "must be at least 1s"),
                            Ok(secs) if field == "timeout" => timeout = secs,
                            Ok(secs) => {
                                if schedule.is_some() {
                                    self.error(at, &hpath, "a hook has either `cron` or `every`");
                                }
                                schedule = Some((at, Some(Schedule::Every(secs))));
                            }
                            Err(m) => self.error(v.span().start, &hpath, m),
                        }
                    }
                    "path" => {
                        let p = self.checked_string(&hpath, v, values::check_data_path);
                        watch = Some((at, p));
                    }
                    _ => self.unknown_key(k, &hpath, HOOK_KEYS),
                }
            }
            let item_at = item.span().start;
            match (on, &watch) {
                (Some(HookEvent::Change), None) => self.error(
                    item_at,
                    &ipath,
                    r#"on = "change" needs the watched `path`; e.g. path = "/data/conf""#,
                ),
                (Some(e), Some((at, _))) if e != HookEvent::Change => self.error(
                    *at,
                    &ipath.key("path"),
                    r#"`path` belongs to on = "change" hooks"#,
                ),
                _ => {}
            }
            if on.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "on") {
                self.error(
                    item_at,
                    &ipath,
                    format!(
                        "a hook needs `on` (one of {}){example}",
                        HookEvent::VARIANTS.join(", ")
                    ),
                );
            }
            match actions.as_slice() {
                [] => self.error(
                    item_at,
                    &ipath,
                    "a hook needs an action: restart, exec, host, webhook, snapshot, scheme or job",
                ),
                [_] => {}
                [(_, first, _), (at, second, _), ..] => self.error(
                    *at,
                    &ipath.key(second),
                    format!("a hook has one action (`{first}` is already set)"),
                ),
            }
            match (on, &schedule) {
                (Some(HookEvent::Schedule), None) => self.error(
                    item_at,
                    &ipath,
                    r#"on = "schedule" needs `cron` (e.g. "0 3 * * *") or `every` (e.g. "15m")"#,
                ),
                (Some(e), Some((at, _))) if e != HookEvent::Schedule => self.error(
                    *at,
                    &ipath,
                    r#"`cron` and `every` belong to on = "schedule" hooks"#,
                ),
                _ => {}
            }
            match (&mut schedule, zone) {
                (Some((_, Some(Schedule::Cron(c)))), Some((_, z))) => c.zone = z,
                (Some((_, None)), Some(_)) | (_, None) => {}
                (_, Some((at, _))) => self.error(
                    at,
                    &ipath.key("timezone"),
                    r#"`timezone` belongs to a `cron` schedule; e.g. cron = "0 3 * * *", timezone = "Europe/Berlin""#,
                ),
            }
            if self.diagnostics.len() != errors_before {
                continue;
            }
            let (Some(on), Some((_, _, Some(action)))) = (on, actions.into_iter().next()) else {
                continue;
            };
            hooks.push(Hook {
                on,
                action,
                schedule: schedule.and_then(|(_, s)| s),
                path: watch.and_then(|(_, p)| p),
                timeout_secs: timeout,
            });
        }
        hooks
    }

    /// `health = { exec = [...] | http = "/path", port = N | tcp = N, interval, timeout,
    /// retries, start_period, on_unhealthy }`.
    pub(super) fn health(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
    ) -> Option<crate::health::HealthCheck> {
        use crate::health::*;
        let example = r#"; e.g. health = { http = "/healthz", port = 8080, interval = "10s" }"#;
        let table = self.table(path, value, example)?;
        let errors_before = self.diagnostics.len();
        let mut probes: Vec<(usize, &str)> = Vec::new();
        let (mut exec, mut http, mut tcp, mut port) = (None, None, None, None);
        let mut check = HealthCheck {
            probe: Probe::Tcp(0),
            interval_secs: DEFAULT_INTERVAL,
            timeout_secs: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            start_period_secs: 0,
            on_unhealthy: OnUnhealthy::Restart,
        };
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let hpath = path.key(field);
            self.record(&hpath, k, v);
            match field {
                "exec" => {
                    probes.push((k.span().start, "exec"));
                    exec = self.command(&hpath, v);
                }
                "http" => {
                    probes.push((k.span().start, "http"));
                    http = self.checked_string(&hpath, v, |s| {
                        if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            Ok(())
                        } else {
                            Err(format!("the http check's path must start with / and hold no spaces, found {s:?}"))
                        }
                    });
                }
                "tcp" => {
                    probes.push((k.span().start, "tcp"));
                    tcp = self.route_port(&hpath, v);
                }
                "port" => port = Some((k.span().start, self.route_port(&hpath, v))),
                "interval" | "timeout" | "start_period" => {
                    let at = v.span().start;
                    let DeValue::String(s) = v.get_ref() else {
                        self.wrong_type(&hpath, v, r#"a duration such as "10s""#, "");
                        continue;
                    };
                    match values::parse_duration(s) {
                        Ok(0) if field != "start_period" => {
                            self.error(at, &hpath, "must be at least 1s");
                        }
                        Ok(secs) => match field {
                            "interval" => check.interval_secs = secs,
                            "timeout" => check.timeout_secs = secs,
                            _ => check.start_period_secs = secs,
                        },
                        Err(m) => self.error(at, &hpath, m),
                    }
                }
                "retries" => {
                    let at = v.span().start;
                    let DeValue::Integer(i) = v.get_ref() else {
                        self.wrong_type(&hpath, v, "an integer", "");
                        continue;
                    };
                    match integer(i) {
                        Some(n) if (1..=100).contains(&n) => check.retries = n as u32,
                        _ => self.error(at, &hpath, "must be between 1 and 100"),
                    }
                }
                "on_unhealthy" => {
                    if let Some(a) = self.one_of::<crate::health::OnUnhealthy>(&hpath, v) {
                        check.on_unhealthy = a;
                    }
                }
                _ => self.unknown_key(k, &hpath, HEALTH_KEYS),
            }
        }
        match probes.as_slice() {
            [] => self.error(
                key.span().start,
                path,
                format!("needs one of exec, http or tcp{example}"),
            ),
            [_] => {}
            [(_, first), (at, second), ..] => self.error(
                *at,
                &path.key(second),
                format!("a health check has one of exec, http or tcp (`{first}` is already set)"),
            ),
        }
        match (&http, port) {
            (Some(_), None) => self.error(
                key.span().start,
                path,
                r#"an http check needs the workload's `port`; e.g. health = { http = "/healthz", port = 8080 }"#,
            ),
            (None, Some((at, _))) => {
                self.error(at, &path.key("port"), "`port` belongs to http checks (tcp = PORT names its own)")
            }
            _ => {}
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        check.probe = match (exec, http, tcp) {
            (Some(argv), _, _) => Probe::Exec(argv),
            (_, Some(p), _) => Probe::Http {
                path: p,
                port: port.and_then(|(_, p)| p)?,
            },
            (_, _, Some(p)) => Probe::Tcp(p),
            _ => return None,
        };
        Some(check)
    }
}
