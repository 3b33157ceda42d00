//! `warren events`: recent events as lines or JSON, and with `--follow` the live stream.

use super::Exit;
use super::ListFormat;
use crate::client::{routes, Client};
use anyhow::Result;
use std::io::Write;
use std::time::Duration;

pub(super) async fn events(
    client: &Client,
    workload: Option<String>,
    limit: usize,
    format: ListFormat,
    follow: bool,
) -> Result<Exit> {
    let call = routes::EVENTS
        .call()
        .query("limit", limit)
        .query_opt("workload", workload.as_ref());
    let evs: Vec<crate::wire::Event> = client.get(&call).await?;
    if !follow {
        if format == ListFormat::Json {
            println!("{}", serde_json::to_string_pretty(&evs)?);
        } else {
            for e in &evs {
                println!("{}", line(e));
            }
        }
        return Ok(Exit::Success);
    }
    let print = |e: &crate::wire::Event| -> Result<()> {
        let mut out = std::io::stdout().lock();
        if format == ListFormat::Json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{}", line(e))?;
        }
        out.flush()?;
        Ok(())
    };
    for e in &evs {
        print(e)?;
    }
    let call = routes::EVENTS_STREAM
        .call()
        .query("after", evs.last().map(|e| e.id).unwrap_or(0))
        .query_opt("workload", workload.as_ref());
    client
        .stream_lines(&call, |e: crate::wire::Event| print(&e))
        .await?;
    Ok(Exit::Success)
}

/// One event as a line: time, workload, kind, message.
pub(super) fn line(e: &crate::wire::Event) -> String {
    format!(
        "{} {} {} {}",
        warren_runtime::logs::format_timestamp(
            std::time::UNIX_EPOCH + Duration::from_millis(e.ts_ms)
        ),
        e.workload.as_deref().unwrap_or("-"),
        e.kind,
        e.message
    )
}
