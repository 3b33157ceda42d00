//! bhyve through the recording executor: golden argv of three VM shapes (`tests/golden/bhyve`,
//! regenerated with `WARREN_BLESS=1`), a whole lifecycle (tap into the bridge → bhyveload →
//! start → destroy) running exactly these commands, and a failure injected at each step of
//! creation running the undo of exactly the steps before it; and [`BhyveRuntime`]'s protocol
//! with a script standing in for the shim: the start's preparation and the shim's `jail.json`
//! (goldens), stop, kill, freeze/thaw, observe and delete, every failure undone.
//!
//! [`BhyveRuntime`]: warren_vm::bhyve_runtime::BhyveRuntime

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, RecordingExecutor};
use warren_vm::bhyve::{self, Bhyve, BHYVE_UEFI};
use warren_vm::config::{Boot, Disk, DiskFormat, Firmware, Mac, Nic};
use warren_vm::VmConfig;

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/bhyve")
        .join(rel)
}

fn check(rel: &str, actual: &str) {
    let path = golden(rel);
    if std::env::var_os("WARREN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
    assert_eq!(actual, want, "{} differs", path.display());
}

fn lines(c: &Cmd) -> String {
    let mut s = c.program.clone();
    for a in &c.args {
        s.push('\n');
        s.push_str(&a.to_string_lossy());
    }
    s.push('\n');
    s
}

const RUN: &str = "/var/run/warren/vm";

/// A FreeBSD guest on a zvol, loaded with bhyveload.
fn freebsd() -> VmConfig {
    let mut c = VmConfig::kernel("fbsd", "/unused", "");
    c.boot = Boot::Disk(Disk::raw("/dev/zvol/zroot/warren/workloads/fbsd/disk0"));
    c.cpus = 2;
    c.memory_mib = 1024;
    c.disks = vec![Disk::raw("/dev/zvol/zroot/warren/workloads/fbsd/data")];
    c.nic = Some(Nic {
        tap: "wv5f3a9c21".into(),
        mac: "58:9c:fc:00:12:34".parse().unwrap(),
    });
    c.agent = Some(format!("{RUN}/fbsd/agent.sock").into());
    c.console.log = Some(format!("{RUN}/fbsd/console.log").into());
    c
}

/// A Linux guest booted through UEFI.
fn linux_uefi() -> VmConfig {
    let mut c = freebsd();
    c.name = "docker".into();
    c.boot = Boot::Disk(Disk::raw("/dev/zvol/zroot/warren/workloads/docker/disk0"));
    c.disks = vec![Disk {
        path: "/dev/zvol/zroot/warren/volumes/images".into(),
        format: DiskFormat::Raw,
        readonly: true,
    }];
    c.firmware = Firmware::Uefi {
        code: BHYVE_UEFI.into(),
        vars: "/zroot/warren/workloads/docker/BHYVE_UEFI_VARS.fd".into(),
    };
    c.nic = Some(Nic {
        tap: "wv0b1c2d3e".into(),
        mac: Mac::for_name("docker"),
    });
    c.agent = Some(format!("{RUN}/docker/agent.sock").into());
    c
}

/// A test VM booting an installer ISO through UEFI, no network, no agent.
fn installer() -> VmConfig {
    let mut c = linux_uefi();
    c.name = "build-test1".into();
    c.boot = Boot::Iso {
        iso: "/zroot/warren/isos/FreeBSD-14.3-RELEASE-amd64-disc1.iso".into(),
        disk: Some(Disk::raw(
            "/dev/zvol/zroot/warren/workloads/build-test1/disk0",
        )),
    };
    c.disks.clear();
    c.nic = None;
    c.agent = None;
    c
}

#[test]
fn golden_argv() {
    let run = Path::new(RUN);
    let p = bhyve::plan(&freebsd(), run).unwrap();
    check("fbsd.bhyve.argv", &lines(&p.bhyve));
    check("fbsd.bhyveload.argv", &lines(p.load.as_ref().unwrap()));
    check("fbsd.start.argv", &lines(&bhyve::start_cmd(&p)));
    let p = bhyve::plan(&linux_uefi(), run).unwrap();
    assert!(p.load.is_none());
    check("docker-uefi.bhyve.argv", &lines(&p.bhyve));
    let p = bhyve::plan(&installer(), run).unwrap();
    assert_eq!(p.tap, None);
    check("installer-uefi.bhyve.argv", &lines(&p.bhyve));
    check("destroy.argv", &lines(&bhyve::destroy_cmd("fbsd").unwrap()));
}

#[test]
fn what_bhyve_cannot_run_is_refused_naming_the_field() {
    let run = Path::new(RUN);
    let mut c = freebsd();
    // A kernel grub cannot be given: a quote would end grub's quoted word.
    c.boot = Boot::Kernel {
        kernel: "/boot/vmlinuz-6.1.0-57-amd64".into(),
        initrd: None,
        cmdline: "init='/bin/sh'".into(),
    };
    c.tsc_khz = Some(1);
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("cmdline"));
    let mut c = freebsd();
    c.disks[0].format = DiskFormat::Qcow2;
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("format"));
    let mut c = installer();
    c.firmware = Firmware::Bios;
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("boot"));
    let mut c = freebsd();
    c.disks = (0..40)
        .map(|i| Disk::raw(format!("/dev/zvol/z/d{i}")))
        .collect();
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("disks"));
    assert_eq!(
        bhyve::plan(&freebsd(), Path::new("run"))
            .unwrap_err()
            .field(),
        Some("run_dir")
    );
    assert!(Bhyve::new(Arc::new(RecordingExecutor::new()), "bridge 0").is_err());
}

