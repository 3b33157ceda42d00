//! What differs between OSes in running the ingress's nginx: where nginx and its
//! configuration are inside the routing workload, how the running nginx is told to reload,
//! and what the workload's rc system needs to know. Pure: [`Platform::LINUX`] and
//! [`Platform::FREEBSD`] are both tested on every OS, [`Platform::current`] picks one.
//!
//! - Linux: the routing workload is a container of the `host` world running the host's
//!   `/usr/sbin/nginx` in the foreground; the daemon's prefix directory is bound at the same
//!   path inside, so host and workload paths agree; a reload is SIGHUP to nginx's master (the
//!   workload's main process).
//! - FreeBSD: the routing workload is a jail running nginx from pkg
//!   (`/usr/local/sbin/nginx`); the prefix directory is mounted at `/usr/local/etc/nginx`, so
//!   the configuration is `/usr/local/etc/nginx/nginx.conf` inside the jail, where the pkg's
//!   rc script looks for it; a reload is `service nginx reload` run in the jail (the rc
//!   script checks the file first), told by `/etc/rc.conf.d/nginx` that nginx is enabled and
//!   where its pid file is.

use std::path::{Path, PathBuf};

/// The configuration file's name in the prefix directory.
pub const CONF_NAME: &str = "nginx.conf";

/// How a running nginx is told to load its configuration again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Send this signal to the routing workload's main process (nginx's master).
    Signal(&'static str),
    /// Run this command inside the routing workload.
    Command(&'static [&'static str]),
}

/// The per-OS facts of the ingress's nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// The nginx binary inside the routing workload.
    pub nginx: &'static str,
    /// Where the host's prefix directory appears inside the routing workload; `None`: at the
    /// same path as on the host.
    pub prefix_in_workload: Option<&'static str>,
    pub reload: Reload,
    /// A file of the routing workload's rc system (path inside it, text), written before a
    /// reload command runs; `{prefix}` in the text is the prefix inside the workload.
    pub rc_conf: Option<(&'static str, &'static str)>,
}

impl Platform {
    pub const LINUX: Platform = Platform {
        nginx: "/usr/sbin/nginx",
        prefix_in_workload: None,
        reload: Reload::Signal("HUP"),
        rc_conf: None,
    };

    pub const FREEBSD: Platform = Platform {
        nginx: "/usr/local/sbin/nginx",
        prefix_in_workload: Some("/usr/local/etc/nginx"),
        reload: Reload::Command(&["service", "nginx", "reload"]),
        rc_conf: Some((
            "/etc/rc.conf.d/nginx",
            "# written by warren: the routing jail's nginx runs as its main process\n\
             nginx_enable=\"YES\"\n\
             nginx_pidfile=\"{prefix}/nginx.pid\"\n",
        )),
    };

    /// This OS's platform.
    pub fn current() -> &'static Platform {
        if cfg!(target_os = "freebsd") {
            &Platform::FREEBSD
        } else {
            &Platform::LINUX
        }
    }

    /// The prefix directory as nginx inside the routing workload sees it.
    pub fn workload_prefix(&self, host_prefix: &Path) -> PathBuf {
        match self.prefix_in_workload {
            Some(p) => PathBuf::from(p),
            None => host_prefix.to_path_buf(),
        }
    }

    /// The configuration file as nginx inside the routing workload sees it.
    pub fn workload_conf(&self, host_prefix: &Path) -> PathBuf {
        self.workload_prefix(host_prefix).join(CONF_NAME)
    }

    /// A host path below the prefix as the routing workload sees it; None for a path outside
    /// the prefix (it is not visible there).
    pub fn to_workload(&self, host_prefix: &Path, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(host_prefix).ok()?;
        Some(self.workload_prefix(host_prefix).join(rel))
    }

    /// The routing workload's main process: nginx in the foreground on its configuration.
    pub fn serve_argv(&self, host_prefix: &Path) -> Vec<String> {
        let prefix = self.workload_prefix(host_prefix);
        vec![
            self.nginx.to_string(),
            "-p".into(),
            prefix.display().to_string(),
            "-c".into(),
            prefix.join(CONF_NAME).display().to_string(),
        ]
    }

    /// The command run inside the routing workload to reload, if it is not a signal.
    pub fn reload_argv(&self) -> Option<Vec<String>> {
        match self.reload {
            Reload::Signal(_) => None,
            Reload::Command(argv) => Some(argv.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// The rc file to write inside the routing workload, with its text for `host_prefix`.
    pub fn rc_conf(&self, host_prefix: &Path) -> Option<(PathBuf, String)> {
        let (path, text) = self.rc_conf?;
        let prefix = self.workload_prefix(host_prefix);
        Some((
            PathBuf::from(path),
            text.replace("{prefix}", &prefix.display().to_string()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "/var/db/warren/ingress";

    #[test]
    fn linux_uses_host_paths_and_a_signal() {
        let p = Platform::LINUX;
        let prefix = Path::new(HOST);
        assert_eq!(p.workload_prefix(prefix), prefix);
        assert_eq!(
            p.workload_conf(prefix),
            Path::new("/var/db/warren/ingress/nginx.conf")
        );
        assert_eq!(
            p.serve_argv(prefix),
            [
                "/usr/sbin/nginx",
                "-p",
                HOST,
                "-c",
                "/var/db/warren/ingress/nginx.conf"
            ]
        );
        assert_eq!(
            p.to_workload(prefix, &prefix.join("certs/local/a.crt")),
            Some(prefix.join("certs/local/a.crt"))
        );
        assert_eq!(p.reload, Reload::Signal("HUP"));
        assert_eq!(p.reload_argv(), None);
        assert_eq!(p.rc_conf(prefix), None);
    }

    #[test]
    fn freebsd_uses_the_pkg_layout_and_service_reload() {
        let p = Platform::FREEBSD;
        let prefix = Path::new(HOST);
        assert_eq!(p.workload_prefix(prefix), Path::new("/usr/local/etc/nginx"));
        assert_eq!(
            p.workload_conf(prefix),
            Path::new("/usr/local/etc/nginx/nginx.conf")
        );
        assert_eq!(
            p.serve_argv(prefix),
            [
                "/usr/local/sbin/nginx",
                "-p",
                "/usr/local/etc/nginx",
                "-c",
                "/usr/local/etc/nginx/nginx.conf"
            ]
        );
        assert_eq!(
            p.to_workload(prefix, &prefix.join(".nginx.conf.warren-new")),
            Some(PathBuf::from("/usr/local/etc/nginx/.nginx.conf.warren-new"))
        );
        assert_eq!(p.to_workload(prefix, Path::new("/etc/ssl/cert.pem")), None);
        assert_eq!(p.reload_argv().unwrap(), ["service", "nginx", "reload"]);
        let (path, text) = p.rc_conf(prefix).unwrap();
        assert_eq!(path, Path::new("/etc/rc.conf.d/nginx"));
        assert!(text.contains("nginx_enable=\"YES\"\n"), "{text}");
        assert!(
            text.contains("nginx_pidfile=\"/usr/local/etc/nginx/nginx.pid\"\n"),
            "{text}"
        );
    }

    #[test]
    fn current_matches_the_os() {
        let expected = if cfg!(target_os = "freebsd") {
            Platform::FREEBSD
        } else {
            Platform::LINUX
        };
        assert_eq!(*Platform::current(), expected);
    }
}
