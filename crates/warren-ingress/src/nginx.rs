//! Putting a rendered configuration live: validate with `nginx -t`, swap atomically, reload.
//!
//! A [`Validator`] knows the nginx binary (a parameter: `/usr/sbin/nginx` on Debian,
//! `/usr/local/sbin/nginx` on FreeBSD, see [`DEFAULT_NGINX`]) and the prefix directory, and runs
//! every command through a [`warren_exec::Executor`]:
//!
//! - [`Validator::check`]: `nginx -t -q -p PREFIX -c FILE`.
//! - [`Validator::install`]: writes the new text beside the live file, checks it, and only then
//!   renames it over the live file. If nginx rejects it the live file is untouched and the error
//!   carries nginx's message.
//! - [`Validator::reload`]: `nginx -p PREFIX -c FILE -s reload`, a graceful reload (old workers
//!   finish their requests).
//!
//! Installs into one live path must not run concurrently (the daemon has one ingress owner).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use warren_exec::{Cmd, ExecError, Executor};

/// Where the system's nginx lives on this OS.
pub const DEFAULT_NGINX: &str = if cfg!(target_os = "freebsd") {
    "/usr/local/sbin/nginx"
} else {
    "/usr/sbin/nginx"
};

/// A failure to validate, install or reload a configuration.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    #[error("nginx rejected the configuration {path}: {message}")]
    Rejected { path: PathBuf, message: String },
    #[error("could not run nginx")]
    Exec(#[source] ExecError),
    #[error("could not reload nginx with {conf}")]
    Reload {
        conf: PathBuf,
        #[source]
        source: ExecError,
    },
    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("live configuration path {path} has no file name")]
    LivePath { path: PathBuf },
}

/// The outcome of [`Validator::install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The live configuration file.
    pub path: PathBuf,
    /// `false` if the live file already had exactly this text (nothing was written or checked,
    /// and no reload is needed).
    pub changed: bool,
}

