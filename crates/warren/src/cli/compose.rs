//! `warren compose import` and the compose side of `apply -f` / `plan -f`: reads a compose
//! file, the `.env` next to it, the process environment and the `env_file`s it names, and
//! hands them to the model's converter ([`warren_model::compose`]). Warnings go to stderr as
//! `warning: FILE:LINE:COL: ...`; errors fail the command with every diagnostic, and nothing is
//! sent to the daemon.

use super::Exit;
use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warren_model::compose::{self, ComposeInput, ReadError};
use warren_model::SpecError;

#[derive(Subcommand)]
pub(super) enum ComposeCmd {
    /// Convert a docker-compose.yml to a warren.toml (printed, or written with -o); keys
    /// that cannot be converted are errors, harmless drops warnings on stderr.
    Import {
        file: PathBuf,
        /// Write the warren.toml here instead of printing it.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

/// Whether `apply -f` / `plan -f` should read `file` as a compose file.
pub(super) fn is_compose(file: &Path) -> bool {
    compose::is_compose_file(&file.to_string_lossy())
}

/// Every diagnostic as its own `error: ` line once `main` prefixes the first.
fn diagnostics(e: SpecError) -> anyhow::Error {
    let lines: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
    anyhow!("{}", lines.join("\nerror: "))
}

/// Converts `file` and checks the result with the warren.toml parser; prints the warnings.
fn convert(file: &Path) -> Result<String> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let dotenv_path = dir.join(".env");
    let dotenv = match std::fs::read_to_string(&dotenv_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dotenv_path.display())),
    };
    let dotenv_name = dotenv_path.display().to_string();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let read = |path: &str| -> Result<String, ReadError> {
        std::fs::read_to_string(dir.join(path)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            _ => ReadError::Other(e.to_string()),
        })
    };
    let input = ComposeInput {
        file: &name,
        text: &text,
        dotenv: dotenv.as_deref().map(|t| (dotenv_name.as_str(), t)),
        env: &env,
        read: &read,
    };
    let conversion = compose::convert(&input).map_err(diagnostics)?;
    for w in &conversion.warnings {
        eprintln!("warning: {w}");
    }
    conversion.parse().map_err(diagnostics)?;
    Ok(conversion.toml)
}

/// The spec text `apply` and `plan` send for `file`, and the name it goes by: a compose
/// file's conversion (`FILE (converted)`), else the file as it is.
pub(super) fn spec_text(file: &Path) -> Result<(String, String)> {
    if is_compose(file) {
        let toml = convert(file)?;
        return Ok((format!("{} (converted)", file.display()), toml));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok((file.display().to_string(), text))
}

pub(super) fn run(cmd: ComposeCmd) -> Result<Exit> {
    match cmd {
        ComposeCmd::Import { file, output } => {
            let toml = convert(&file)?;
            match output {
                Some(path) => std::fs::write(&path, toml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{toml}"),
            }
            Ok(Exit::Success)
        }
    }
}
