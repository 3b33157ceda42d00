//! A service's `healthcheck` as warren's `health`: `CMD` and `CMD-SHELL` tests become exec
//! checks, Compose's defaults (30s interval and timeout, 3 retries) are written out, and
//! `on_unhealthy = "none"` keeps Compose's behaviour of reporting, not restarting.

use super::emit::{self, Table};
use super::fields::{go_duration, warren_duration};
use super::yaml::{Key, Node, Value};
use super::Cx;
use crate::render::quote;

pub(crate) fn healthcheck(cx: &mut Cx<'_>, table: &mut Table, path: &str, key: &Key, value: &Node) {
    let Some(entries) = cx.map(path, value) else {
        return;
    };
    let mut argv: Option<Vec<String>> = None;
    let mut none = false;
    let mut interval = 30;
    let mut timeout = 30;
    let mut retries: u64 = 3;
    let mut start_period = 0;
    for (k, v) in entries {
        let kpath = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "disable" => {
                if cx.text(&kpath, v).as_deref() == Some("true") {
                    none = true;
                }
            }
            "test" => match &v.value {
                Value::Seq(_) => {
                    let Some(words) = cx.strings(&kpath, v, false) else {
                        continue;
                    };
                    match words.split_first() {
                        Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                            argv = Some(rest.to_vec())
                        }
                        Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                            argv = Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
                        }
                        Some((first, _)) if first == "NONE" => none = true,
                        _ => cx.error(
                            v.at,
                            format!("{kpath}: expected [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or [\"NONE\"]"),
                        ),
                    }
                }
                _ => {
                    if let Some(cmd) = cx.text(&kpath, v) {
                        argv = Some(vec!["/bin/sh".into(), "-c".into(), cmd]);
                    }
                }
            },
            "interval" | "timeout" | "start_period" => {
                let Some(text) = cx.text(&kpath, v) else {
                    continue;
                };
                match go_duration(&text) {
                    Ok((secs, rounded)) => {
                        if rounded {
                            cx.warn(
                                v.at,
                                format!("{kpath}: {text} rounded up to {}", warren_duration(secs)),
                            );
                        }
                        match k.text.as_str() {
                            "interval" => interval = secs.max(1),
                            "timeout" => timeout = secs.max(1),
                            _ => start_period = secs,
                        }
                    }
                    Err(reason) => cx.error(v.at, format!("{kpath}: {reason}")),
                }
            }
            "retries" => match cx.text(&kpath, v).map(|t| t.parse::<u64>()) {
                Some(Ok(n)) if (1..=100).contains(&n) => retries = n,
                Some(Ok(0)) => retries = 3,
                Some(_) => cx.error(v.at, format!("{kpath}: expected a number from 1 to 100")),
                None => {}
            },
            "start_interval" => cx.warn(
                k.at,
                format!(
                    "{kpath}: dropped: warren checks at `interval` during the start period too"
                ),
            ),
            x if x.starts_with("x-") => {}
            _ => cx.error(k.at, format!("{kpath}: unknown key")),
        }
    }
    if none {
        table.comments.push(format!("{path}: disabled"));
        return;
    }
    let Some(argv) = argv else {
        cx.unmappable(
            key,
            path,
            "it has no `test`, and warren does not read an image's HEALTHCHECK; write the test",
        );
        return;
    };
    let mut parts = vec![
        format!("exec = {}", emit::strings(&argv)),
        format!("interval = {}", quote(&warren_duration(interval))),
        format!("timeout = {}", quote(&warren_duration(timeout))),
        format!("retries = {retries}"),
    ];
    if start_period > 0 {
        parts.push(format!(
            "start_period = {}",
            quote(&warren_duration(start_period))
        ));
    }
    parts.push(format!("on_unhealthy = {}", quote("none")));
    table.set_commented(
        "health",
        format!("{{ {} }}", parts.join(", ")),
        value.at,
        "compose reports health and never restarts for it",
    );
}