const TAP: &str = "wv5f3a9c21";

/// The commands of `create` for [`freebsd`], in order, with what each prints.
fn create_steps(p: &bhyve::BhyvePlan) -> Vec<(String, &'static str)> {
    vec![
        ("ifconfig tap create".into(), "tap3\n"),
        (format!("ifconfig tap3 name {TAP}"), ""),
        (format!("ifconfig bridge0 addm {TAP}"), ""),
        (format!("ifconfig {TAP} up"), ""),
        (p.load.as_ref().unwrap().argv_string(), ""),
        (bhyve::start_cmd(p).argv_string(), ""),
    ]
}

#[test]
fn lifecycle_runs_exactly_these_commands() {
    let p = bhyve::plan(&freebsd(), Path::new(RUN)).unwrap();
    let rec = Arc::new(RecordingExecutor::new());
    for (argv, out) in create_steps(&p) {
        rec.expect_ok(&argv, out);
    }
    rec.expect_ok("bhyvectl --destroy --vm=fbsd", "");
    rec.expect_ok(&format!("ifconfig {TAP} destroy"), "");
    // A second destroy finds everything gone and succeeds.
    rec.expect_err(
        "bhyvectl --destroy --vm=fbsd",
        "bhyvectl: vm_open: fbsd could not be opened: No such file or directory",
    );
    rec.expect_err(
        &format!("ifconfig {TAP} destroy"),
        &format!("ifconfig: interface {TAP} does not exist"),
    );
    let b = Bhyve::new(rec.clone(), "bridge0").unwrap();
    b.create(&p).unwrap();
    b.destroy(&p).unwrap();
    b.destroy(&p).unwrap();
    rec.finish();
    let start = rec.ran()[5].clone();
    assert_eq!(
        start,
        format!("daemon -f -o {RUN}/fbsd.bhyve.log -p {RUN}/fbsd.pid bhyve -c 2 -m 1024M -A -H -P -u -w -s 0,hostbridge -s 2,virtio-blk,/dev/zvol/zroot/warren/workloads/fbsd/disk0 -s 3,virtio-blk,/dev/zvol/zroot/warren/workloads/fbsd/data -s 4,virtio-net,{TAP},mac=58:9c:fc:00:12:34 -s 5,virtio-console,org.warren.agent.0={RUN}/fbsd/agent.sock -s 31,lpc -l com1,/dev/nmdm-fbsd.1A fbsd")
    );
}

#[test]
fn a_failure_at_each_step_is_undone_exactly() {
    let p = bhyve::plan(&freebsd(), Path::new(RUN)).unwrap();
    let steps = create_steps(&p);
    let destroy_vm = "bhyvectl --destroy --vm=fbsd".to_string();
    let destroy_tap = |t: &str| format!("ifconfig {t} destroy");
    let undo: Vec<Vec<String>> = vec![
        vec![],
        vec![destroy_tap("tap3")],
        vec![destroy_tap(TAP)],
        vec![destroy_tap(TAP)],
        vec![destroy_vm.clone(), destroy_tap(TAP)],
        vec![destroy_vm.clone(), destroy_tap(TAP)],
    ];
    for (fail, expected_undo) in undo.iter().enumerate() {
        let rec = Arc::new(RecordingExecutor::new());
        for (argv, out) in &steps[..fail] {
            rec.expect_ok(argv, out);
        }
        rec.expect_err(&steps[fail].0, "injected failure");
        for u in expected_undo {
            rec.expect_ok(u, "");
        }
        let b = Bhyve::new(rec.clone(), "bridge0").unwrap();
        let e = b.create(&p).unwrap_err();
        assert!(
            e.to_string().contains("injected failure"),
            "step {fail}: {e}"
        );
        rec.finish();
    }
}

