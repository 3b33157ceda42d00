//! Image, world and recipe commands: OCI image import, pull, list, rm and gc; world create,
//! import, export, rm and list; Warrenfile builds and the list of built recipes; and the
//! client side of the daemon's streamed progress jobs.

use super::transfer::{human_bytes, progress, upload};
use super::Exit;
use super::ListFormat;
use crate::client::{routes, Client};
use crate::output;
use crate::wire::*;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum RecipeCmd {
    /// List every built version.
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ListFormat,
    },
}

#[derive(Subcommand)]
pub(super) enum ImageCmd {
    /// Import a docker-save or oci-archive tarball (gzip/zstd allowed), an OCI layout
    /// directory, or `-` for stdin; prints the references stored.
    Import {
        file: PathBuf,
        /// Store the archive's (only) image under this reference, e.g. `app:v1`.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Pull HOST[:PORT]/REPO[:TAG|@DIGEST] from a registry (OCI distribution protocol) and
    /// store it under that reference.
    Pull {
        reference: String,
        #[arg(long, env = "WARREN_REGISTRY_USER")]
        username: Option<String>,
        /// Read the password from stdin (or WARREN_REGISTRY_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// Allow plain HTTP to a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
        /// OS/ARCH[/VARIANT] [default: this host's].
        #[arg(long)]
        platform: Option<String>,
    },
    /// List stored images.
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Forget an image reference (refused while a workload names it); `gc` frees its layers.
    Rm { reference: String },
    /// Delete every layer no stored image uses.
    Gc,
}

#[derive(Subcommand)]
pub(super) enum WorldCmd {
    /// Build a world: host, busybox, debian (the host's suite) or debian-SUITE.
    Create {
        name: String,
        /// Debian mirror URL (default: the one the host's apt uses).
        #[arg(long)]
        mirror: Option<String>,
    },
    /// Make a world from a root filesystem tarball (plain, gzip or zstd; `-` for stdin),
    /// such as one `world export` wrote.
    Import {
        name: String,
        file: PathBuf,
        /// Default command of the world's workloads (default: the archive's, else /bin/sh).
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        command: Option<Vec<String>>,
    },
    /// Write a world as a zstd-compressed tarball (to stdout without -o).
    Export {
        name: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Delete a world (refused while a workload names it).
    Rm { name: String },
    /// List worlds.
    #[command(alias = "ls")]
    List,
}

/// The client side of a streamed daemon job (world create, build, image pull): NDJSON lines
/// of `{"line": ...}` progress, printed as they come, then either `{"error": ...}` or the
/// result under the job's own key.
struct Progress {
    key: &'static str,
    failure: Option<String>,
    result: Option<serde_json::Value>,
}

impl Progress {
    fn new(key: &'static str) -> Self {
        Progress {
            key,
            failure: None,
            result: None,
        }
    }

    fn feed(&mut self, v: serde_json::Value) -> Result<()> {
        if let Some(l) = v["line"].as_str() {
            eprintln!("  {l}");
        } else if let Some(e) = v["error"].as_str() {
            self.failure = Some(e.to_string());
        } else if !v[self.key].is_null() {
            self.result = Some(v[self.key].clone());
        }
        Ok(())
    }

