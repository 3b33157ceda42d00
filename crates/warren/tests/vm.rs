//! MicroVMs as workloads, end to end: a `kind = "vm"` workload from the busybox world boots
//! under real QEMU (TCG where KVM does not boot) with warren's kernel, initramfs and agent,
//! and is driven through the same CLI verbs as a container: exec with the exit status and a
//! terminal, logs, a published port, names both ways on the bridge, data kept across stop
//! and start, adoption after a daemon SIGKILL, and nothing left after `delete --purge`.
//!
//! Needs root and `qemu-system-x86_64`; the `warren-agent` binary is built next to `warren`
//! when missing. Boots are few and shared: each
//! TCG boot costs 10–25 s here.

mod common;

use common::{alive, free_port, wait_until, Daemon};
use std::path::Path;

fn require_vm_host() {
    common::ensure_agent();
    assert!(
        warren_exec::resolve("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (scripts/install-deps)"
    );
}

fn qemu_pids_of(run_dir: &Path) -> Vec<i32> {
    let marker = run_dir.join("qmp.sock").display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                .unwrap_or(false)
        })
        .collect()
}

/// The tap devices enslaved to `bridge`.
fn taps_on(bridge: &str) -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(&format!("/sys/class/net/{n}/tun_flags")).exists())
        .filter(|n| {
            std::fs::read_link(format!("/sys/class/net/{n}/master"))
                .map(|m| m.file_name().is_some_and(|f| f == bridge))
                .unwrap_or(false)
        })
        .collect()
}

fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_microvm_is_a_workload_like_a_container() {
    require_vm_host();
    let mut d = Daemon::start(&[]);
    let port = free_port();
    let wide = free_port();
    let file = format!(
        r#"[workload.vm1]
kind = "vm"
world = "busybox"
resources = {{ memory = "256M" }}
ports = ["127.0.0.1:{port}:8080", "{wide}:8080"]
domains = ["vm.test"]
port = 8080
command = ["/bin/sh", "-c", "echo hello-from-vm; cat /data/x 2>/dev/null; echo kept > /data/x; sync; mkdir -p /www; echo served-by-vm > /www/index.html; exec httpd -f -p 8080 -h /www"]

[workload.c1]
world = "busybox"
command = ["sleep", "100000"]
"#
    );
    d.apply("vm.toml", &file);
    let v = d.wait_for("vm1", 180, "the VM running", |v| {
        v["state"] == "running" && v["pid"].is_i64()
    });
    let qemu = v["pid"].as_i64().unwrap() as i32;
    assert!(
        v["accel"] == "tcg" || v["accel"] == "kvm",
        "get names the accelerator: {v:#}"
    );
    let run_dir = d.state_dir().join("workloads/vm1");
    assert_eq!(
        qemu_pids_of(&run_dir),
        [qemu],
        "the workload's pid is its QEMU"
    );
    d.wait_running("c1");

    // logs: the main process's output, through the agent into the CRI log.
    wait_until(30, "the VM's output in its log", || {
        d.ok(&["logs", "vm1"]).contains("hello-from-vm")
    });
    // exec: the exit status, output streams, stdin and a terminal.
    let out = d.cli(&[
        "exec",
        "vm1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = d.cli(&["exec", "-t", "vm1", "--", "tty"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{out:?}"
    );
    let out = d.ok(&["exec", "vm1", "--", "uname", "-r"]);
    assert!(!out.trim().is_empty());

    // cp through the agent: a directory in and out, modes kept; hostile input refused in
    // the guest with nothing written.
    use std::os::unix::fs::PermissionsExt;
    let local = tempfile::tempdir().unwrap();
    let site = local.path().join("site");
    std::fs::create_dir_all(site.join("sub")).unwrap();
    std::fs::write(site.join("index.html"), "copied-in").unwrap();
    std::fs::set_permissions(
        site.join("index.html"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(site.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        site.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    d.ok(&["cp", site.to_str().unwrap(), "vm1:/data"]);
    let out = d.ok(&[
        "exec",
        "vm1",
        "--",
        "sh",
        "-c",
        "stat -c '%a %u' /data/site/index.html /data/site/sub/run.sh; cat /data/site/index.html",
    ]);
    assert_eq!(out, "640 0\n751 0\ncopied-in");
    let back = local.path().join("back");
    d.ok(&["cp", "vm1:/data/site", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("index.html")).unwrap(),
        "copied-in"
    );
    assert_eq!(
        std::fs::metadata(back.join("sub/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o751
    );
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..7].copy_from_slice(b"../evil");
    h.set_mode(0o644);
    h.set_size(0);
    h.set_cksum();
    let mut evil = h.as_bytes().to_vec();
    evil.resize(512 + 1024, 0);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["cp", "-", "vm1:/data"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &evil).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a `..` entry was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".."),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.ok(&[
        "exec",
        "vm1",
        "--",
        "sh",
        "-c",
        "ls -a / /data | grep -c -e evil -e warren-cp; true",
    ]);
    assert_eq!(out, "0\n");
    let out = d.cli(&["cp", "vm1:/no/such", local.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );

    // A published port answers from the host, through the bridge and the VM's tap.
    wait_until(30, "the VM's published port", || {
        std::process::Command::new("busybox")
            .args([
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://127.0.0.1:{port}/"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("served-by-vm"))
            .unwrap_or(false)
    });
    // And from another machine (a network namespace on a veth link) on the port published
    // on every address.
    let peer = common::Peer::new("vm", 150 + (std::process::id() % 40));
    wait_until(30, "the VM's published port from another machine", || {
        let (code, body) = peer.curl(&format!("http://{}:{wide}/", peer.host_ip));
        code == 200 && body.contains("served-by-vm")
    });
    drop(peer);
    // A domain routes through the ingress to the VM.
    d.wait_running("warren-ingress");
    wait_until(60, "the VM's domain through the ingress", || {
        std::process::Command::new("curl")
            .args(["-s", "-m", "5", "-H", "Host: vm.test"])
            .arg(format!("http://127.0.0.1:{}/", d.net.http_port))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("served-by-vm"))
            .unwrap_or(false)
    });
    // Names both ways: the container reaches the VM, the VM reaches the container.
    let out = d.ok(&[
        "exec",
        "c1",
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        "http://vm1:8080/",
    ]);
    assert!(out.contains("served-by-vm"), "{out}");
    let out = d.cli(&["exec", "vm1", "--", "ping", "-c", "1", "-W", "5", "c1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // A workload added while the VM runs: the guest is given the new names.
    d.apply(
        "vm.toml",
        &format!("{file}\n[workload.c2]\nworld = \"busybox\"\ncommand = [\"sleep\", \"100000\"]\n"),
    );
    d.wait_running("c2");
    wait_until(30, "the new name in the running guest's /etc/hosts", || {
        d.ok(&["exec", "vm1", "--", "cat", "/etc/hosts"])
            .contains("c2")
    });
    let out = d.cli(&["exec", "vm1", "--", "ping", "-c", "1", "-W", "5", "c2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The daemon's SIGKILL leaves QEMU running; the next daemon adopts it.
    d.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    assert!(alive(qemu), "QEMU died with the daemon");
    d.spawn();
    let v = d.wait_for("vm1", 60, "the VM adopted", |v| v["state"] == "running");
    assert_eq!(
        v["pid"].as_i64(),
        Some(qemu as i64),
        "the VM was restarted, not adopted"
    );
    let out = d.cli(&["exec", "vm1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec after adoption: {out:?}");

    // QEMU killed: a crash, restarted by the restart policy (data kept).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu),
        nix::sys::signal::Signal::SIGKILL,
    );
    let v = d.wait_for("vm1", 180, "the crashed VM restarted", |v| {
        v["state"] == "running" && v["pid"].as_i64() != Some(qemu as i64)
    });
    assert!(v["restarts"].as_u64() >= Some(1), "{v:#}");
    assert_eq!(v["last_exit"]["code"], 137, "{v:#}");

    // Stop and start: the data disk in the data dataset keeps what the guest wrote.
    d.ok(&["stop", "vm1"]);
    let v = d.get("vm1");
    assert_ne!(v["state"], "running", "{v:#}");
    assert!(qemu_pids_of(&run_dir).is_empty(), "QEMU outlived stop");
    d.ok(&["start", "vm1"]);
    d.wait_for("vm1", 180, "the VM running again", |v| {
        v["state"] == "running"
    });
    wait_until(60, "the data written before the stop", || {
        d.ok(&["logs", "vm1"]).contains("kept")
    });

    // delete --purge leaves no QEMU, tap, disk or cgroup.
    let taps = taps_on(&d.net.bridge);
    assert_eq!(taps.len(), 1, "the VM's tap on the bridge: {taps:?}");
    d.ok(&["delete", "--purge", "vm1"]);
    assert!(qemu_pids_of(&run_dir).is_empty(), "QEMU outlived delete");
    assert!(!run_dir.exists(), "the run dir outlived delete");
    assert!(!link_exists(&taps[0]), "tap {} left behind", taps[0]);
    for ctl in common::cgroup_controllers() {
        let dir = Path::new("/sys/fs/cgroup")
            .join(&ctl)
            .join(format!("warren-{}", d.instance()))
            .join("vm1");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// A one-layer busybox image `vmimg:v1`, as a docker-save archive in `dir`.
fn busybox_image(dir: &Path) -> std::path::PathBuf {
    for tool in ["umoci", "skopeo"] {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "{tool} is missing: apt-get install {tool} (scripts/install-deps)"
        );
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is missing (scripts/install-deps)");
    let out = std::process::Command::new("sh")
        .args([
            "-euc",
            r#"umoci init --layout L
umoci new --image L:v1
umoci unpack --image L:v1 B
mkdir -p B/rootfs/bin B/rootfs/etc B/rootfs/tmp
cp "$BUSYBOX" B/rootfs/bin/busybox
for a in sh cat echo sleep sync; do ln -s busybox B/rootfs/bin/$a; done
umoci repack --image L:v1 B
umoci config --image L:v1 --config.entrypoint /bin/sh --config.entrypoint -c --config.cmd 'echo image-vm-up; exec sleep 100000'
skopeo --insecure-policy copy oci:L:v1 docker-archive:img.tar:vmimg:v1"#,
        ])
        .current_dir(dir)
        .env("BUSYBOX", busybox)
        .output()
        .unwrap();
    assert!(out.status.success(), "building the image: {out:?}");
    dir.join("img.tar")
}

fn vm_from_image(extra: &str) -> String {
    format!(
        r#"[workload.vm2]
kind = "vm"
image = "vmimg:v1"
resources = {{ memory = "192M" }}
network = "none"
{extra}
"#
    )
}

/// What the guest's `/data/x` holds (after waiting for the VM to run).
fn data_of(d: &Daemon) -> String {
    d.wait_for("vm2", 180, "the VM running", |v| v["state"] == "running");
    d.ok(&["exec", "vm2", "--", "cat", "/data/x"])
        .trim()
        .to_string()
}

#[test]
fn a_vm_from_an_image_keeps_its_data_across_drift_rollback_and_export() {
    require_vm_host();
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let image = busybox_image(tmp.path());
    d.ok(&["image", "import", image.to_str().unwrap()]);
    d.apply("vm2.toml", &vm_from_image(""));
    d.wait_for("vm2", 180, "the VM running", |v| v["state"] == "running");
    wait_until(30, "the image's command in the log", || {
        d.ok(&["logs", "vm2"]).contains("image-vm-up")
    });
    d.ok(&["exec", "vm2", "--", "sh", "-c", "echo v1 > /data/x"]);

    // Drift (a changed environment) recreates the VM with its data kept.
    let before = d.get("vm2")["pid"].clone();
    d.apply("vm2.toml", &vm_from_image("env = { MODE = \"two\" }"));
    d.wait_for("vm2", 180, "the VM recreated", |v| {
        v["state"] == "running" && v["pid"] != before
    });
    assert_eq!(data_of(&d), "v1");
    let env = d.ok(&["exec", "vm2", "--", "sh", "-c", "echo $MODE"]);
    assert_eq!(env.trim(), "two", "the recreated VM runs the new spec");

    // A snapshot of the running VM (its filesystems frozen by the agent), a change, a
    // rollback: the data is the snapshot's.
    d.ok(&["snapshot", "vm2", "--label", "s1"]);
    d.ok(&["exec", "vm2", "--", "sh", "-c", "echo v2 > /data/x"]);
    assert_eq!(data_of(&d), "v2");
    d.ok(&["rollback", "vm2", "s1"]);
    assert_eq!(data_of(&d), "v1");

    // Export, delete with the data, import: the data comes back.
    let archive = tmp.path().join("vm2.warx");
    d.ok(&["export", "vm2", "-o", archive.to_str().unwrap()]);
    d.ok(&["delete", "--purge", "vm2"]);
    assert!(d.list().iter().all(|w| w["name"] != "vm2"));
    d.ok(&["import", archive.to_str().unwrap()]);
    assert_eq!(data_of(&d), "v1");
}

#[test]
fn bad_vm_specs_are_refused_with_their_location() {
    let d = Daemon::start(&[]);
    let cases = [
        (
            "[workload.v]\nkind = \"vm\"\nworld = \"busybox\"\n\n[workload.v.vm]\nkernel = \"/nonexistent/vmlinuz\"\n",
            "kernel",
        ),
        (
            "[workload.v]\nkind = \"vm\"\n\n[workload.v.vm]\niso = \"/nonexistent/x.iso\"\n",
            "iso",
        ),
        (
            "[workload.v]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"100000G\" }\n",
            "memory",
        ),
        (
            "[workload.v]\nkind = \"vm\"\nimage = \"busybox\"\n\n[workload.v.vm]\ndisk = \"/tmp/x.img\"\n",
            "disk",
        ),
    ];
    for (i, (toml, field)) in cases.iter().enumerate() {
        let path = d.state_dir().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = d.cli(&["apply", "-f", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(err.contains(field), "case {i}: {err}");
        assert!(
            err.contains(&format!("bad{i}.toml:")),
            "case {i} is not located: {err}"
        );
    }
    assert!(d.list().is_empty(), "a refused apply changed something");
}

/// What a full VM's guest prints on its serial console once booted, before it reads a line.
const ISO_MARKER: &str = "WARREN-ISO-BOOTED";
/// What a full VM's guest writes at the start of its own disk.
const DISK_MARKER: &str = "WARREN-DISK-WRITTEN-BY-THE-GUEST";

/// A BIOS-bootable installer-style ISO made with `grub-mkrescue`: GRUB on the serial port
/// boots Debian's kernel (the one the VM tests share) with `console=ttyS0` and an initramfs
/// whose `/init` (busybox) loads the virtio disk driver, writes [`DISK_MARKER`] at the start of
/// its disk (`/dev/vda`, the VM's own disk), prints [`ISO_MARKER`], waits for a line on the
/// console holding `console-says-`, answers `GOT:<line>` and powers the VM off.
fn installer_iso(dir: &Path) -> std::path::PathBuf {
    for (tool, pkg) in [
        ("grub-mkrescue", "grub-common"),
        ("xorriso", "xorriso"),
        ("mformat", "mtools"),
    ] {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "{tool} is missing: apt-get install {pkg} (scripts/install-deps)"
        );
    }
    assert!(
        Path::new("/usr/lib/grub/i386-pc").is_dir(),
        "GRUB's BIOS modules are missing: apt-get install grub-pc-bin (scripts/install-deps)"
    );
    let kernel = warren_vm::kernel::ensure_kernel(
        &warren_exec::HostExecutor,
        &common::vm_cache().join("kernel"),
    )
    .expect("Debian's kernel (fetched with apt-get download into the shared VM cache)");
    let tree = dir.join("iso");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::copy(&kernel.vmlinuz, tree.join("boot/vmlinuz")).unwrap();

    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (busybox-static, installed by scripts/install-deps)");
    // The VM's own disk is a virtio-blk-pci device: its driver and the transport, as modules.
    let modules =
        warren_vm::kernel::guest_modules(&kernel.modules_dir, &["virtio_pci", "virtio_blk"])
            .expect("the virtio modules of Debian's kernel");
    let mut a = warren_vm::initramfs::Archive::new();
    a.dir("ko", 0o755).unwrap();
    let mut insmod = String::new();
    for (i, m) in modules.iter().enumerate() {
        a.file(&format!("ko/{i}.ko"), 0o644, &std::fs::read(m).unwrap())
            .unwrap();
        insmod.push_str(&format!("/bin/busybox insmod /ko/{i}.ko\n"));
    }
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         {insmod}\
         for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 1; done\n\
         echo {DISK_MARKER} | /bin/busybox dd of=/dev/vda conv=fsync 2>/dev/null\n\
         echo {ISO_MARKER} $(/bin/busybox cat /proc/uptime)\n\
         while read -r line; do\n\
         \x20 case \"$line\" in *console-says-*) echo \"GOT:$line\"; break;; esac\n\
         done\n\
         /bin/busybox poweroff -f\n"
    );
    a.dir("bin", 0o755).unwrap();
    a.file("bin/busybox", 0o755, &busybox).unwrap();
    a.symlink("bin/sh", "busybox").unwrap();
    a.dir("dev", 0o755).unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.dir("proc", 0o755).unwrap();
    a.file("init", 0o755, init.as_bytes()).unwrap();
    // Uncompressed: the kernel takes a plain newc archive.
    std::fs::write(tree.join("boot/initrd"), a.finish()).unwrap();
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry \"warren test\" {\n\
         \x20 linux /boot/vmlinuz console=ttyS0 quiet\n\
         \x20 initrd /boot/initrd\n\
         }\n",
    )
    .unwrap();
    let iso = dir.join("install.iso");
    use warren_exec::Executor;
    warren_exec::HostExecutor
        .run(
            &warren_exec::Cmd::new("grub-mkrescue")
                .arg("-o")
                .arg(&iso)
                .arg(&tree),
        )
        .expect("grub-mkrescue");
    iso
}

/// `warren console NAME` with piped stdin; its stdout collected as it comes.
struct Console {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Console {
    fn attach(d: &Daemon, name: &str) -> Console {
        use std::process::Stdio;
        let mut child = std::process::Command::new(common::WARREN)
            .args(["console", name])
            .env("WARREN_STATE_DIR", d.state_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Console { child, out }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Its exit status, waiting at most `secs`.
    fn wait(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`warren console` did not end; output: {}",
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn a_full_vm_boots_an_installer_iso_and_its_console_attaches() {
    require_vm_host();
    let work = tempfile::tempdir().unwrap();
    let iso = installer_iso(work.path());
    let d = Daemon::start(&[]);
    let t0 = std::time::Instant::now();
    d.apply(
        "iso.toml",
        &format!(
            "[workload.iso1]\nkind = \"vm\"\nrestart = \"never\"\nresources = {{ memory = \"256M\" }}\n\n[workload.iso1.vm]\niso = \"{}\"\ndisk_size = \"64M\"\n",
            iso.display()
        ),
    );
    let v = d.wait_for("iso1", 60, "the full VM running", |v| {
        v["state"] == "running" && v["pid"].is_i64()
    });
    let qemu = v["pid"].as_i64().unwrap() as i32;
    let run_dir = d.state_dir().join("workloads/iso1");
    assert_eq!(
        qemu_pids_of(&run_dir),
        [qemu],
        "the workload's pid is its QEMU"
    );

    // A console attached while the VM boots sees the guest's output as it comes, and the
    // console is the VM's log too: SeaBIOS, GRUB, the kernel, then the marker.
    let mut first = Console::attach(&d, "iso1");
    wait_until(120, "the ISO's marker in the VM's log", || {
        d.ok(&["logs", "iso1"]).contains(ISO_MARKER)
    });
    let booted = t0.elapsed();
    wait_until(10, "the marker on the attached console", || {
        first.output().contains(ISO_MARKER)
    });
    let logs = d.ok(&["logs", "iso1"]);
    assert!(logs.contains("SeaBIOS"), "{logs}");
    // Ctrl-] detaches: the CLI ends with status 0 and the VM keeps running.
    first.send(&[0x1d]);
    let st = first.wait(10);
    assert!(st.success(), "detach: {st}");
    assert_eq!(d.get("iso1")["state"], "running");

    // A snapshot of a running full VM pauses its vCPUs (no agent to freeze its
    // filesystems) and lets it run on.
    d.ok(&["snapshot", "iso1", "--label", "running"]);
    assert_eq!(d.get("iso1")["state"], "running");
    assert_eq!(qemu_pids_of(&run_dir), [qemu], "the snapshot kept its QEMU");

    // A second console writes a line; the guest answers on the console and powers off,
    // which ends `warren console` with status 0.
    let mut second = Console::attach(&d, "iso1");
    // Sent again until answered: the guest may not read the console yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    'answered: loop {
        second.send(b"console-says-hi\n");
        for _ in 0..30 {
            if second.output().contains("GOT:console-says-hi") {
                break 'answered;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer on the console: {}",
            second.output()
        );
    }
    let st = second.wait(60);
    assert!(st.success(), "console at the VM's end: {st}");
    let v = d.wait_for("iso1", 30, "the VM exited after its power-off", |v| {
        v["state"] == "exited"
    });
    assert!(v["pid"].is_null(), "{v:#}");
    assert!(
        qemu_pids_of(&run_dir).is_empty(),
        "QEMU outlived the power-off"
    );
    assert!(d.ok(&["logs", "iso1"]).contains("GOT:console-says-hi"));
    // The VM's own disk is an empty sparse raw disk in its data dataset (an ISO without a
    // `disk`), and the guest wrote it.
    let own = d.pool_root().join("workloads/iso1/data/vm-root.raw");
    let meta = std::fs::metadata(&own).expect("the full VM's own disk in its data dataset");
    assert_eq!(meta.len(), 64 << 20, "disk_size");
    let mut head = vec![0u8; DISK_MARKER.len()];
    std::io::Read::read_exact(&mut std::fs::File::open(&own).unwrap(), &mut head).unwrap();
    assert_eq!(String::from_utf8_lossy(&head), DISK_MARKER);
    eprintln!(
        "full VM (TCG, SeaBIOS + GRUB + kernel from an ISO): marker after {:.1}s, power-off after {:.1}s",
        booted.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    // A VM that is not running has no console to attach to.
    let out = d.cli(&["console", "iso1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");

    // delete --purge leaves no QEMU, run dir or cgroup.
    d.ok(&["delete", "--purge", "iso1"]);
    assert!(qemu_pids_of(&run_dir).is_empty(), "QEMU outlived delete");
    assert!(!run_dir.exists(), "the run dir outlived delete");
    for ctl in common::cgroup_controllers() {
        let dir = Path::new("/sys/fs/cgroup")
            .join(&ctl)
            .join(format!("warren-{}", d.instance()))
            .join("iso1");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
