//! bhyve through the recording executor: golden argv of three VM shapes (`tests/golden/bhyve`,
//! regenerated with `WARREN_BLESS=1`), a whole lifecycle (tap into the bridge → bhyveload →
//! start → destroy) running exactly these commands, and a failure injected at each step of
//! creation running the undo of exactly the steps before it.

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
    c.boot = Boot::Kernel {
        kernel: "/boot/kernel/kernel".into(),
        initrd: None,
        cmdline: String::new(),
    };
    c.tsc_khz = Some(1);
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("boot"));
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