    /// The result, or the job's failure; `what` names the job when the stream ended without
    /// either.
    fn finish(self, what: &str) -> Result<serde_json::Value> {
        if let Some(e) = self.failure {
            bail!(e);
        }
        self.result
            .with_context(|| format!("the daemon ended the {what} without a result"))
    }
}

pub(super) async fn build(client: &Client, dir: &PathBuf, version: Option<String>) -> Result<Exit> {
    if !dir.join("Warrenfile").is_file() {
        bail!("{} has no Warrenfile", dir.display());
    }
    let (body, pb) = upload(dir).await?;
    pb.finish_and_clear();
    let call = routes::BUILD.call().query_opt("version", version.as_ref());
    let mut job = Progress::new("built");
    client
        .post_stream_lines(&call, body, |v| job.feed(v))
        .await?;
    let b = job.finish("build")?;
    println!(
        "{} {} {} ({})",
        b["name"].as_str().unwrap_or("?"),
        b["version"].as_str().unwrap_or("?"),
        if b["cached"].as_bool() == Some(true) {
            "cached"
        } else {
            "built"
        },
        b["parent"].as_str().unwrap_or("?")
    );
    Ok(Exit::Success)
}

pub(super) async fn recipes(client: &Client, format: ListFormat) -> Result<Exit> {
    let builds: Vec<serde_json::Value> = client.get(&routes::RECIPES.call()).await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&builds)?);
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            ["name", "version", "parent"]
                .iter()
                .map(|k| b[*k].as_str().unwrap_or("").to_string())
                .chain([b["key"].as_str().unwrap_or("").chars().take(12).collect()])
                .collect()
        })
        .collect();
    print!(
        "{}",
        output::table(&["NAME", "VERSION", "PARENT", "KEY"], &rows)
    );
    Ok(Exit::Success)
}

pub(super) async fn image(client: &Client, cmd: ImageCmd) -> Result<Exit> {
    match cmd {
        ImageCmd::Import { file, tag } => {
            let (body, pb) = upload(&file).await?;
            let call = routes::IMAGE_IMPORT.call().query_opt("tag", tag.as_ref());
            let r = client
                .post_stream::<Vec<ImageImported>, _>(&call, body)
                .await;
            pb.finish_and_clear();
            for i in r? {
                println!(
                    "{} ({}, {} layers, {} new{})",
                    i.reference,
                    short_id(&i.id),
                    i.layers,
                    i.new_layers,
                    i.replaced
                        .map(|r| format!("; it named {} before", short_id(&r)))
                        .unwrap_or_default()
                );
            }
        }
        ImageCmd::Pull {
            reference,
            username,
            password_stdin,
            insecure,
            platform,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::stdin().read_line(&mut p)?;
                Some(p.trim_end_matches(['\n', '\r']).to_string())
            } else {
                std::env::var("WARREN_REGISTRY_PASSWORD").ok()
            };
            let body = serde_json::json!({
                "reference": reference,
                "username": username,
                "password": password.filter(|_| username.is_some()),
                "insecure": insecure,
                "platform": platform,
            });
            let mut job = Progress::new("pulled");
            let payload = serde_json::to_vec(&body)?;
            client
                .post_stream_lines(
                    &routes::IMAGE_PULL.call(),
                    http_body_util::Full::new(bytes::Bytes::from(payload)),
                    |v| job.feed(v),
                )
                .await?;
            let pulled: Vec<ImageImported> = serde_json::from_value(job.finish("pull")?)?;
            for i in pulled {
                println!(
                    "{} ({}, {} layers, {} new)",
                    i.reference,
                    short_id(&i.id),
                    i.layers,
                    i.new_layers
                );
            }
        }
        ImageCmd::List { output: format } => {
            let images: Vec<ImageInfo> = client.get(&routes::IMAGES.call()).await?;
            if format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&images)?);
                return Ok(Exit::Success);
            }
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    vec![
                        i.reference.clone(),
                        short_id(&i.id),
                        i.layers.to_string(),
                        human_bytes(i.size),
                        if i.used_by.is_empty() {
                            "-".into()
                        } else {
                            i.used_by.join(",")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["REFERENCE", "ID", "LAYERS", "SIZE", "USED BY"], &rows)
            );
        }
        ImageCmd::Rm { reference } => {
            let r: serde_json::Value = client
                .call(
                    &routes::IMAGE_RM.call().query("reference", &reference),
                    None::<&()>,
                )
                .await?;
            println!("removed {}", r["removed"].as_str().unwrap_or(&reference));
        }
        ImageCmd::Gc => {
            let r: ImageGcResponse = client.post(&routes::IMAGE_GC.call(), &()).await?;
            println!("deleted {} unused layers", r.deleted.len());
            for k in &r.kept {
                eprintln!("kept {k}");
            }
        }
    }
    Ok(Exit::Success)
}

