//! The agent's copy processes: for the host's `CopyOut` and `CopyIn` the agent forks a child
//! (the agent is single-threaded, so the child may run any code) that copies with the tar
//! stream on its stdout or stdin and exits; the supervisor treats it like an exec's process
//! (its pipes relayed, its `Exit` reported after they drain). It does not exec: the guest's
//! root need not hold the agent's dynamic loader. The path is resolved inside the guest's
//! root and archives are checked by `warren_image::copy`, the same code the host uses for
//! containers: links and `..` never leave the root, and archives with `..`, absolute names,
//! links leading outside or device nodes are refused with nothing written. Problems go to
//! stderr (the host shows them) with exit status 1.

use super::setup::Spawned;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use warren_image::copy::{CopyPath, PutOptions, Shape, Tree};
use warren_vm::agent::CopySpec;

/// Starts the copy of `spec` in a child with its stdin, stdout and stderr on pipes, in a
/// session of its own and in the guest's root (where the agent is).
pub fn spawn(out: bool, spec: &CopySpec) -> io::Result<Spawned> {
    let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here only.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: the agent is single-threaded, so the child is a whole copy of it; it only
    // rearranges its descriptors, copies and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: plain syscalls on descriptors this process owns.
        unsafe {
            libc::setsid();
            libc::dup2(in_r.as_raw_fd(), 0);
            libc::dup2(out_w.as_raw_fd(), 1);
            libc::dup2(err_w.as_raw_fd(), 2);
            // Nothing else of the agent's (the port, other processes' pipes) stays open.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::chdir(c"/".as_ptr());
        }
        let code = match copy(out, spec) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(io::stderr(), "{e}");
                1
            }
        };
        let _ = io::stdout().flush();
        // SAFETY: ends the child without running the agent's exit paths.
        unsafe { libc::_exit(code) }
    }
    drop((in_r, out_w, err_w));
    for fd in [&in_w, &out_r, &err_r] {
        super::sys::set_nonblocking(fd.as_raw_fd())?;
    }
    Ok(Spawned {
        pid,
        stdin: in_w,
        stdout: out_r,
        stderr: Some(err_r),
        pty: None,
    })
}

fn copy(out: bool, spec: &CopySpec) -> Result<(), String> {
    let path = CopyPath::parse(&spec.path).map_err(|e| e.to_string())?;
    // The guest's own kernel file systems are not copied (nor walked into from `/`).
    let mut root = Tree::root("/");
    root.extend(["proc", "sys", "dev"].map(|d| Tree {
        at: vec![d.into()],
        source: None,
        readonly: true,
    }));
    if out {
        let stdout = io::stdout().lock();
        warren_image::copy::get(
            &root,
            &path,
            None,
            io::BufWriter::with_capacity(256 * 1024, stdout),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    } else {
        let opts = PutOptions {
            shape: if spec.contents || spec.directory {
                Shape::Contents
            } else {
                Shape::Entry
            },
            require_dir: spec.directory,
            keep_owners: spec.keep_owners,
            ids: None,
            owner: (!spec.keep_owners).then_some((0, 0)),
            max_bytes: None,
        };
        warren_image::copy::put(&root, &path, io::stdin().lock(), &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