#[test]
fn a_tap_create_printing_nonsense_is_undone_as_nothing() {
    let p = bhyve::plan(&freebsd(), Path::new(RUN)).unwrap();
    let rec = Arc::new(RecordingExecutor::new());
    rec.expect_ok("ifconfig tap create", "ifconfig: something odd\n");
    let b = Bhyve::new(rec.clone(), "bridge0").unwrap();
    assert!(b.create(&p).is_err());
    rec.finish();
}

#[test]
fn uefi_guests_skip_bhyveload_and_still_undo_the_vm() {
    let p = bhyve::plan(&linux_uefi(), Path::new(RUN)).unwrap();
    let rec = Arc::new(RecordingExecutor::new());
    rec.expect_ok("ifconfig tap create", "tap0\n")
        .expect_ok("ifconfig tap0 name wv0b1c2d3e", "")
        .expect_ok("ifconfig bridge0 addm wv0b1c2d3e", "")
        .expect_ok("ifconfig wv0b1c2d3e up", "")
        .expect_err(&bhyve::start_cmd(&p).argv_string(), "daemon: pidfile busy")
        .expect_ok("bhyvectl --destroy --vm=docker", "")
        .expect_ok("ifconfig wv0b1c2d3e destroy", "");
    let b = Bhyve::new(rec.clone(), "bridge0").unwrap();
    assert!(b.create(&p).is_err());
    rec.finish();
}

#[test]
fn host_preparation_and_poweroff() {
    let prep: Vec<String> = bhyve::prepare_host_cmds()
        .iter()
        .map(Cmd::argv_string)
        .collect();
    assert_eq!(
        prep,
        vec![
            "kldload -n vmm",
            "kldload -n nmdm",
            "sysctl net.link.tap.up_on_open=1"
        ]
    );
    assert_eq!(
        bhyve::poweroff_cmd(Path::new("/var/run/warren/vm/fbsd.pid")).argv_string(),
        "pkill -TERM -F /var/run/warren/vm/fbsd.pid"
    );
    assert_eq!(bhyve::nmdm_console("fbsd"), "/dev/nmdm-fbsd.1B");
}

// The runtime: a WorkloadRun through BhyveRuntime, the shim played by a script.

mod runtime {
    use super::*;
    use std::sync::OnceLock;
    use warren_runtime::{
        Backend, BridgeAddress, ExecRequest, Runtime, RuntimeError, ShimState, VmBoot, VmNic,
        VmParams, WorkloadRun,
    };
    use warren_vm::bhyve_runtime::{BhyveRuntime, VARS_FILE};
    use warren_vm::VmBackend;

    const DISK: &str = "/dev/zvol/zroot/warren/workloads/fbsd/disk0";
    const VM_TAP: &str = "tap-fbsd";

    /// Stand-ins for `warren shim RUN_DIR`, written once before any test spawns one (a
    /// script being written while another thread forks cannot be executed).
    struct Shims {
        _dir: tempfile::TempDir,
        ok: PathBuf,
        failing: PathBuf,
        uefi_code: PathBuf,
    }