/// The first 12 hex digits of a digest, as image ids are usually shown.
fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex[..hex.len().min(12)].to_string()
}

/// Writes a streamed body to `output` (via `OUTPUT.part`, renamed when complete) or, without
/// one, to stdout when it is not a terminal.
async fn save_stream(
    mut body: hyper::body::Incoming,
    output: Option<&std::path::Path>,
    what: &str,
) -> Result<()> {
    use http_body_util::BodyExt;
    use std::io::IsTerminal;
    let to_stdout = match output {
        Some(p) => p.as_os_str() == "-",
        None => {
            if std::io::stdout().is_terminal() {
                bail!("give -o FILE, or -o - (or a pipe) for stdout");
            }
            true
        }
    };
    let tmp = output.filter(|_| !to_stdout).map(|p| {
        let mut t = p.as_os_str().to_owned();
        t.push(".part");
        PathBuf::from(t)
    });
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let pb = progress(&format!("exporting {what}"));
    let mut total = 0u64;
    let result: Result<()> = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.context("the daemon ended the export with an error (see `warren events`)")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)?;
                total += data.len() as u64;
                pb.set_position(total);
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    pb.finish_and_clear();
    if let Err(e) = result {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
        return Err(e.context(format!(
            "export of {what} failed; nothing usable was written"
        )));
    }
    if let (Some(t), Some(p)) = (&tmp, output) {
        std::fs::rename(t, p)?;
        eprintln!("exported {what} to {} ({total} bytes)", p.display());
    }
    Ok(())
}

pub(super) async fn world(client: &Client, cmd: WorldCmd) -> Result<Exit> {
    match cmd {
        WorldCmd::Create { name, mirror } => {
            let call = routes::WORLD_CREATE
                .at(&[&name])
                .query_opt("mirror", mirror.as_ref());
            let mut job = Progress::new("created");
            client.stream_lines(&call, |v| job.feed(v)).await?;
            job.finish(&format!("creation of world {name}"))?;
            println!("world {name} created");
        }
        WorldCmd::Import {
            name,
            file,
            command,
        } => {
            let (body, pb) = upload(&file).await?;
            let mut call = routes::WORLD_IMPORT.at(&[&name]);
            if let Some(c) = &command {
                call = call.query("command", serde_json::to_string(c)?);
            }
            let r = client
                .post_stream::<serde_json::Value, _>(&call, body)
                .await;
            pb.finish_and_clear();
            let r = r?;
            println!(
                "world {name} imported ({} entries)",
                r["entries"].as_u64().unwrap_or(0)
            );
        }
        WorldCmd::Export { name, output } => {
            let body = client
                .get_stream(&routes::WORLD_EXPORT.at(&[&name]))
                .await?;
            save_stream(body, output.as_deref(), &format!("world {name}")).await?;
        }
        WorldCmd::Rm { name } => {
            let _: serde_json::Value = client
                .call(&routes::WORLD_RM.at(&[&name]), None::<&()>)
                .await?;
            println!("world {name} removed");
        }
        WorldCmd::List => {
            let worlds: Vec<WorldInfo> = client.get(&routes::WORLDS.call()).await?;
            let rows: Vec<Vec<String>> = worlds
                .iter()
                .map(|w| {
                    vec![
                        w.name.clone(),
                        if w.used_by.is_empty() {
                            "-".into()
                        } else {
                            w.used_by.join(",")
                        },
                        if w.binds.is_empty() {
                            "-".into()
                        } else {
                            w.binds.join(" ")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "USED BY", "HOST BINDS"], &rows)
            );
        }
    }
    Ok(Exit::Success)
}
