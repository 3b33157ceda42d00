//! The daemon's own log: every line also goes, as JSON (timestamp, level, target, fields),
//! to `<state>/logs/daemon.log`, rotated by size (the full file becomes `daemon.log.1`, older ones
//! move up to [`KEEP`]). `warren daemon logs` reads it back ([`render_line`]).
//!
//! What gets in: warren's own lines at info and above, everyone else's (the Scheme engine's
//! module parser, HTTP and TLS libraries, the store's migrations) at warn and above only.
//! `WARREN_LOG_FILE` (env-filter directives) overrides this for the file, `WARREN_LOG` for
//! the copy on stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The log file's path in the state dir.
pub const FILE: &str = "logs/daemon.log";
/// Rotated files kept besides the live one.
pub const KEEP: usize = 3;
/// The size at which the live file is rotated.
pub const MAX_BYTES: u64 = 10 << 20;
/// What is logged unless `WARREN_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "warn,warren=info";

/// A size-rotated append-only file.
pub struct RotatingFile {
    path: PathBuf,
    max: u64,
    state: Mutex<Option<(File, u64)>>,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max: u64) -> io::Result<RotatingFile> {
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = f.metadata()?.len();
        Ok(RotatingFile {
            path,
            max,
            state: Mutex::new(Some((f, len))),
        })
    }

    /// The `n`th rotated file (`daemon.log.N`).
    pub fn rotated(path: &Path, n: usize) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self) -> io::Result<(File, u64)> {
        for n in (1..KEEP).rev() {
            let from = Self::rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, Self::rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok((f, 0))
    }

    /// Appends one whole record, rotating first when it would pass the size limit.
    pub fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, len)) = st.as_ref() {
            if *len > 0 && *len + buf.len() as u64 > self.max {
                *st = None;
            }
        }
        if st.is_none() {
            *st = Some(self.rotate()?);
        }
        let (f, len) = st.as_mut().expect("opened above");
        f.write_all(buf)?;
        *len += buf.len() as u64;
        Ok(())
    }
}

/// One record's writer: the formatter writes a whole line in one call.
pub struct Record<'a>(&'a RotatingFile);

impl Write for Record<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands the formatter a writer per record.
#[derive(Clone)]
pub struct Writer(pub Arc<RotatingFile>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = Record<'a>;
    fn make_writer(&'a self) -> Record<'a> {
        Record(&self.0)
    }
}

/// The filter named by the environment variable `var` (env-filter directives), else
/// [`DEFAULT_FILTER`].
fn filter(var: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env(var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the daemon's subscriber: readable lines on stderr, JSON lines in
/// `<state_dir>/logs/daemon.log`; each filtered by [`DEFAULT_FILTER`] unless `WARREN_LOG`
/// (stderr) or `WARREN_LOG_FILE` (the file) says otherwise.
pub fn init(state_dir: &Path) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let path = state_dir.join(FILE);
    std::fs::create_dir_all(path.parent().expect("FILE has a directory"))?;
    let file = Arc::new(RotatingFile::open(path, MAX_BYTES)?);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter("WARREN_LOG")),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(Writer(file))
                .with_filter(filter("WARREN_LOG_FILE")),
        )
        .try_init()?;
    Ok(())
}

/// Log levels, most severe first.
pub const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// Whether `level` is at least as severe as `min` (both as in [`LEVELS`], any case).
pub fn at_least(level: &str, min: &str) -> bool {
    let rank = |l: &str| LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l));
    match (rank(level), rank(min)) {
        (Some(l), Some(m)) => l <= m,
        _ => true,
    }
}

/// One stored JSON record as a readable line (`TIME LEVEL target: message key=value ...`),
/// with its level; `None` for a line that is not a record.
pub fn render_line(line: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let level = o.get("level")?.as_str()?.to_string();
    let mut out = format!(
        "{} {:>5} {}: {}",
        o.get("timestamp").and_then(|t| t.as_str()).unwrap_or("-"),
        level,
        o.get("target").and_then(|t| t.as_str()).unwrap_or("-"),
        o.get("message").and_then(|t| t.as_str()).unwrap_or(""),
    );
    for (k, v) in o {
        if matches!(k.as_str(), "timestamp" | "level" | "target" | "message")
            || k.starts_with("log.")
        {
            continue;
        }
        match v {
            serde_json::Value::String(s) => out.push_str(&format!(" {k}={s}")),
            other => out.push_str(&format!(" {k}={other}")),
        }
    }
    Some((level, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("daemon.log");
        let f = RotatingFile::open(path.clone(), 100).unwrap();
        for i in 0..10 {
            f.append(format!("{i:059}\n").as_bytes()).unwrap(); // 60 bytes each
        }
        // One record per file: 100 bytes fit one 60-byte line.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{:059}\n", 9)
        );
        assert_eq!(
            std::fs::read_to_string(RotatingFile::rotated(&path, 1)).unwrap(),
            format!("{:059}\n", 8)
        );
        assert!(RotatingFile::rotated(&path, 3).exists());
        assert!(!RotatingFile::rotated(&path, 4).exists());
    }

    #[test]
    fn renders_records_and_filters_levels() {
        let line = r#"{"timestamp":"2026-12-07T19:00:00Z","level":"INFO","target":"warren::daemon","message":"listening on /x","workload":"web","n":3}"#;
        let (level, text) = render_line(line).unwrap();
        assert_eq!(level, "INFO");
        assert_eq!(
            text,
            "2026-12-07T19:00:00Z  INFO warren::daemon: listening on /x n=3 workload=web"
        );
        assert!(render_line("not json").is_none());
        assert!(at_least("ERROR", "warn"));
        assert!(at_least("WARN", "warn"));
        assert!(!at_least("INFO", "warn"));
        assert!(at_least("INFO", "debug"));
    }
}
