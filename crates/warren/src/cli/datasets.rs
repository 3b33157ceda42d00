//! Dataset commands: workload and volume snapshots, rollback, clone, export and import
//! archives, and volumes.

use super::transfer::{human_bytes, progress, upload};
use super::Exit;
use super::ListFormat;
use crate::client::routes::{self, Route};
use crate::client::Client;
use crate::output;
use crate::wire::*;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum SnapshotCmd {
    /// Delete a snapshot.
    #[command(alias = "delete")]
    Rm {
        name: String,
        label: String,
        #[arg(short = 'V', long)]
        volume: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum VolumeCmd {
    /// List volumes with their size, use and mounts.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Delete a volume and its data (refused while a workload mounts it).
    Rm { name: String },
}

/// The workload's route, or with `volume` the volume's route of the same operation.
fn on(volume: bool, workload: Route, vol: Route) -> Route {
    if volume {
        vol
    } else {
        workload
    }
}

pub(super) async fn snapshots(
    client: &Client,
    name: &str,
    volume: bool,
    format: ListFormat,
) -> Result<Exit> {
    let snaps: Vec<serde_json::Value> = client
        .get(&on(volume, routes::WORKLOAD_SNAPSHOTS, routes::VOLUME_SNAPSHOTS).at(&[name]))
        .await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&snaps)?);
        return Ok(Exit::Success);
    }
    let now = warren_store::now_ms();
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s["label"].as_str().unwrap_or("").to_string(),
                output::age(s["created_at"].as_u64().unwrap_or(0) * 1000, now) + " ago",
                s["bytes"]
                    .as_u64()
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                if s["automatic"].as_bool().unwrap_or(false) {
                    "auto"
                } else {
                    "manual"
                }
                .into(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["LABEL", "TAKEN", "SIZE", "KIND"], &rows)
    );
    Ok(Exit::Success)
}

pub(super) async fn export(
    client: &Client,
    name: &str,
    output: Option<PathBuf>,
    since: Option<String>,
    volume: bool,
) -> Result<Exit> {
    use http_body_util::BodyExt;
    use std::io::IsTerminal;
    let to_stdout = match &output {
        Some(p) => p.as_os_str() == "-",
        None => {
            if std::io::stdout().is_terminal() {
                bail!("export: give -o FILE, or -o - (or a pipe) for stdout");
            }
            true
        }
    };
    let call = on(volume, routes::WORKLOAD_EXPORT, routes::VOLUME_EXPORT)
        .at(&[name])
        .query_opt("since", since.as_ref());
    let mut body = client.get_stream(&call).await?;
    let tmp = output.as_ref().filter(|_| !to_stdout).map(|p| {
        let mut t = p.clone().into_os_string();
        t.push(".part");
        PathBuf::from(t)
    });
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let pb = progress(&format!("exporting {name}"));
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("receiving the archive")?;
        if let Some(data) = frame.data_ref() {
            out.write_all(data)?;
            total += data.len() as u64;
            pb.set_position(total);
            // The last bytes seen, for the end marker (only a frame's last 64 bytes are kept).
            tail.extend_from_slice(&data[data.len().saturating_sub(64)..]);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
    }
    out.flush()?;
    drop(out);
    pb.finish_and_clear();
    if !tail.ends_with(crate::daemon::archive::END) {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
        bail!("export of {name} ended early (see `warren events --workload {name}`); nothing usable was written");
    }
    if let (Some(t), Some(p)) = (&tmp, &output) {
        std::fs::rename(t, p)?;
        eprintln!("exported {name} to {} ({total} bytes)", p.display());
    }
    Ok(Exit::Success)
}

pub(super) async fn import(client: &Client, file: &PathBuf, name: Option<String>) -> Result<Exit> {
    let (body, pb) = upload(file).await?;
    let call = routes::IMPORT.call().query_opt("name", name.as_ref());
    let r: serde_json::Value = client.post_stream(&call, body).await?;
    pb.finish_and_clear();
    println!(
        "imported {} (snapshot {}{})",
        r["name"].as_str().unwrap_or("?"),
        r["label"].as_str().unwrap_or("?"),
        if r["incremental"].as_bool().unwrap_or(false) {
            ", incremental"
        } else {
            ""
        }
    );
    Ok(Exit::Success)
}

