//! Pure builders of every `zfs` command the driver runs (each returns a [`Cmd`]), and the two
//! streams (`zfs send`, `zfs receive`) run through the executor's streaming API
//! ([`Executor::spawn`]).

use super::*;

fn zfs() -> Cmd {
    Cmd::new("zfs")
}

fn mountpoint_opt(mountpoint: &Path) -> OsString {
    let mut o = OsString::from("mountpoint=");
    o.push(mountpoint);
    o
}

/// `zfs list -Hp -o name DS`: succeeds iff `DS` (a dataset or snapshot) exists.
pub fn exists_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-o", "name", ds])
}

/// `zfs list -Hp -o name -d 1 DS`: `DS` and its direct children.
pub fn children_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-o", "name", "-d", "1", ds])
}

/// `zfs list -Hp -t filesystem -o name,readonly -r DS`.
pub fn list_filesystems_cmd(ds: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "filesystem",
        "-o",
        "name,readonly",
        "-r",
        ds,
    ])
}

/// `zfs list -Hp -t snapshot -o name -d 2 DS`: the snapshots of `DS`'s children.
pub fn child_snapshots_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-t", "snapshot", "-o", "name", "-d", "2", ds])
}

/// `zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 DS`: oldest first.
/// Sorted by creation txg rather than `creation`, whose one-second resolution ties.
pub fn snapshot_list_cmd(ds: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        "name,used,creation",
        "-s",
        "createtxg",
        "-d",
        "1",
        ds,
    ])
}

/// `zfs list -Hp -t snapshot -o name,used,creation DS@LABEL`.
pub fn snapshot_info_cmd(snapshot: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        "name,used,creation",
        snapshot,
    ])
}

/// `zfs get -Hp -t filesystem -o name,property,value,source PROPS -d DEPTH DS`.
pub fn get_cmd(ds: &str, props: &[&str], depth: u32) -> Cmd {
    zfs()
        .args([
            "get",
            "-Hp",
            "-t",
            "filesystem",
            "-o",
            "name,property,value,source",
        ])
        .arg(props.join(","))
        .args(["-d", &depth.to_string(), ds])
}

/// `zfs get -Hp -o value PROP DS`.
pub fn get_value_cmd(ds: &str, prop: &str) -> Cmd {
    zfs().args(["get", "-Hp", "-o", "value", prop, ds])
}

/// `zfs get -Hp -o property,value used,quota DS`.
pub fn usage_cmd(ds: &str) -> Cmd {
    zfs().args(["get", "-Hp", "-o", "property,value", "used,quota", ds])
}

/// `zfs get -Hp -o property,value used,available DS`: a pool dataset's use and what is left.
pub fn pool_usage_cmd(ds: &str) -> Cmd {
    zfs().args(["get", "-Hp", "-o", "property,value", "used,available", ds])
}

/// `zfs create [-p] -o mountpoint=M DS`.
pub fn create_cmd(ds: &str, mountpoint: &Path, parents: bool) -> Cmd {
    let mut c = zfs().arg("create");
    if parents {
        c = c.arg("-p");
    }
    c.arg("-o").arg(mountpoint_opt(mountpoint)).arg(ds)
}

/// `zfs destroy [-r] TARGET` (a dataset, or one snapshot `DS@LABEL`).
pub fn destroy_cmd(target: &str, recursive: bool) -> Cmd {
    let c = zfs().arg("destroy");
    if recursive { c.arg("-r") } else { c }.arg(target)
}

/// `zfs snapshot DS@LABEL`.
pub fn snapshot_cmd(ds: &str, label: &str) -> Cmd {
    zfs().arg("snapshot").arg(format!("{ds}@{label}"))
}

/// `zfs clone -o mountpoint=M SNAPSHOT DST`.
pub fn clone_cmd(snapshot: &str, dst: &str, mountpoint: &Path) -> Cmd {
    zfs()
        .args(["clone", "-o"])
        .arg(mountpoint_opt(mountpoint))
        .args([snapshot, dst])
}

/// `zfs set PROP=VALUE DS`.
pub fn set_cmd(ds: &str, prop: &str, value: &str) -> Cmd {
    zfs().arg("set").arg(format!("{prop}={value}")).arg(ds)
}

/// `zfs rollback [-r] DS@LABEL`.
pub fn rollback_cmd(ds: &str, label: &str, destroy_newer: bool) -> Cmd {
    let c = zfs().arg("rollback");
    if destroy_newer { c.arg("-r") } else { c }.arg(format!("{ds}@{label}"))
}