    fn shims() -> &'static Shims {
        static SHIMS: OnceLock<Shims> = OnceLock::new();
        SHIMS.get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let write = |name: &str, body: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                p
            };
            // $1 is `shim`, $2 the run directory.
            let ok = write(
                "ok-shim",
                "test \"$1\" = shim && test -f \"$2/jail.json\" || exit 2\n\
                 printf '{\"id\":\"fbsd\",\"shim_pid\":%s,\"shim_start_ticks\":0,\"container_pid\":4242,\"started_at_ms\":1}' $$ > \"$2/state.json\"\n\
                 echo ok > /dev/fd/$WARREN_SHIM_STATUS_FD\n",
            );
            let failing = write(
                "failing-shim",
                "printf 'error: cannot start `bhyve`: vm_create: File exists' > /dev/fd/$WARREN_SHIM_STATUS_FD\nexit 1\n",
            );
            let uefi_code = dir.path().join("BHYVE_UEFI.fd");
            std::fs::write(&uefi_code, b"firmware").unwrap();
            Shims {
                _dir: dir,
                ok,
                failing,
                uefi_code,
            }
        })
    }

    struct Host {
        rec: Arc<RecordingExecutor>,
        rt: BhyveRuntime,
        state: tempfile::TempDir,
        run_dir: PathBuf,
    }

    fn host(shim: &Path) -> Host {
        let rec = Arc::new(RecordingExecutor::new());
        let state = tempfile::tempdir().unwrap();
        let rt = BhyveRuntime::new(
            rec.clone(),
            "bridge0",
            shim.to_path_buf(),
            state.path().join("vm"),
        )
        .unwrap()
        .with_firmware(
            shims().uefi_code.clone(),
            "/usr/local/share/uefi-firmware/BHYVE_UEFI_VARS.fd".into(),
        );
        let run_dir = state.path().join("workloads/fbsd/run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let run_dir = run_dir.canonicalize().unwrap();
        Host {
            rec,
            rt,
            state,
            run_dir,
        }
    }

    /// A FreeBSD guest on a zvol with a NIC on the bridge, loaded with bhyveload.
    fn fbsd_run() -> WorkloadRun {
        let mut run = WorkloadRun::one_off("fbsd", "/warren/fbsd", "fbsd", "/".into(), vec![]);
        run.resources.memory = Some(1 << 30);
        run.resources.cpus = Some(1.5);
        run.backend = Backend::Vm(VmParams {
            boot: VmBoot::Firmware {
                disk: Some(DISK.into()),
                iso: None,
                uefi: false,
                store: None,
                disk_size: None,
            },
            console: true,
            nic: Some(VmNic {
                tap: VM_TAP.into(),
                address: BridgeAddress {
                    address: "10.88.0.5".parse().unwrap(),
                    prefix: 24,
                    gateway: "10.88.0.1".parse().unwrap(),
                },
            }),
            hosts: None,
        });
        run
    }

    /// An installer ISO through UEFI, no network.
    fn installer_run() -> WorkloadRun {
        let mut run = fbsd_run();
        run.backend = Backend::Vm(VmParams {
            boot: VmBoot::Firmware {
                disk: Some(DISK.into()),
                iso: Some("/zroot/warren/isos/FreeBSD-14.3-RELEASE-amd64-disc1.iso".into()),
                uefi: true,
                store: None,
                disk_size: None,
            },
            ..VmParams::default()
        });
        run
    }

    /// The preparation of [`fbsd_run`], in order, with what each prints.
    fn prepare_steps() -> Vec<(String, &'static str)> {
        vec![
            ("ifconfig tap create".into(), "tap3\n"),
            (format!("ifconfig tap3 name {VM_TAP}"), ""),
            (format!("ifconfig bridge0 addm {VM_TAP}"), ""),
            (format!("ifconfig {VM_TAP} up"), ""),
            (
                format!("bhyveload -c /dev/nmdm-fbsd.1A -m 1024M -d {DISK} fbsd"),
                "",
            ),
        ]
    }

    const TEARDOWN: [&str; 2] = ["bhyvectl --destroy --vm=fbsd", "ifconfig tap-fbsd destroy"];

    /// `jail.json` with the run directory written as `RUN`.
    fn shim_json(h: &Host) -> String {
        std::fs::read_to_string(h.run_dir.join("jail.json"))
            .unwrap()
            .replace(&h.run_dir.display().to_string(), "RUN")
    }

    /// Marks the run as supervised by a live shim (this test process) running bhyve as 4242.
    fn pretend_running(h: &Host) {
        let state = ShimState {
            id: "fbsd".into(),
            shim_pid: std::process::id() as i32,
            shim_start_ticks: warren_runtime::proc::self_start_ticks().unwrap(),
            container_pid: 4242,
            started_at_ms: 1,
        };
        warren_runtime::shim::write_json(&h.run_dir.join("state.json"), &state).unwrap();
    }

    #[test]
    fn start_prepares_the_vm_and_hands_bhyve_to_the_shim() {
        let h = host(&shims().ok);
        for (argv, out) in prepare_steps() {
            h.rec.expect_ok(&argv, out);
        }
        let mut started = h.rt.start(&fbsd_run(), &h.run_dir).unwrap();
        started.shim.wait().unwrap();
        h.rec.finish();
        assert_eq!(started.state.container_pid, 4242);
        check("runtime-fbsd.jail.json", &shim_json(&h));
        assert!(h.rt.owns("fbsd"));
        assert_eq!(h.rt.run_dir("fbsd").unwrap(), h.run_dir);
        // The shim is gone without exit.json: not running, and no command is sent.
        let seen = h.rt.observe("fbsd").unwrap().unwrap();
        assert!(!seen.running);
        h.rt.stop("fbsd").unwrap();
        h.rec.finish();
    }

    #[test]
    fn stop_kill_freeze_and_delete_run_exactly_these_commands() {
        let h = host(&shims().ok);
        for (argv, out) in prepare_steps() {
            h.rec.expect_ok(&argv, out);
        }
        let mut started = h.rt.start(&fbsd_run(), &h.run_dir).unwrap();
        started.shim.wait().unwrap();
        pretend_running(&h);
        h.rec
            .expect_ok("kill -s TERM 4242", "")
            .expect_ok("kill -s TERM 4242", "")
            .expect_ok("kill -s STOP 4242", "")
            .expect_ok("kill -s CONT 4242", "")
            .expect_ok(TEARDOWN[0], "")
            .expect_err("kill -s TERM 4242", "kill: 4242: No such process");
        h.rt.stop("fbsd").unwrap();
        h.rt.kill("fbsd", "INT").unwrap();
        h.rt.freeze("fbsd").unwrap();
        let seen = h.rt.observe("fbsd").unwrap().unwrap();
        assert!(seen.running && seen.frozen, "{seen:?}");
        assert_eq!(seen.pid, Some(4242));
        h.rt.thaw("fbsd").unwrap();
        assert!(!h.rt.observe("fbsd").unwrap().unwrap().frozen);
        h.rt.kill("fbsd", "KILL").unwrap();
        // bhyve ended since: not an error.
        h.rt.stop("fbsd").unwrap();
        let e = h.rt.kill("fbsd", "HUP").unwrap_err();
        assert!(matches!(e, RuntimeError::Unsupported(_)), "{e}");
        h.rec.finish();

        // The shim has ended and recorded it: delete runs jail.json's teardown, gone is fine.
        std::fs::write(
            h.run_dir.join("exit.json"),
            r#"{"code":1,"signal":null,"finished_at_ms":2}"#,
        )
        .unwrap();
        assert!(!h.rt.observe("fbsd").unwrap().unwrap().running);
        h.rec.expect_err(
            TEARDOWN[0],
            "bhyvectl: vm_open: fbsd could not be opened: No such file or directory",
        );
        h.rec.expect_ok(TEARDOWN[1], "");
        h.rt.delete("fbsd").unwrap();
        h.rec.finish();
        assert!(!h.rt.owns("fbsd"));
        assert_eq!(h.rt.observe("fbsd").unwrap(), None);
        // Deleting again, stopping or killing what is gone does nothing.
        h.rt.delete("fbsd").unwrap();
        h.rt.stop("fbsd").unwrap();
        h.rt.kill("fbsd", "KILL").unwrap();
        h.rec.finish();
        drop(h.state);
    }

    #[test]
    fn a_failure_at_each_preparation_step_is_undone_and_no_shim_starts() {
        let steps = prepare_steps();
        let undo: Vec<Vec<&str>> = vec![
            vec![],
            vec!["ifconfig tap3 destroy"],
            vec![TEARDOWN[1]],
            vec![TEARDOWN[1]],
            vec![TEARDOWN[0], TEARDOWN[1]],
        ];
        for (fail, expected_undo) in undo.iter().enumerate() {
            // A shim that would fail the test's expectations if it were started.
            let h = host(Path::new("/nonexistent/warren"));
            for (argv, out) in &steps[..fail] {
                h.rec.expect_ok(argv, out);
            }
            h.rec.expect_err(&steps[fail].0, "injected failure");
            for u in expected_undo {
                h.rec.expect_ok(u, "");
            }
            let e = h.rt.start(&fbsd_run(), &h.run_dir).unwrap_err();
            assert!(
                e.to_string().contains("injected failure"),
                "step {fail}: {e}"
            );
            h.rec.finish();
            assert!(!h.rt.owns("fbsd"), "step {fail}");
        }
    }

    #[test]
    fn a_shim_that_fails_has_the_vm_torn_down() {
        let h = host(&shims().failing);
        for (argv, out) in prepare_steps() {
            h.rec.expect_ok(&argv, out);
        }
        for t in TEARDOWN {
            h.rec.expect_ok(t, "");
        }
        let e = h.rt.start(&fbsd_run(), &h.run_dir).unwrap_err();
        assert!(e.to_string().contains("vm_create: File exists"), "{e}");
        h.rec.finish();
        assert!(!h.rt.owns("fbsd"));
    }

    #[test]
    fn a_uefi_installer_copies_its_variable_store_once_and_skips_bhyveload() {
        let h = host(&shims().ok);
        let vars = h.run_dir.join(VARS_FILE);
        h.rec.expect_ok(
            &format!(
                "cp /usr/local/share/uefi-firmware/BHYVE_UEFI_VARS.fd {}",
                vars.display()
            ),
            "",
        );
        let mut started = h.rt.start(&installer_run(), &h.run_dir).unwrap();
        started.shim.wait().unwrap();
        h.rec.finish();
        let json = shim_json(&h).replace(&shims().uefi_code.display().to_string(), "CODE");
        check("runtime-installer.jail.json", &json);
        // A second start keeps the VM's variables.
        std::fs::write(&vars, b"vars").unwrap();
        let mut started = h.rt.start(&installer_run(), &h.run_dir).unwrap();
        started.shim.wait().unwrap();
        h.rec.finish();

        // Without the firmware installed, a UEFI VM is refused before anything runs.
        let h = host(&shims().ok);
        let rt = BhyveRuntime::new(
            h.rec.clone(),
            "bridge0",
            shims().ok.clone(),
            h.state.path().into(),
        )
        .unwrap()
        .with_firmware(
            "/nonexistent/BHYVE_UEFI.fd".into(),
            "/nonexistent/VARS.fd".into(),
        );
        let e = rt.start(&installer_run(), &h.run_dir).unwrap_err();
        assert!(matches!(e, RuntimeError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("edk2-bhyve"), "{e}");
        h.rec.finish();
    }

    #[test]
    fn what_bhyve_does_not_run_is_refused_before_any_command() {
        let h = host(&shims().ok);
        // A microVM without the operator's kernel: FreeBSD has no Debian kernel to fetch.
        let mut micro = fbsd_run();
        micro.backend = Backend::Vm(VmParams::default());
        let e = h.rt.start(&micro, &h.run_dir).unwrap_err();
        assert!(matches!(e, RuntimeError::Spec(_)), "{e}");
        assert!(e.to_string().contains("vm.kernel"), "{e}");
        // A qcow2 disk, a full VM without media, a container's run.
        let mut qcow = fbsd_run();
        if let Backend::Vm(p) = &mut qcow.backend {
            p.boot = VmBoot::Firmware {
                disk: Some("/vm/disk.qcow2".into()),
                iso: None,
                uefi: true,
                store: None,
                disk_size: None,
            };
        }
        let e = h.rt.start(&qcow, &h.run_dir).unwrap_err();
        assert!(e.to_string().contains("qcow2"), "{e}");
        let mut bare = fbsd_run();
        if let Backend::Vm(p) = &mut bare.backend {
            p.boot = VmBoot::Firmware {
                disk: None,
                iso: None,
                uefi: false,
                store: None,
                disk_size: None,
            };
        }
        assert!(h.rt.start(&bare, &h.run_dir).is_err());
        let oci = WorkloadRun::one_off("x", "/x", "x", "/".into(), vec!["true".into()]);
        assert!(h.rt.start(&oci, &h.run_dir).is_err());
        assert!(h.rt.run_foreground(&oci, &h.run_dir).is_err());
        // exec needs the agent, which a full VM has not.
        let e =
            h.rt.exec("fbsd", &ExecRequest::new(vec!["true".into()]))
                .unwrap_err();
        assert!(matches!(e, RuntimeError::Unsupported(_)), "{e}");
        // So does cp.
        let req = warren_runtime::CopyRequest {
            path: "/etc".into(),
            ..Default::default()
        };
        let e = h.rt.copy_out("fbsd", &req, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, RuntimeError::Unsupported(_)), "{e}");
        assert!(!h.rt.owns("fbsd"));
        h.rec.finish();
        // Preparing the host loads the modules.
        for c in bhyve::prepare_host_cmds() {
            h.rec.expect_ok(&c.argv_string(), "");
        }
        h.rt.prepare_host().unwrap();
        h.rec.finish();
    }
}