/// Creates the directories a rendered configuration expects under `prefix`: `logs/` and
/// `temp/` (nginx creates the individual temp directories inside it). Idempotent.
pub fn prepare_prefix(prefix: &Path) -> Result<(), NginxError> {
    for dir in [prefix.join("logs"), prefix.join("temp")] {
        fs::create_dir_all(&dir).map_err(|source| NginxError::Io {
            action: "create directory",
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Validates, installs and reloads nginx configurations for one prefix directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    nginx: String,
    prefix: PathBuf,
}

impl Validator {
    /// A validator running the nginx binary `nginx` (an absolute path, or a name found in the
    /// executor's system path) with prefix directory `prefix`.
    pub fn new(nginx: impl Into<String>, prefix: impl Into<PathBuf>) -> Self {
        Validator {
            nginx: nginx.into(),
            prefix: prefix.into(),
        }
    }

    /// The nginx binary.
    pub fn nginx(&self) -> &str {
        &self.nginx
    }

    /// The prefix directory.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `nginx -t -q -p PREFIX -c CONF`.
    pub fn check_cmd(&self, conf: &Path) -> Cmd {
        Cmd::new(&self.nginx)
            .args(["-t", "-q", "-p"])
            .arg(self.prefix.as_os_str())
            .arg("-c")
            .arg(conf.as_os_str())
    }

    /// `nginx -p PREFIX -c CONF -s reload`.
    pub fn reload_cmd(&self, conf: &Path) -> Cmd {
        Cmd::new(&self.nginx)
            .arg("-p")
            .arg(self.prefix.as_os_str())
            .arg("-c")
            .arg(conf.as_os_str())
            .args(["-s", "reload"])
    }

    /// A process running nginx in the foreground on `conf` (`nginx -p PREFIX -c CONF`, with the
    /// executor's clean environment), for a supervisor that holds the child. The configuration
    /// must say `daemon off;` (see [`crate::IngressOptions::daemon`]).
    pub fn serve_command(&self, conf: &Path) -> Result<std::process::Command, NginxError> {
        let mut c = warren_exec::std_command(&self.nginx).map_err(NginxError::Exec)?;
        c.arg("-p").arg(&self.prefix).arg("-c").arg(conf);
        Ok(c)
    }

    /// Asks nginx whether `conf` is valid. The prefix directories must exist
    /// ([`prepare_prefix`]).
    pub fn check(&self, conf: &Path, exec: &dyn Executor) -> Result<(), NginxError> {
        match exec.run(&self.check_cmd(conf)) {
            Ok(_) => Ok(()),
            Err(ExecError::Failed { stderr, stdout, .. }) => {
                let message = if stderr.trim().is_empty() {
                    stdout
                } else {
                    stderr
                };
                let message = message.trim();
                Err(NginxError::Rejected {
                    path: conf.to_path_buf(),
                    message: if message.is_empty() {
                        "no message".to_string()
                    } else {
                        message.to_string()
                    },
                })
            }
            Err(e) => Err(NginxError::Exec(e)),
        }
    }

    /// Replaces the configuration at `live` with `conf_text` if nginx accepts it.
    ///
    /// Creates the prefix directories, writes the text to `.NAME.warren-new` beside `live`,
    /// checks it with [`Validator::check`], and renames it over `live` (atomic: a reader sees
    /// the old file or the new one). On any failure the temporary file is removed and `live` is
    /// untouched. Does not reload: call [`Validator::reload`] when [`Installed::changed`].
    pub fn install(
        &self,
        conf_text: &str,
        live: &Path,
        exec: &dyn Executor,
    ) -> Result<Installed, NginxError> {
        self.install_inner(conf_text, live, Some(exec))
    }

    /// [`Validator::install`] without `nginx -t`, for a file only the nginx of a workload
    /// that is not running could check (FreeBSD's routing jail: its nginx checks the file
    /// when it starts and refuses to run on a bad one). The text must have passed
    /// [`crate::validate()`] (as [`crate::render_checked`] output has).
    pub fn install_unchecked(&self, conf_text: &str, live: &Path) -> Result<Installed, NginxError> {
        self.install_inner(conf_text, live, None)
    }

    fn install_inner(
        &self,
        conf_text: &str,
        live: &Path,
        exec: Option<&dyn Executor>,
    ) -> Result<Installed, NginxError> {
        let Some(name) = live.file_name() else {
            return Err(NginxError::LivePath {
                path: live.to_path_buf(),
            });
        };
        let dir = match live.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::read(live) {
            Ok(old) if old == conf_text.as_bytes() => {
                return Ok(Installed {
                    path: live.to_path_buf(),
                    changed: false,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NginxError::Io {
                    action: "read",
                    path: live.to_path_buf(),
                    source,
                })
            }
        }
        prepare_prefix(&self.prefix)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".warren-new");
        let tmp = dir.join(tmp_name);
        let result = write_synced(&tmp, conf_text.as_bytes())
            .and_then(|()| match exec {
                Some(exec) => self.check(&tmp, exec),
                None => Ok(()),
            })
            .and_then(|()| {
                fs::rename(&tmp, live).map_err(|source| NginxError::Io {
                    action: "rename the new configuration onto",
                    path: live.to_path_buf(),
                    source,
                })
            });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // Make the rename durable; failing to sync the directory does not undo it.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(Installed {
            path: live.to_path_buf(),
            changed: true,
        })
    }

    /// Gracefully reloads the nginx running with this prefix and `conf`
    /// (`nginx -p PREFIX -c CONF -s reload`; the pid comes from the configuration's `pid`).
    pub fn reload(&self, conf: &Path, exec: &dyn Executor) -> Result<(), NginxError> {
        exec.run(&self.reload_cmd(conf))
            .map(|_| ())
            .map_err(|source| NginxError::Reload {
                conf: conf.to_path_buf(),
                source,
            })
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), NginxError> {
    let io_err = |source| NginxError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(path).map_err(io_err)?;
    f.write_all(data).map_err(io_err)?;
    f.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    fn setup() -> (tempfile::TempDir, Validator, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        let live = dir.path().join("nginx.conf");
        let v = Validator::new("/usr/sbin/nginx", &prefix);
        (dir, v, prefix, live)
    }

    #[test]
    fn check_argv_and_success() {
        let (_d, v, prefix, live) = setup();
        let r = RecordingExecutor::new();
        r.expect_ok(
            &format!(
                "/usr/sbin/nginx -t -q -p {} -c {}",
                prefix.display(),
                live.display()
            ),
            "",
        );
        v.check(&live, &r).unwrap();
        r.finish();
    }

    #[test]
    fn install_validates_the_new_file_then_renames() {
        let (dir, v, prefix, live) = setup();
        fs::write(&live, "old").unwrap();
        let tmp = dir.path().join(".nginx.conf.warren-new");
        let r = RecordingExecutor::new();
        r.expect_ok(
            &format!(
                "/usr/sbin/nginx -t -q -p {} -c {}",
                prefix.display(),
                tmp.display()
            ),
            "",
        );
        let got = v.install("new", &live, &r).unwrap();
        r.finish();
        assert_eq!(
            got,
            Installed {
                path: live.clone(),
                changed: true
            }
        );
        assert_eq!(fs::read_to_string(&live).unwrap(), "new");
        assert!(!tmp.exists());
        assert!(prefix.join("logs").is_dir() && prefix.join("temp").is_dir());
    }

    #[test]
    fn rejected_install_leaves_live_file_and_carries_message() {
        let (dir, v, prefix, live) = setup();
        fs::write(&live, "old").unwrap();
        let tmp = dir.path().join(".nginx.conf.warren-new");
        let r = RecordingExecutor::new();
        r.expect_err(
            &format!(
                "/usr/sbin/nginx -t -q -p {} -c {}",
                prefix.display(),
                tmp.display()
            ),
            "nginx: [emerg] unknown directive \"garbage\" in x:1\n",
        );
        let err = v.install("garbage;", &live, &r).unwrap_err();
        r.finish();
        assert!(matches!(err, NginxError::Rejected { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("unknown directive \"garbage\""), "{msg}");
        assert!(msg.contains(".nginx.conf.warren-new"), "{msg}");
        assert_eq!(fs::read_to_string(&live).unwrap(), "old");
        assert!(!tmp.exists());
    }

    #[test]
    fn unchanged_install_runs_nothing() {
        let (_d, v, _prefix, live) = setup();
        fs::write(&live, "same").unwrap();
        let r = RecordingExecutor::new();
        let got = v.install("same", &live, &r).unwrap();
        r.finish();
        assert!(r.ran().is_empty());
        assert!(!got.changed);
    }

    #[test]
    fn first_install_creates_the_live_file() {
        let (dir, v, prefix, live) = setup();
        let tmp = dir.path().join(".nginx.conf.warren-new");
        let r = RecordingExecutor::new();
        r.expect_ok(
            &format!(
                "/usr/sbin/nginx -t -q -p {} -c {}",
                prefix.display(),
                tmp.display()
            ),
            "",
        );
        assert!(v.install("first", &live, &r).unwrap().changed);
        r.finish();
        assert_eq!(fs::read_to_string(&live).unwrap(), "first");
    }

    #[test]
    fn missing_binary_is_an_exec_error() {
        let (_d, _v, prefix, live) = setup();
        fs::write(&live, "old").unwrap();
        let v = Validator::new("/nonexistent/nginx", prefix);
        let err = v
            .install("new", &live, &warren_exec::HostExecutor)
            .unwrap_err();
        assert!(matches!(err, NginxError::Exec(ExecError::NotFound { .. })));
        assert_eq!(fs::read_to_string(&live).unwrap(), "old");
    }

    #[test]
    fn reload_argv_and_error() {
        let (_d, v, prefix, live) = setup();
        let argv = format!(
            "/usr/sbin/nginx -p {} -c {} -s reload",
            prefix.display(),
            live.display()
        );
        let r = RecordingExecutor::new();
        r.expect_ok(&argv, "").expect_err(
            &argv,
            "nginx: [error] open() \"/p/nginx.pid\" failed (2: No such file or directory)",
        );
        v.reload(&live, &r).unwrap();
        let err = v.reload(&live, &r).unwrap_err();
        r.finish();
        assert!(matches!(err, NginxError::Reload { .. }));
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("nginx.pid"), "{source}");
    }

    #[test]
    fn unchecked_install_runs_nothing_and_renames() {
        let (dir, v, prefix, live) = setup();
        fs::write(&live, "old").unwrap();
        let got = v.install_unchecked("new", &live).unwrap();
        assert!(got.changed);
        assert_eq!(fs::read_to_string(&live).unwrap(), "new");
        assert!(!dir.path().join(".nginx.conf.warren-new").exists());
        assert!(prefix.join("logs").is_dir());
        assert!(!v.install_unchecked("new", &live).unwrap().changed);
    }

    #[test]
    fn live_path_without_name() {
        let v = Validator::new("/usr/sbin/nginx", "/p");
        let r = RecordingExecutor::new();
        let err = v.install("x", Path::new("/"), &r).unwrap_err();
        assert!(matches!(err, NginxError::LivePath { .. }));
    }
}
