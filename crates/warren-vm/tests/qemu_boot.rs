//! The microVM command line boots for real: QEMU 7.2 runs the argv of
//! [`warren_vm::qemu::args`] with a Debian kernel and an initramfs built here (busybox and an
//! `/init` that prints a marker on the serial console and powers off), with every device the
//! argv can carry attached (a virtio-blk disk, a tap NIC, the agent's virtio-serial port, QMP).
//! The test talks QMP to the running QEMU, waits for the marker on the console log and for
//! QEMU to exit on the guest's power-off; on failure it kills the QEMU it started.
//!
//! Needs root (the tap), `qemu-system-x86_64` and busybox-static (`scripts/install-deps`), and
//! a kernel: `WARREN_VM_KERNEL`, else Debian's `linux-image-amd64` kernel fetched with
//! `apt-get download` and unpacked (not installed) under the target dir
//! ([`warren_vm::kernel::ensure_kernel`]).
//!
//! The KVM test measures whether this host's `/dev/kvm` boots the same guest and checks that
//! the accelerator choice follows what happened.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use warren_exec::{Cmd, Executor, HostExecutor};
use warren_vm::config::{Accel, Boot, Disk, Mac, Nic};
use warren_vm::probe::{self, KvmProbe, ProbeBoot};
use warren_vm::qmp::Qmp;
use warren_vm::{initramfs, qemu, VmConfig};

const MARKER: &str = "WARREN-VM-BOOTED";

/// A kernel to boot ([`warren_vm::kernel::ensure_kernel`], cached under the target dir).
fn kernel() -> PathBuf {
    static KERNEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KERNEL
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-kernel");
            warren_vm::kernel::ensure_kernel(&HostExecutor, &cache)
                .expect("a kernel (WARREN_VM_KERNEL, or Debian's fetched with apt-get download)")
                .vmlinuz
        })
        .clone()
}

/// A gzip-compressed initramfs: static busybox and an `/init` that prints the marker and
/// powers the VM off.
fn initrd(dir: &Path) -> PathBuf {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (busybox-static, installed by scripts/install-deps)");
    let init = format!(
        "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho {MARKER} $(/bin/busybox cat /proc/uptime)\n/bin/busybox poweroff -f\n"
    );
    let mut a = initramfs::Archive::new();
    a.dir("bin", 0o755).unwrap();
    a.file("bin/busybox", 0o755, &busybox).unwrap();
    a.symlink("bin/sh", "busybox").unwrap();
    a.dir("dev", 0o755).unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.dir("proc", 0o755).unwrap();
    a.file("init", 0o755, init.as_bytes()).unwrap();
    let path = dir.join("initrd.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&a.finish()).unwrap();
    gz.finish().unwrap();
    path
}

/// A tap device, deleted on drop.
struct Tap(String);

impl Tap {
    fn new(name: &str) -> Tap {
        let _ =
            HostExecutor.run(&Cmd::new("ip").args(["tuntap", "del", "dev", name, "mode", "tap"]));
        HostExecutor
            .run(&Cmd::new("ip").args(["tuntap", "add", "dev", name, "mode", "tap"]))
            .expect("creating a tap device (needs root)");
        Tap(name.to_string())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = HostExecutor
            .run(&Cmd::new("ip").args(["tuntap", "del", "dev", &self.0, "mode", "tap"]));
    }
}

/// QEMU, killed by its PID if still running on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Outcome {
    /// Milliseconds from spawn to the marker on the console, if it appeared.
    marker_ms: Option<u128>,
    /// Milliseconds from spawn to QEMU's exit, and its status, if it exited.
    exit: Option<(u128, std::process::ExitStatus)>,
    /// The run state QMP reported while the guest ran.
    qmp_status: Option<String>,
    /// Whether QMP reported the guest's own shutdown.
    qmp_guest_shutdown: bool,
    console: String,
    stderr: String,
}