pub(super) async fn volume(client: &Client, cmd: VolumeCmd) -> Result<Exit> {
    match cmd {
        VolumeCmd::List { output } => {
            let vols: Vec<VolumeInfo> = client.get(&routes::VOLUMES.call()).await?;
            if output == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&vols)?);
                return Ok(Exit::Success);
            }
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        v.used.map(human_bytes).unwrap_or_else(|| "-".into()),
                        v.size.map(human_bytes).unwrap_or_else(|| "-".into()),
                        if v.mounts.is_empty() {
                            "-".into()
                        } else {
                            v.mounts.join(" ")
                        },
                        if v.declared { "" } else { "not declared" }.into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "USED", "SIZE", "MOUNTED BY", ""], &rows)
            );
        }
        VolumeCmd::Rm { name } => {
            let _: serde_json::Value = client
                .call(&routes::VOLUME_RM.at(&[&name]), None::<&()>)
                .await?;
            println!("volume {name} deleted");
        }
    }
    Ok(Exit::Success)
}

/// `warren snapshot rm NAME LABEL`.
pub(super) async fn snapshot_rm(
    client: &Client,
    name: &str,
    label: &str,
    volume: bool,
) -> Result<Exit> {
    let _: serde_json::Value = client
        .call(
            &on(
                volume,
                routes::WORKLOAD_SNAPSHOT_RM,
                routes::VOLUME_SNAPSHOT_RM,
            )
            .at(&[name, label]),
            None::<&()>,
        )
        .await?;
    println!("snapshot {label} of {name} deleted");
    Ok(Exit::Success)
}

/// `warren snapshot NAME`: a snapshot of a workload or a volume.
pub(super) async fn snapshot(
    client: &Client,
    name: Option<String>,
    label: Option<String>,
    volume: bool,
) -> Result<Exit> {
    let Some(name) = name else {
        bail!("snapshot: name a workload (or a volume with --volume)");
    };
    println!("{}", snapshot_line(client, &name, label, volume).await?);
    Ok(Exit::Success)
}

/// Takes the snapshot and returns the line that reports it.
pub(super) async fn snapshot_line(
    client: &Client,
    name: &str,
    label: Option<String>,
    volume: bool,
) -> Result<String> {
    let r: serde_json::Value = client
        .post(
            &on(volume, routes::WORKLOAD_SNAPSHOT, routes::VOLUME_SNAPSHOT).at(&[name]),
            &SnapshotRequest { label },
        )
        .await?;
    Ok(format!(
        "{name}: snapshot {}",
        r["label"].as_str().unwrap_or("?")
    ))
}

/// `warren rollback NAME SNAPSHOT`.
pub(super) async fn rollback(
    client: &Client,
    name: &str,
    snapshot: &str,
    force: bool,
    volume: bool,
) -> Result<Exit> {
    let r: serde_json::Value = client
        .post(
            &on(volume, routes::WORKLOAD_ROLLBACK, routes::VOLUME_ROLLBACK).at(&[name]),
            &RollbackRequest {
                label: snapshot.to_string(),
                force,
            },
        )
        .await?;
    let destroyed: Vec<String> = serde_json::from_value(r["destroyed"].clone()).unwrap_or_default();
    println!("{name}: rolled back to {snapshot}");
    if !destroyed.is_empty() {
        println!("destroyed newer snapshots: {}", destroyed.join(", "));
    }
    Ok(Exit::Success)
}

/// `warren clone SRC DST`: a copy-on-write clone of a workload.
pub(super) async fn clone(
    client: &Client,
    src: &str,
    dst: &str,
    snapshot: Option<String>,
) -> Result<Exit> {
    let _: serde_json::Value = client
        .post(
            &routes::WORKLOAD_CLONE.at(&[src]),
            &CloneRequest {
                name: dst.to_string(),
                snapshot,
            },
        )
        .await?;
    println!("{dst}: cloned from {src}");
    Ok(Exit::Success)
}
