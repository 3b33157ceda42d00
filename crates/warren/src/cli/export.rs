//! `warren spec export`: the desired state as a warren.toml (the default), as Nomad job files
//! (`--format nomad`) or as Kubernetes manifests (`--format kubernetes`). The spec comes from
//! the daemon, or from a local file with `-f`; the renderers are the pure ones of
//! [`warren_model::export`], this module only reads, writes and warns.

use super::Exit;
use crate::client::Client;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::io::Write;
use std::path::{Path, PathBuf};
use warren_model::export::{kubernetes, nomad, Export};

/// The format of `warren spec export`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(super) enum SpecFormat {
    /// A warren.toml that applies again as a no-op.
    #[default]
    Toml,
    /// One Nomad job file per workload (HCL2), and the client's host volumes.
    Nomad,
    /// One multi-document Kubernetes YAML file.
    Kubernetes,
}

/// The spec text: the local file's, or the daemon's live desired state.
async fn spec_text(client: &Client, file: Option<&Path>) -> Result<(String, String)> {
    match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            Ok((text, f.display().to_string()))
        }
        None => {
            use http_body_util::BodyExt;
            let body = client
                .get_stream(&crate::client::routes::SPEC_EXPORT.call())
                .await?;
            let bytes = body.collect().await?.to_bytes();
            Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                "export".into(),
            ))
        }
    }
}

fn parse(text: &str, name: &str) -> Result<warren_model::SpecFile> {
    match warren_model::parse_spec(text, name) {
        Ok(p) => Ok(p.spec),
        Err(e) => {
            let lines: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
            bail!("{}", lines.join("\n"))
        }
    }
}

/// Writes one text to `output` (a file; `-` or none: stdout).
fn write_one(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        _ => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// Writes an export: into the directory `output` (made if missing) for Nomad, to the file
/// `output` (or `output/warren.yaml` when it is a directory) for Kubernetes; to stdout when
/// there is no output, the files one after the other. Every warning goes to stderr.
fn write_export(export: &Export, output: Option<&Path>, into_dir: bool) -> Result<()> {
    for w in export.warnings() {
        eprintln!("warning: {w}");
    }
    let output = output.filter(|p| p.as_os_str() != "-");
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            for (i, f) in export.files.iter().enumerate() {
                if export.files.len() > 1 {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    writeln!(out, "# ==> {} <==", f.name)?;
                }
                out.write_all(f.text.as_bytes())?;
            }
        }
        Some(p) if into_dir || p.is_dir() => {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            for f in &export.files {
                write_one(Some(&p.join(&f.name)), &f.text)?;
            }
        }
        Some(p) => {
            let [f] = export.files.as_slice() else {
                bail!("{} files to write: give a directory", export.files.len());
            };
            write_one(Some(p), &f.text)?;
        }
    }
    Ok(())
}

/// `warren spec export [--format toml|nomad|kubernetes] [-f FILE] [-o OUT]`.
pub(super) async fn spec_export(
    client: &Client,
    format: SpecFormat,
    file: Option<PathBuf>,
    output: Option<PathBuf>,
) -> Result<Exit> {
    if format == SpecFormat::Toml && file.is_none() {
        return super::workloads::spec_export(client, output).await;
    }
    let (text, name) = spec_text(client, file.as_deref()).await?;
    let spec = parse(&text, &name)?;
    match format {
        SpecFormat::Toml => {
            let text = warren_model::render::to_toml(&spec, "");
            write_one(output.as_deref(), &text)?;
        }
        SpecFormat::Nomad => write_export(&nomad::export(&spec), output.as_deref(), true)?,
        SpecFormat::Kubernetes => {
            write_export(&kubernetes::export(&spec), output.as_deref(), false)?
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::workloads::SpecCmd;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn homelab() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/homelab.toml")
    }

    /// A client for a socket nobody listens on: `-f` must not need the daemon.
    fn no_daemon(dir: &Path) -> Client {
        Client {
            socket: dir.join("absent.sock"),
            remote: None,
        }
    }

    #[test]
    fn the_format_defaults_to_toml() {
        let cli = Cli::try_parse_from(["warren", "spec", "export"]).expect("parses");
        let Cmd::Spec {
            cmd: SpecCmd::Export { format, file, .. },
        } = cli.cmd
        else {
            panic!("not spec export");
        };
        assert_eq!(format, SpecFormat::Toml);
        assert!(file.is_none());
        let cli = Cli::try_parse_from([
            "warren", "spec", "export", "--format", "nomad", "-f", "w.toml", "-o", "jobs",
        ])
        .expect("parses");
        let Cmd::Spec {
            cmd:
                SpecCmd::Export {
                    format,
                    file,
                    output,
                },
        } = cli.cmd
        else {
            panic!("not spec export");
        };
        assert_eq!(format, SpecFormat::Nomad);
        assert_eq!(file.as_deref(), Some(Path::new("w.toml")));
        assert_eq!(output.as_deref(), Some(Path::new("jobs")));
    }

    #[tokio::test]
    async fn a_local_file_exports_without_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let client = no_daemon(dir.path());
        let spec = parse(&std::fs::read_to_string(homelab()).unwrap(), "homelab").unwrap();

        let jobs = dir.path().join("jobs");
        spec_export(
            &client,
            SpecFormat::Nomad,
            Some(homelab()),
            Some(jobs.clone()),
        )
        .await
        .expect("nomad export");
        for f in nomad::export(&spec).files {
            let got = std::fs::read_to_string(jobs.join(&f.name)).unwrap();
            assert_eq!(got, f.text, "{}", f.name);
        }

        let yaml = dir.path().join("k8s.yaml");
        spec_export(
            &client,
            SpecFormat::Kubernetes,
            Some(homelab()),
            Some(yaml.clone()),
        )
        .await
        .expect("kubernetes export");
        let want = &kubernetes::export(&spec).files[0].text;
        assert_eq!(&std::fs::read_to_string(&yaml).unwrap(), want);
        // A directory gets warren.yaml.
        spec_export(
            &client,
            SpecFormat::Kubernetes,
            Some(homelab()),
            Some(jobs.clone()),
        )
        .await
        .expect("kubernetes export into a directory");
        assert_eq!(
            &std::fs::read_to_string(jobs.join("warren.yaml")).unwrap(),
            want
        );
    }

    #[tokio::test]
    async fn an_invalid_file_is_refused_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[workload.web]\nworld = 3\n").unwrap();
        let out = dir.path().join("out");
        let e = spec_export(
            &no_daemon(dir.path()),
            SpecFormat::Nomad,
            Some(bad),
            Some(out.clone()),
        )
        .await
        .expect_err("refused");
        assert!(e.to_string().contains("bad.toml:2:"), "{e}");
        assert!(!out.exists(), "nothing written");
    }
}