fn boot(accel: Accel, tag: &str, deadline: Duration) -> Outcome {
    let kernel = kernel();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("data.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let tap = Tap::new(&format!("wvt{tag}{}", std::process::id() % 10000));
    let mut c = VmConfig::kernel(
        &format!("boot-{tag}"),
        &kernel,
        "console=ttyS0 panic=-1 loglevel=4",
    );
    if let Boot::Kernel { initrd: i, .. } = &mut c.boot {
        *i = Some(initrd(dir.path()));
    }
    c.accel = accel;
    c.tsc_khz = probe::host_tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
    c.memory_mib = 256;
    c.disks.push(Disk::raw(&disk));
    c.nic = Some(Nic {
        tap: tap.0.clone(),
        mac: Mac::for_name(&c.name),
    });
    c.agent = Some(dir.path().join("agent.sock"));
    c.qmp = Some(dir.path().join("qmp.sock"));
    let console_log = dir.path().join("console.log");
    c.console.log = Some(console_log.clone());
    c.console.socket = Some(dir.path().join("console.sock"));

    let args = qemu::args(&c).unwrap();
    let stderr_path = dir.path().join("qemu.stderr");
    let start = Instant::now();
    let child = warren_exec::std_command(qemu::QEMU)
        .expect("qemu-system-x86_64 (qemu-system-x86, installed by scripts/install-deps)")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut q = Qemu(child);

    // QMP: the greeting, then the run state while the guest boots.
    let qmp_path = c.qmp.clone().unwrap();
    let mut qmp = None;
    let mut qmp_status = None;
    while start.elapsed() < Duration::from_secs(10) && q.0.try_wait().unwrap().is_none() {
        if let Ok(s) = UnixStream::connect(&qmp_path) {
            s.set_read_timeout(Some(deadline)).unwrap();
            // A QEMU that dies at once (as under an unusable KVM) resets the connection.
            let Ok((mut session, greeting)) = Qmp::handshake(s) else {
                break;
            };
            assert_eq!((greeting.version.major, greeting.version.minor), (7, 2));
            qmp_status = session.query_status().ok().map(|s| s.status);
            qmp = Some(session);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut marker_ms = None;
    let mut exit = None;
    let read_console = || std::fs::read_to_string(&console_log).unwrap_or_default();
    while start.elapsed() < deadline {
        if marker_ms.is_none() && read_console().contains(MARKER) {
            marker_ms = Some(start.elapsed().as_millis());
        }
        if let Some(st) = q.0.try_wait().unwrap() {
            exit = Some((start.elapsed().as_millis(), st));
            if marker_ms.is_none() && read_console().contains(MARKER) {
                marker_ms = Some(start.elapsed().as_millis());
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut qmp_guest_shutdown = false;
    if let (Some(session), Some(_)) = (qmp.as_mut(), exit) {
        // QEMU reports the guest's power-off before it exits.
        if let Ok(e) = session.wait_event("SHUTDOWN") {
            qmp_guest_shutdown = e.data["guest"] == true;
        }
    }
    drop(q);
    Outcome {
        marker_ms,
        exit,
        qmp_status,
        qmp_guest_shutdown,
        console: read_console(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

#[test]
fn microvm_boots_under_tcg_prints_the_marker_and_powers_off() {
    let o = boot(Accel::Tcg, "t", Duration::from_secs(60));
    let ctx = format!("console:\n{}\nqemu stderr:\n{}", o.console, o.stderr);
    let marker = o
        .marker_ms
        .unwrap_or_else(|| panic!("no marker within 60 s\n{ctx}"));
    let (exit_ms, status) = o
        .exit
        .unwrap_or_else(|| panic!("QEMU did not exit within 60 s\n{ctx}"));
    assert!(status.success(), "QEMU exited with {status}\n{ctx}");
    assert_eq!(o.qmp_status.as_deref(), Some("running"), "{ctx}");
    assert!(
        o.qmp_guest_shutdown,
        "no guest SHUTDOWN event over QMP\n{ctx}"
    );
    let line = o.console.lines().find(|l| l.contains(MARKER)).unwrap_or("");
    eprintln!("tcg: marker after {marker} ms, QEMU exited after {exit_ms} ms (guest: {line})");
}

#[test]
fn kvm_probe_boot_decides_the_accelerator() {
    let device = probe::kvm_device(Path::new("/dev/kvm"));
    let help = HostExecutor
        .run(&qemu::accel_help_cmd())
        .unwrap()
        .stdout_str();
    let qemu_has_kvm = probe::parse_accel_help(&help)
        .unwrap()
        .iter()
        .any(|a| a == "kvm");
    let boot_result = if device == probe::KvmDevice::Usable && qemu_has_kvm {
        let o = boot(Accel::Kvm, "k", Duration::from_secs(20));
        let result = match (o.marker_ms, o.exit) {
            (Some(ms), _) => ProbeBoot::Booted { millis: ms as u64 },
            (None, Some((ms, st))) => ProbeBoot::Failed(format!(
                "QEMU exited ({st}) after {ms} ms without the marker: {}",
                o.stderr.trim()
            )),
            (None, None) => ProbeBoot::Failed(format!(
                "no marker within 20 s; console: {:?}",
                o.console
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            )),
        };
        Some(result)
    } else {
        None
    };
    let p = KvmProbe {
        device,
        qemu_has_kvm,
        boot: boot_result.clone(),
    };
    let choice = probe::choose_accel(&p);
    eprintln!("kvm probe: {:?} -> {}", boot_result, choice.reason);
    let booted = matches!(boot_result, Some(ProbeBoot::Booted { .. }));
    assert_eq!(choice.accel == Accel::Kvm, booted, "{choice:?}");
}

/// Starts QEMU with `c`'s argv, checks over QMP that the guest runs, and quits it over QMP.
fn start_and_quit(c: &VmConfig, dir: &Path) {
    let stderr_path = dir.join("qemu.stderr");
    let child = warren_exec::std_command(qemu::QEMU)
        .unwrap()
        .args(qemu::args(c).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut q = Qemu(child);
    let start = Instant::now();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let stream = loop {
        if let Some(st) = q.0.try_wait().unwrap() {
            panic!("{}: QEMU exited ({st}): {}", c.name, stderr());
        }
        if let Ok(s) = UnixStream::connect(c.qmp.as_ref().unwrap()) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}: no QMP socket within 20 s: {}",
            c.name,
            stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut session, _) = Qmp::handshake(stream).unwrap();
    assert_eq!(session.query_status().unwrap().status, "running");
    session.quit().unwrap();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(st) = q.0.try_wait().unwrap() {
            assert!(
                st.success(),
                "{}: QEMU exited with {st}: {}",
                c.name,
                stderr()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{}: QEMU did not exit after quit", c.name);
}

#[test]
fn q35_argv_runs_with_seabios_and_an_iso_and_with_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = |name: &str, len: u64| {
        let p = d.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    };
    let tap = Tap::new(&format!("wvq{}", std::process::id() % 10000));
    let mut c = VmConfig::kernel("q35-bios", "/unused", "");
    c.boot = Boot::Iso {
        iso: file("installer.iso", 1 << 20),
        disk: Some(Disk::raw(file("disk.img", 16 << 20))),
    };
    c.disks.push(Disk::raw(file("data.img", 1 << 20)));
    c.nic = Some(Nic {
        tap: tap.0.clone(),
        mac: Mac::for_name("q35"),
    });
    c.agent = Some(d.join("agent.sock"));
    c.qmp = Some(d.join("qmp.sock"));
    c.console.log = Some(d.join("console.log"));
    start_and_quit(&c, d);

    let vars = d.join("OVMF_VARS_4M.fd");
    std::fs::copy(warren_vm::config::OVMF_VARS, &vars).unwrap();
    c.name = "q35-uefi".into();
    c.boot = Boot::Disk(Disk::raw(d.join("disk.img")));
    c.firmware = warren_vm::config::Firmware::Uefi {
        code: warren_vm::config::OVMF_CODE.into(),
        vars,
    };
    c.console.socket = Some(d.join("console.sock"));
    start_and_quit(&c, d);
}
