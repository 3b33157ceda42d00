//! Debian worlds: `debian` (the host's suite) and `debian-<suite>` (`debian-trixie`), built
//! with `debootstrap --variant=minbase` from the mirror the host's apt is configured with (or
//! one given explicitly), as a derived world (see [`crate::worlds::derive_world`]): any
//! failure leaves nothing behind.
//!
//! The mirror is the first `deb` source of the host's apt configuration that carries a plain
//! suite (not `-security`, `-updates` or `-backports`): one-line entries in
//! `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list`, and deb822 stanzas in
//! `/etc/apt/sources.list.d/*.sources`. After the bootstrap the downloaded packages and apt's
//! lists are removed and device nodes under `/dev` are deleted (the runtime mounts its own
//! `/dev`), so the world holds only the system.

use std::io::{BufRead, BufReader};
use std::path::Path;

use warren_exec::{Cmd, ExecError, Executor, Pipe, Streams};

use crate::{worlds, Result, Storage, StorageError, WorldMeta};

/// The suite a Debian world name asks for: `Some(None)` for `debian` (the host's suite),
/// `Some(Some(suite))` for `debian-<suite>`, `None` for other names.
pub fn suite_of(world: &str) -> Option<Option<&str>> {
    if world == "debian" {
        return Some(None);
    }
    let suite = world.strip_prefix("debian-")?;
    let ok = !suite.is_empty()
        && suite.len() <= 32
        && suite
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(Some(suite))
}

/// `VERSION_CODENAME` of an os-release file's text.
pub fn codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("VERSION_CODENAME=")?;
        let v = v.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn plain_suite(suite: &str) -> bool {
    !["-security", "-updates", "-backports", "-proposed-updates"]
        .iter()
        .any(|s| suite.ends_with(s))
        && !suite.contains('/')
}

/// The mirror of the first `deb` source with a plain suite, from one-line `sources.list` text
/// and deb822 `.sources` texts (one-line entries first, as apt reads them).
pub fn apt_mirror(one_line: &[String], deb822: &[String]) -> Option<String> {
    for text in one_line {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace().peekable();
            if words.next() != Some("deb") {
                continue;
            }
            // Options: `[arch=amd64 signed-by=...]`, possibly spread over several words.
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
                continue;
            };
            if plain_suite(suite) && uri.contains("://") {
                return Some(uri.to_string());
            }
        }
    }
    for text in deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
            let types = field("Types").unwrap_or_default();
            if !enabled || !types.split_whitespace().any(|t| t == "deb") {
                continue;
            }
            let suites = field("Suites").unwrap_or_default();
            if !suites.split_whitespace().any(plain_suite) {
                continue;
            }
            if let Some(uri) = field("URIs")
                .unwrap_or_default()
                .split_whitespace()
                .find(|u| u.contains("://"))
            {
                return Some(uri.to_string());
            }
        }
    }
    None
}

/// The mirror the host's apt uses.
pub fn host_mirror() -> Option<String> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut one_line: Vec<String> = read(Path::new("/etc/apt/sources.list"))
        .into_iter()
        .collect();
    let mut deb822 = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            match p.extension().and_then(|e| e.to_str()) {
                Some("list") => one_line.extend(read(&p)),
                Some("sources") => deb822.extend(read(&p)),
                _ => {}
            }
        }
    }
    apt_mirror(&one_line, &deb822)
}

/// `debootstrap --variant=minbase SUITE ROOT MIRROR`.
pub fn debootstrap_cmd(suite: &str, root: &Path, mirror: &str) -> Cmd {
    Cmd::new("debootstrap")
        .args(["--variant=minbase", suite])
        .arg(root)
        .arg(mirror)
}

