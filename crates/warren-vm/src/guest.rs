//! What a microVM boots: a kernel (the operator's, or Debian's unpacked into the state dir by
//! [`crate::kernel`]) and warren's initramfs holding the guest agent and the kernel modules
//! it loads ([`crate::initramfs`]), both cached under the runtime's state dir; the guest's
//! disk names; and the probe boot that tells whether KVM works on this host.

use crate::config::{Accel, Boot, Console};
use crate::kernel::ensure_kernel;
use crate::{qemu, Result, VmConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warren_exec::Executor;

/// The kernel command line every microVM gets (the operator's `cmdline` is appended): the
/// console on the serial port, a panic powers off instead of hanging.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// The guest's name of the `i`-th virtio-blk disk, in the order QEMU's argv attaches them.
pub fn disk_device(i: usize) -> String {
    let mut name = String::new();
    let mut n = i;
    loop {
        name.insert(0, (b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    format!("/dev/vd{name}")
}

/// A microVM's kernel and initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The kernel (`kernel`, else Debian's in `<state>/kernel`) and the initramfs (`initrd`, else
/// warren's, built for that kernel with `agent` as PID 1 and cached in `<state>/initramfs`).
pub fn boot_files(
    exec: &dyn Executor,
    state_dir: &Path,
    agent: &Path,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
) -> Result<BootFiles> {
    let files = match kernel {
        Some(k) => crate::kernel::from_path(k)?,
        None => ensure_kernel(exec, &state_dir.join("kernel"))?,
    };
    let initramfs = match initrd {
        Some(i) => i.to_path_buf(),
        None => {
            let out = state_dir
                .join("initramfs")
                .join(format!("initramfs-{}.cpio", files.release));
            std::fs::create_dir_all(state_dir.join("initramfs"))
                .map_err(|e| crate::invalid("initramfs", e.to_string()))?;
            crate::initramfs::build_guest_initramfs(exec, agent, &files, &out)?;
            out
        }
    };
    Ok(BootFiles {
        kernel: files.vmlinuz,
        initramfs,
    })
}

/// Boots a throwaway microVM with `accel` until its agent greets (true) or a deadline
/// passes or QEMU fails (false); the VM is killed either way.
pub fn probe_boot(
    exec: &dyn Executor,
    state_dir: &Path,
    agent: &Path,
    accel: Accel,
) -> Result<bool> {
    let files = boot_files(exec, state_dir, agent, None, None)?;
    let dir = state_dir.join("probe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| crate::invalid("probe", e.to_string()))?;
    let mut cfg = VmConfig::kernel("warren-probe", &files.kernel, CMDLINE);
    cfg.boot = Boot::Kernel {
        kernel: files.kernel,
        initrd: Some(files.initramfs),
        cmdline: CMDLINE.into(),
    };
    cfg.accel = accel;
    cfg.agent = Some(dir.join("agent.sock"));
    cfg.console = Console {
        socket: None,
        log: Some(dir.join("console.log")),
    };
    let Some(program) = warren_exec::resolve("qemu-system-x86_64") else {
        return Ok(false);
    };
    let mut cmd = warren_exec::std_command(&program.to_string_lossy())
        .map_err(|e| crate::invalid("probe", e.to_string()))?;
    cmd.args(qemu::args(&cfg)?)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return Ok(false);
    };
    let ok = greet(
        &dir.join("agent.sock"),
        &mut child,
        Instant::now() + Duration::from_secs(15),
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

fn greet(sock: &Path, child: &mut std::process::Child, deadline: Instant) -> bool {
    use crate::agent::proto::{self, Frame, Hello, Kind};
    let mut s = loop {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if let Ok(s) = std::os::unix::net::UnixStream::connect(sock) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let hello = Frame::control(
        Kind::Hello,
        0,
        &Hello {
            version: proto::VERSION,
            kernel: None,
        },
    );
    if proto::write_frame(&mut s, &hello).is_err() {
        return false;
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = s.set_read_timeout(Some(left));
    matches!(proto::read_frame(&mut s), Ok(Some(f)) if f.kind == Kind::Hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_named_like_the_guest_kernel_names_them() {
        assert_eq!(disk_device(0), "/dev/vda");
        assert_eq!(disk_device(1), "/dev/vdb");
        assert_eq!(disk_device(25), "/dev/vdz");
        assert_eq!(disk_device(26), "/dev/vdaa");
        assert_eq!(disk_device(27), "/dev/vdab");
    }
}
