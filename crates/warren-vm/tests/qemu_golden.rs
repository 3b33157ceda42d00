//! Golden files: the QEMU argv of representative configs (one argument a line, under
//! `tests/golden/qemu`, regenerated with `WARREN_BLESS=1` and reviewed), the probe parsers
//! against `-accel help` / `-machine help` as Debian 12's QEMU 7.2 prints them, and the QMP
//! client replaying a session captured from QEMU 7.2 (`tests/golden/README.md`).

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use warren_vm::config::{Accel, Boot, Disk, DiskFormat, Firmware, Mac, Nic, OVMF_CODE};
use warren_vm::probe;
use warren_vm::qmp::Qmp;
use warren_vm::{qemu, VmConfig};

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(rel)
}

fn check(rel: &str, actual: &str) {
    let path = golden(rel);
    if std::env::var_os("WARREN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
    assert_eq!(actual, want, "{} differs", path.display());
}

fn argv_text(c: &VmConfig) -> String {
    let cmd = qemu::command(c).unwrap();
    let mut s = cmd.program.clone();
    for a in &cmd.args {
        s.push('\n');
        s.push_str(&a.to_string_lossy());
    }
    s.push('\n');
    s
}

fn microvm() -> VmConfig {
    let run = Path::new("/run/warren/vm/web");
    let mut c = VmConfig::kernel(
        "web",
        "/var/lib/warren/vm/kernel/vmlinuz-6.1.0-57-amd64",
        "console=ttyS0 panic=-1 root=/dev/vda rw",
    );
    if let Boot::Kernel { initrd, .. } = &mut c.boot {
        *initrd = Some("/var/lib/warren/vm/kernel/initrd.img".into());
    }
    c.cpus = 2;
    c.memory_mib = 512;
    c.tsc_khz = Some(2_596_150);
    c.disks = vec![
        Disk::raw("/var/lib/warren/workloads/web/rootfs.img"),
        Disk {
            path: "/var/lib/warren/workloads/web/data.qcow2".into(),
            format: DiskFormat::Qcow2,
            readonly: false,
        },
        Disk {
            path: "/var/lib/warren/volumes/assets.img".into(),
            format: DiskFormat::Raw,
            readonly: true,
        },
    ];
    c.nic = Some(Nic {
        tap: "wv1a2b3c4d".into(),
        mac: "52:54:00:1a:2b:3c".parse().unwrap(),
    });
    c.agent = Some(run.join("agent.sock"));
    c.qmp = Some(run.join("qmp.sock"));
    c.console.socket = Some(run.join("console.sock"));
    c.console.log = Some(run.join("console.log"));
    c
}

#[test]
fn microvm_under_tcg() {
    check("qemu/microvm-tcg.argv", &argv_text(&microvm()));
}

#[test]
fn microvm_under_kvm() {
    let mut c = microvm();
    c.accel = Accel::Kvm;
    c.tsc_khz = None;
    check("qemu/microvm-kvm.argv", &argv_text(&c));
}

#[test]
fn q35_installer_iso_with_seabios() {
    let run = Path::new("/run/warren/vm/build1");
    let mut c = microvm();
    c.name = "build1".into();
    c.boot = Boot::Iso {
        iso: "/var/lib/warren/isos/debian-12.11.0-amd64-netinst.iso".into(),
        disk: Some(Disk {
            path: "/var/lib/warren/workloads/build1/disk.qcow2".into(),
            format: DiskFormat::Qcow2,
            readonly: false,
        }),
    };
    c.disks.clear();
    c.accel = Accel::Kvm;
    c.nic = Some(Nic {
        tap: "wv99aa00bb".into(),
        mac: Mac::for_name("build1"),
    });
    c.agent = None;
    c.qmp = Some(run.join("qmp.sock"));
    c.console.socket = None;
    c.console.log = Some(run.join("console.log"));
    check("qemu/q35-iso-bios.argv", &argv_text(&c));
}

#[test]
fn q35_disk_with_ovmf() {
    let run = Path::new("/run/warren/vm/win");
    let mut c = microvm();
    c.name = "win".into();
    c.memory_mib = 4096;
    c.boot = Boot::Disk(Disk::raw("/dev/zvol/tank/warren/win/disk0"));
    c.firmware = Firmware::Uefi {
        code: OVMF_CODE.into(),
        vars: "/var/lib/warren/workloads/win/OVMF_VARS_4M.fd".into(),
    };
    c.disks = vec![Disk::raw("/var/lib/warren/workloads/win/data.img")];
    c.agent = Some(run.join("agent.sock"));
    c.qmp = Some(run.join("qmp.sock"));
    c.console.socket = Some(run.join("console.sock"));
    c.console.log = None;
    check("qemu/q35-disk-uefi.argv", &argv_text(&c));
}

#[test]
fn debian_ovmf_paths_exist() {
    // Debian's `ovmf` package, installed by scripts/install-deps.
    for p in [OVMF_CODE, warren_vm::config::OVMF_VARS] {
        assert!(
            Path::new(p).is_file(),
            "{p} (install ovmf: scripts/install-deps)"
        );
    }
}

#[test]
fn accel_help_of_qemu_7_2() {
    let out = std::fs::read_to_string(golden("probe/accel_help_7.2.txt")).unwrap();
    assert_eq!(probe::parse_accel_help(&out).unwrap(), vec!["tcg", "kvm"]);
}

#[test]
fn machine_help_of_qemu_7_2() {
    let out = std::fs::read_to_string(golden("probe/machine_help_7.2.txt")).unwrap();
    let m = probe::parse_machine_help(&out).unwrap();
    assert!(probe::missing_machines(&m).is_empty());
    let q35 = m.iter().find(|x| x.name == "q35").unwrap();
    assert_eq!(q35.alias_of.as_deref(), Some("pc-q35-7.2"));
    assert_eq!(q35.description, "Standard PC (Q35 + ICH9, 2009)");
    let default: Vec<_> = m.iter().filter(|x| x.default).map(|x| &x.name).collect();
    assert_eq!(default, vec!["pc-i440fx-7.2"]);
    let micro = m.iter().find(|x| x.name == "microvm").unwrap();
    assert_eq!(micro.description, "microvm (i386)");
    assert!(m.iter().any(|x| x.name == "none"));
    assert!(probe::missing_machines(&m[..1]).contains(&"q35"));
}

/// The captured session: `<- ` lines QEMU sent, `-> ` lines the client sent.
struct Transcript {
    input: Cursor<Vec<u8>>,
    written: Vec<u8>,
}

impl Read for Transcript {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn qmp_session_captured_from_qemu_7_2() {
    let text = std::fs::read_to_string(golden("qmp/session_7.2.txt")).unwrap();
    let mut from_qemu = String::new();
    let mut from_client = String::new();
    for l in text.lines() {
        if let Some(m) = l.strip_prefix("<- ") {
            // QEMU ends each message with CRLF on the socket.
            from_qemu.push_str(m);
            from_qemu.push_str("\r\n");
        } else if let Some(m) = l.strip_prefix("-> ") {
            from_client.push_str(m);
            from_client.push('\n');
        }
    }
    let t = Transcript {
        input: Cursor::new(from_qemu.into_bytes()),
        written: Vec::new(),
    };
    let (mut q, g) = Qmp::handshake(t).unwrap();
    assert_eq!(g.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
    assert_eq!(q.query_status().unwrap().status, "prelaunch");
    q.cont().unwrap();
    let s = q.query_status().unwrap();
    assert!(s.running);
    assert_eq!(s.status, "running");
    q.stop().unwrap();
    assert_eq!(q.query_status().unwrap().status, "paused");
    let e = q.execute("nope", None).unwrap_err();
    assert!(e.to_string().contains("CommandNotFound"), "{e}");
    q.system_powerdown().unwrap();
    let events: Vec<String> = q.take_events().into_iter().map(|e| e.name).collect();
    assert_eq!(events, vec!["RESUME", "STOP", "POWERDOWN"]);
    q.quit().unwrap();
    let shutdown = q.wait_event("SHUTDOWN").unwrap();
    assert_eq!(shutdown.data["reason"], "host-qmp-quit");
    assert_eq!(shutdown.data["guest"], false);
    assert_eq!(
        String::from_utf8(q.stream().written.clone()).unwrap(),
        from_client
    );
}