/// Builds Debian world `name` (see [`suite_of`]); `mirror` overrides the host's. Every line
/// debootstrap prints goes to `progress`.
pub fn create_debian(
    storage: &dyn Storage,
    exec: &dyn Executor,
    name: &str,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<WorldMeta> {
    let Some(suite) = suite_of(name) else {
        return Err(StorageError::UnknownWorld(name.to_string()));
    };
    let suite = match suite {
        Some(s) => s.to_string(),
        None => std::fs::read_to_string("/etc/os-release")
            .ok()
            .as_deref()
            .and_then(codename)
            .ok_or_else(|| {
                StorageError::Other(
                    "the host names no VERSION_CODENAME in /etc/os-release: name the suite, e.g. debian-bookworm".into(),
                )
            })?,
    };
    let mirror = match mirror {
        Some(m) => m.to_string(),
        None => host_mirror().ok_or_else(|| {
            StorageError::Other(
                "no Debian mirror found in the host's apt sources: give one with --mirror URL"
                    .into(),
            )
        })?,
    };
    if warren_exec::resolve("debootstrap").is_none() {
        return Err(StorageError::Other(
            "debootstrap is not installed (apt-get install debootstrap)".into(),
        ));
    }
    progress(&format!("debootstrap {suite} from {mirror}"));
    worlds::derive_world(storage, name, None, vec!["/bin/sh".into()], |root| {
        run_streaming(exec, &debootstrap_cmd(&suite, root, &mirror), progress)?;
        tidy(root)
    })
}

/// Runs `cmd` through `exec` ([`Executor::spawn`]), handing each line of its stdout and
/// stderr to `progress`.
fn run_streaming(exec: &dyn Executor, cmd: &Cmd, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let argv = cmd.argv_string();
    let streams = Streams {
        stdin: Pipe::Null,
        stdout: Pipe::Piped,
        stderr: Pipe::Piped,
    };
    let mut child = exec
        .spawn(cmd, streams)
        .map_err(|e| StorageError::Other(e.to_string()))?;
    let stderr = child.stderr().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = tx2.send(line);
        }
    });
    let stdout = child.stdout().expect("piped");
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    let mut tail: Vec<String> = Vec::new();
    for line in rx {
        progress(&line);
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let _ = out_thread.join();
    let _ = err_thread.join();
    match child.wait() {
        Ok(_) => Ok(()),
        Err(ExecError::Failed { status, .. }) => Err(StorageError::Other(format!(
            "`{argv}` failed ({status}): {}",
            tail.join(" | ")
        ))),
        Err(e) => Err(StorageError::Other(e.to_string())),
    }
}

/// Removes what a world should not carry: downloaded packages, apt lists, device nodes.
fn tidy(root: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "dev"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let remove = if dir == "dev" {
                t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket()
            } else {
                t.is_file()
            };
            if remove {
                std::fs::remove_file(e.path())
                    .map_err(|x| StorageError::Other(format!("{}: {x}", e.path().display())))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_progress_streams_through_the_executor() {
        let rec = warren_exec::RecordingExecutor::new();
        let cmd = debootstrap_cmd("trixie", Path::new("/w"), "http://deb.example/debian");
        let argv = cmd.argv_string();
        rec.expect_spawn(
            &argv,
            b"I: Retrieving Release\nI: Base system installed\n",
            Ok(()),
        )
        .expect_spawn(&argv, b"I: Retrieving Release\n", Err("E: no such suite"));
        let mut lines = Vec::new();
        run_streaming(&rec, &cmd, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(lines, ["I: Retrieving Release", "I: Base system installed"]);
        lines.clear();
        let err = run_streaming(&rec, &cmd, &mut |l| lines.push(l.to_string()))
            .unwrap_err()
            .to_string();
        assert!(lines.contains(&"E: no such suite".to_string()), "{lines:?}");
        assert!(
            err.contains("failed") && err.contains("E: no such suite"),
            "{err}"
        );
        rec.finish();
    }

    #[test]
    fn world_names_give_suites() {
        assert_eq!(suite_of("debian"), Some(None));
        assert_eq!(suite_of("debian-trixie"), Some(Some("trixie")));
        assert_eq!(suite_of("debian-"), None);
        assert_eq!(suite_of("debian-Bad"), None);
        assert_eq!(suite_of("busybox"), None);
    }

    #[test]
    fn codename_is_read_from_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(codename(text).as_deref(), Some("bookworm"));
        assert_eq!(
            codename("VERSION_CODENAME=\"trixie\"\n").as_deref(),
            Some("trixie")
        );
        assert_eq!(codename("ID=alpine\n"), None);
    }

    #[test]
    fn mirrors_from_one_line_and_deb822_sources() {
        let one = vec![
            "# comment\ndeb-src http://mirror.test/debian bookworm main\n\
             deb http://security.test/debian-security bookworm-security main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main contrib\n"
                .to_string(),
        ];
        assert_eq!(
            apt_mirror(&one, &[]).as_deref(),
            Some("http://mirror.test/debian")
        );
        let deb822 = vec![
            "Types: deb\nURIs: http://security.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
             Types: deb deb-src\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
                .to_string(),
        ];
        assert_eq!(
            apt_mirror(&[], &deb822).as_deref(),
            Some("http://mirror.test/debian")
        );
        let disabled =
            vec!["Enabled: no\nTypes: deb\nURIs: http://off.test/\nSuites: bookworm\n".to_string()];
        assert_eq!(apt_mirror(&[], &disabled), None);
        assert_eq!(
            apt_mirror(&["deb cdrom:[x]/ bookworm main".into()], &[]),
            None
        );
    }

    #[test]
    fn debootstrap_command() {
        assert_eq!(
            debootstrap_cmd(
                "bookworm",
                Path::new("/p/worlds/debian"),
                "http://m.test/debian"
            )
            .argv_string(),
            "debootstrap --variant=minbase bookworm /p/worlds/debian http://m.test/debian"
        );
    }
}