/// `zfs send [-i @SINCE] DS@LABEL`.
pub fn send_cmd(ds: &str, label: &str, since: Option<&str>) -> Cmd {
    let mut c = zfs().arg("send");
    if let Some(s) = since {
        c = c.arg("-i").arg(format!("@{s}"));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs send -t TOKEN`: the rest of an interrupted stream, from the receiver's
/// `receive_resume_token`.
pub fn resume_send_cmd(token: &str) -> Cmd {
    zfs().args(["send", "-t", token])
}

/// `zfs receive -s -u [-o mountpoint=M] DS@LABEL`: resumable, not mounted (the caller mounts);
/// the mountpoint is given for a new dataset.
pub fn receive_cmd(ds: &str, label: &str, mountpoint: Option<&Path>) -> Cmd {
    let mut c = zfs().args(["receive", "-s", "-u"]);
    if let Some(m) = mountpoint {
        c = c.arg("-o").arg(mountpoint_opt(m));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs receive -A DS`: discards the partial state of an interrupted resumable receive.
pub fn receive_abort_cmd(ds: &str) -> Cmd {
    zfs().args(["receive", "-A", ds])
}

/// Name prefix of the hidden dataset a staged full receive goes into,
/// `<pool>/warren/incoming-<unique>`.
pub const STAGED_PREFIX: &str = "incoming-";

/// `zfs receive -u [-o canmount=noauto -o mountpoint=M] DS@LABEL`: the receive of a staged
/// import. A full stream (`mountpoint` given) goes into a new hidden dataset that is neither
/// mounted now nor at boot (`canmount=noauto`) but already carries its final mountpoint. Not
/// resumable: an interrupted receive leaves no partial state behind.
pub fn receive_staged_cmd(ds: &str, label: &str, mountpoint: Option<&Path>) -> Cmd {
    let mut c = zfs().args(["receive", "-u"]);
    if let Some(m) = mountpoint {
        c = c
            .args(["-o", "canmount=noauto", "-o"])
            .arg(mountpoint_opt(m));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs rename FROM TO`.
pub fn rename_cmd(from: &str, to: &str) -> Cmd {
    zfs().args(["rename", from, to])
}

/// `zfs mount DS`.
pub fn mount_cmd(ds: &str) -> Cmd {
    zfs().args(["mount", ds])
}

/// The `quota=` value for `bytes` (`none` removes the limit).
pub fn quota_value(ds: &str, bytes: Option<u64>) -> Result<String, ZfsError> {
    match bytes {
        None => Ok("none".to_string()),
        Some(0) => Err(ZfsError::ZeroQuota(ds.to_string())),
        Some(n) => Ok(n.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` through `exec` ([`Executor::spawn`]) and copies its stdout into `out`, a
/// [`warren_exec::PIPE_SIZE`] chunk at a time; stderr is kept for the error.
pub fn pipe_out(exec: &dyn Executor, cmd: &Cmd, out: &mut dyn Write) -> Result<(), ZfsError> {
    let mut child = exec.spawn(cmd, Streams::reading()).map_err(command_error)?;
    let mut stdout = child.stdout().expect("piped stdout");
    let copied = copy_large(&mut stdout, out).and_then(|_| out.flush());
    drop(stdout);
    if copied.is_err() {
        child.kill();
    }
    let waited = child.wait();
    if let Err(error) = copied {
        return Err(ZfsError::Stream {
            argv: cmd.argv_string(),
            error,
        });
    }
    waited.map_err(command_error)?;
    Ok(())
}

/// Runs `cmd` through `exec` ([`Executor::spawn`]) and copies `input` into its stdin. A reader
/// error kills the command; the command's own failure (which closes the pipe early) is
/// reported with its stderr.
pub fn pipe_in(exec: &dyn Executor, cmd: &Cmd, input: &mut dyn Read) -> Result<(), ZfsError> {
    let mut child = exec.spawn(cmd, Streams::writing()).map_err(command_error)?;
    let mut stdin = child.stdin().expect("piped stdin");
    let copied = copy_large(input, &mut stdin).and_then(|_| stdin.flush());
    drop(stdin);
    let copy_error = match copied {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            child.kill();
            Some(e)
        }
        _ => None,
    };
    let waited = child.wait();
    if let Some(error) = copy_error {
        return Err(ZfsError::Stream {
            argv: cmd.argv_string(),
            error,
        });
    }
    waited.map_err(command_error)?;
    Ok(())
}
