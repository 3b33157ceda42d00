//! bhyve microVMs through the recording executor: the golden `grub-bhyve` and `bhyve` argv of
//! a microVM, its `device.map` and `grub.cfg` (`tests/golden/bhyve`, regenerated with
//! `WARREN_BLESS=1`); its lifecycle (tap into the bridge → grub-bhyve → start → destroy) with a
//! failure injected at each step undone exactly; and [`BhyveRuntime`] running one under the VM
//! shim (a script stands in for it): `vm.json` (golden), the preparation and its undo, a
//! failing shim's teardown, the located errors of a missing kernel or initramfs, and stop,
//! signals, freeze/thaw, names and exec reaching a stand-in of the shim's control socket.
//!
//! [`BhyveRuntime`]: warren_vm::bhyve_runtime::BhyveRuntime

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use warren_exec::{Cmd, RecordingExecutor};
use warren_runtime::{
    Backend, Bind, BridgeAddress, ExecRequest, Runtime, RuntimeError, ShimState, VmBoot, VmNic,
    VmParams, WorkloadRun,
};
use warren_vm::agent::proto::{self, Message};
use warren_vm::bhyve::{self, Bhyve};
use warren_vm::bhyve_runtime::BhyveRuntime;
use warren_vm::config::{Accel, Boot, Mac, Nic, Share};
use warren_vm::{VmBackend, VmConfig};

fn check(rel: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/bhyve")
        .join(rel);
    if std::env::var_os("WARREN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
    assert_eq!(actual, want, "{} differs", path.display());
}

fn lines(c: &Cmd) -> String {
    let mut s = c.argv_vec().join("\n");
    s.push('\n');
    s
}

const RUN: &str = "/var/run/warren/vm/web";
const TAP: &str = "tap-web";

/// A microVM as [`BhyveRuntime`] configures one: the kernel and initramfs from the host, the
/// rootfs and a volume over virtio-9p, the agent's port, a NIC.
fn micro() -> VmConfig {
    let mut c = VmConfig::kernel(
        "web",
        "/zroot/warren/kernels/vmlinuz-6.1.0-57-amd64",
        "console=ttyS0 panic=-1 quiet ip=off",
    );
    if let Boot::Kernel { initrd, .. } = &mut c.boot {
        *initrd = Some("/var/db/warren/vm/initramfs/initramfs-bhyve-6.1.0-57-amd64.cpio".into());
    }
    c.cpus = 2;
    c.memory_mib = 512;
    c.accel = Accel::Kvm;
    c.shares = vec![
        Share::new("root", "/zroot/warren/workloads/web/rootfs", false),
        Share::new("v1", "/zroot/warren/volumes/static", true),
    ];
    c.nic = Some(Nic {
        tap: TAP.into(),
        mac: Mac::for_name("web"),
    });
    c.agent = Some(format!("{RUN}/agent.sock").into());
    c.console.log = Some(bhyve::nmdm_console("web").into());
    c
}

#[test]
fn golden_micro_argv_and_grub_files() {
    let p = bhyve::plan(&micro(), Path::new(RUN)).unwrap();
    check("micro.bhyve.argv", &lines(&p.bhyve));
    check("micro.grub-bhyve.argv", &lines(p.load.as_ref().unwrap()));
    let g = p.grub.as_ref().unwrap();
    assert_eq!(g.device_map, Path::new(RUN).join("device.map"));
    assert_eq!(g.script, Path::new(RUN).join("grub/grub.cfg"));
    check("micro.device.map", &g.device_map_text);
    check("micro.grub.cfg", &g.script_text);
}

#[test]
fn bad_shares_are_refused_naming_them() {
    let run = Path::new(RUN);
    let mut c = micro();
    c.shares[1].tag = "root".into();
    let e = bhyve::plan(&c, run).unwrap_err();
    assert_eq!(e.field(), Some("shares[1]"), "{e}");
    assert!(e.to_string().contains("twice"), "{e}");
    let mut c = micro();
    c.shares[0].tag = "a b".into();
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("shares[0]"));
    let mut c = micro();
    c.shares[1].path = "/zroot/a,ro".into();
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("shares[1]"));
    let mut c = micro();
    c.shares[1].path = "relative".into();
    assert_eq!(bhyve::plan(&c, run).unwrap_err().field(), Some("shares[1]"));
    // QEMU takes no 9p shares: its microVMs get disks.
    assert_eq!(
        warren_vm::qemu::args(&micro()).unwrap_err().field(),
        Some("shares")
    );
}

/// The commands of `create` for [`micro`], in order, with what each prints.
fn create_steps(p: &bhyve::BhyvePlan) -> Vec<(String, &'static str)> {
    vec![
        ("ifconfig tap create".into(), "tap7\n"),
        (format!("ifconfig tap7 name {TAP}"), ""),
        (format!("ifconfig bridge0 addm {TAP}"), ""),
        (format!("ifconfig {TAP} up"), ""),
        (p.load.as_ref().unwrap().argv_string(), ""),
        (bhyve::start_cmd(p).argv_string(), ""),
    ]
}

#[test]
fn micro_lifecycle_writes_the_grub_files_and_undoes_each_failed_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let p = bhyve::plan(&micro(), &run).unwrap();
    let steps = create_steps(&p);
    let rec = Arc::new(RecordingExecutor::new());
    for (argv, out) in &steps {
        rec.expect_ok(argv, out);
    }
    rec.expect_ok("bhyvectl --destroy --vm=web", "")
        .expect_ok(&format!("ifconfig {TAP} destroy"), "");
    let b = Bhyve::new(rec.clone(), "bridge0").unwrap();
    b.create(&p).unwrap();
    b.destroy(&p).unwrap();
    rec.finish();
    let g = p.grub.as_ref().unwrap();
    assert_eq!(
        std::fs::read_to_string(&g.script).unwrap(),
        g.script_text,
        "grub.cfg is written before grub-bhyve runs"
    );
    assert_eq!(
        std::fs::read_to_string(&g.device_map).unwrap(),
        g.device_map_text
    );

    let destroy_vm = "bhyvectl --destroy --vm=web".to_string();
    let destroy_tap = |t: &str| format!("ifconfig {t} destroy");
    let undo: Vec<Vec<String>> = vec![
        vec![],
        vec![destroy_tap("tap7")],
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

// The runtime: a microVM's WorkloadRun through BhyveRuntime, the shim played by a script.

/// Stand-ins for `warren shim RUN_DIR`, written once before any test spawns one.
struct Shims {
    _dir: tempfile::TempDir,
    ok: PathBuf,
    failing: PathBuf,
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
        // $1 is `shim`, $2 the run directory: a microVM's shim is the VM shim (vm.json).
        let ok = write(
            "ok-shim",
            "test \"$1\" = shim && test -f \"$2/vm.json\" && ! test -e \"$2/jail.json\" || exit 2\n\
             printf '{\"id\":\"web\",\"shim_pid\":%s,\"shim_start_ticks\":0,\"container_pid\":4242,\"started_at_ms\":1}' $$ > \"$2/state.json\"\n\
             echo ok > /dev/fd/$WARREN_SHIM_STATUS_FD\n",
        );
        let failing = write(
            "failing-shim",
            "printf 'error: the guest sent no Started within 110s' > /dev/fd/$WARREN_SHIM_STATUS_FD\nexit 1\n",
        );
        Shims {
            _dir: dir,
            ok,
            failing,
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
    for d in ["kernels", "rootfs", "data"] {
        std::fs::create_dir_all(state.path().join(d)).unwrap();
    }
    std::fs::write(
        state.path().join("kernels/vmlinuz-6.1.0-57-amd64"),
        b"kernel",
    )
    .unwrap();
    std::fs::write(state.path().join("kernels/initrd.img"), b"initramfs").unwrap();
    let rt = BhyveRuntime::new(
        rec.clone(),
        "bridge0",
        shim.to_path_buf(),
        state.path().join("vm"),
    )
    .unwrap();
    let run_dir = state.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let run_dir = run_dir.canonicalize().unwrap();
    Host {
        rec,
        rt,
        state,
        run_dir,
    }
}

impl Host {
    fn state(&self) -> PathBuf {
        self.state.path().canonicalize().unwrap()
    }

    /// A microVM from a rootfs with a `data` dataset bound at `/data`, on the bridge.
    fn web(&self) -> WorkloadRun {
        let st = self.state();
        let mut run = WorkloadRun::one_off(
            "web",
            "/warren/web",
            "web",
            st.join("rootfs"),
            vec!["/bin/httpd".into(), "-f".into()],
        );
        run.env = vec!["PORT=80".into()];
        run.resources.memory = Some(512 << 20);
        run.resources.cpus = Some(2.0);
        run.binds = vec![
            Bind {
                source: st.join("data"),
                dest: "/data".into(),
                readonly: false,
            },
            // Not a directory: no share.
            Bind {
                source: st.join("kernels/initrd.img"),
                dest: "/etc/motd".into(),
                readonly: true,
            },
        ];
        run.backend = Backend::Vm(VmParams {
            boot: VmBoot::Kernel {
                kernel: Some(st.join("kernels/vmlinuz-6.1.0-57-amd64")),
                initrd: Some(st.join("kernels/initrd.img")),
                cmdline: Some("ip=off".into()),
            },
            console: false,
            nic: Some(VmNic {
                tap: TAP.into(),
                address: BridgeAddress {
                    address: "10.88.0.7".parse().unwrap(),
                    prefix: 24,
                    gateway: "10.88.0.1".parse().unwrap(),
                },
            }),
            hosts: Some("127.0.0.1 localhost\n10.88.0.7 web\n".into()),
        });
        run
    }

    /// The preparation of [`Host::web`], in order, with what each prints.
    fn prepare_steps(&self) -> Vec<(String, &'static str)> {
        let st = self.state();
        let run = &self.run_dir;
        vec![
            ("ifconfig tap create".into(), "tap7\n"),
            (format!("ifconfig tap7 name {TAP}"), ""),
            (format!("ifconfig bridge0 addm {TAP}"), ""),
            (format!("ifconfig {TAP} up"), ""),
            (
                format!(
                    "grub-bhyve -m {}/device.map -r host -d {}/grub -M 512M -c /dev/nmdm-web.1A web",
                    run.display(),
                    run.display()
                ),
                "",
            ),
        ]
        .into_iter()
        .map(|(a, o)| (a.replace("STATE", &st.display().to_string()), o))
        .collect()
    }

    /// `vm.json` with the run and state directories written as `RUN` and `STATE`.
    fn vm_json(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("vm.json"))
            .unwrap()
            .replace(&self.run_dir.display().to_string(), "RUN")
            .replace(&self.state().display().to_string(), "STATE")
    }

    /// Marks the run as supervised by a live shim (this test process) running bhyve as 4242.
    fn pretend_running(&self) {
        let state = ShimState {
            id: "web".into(),
            shim_pid: std::process::id() as i32,
            shim_start_ticks: warren_runtime::proc::self_start_ticks().unwrap(),
            container_pid: 4242,
            started_at_ms: 1,
        };
        warren_runtime::shim::write_json(&self.run_dir.join("state.json"), &state).unwrap();
    }

    /// A stand-in of the shim's control socket: answers `Ack` to every request, or `Error`
    /// to the ones `refuse` names, and records them.
    fn control_socket(&self, refuse: &'static [&'static str]) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let l = UnixListener::bind(self.run_dir.join("ctl.sock")).unwrap();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                let Ok(Some((_, m))) = proto::read_message(&mut conn) else {
                    continue;
                };
                let name = format!("{:?}", m.kind());
                if let Message::CopyOut(c) = &m {
                    // A copy session: its (empty) input read to its end, the tar stream,
                    // then its exit.
                    s.lock().unwrap().push(format!("CopyOut {}", c.path));
                    while let Ok(Some(f)) = proto::read_frame(&mut conn) {
                        if f.kind == proto::Kind::Stdin && f.payload.is_empty() {
                            break;
                        }
                    }
                    let exit = proto::Exit {
                        code: 0,
                        signal: None,
                    };
                    let _ = proto::write_frame(
                        &mut conn,
                        &proto::Frame::data(proto::Kind::Stdout, 0, b"TAR".to_vec()),
                    );
                    let _ = proto::write_frame(
                        &mut conn,
                        &proto::Frame::control(proto::Kind::Exit, 0, &exit),
                    );
                    continue;
                }
                let reply = if refuse.contains(&name.as_str()) {
                    Message::error("refused")
                } else {
                    Message::Ack
                };
                s.lock().unwrap().push(match m {
                    Message::Signal(x) => format!("Signal {}", x.signal),
                    Message::Hosts(h) => format!("Hosts {:?}", h.text),
                    Message::Poweroff(p) => format!("Poweroff {}", p.grace_ms),
                    _ => name,
                });
                let _ = proto::write_message(&mut conn, 0, &reply);
            }
        });
        seen
    }
}

const TEARDOWN: [&str; 2] = ["bhyvectl --destroy --vm=web", "ifconfig tap-web destroy"];

#[test]
fn start_prepares_the_microvm_and_hands_bhyve_to_the_vm_shim() {
    let h = host(&shims().ok);
    // A full VM's jail.json left from an earlier start would make `warren shim` pick the
    // wrong shim: it goes.
    std::fs::write(h.run_dir.join("jail.json"), "{}").unwrap();
    for (argv, out) in h.prepare_steps() {
        h.rec.expect_ok(&argv, out);
    }
    let mut started = h.rt.start(&h.web(), &h.run_dir).unwrap();
    assert!(started.shim.wait().unwrap().success());
    h.rec.finish();
    assert_eq!(started.state.container_pid, 4242);
    check("runtime-micro.vm.json", &h.vm_json());
    let grub = std::fs::read_to_string(h.run_dir.join("grub/grub.cfg")).unwrap();
    assert!(
        grub.starts_with(&format!(
            "linux '(host){}/kernels/vmlinuz-6.1.0-57-amd64' 'console=ttyS0'",
            h.state().display()
        )),
        "{grub}"
    );
    assert!(h.rt.owns("web"));
    // The shim is gone without exit.json: not running; stop sends nothing.
    assert!(!h.rt.observe("web").unwrap().unwrap().running);
    h.rt.stop("web").unwrap();
    h.rec.finish();
}

#[test]
fn a_failure_at_each_preparation_step_is_undone_and_no_shim_starts() {
    let undo: Vec<Vec<&str>> = vec![
        vec![],
        vec!["ifconfig tap7 destroy"],
        vec![TEARDOWN[1]],
        vec![TEARDOWN[1]],
        vec![TEARDOWN[0], TEARDOWN[1]],
    ];
    for (fail, expected_undo) in undo.iter().enumerate() {
        let h = host(Path::new("/nonexistent/warren"));
        let steps = h.prepare_steps();
        for (argv, out) in &steps[..fail] {
            h.rec.expect_ok(argv, out);
        }
        h.rec.expect_err(&steps[fail].0, "injected failure");
        for u in expected_undo {
            h.rec.expect_ok(u, "");
        }
        let e = h.rt.start(&h.web(), &h.run_dir).unwrap_err();
        assert!(
            e.to_string().contains("injected failure"),
            "step {fail}: {e}"
        );
        h.rec.finish();
        assert!(!h.rt.owns("web"), "step {fail}");
    }
}

#[test]
fn a_shim_that_fails_has_the_microvm_torn_down() {
    let h = host(&shims().failing);
    for (argv, out) in h.prepare_steps() {
        h.rec.expect_ok(&argv, out);
    }
    for t in TEARDOWN {
        h.rec.expect_ok(t, "");
    }
    let e = h.rt.start(&h.web(), &h.run_dir).unwrap_err();
    assert!(e.to_string().contains("no Started"), "{e}");
    h.rec.finish();
    assert!(!h.rt.owns("web"));
}

#[test]
fn a_missing_kernel_or_initramfs_is_a_located_error_before_any_command() {
    let h = host(&shims().ok);
    let with_boot = |kernel: Option<PathBuf>, initrd: Option<PathBuf>| {
        let mut run = h.web();
        if let Backend::Vm(p) = &mut run.backend {
            p.boot = VmBoot::Kernel {
                kernel,
                initrd,
                cmdline: None,
            };
        }
        run
    };
    let st = h.state();
    let cases = [
        (with_boot(None, None), "vm.kernel"),
        (
            with_boot(
                Some(st.join("kernels/vmlinuz-missing")),
                Some(st.join("kernels/initrd.img")),
            ),
            "vm.kernel",
        ),
        (
            with_boot(
                Some(st.join("kernels/vmlinuz-6.1.0-57-amd64")),
                Some(st.join("kernels/missing.img")),
            ),
            "vm.initrd",
        ),
        // No initrd: warren's needs the kernel's modules (none beside this one).
        (
            with_boot(Some(st.join("kernels/vmlinuz-6.1.0-57-amd64")), None),
            "lib/modules/6.1.0-57-amd64",
        ),
    ];
    for (run, want) in cases {
        let e = h.rt.start(&run, &h.run_dir).unwrap_err();
        assert!(matches!(e, RuntimeError::Spec(_)), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(!h.rt.owns("web"));
    }
    h.rec.finish();
}

#[test]
fn stop_signals_freeze_names_exec_and_delete_go_through_the_agent() {
    let h = host(&shims().ok);
    for (argv, out) in h.prepare_steps() {
        h.rec.expect_ok(&argv, out);
    }
    let mut started = h.rt.start(&h.web(), &h.run_dir).unwrap();
    started.shim.wait().unwrap();
    h.rec.finish();
    h.pretend_running();
    let seen = h.control_socket(&[]);
    h.rec
        .expect_ok("kill -s STOP 4242", "")
        .expect_ok("kill -s CONT 4242", "")
        .expect_ok(TEARDOWN[0], "");
    h.rt.stop("web").unwrap();
    h.rt.kill("web", "HUP").unwrap();
    h.rt.kill("web", "TERM").unwrap();
    h.rt.freeze("web").unwrap();
    let o = h.rt.observe("web").unwrap().unwrap();
    assert!(o.running && o.frozen && o.pid == Some(4242), "{o:?}");
    h.rt.thaw("web").unwrap();
    assert!(!h.rt.observe("web").unwrap().unwrap().frozen);
    h.rt.update_names("web", "10.88.0.8 db\n").unwrap();
    let mut tar = Vec::new();
    let req = warren_runtime::CopyRequest {
        path: "/etc/hostname".into(),
        ..Default::default()
    };
    h.rt.copy_out("web", &req, &mut tar).unwrap();
    assert_eq!(tar, b"TAR");
    h.rt.kill("web", "KILL").unwrap();
    h.rec.finish();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Poweroff 10000",
            "Signal 1",
            "Signal 15",
            "Freeze",
            "Thaw",
            "TimeSync",
            "Hosts \"10.88.0.8 db\\n\"",
            "CopyOut /etc/hostname",
        ]
    );
    let c =
        h.rt.exec(
            "web",
            &ExecRequest::new(vec!["sh".into(), "-c".into(), "exit 7".into()]),
        )
        .unwrap();
    let argv: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        argv[1..],
        [
            "vm-exec".to_string(),
            h.run_dir.join("ctl.sock").display().to_string(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "exit 7".into()
        ]
    );

    // The shim has ended: delete runs vm.json's teardown, what is gone is fine.
    std::fs::write(
        h.run_dir.join("exit.json"),
        r#"{"code":0,"signal":null,"finished_at_ms":2}"#,
    )
    .unwrap();
    assert!(h
        .rt
        .exec("web", &ExecRequest::new(vec!["true".into()]))
        .is_err());
    h.rec
        .expect_err(
            TEARDOWN[0],
            "bhyvectl: vm_open: web could not be opened: No such file or directory",
        )
        .expect_ok(TEARDOWN[1], "");
    h.rt.delete("web").unwrap();
    h.rec.finish();
    assert!(!h.rt.owns("web"));
    // Nothing is sent to what is gone.
    h.rt.stop("web").unwrap();
    h.rt.kill("web", "HUP").unwrap_or(());
    h.rec.finish();
}

#[test]
fn an_agent_that_cannot_be_asked_to_power_off_gets_the_power_button() {
    let h = host(&shims().ok);
    for (argv, out) in h.prepare_steps() {
        h.rec.expect_ok(&argv, out);
    }
    let mut started = h.rt.start(&h.web(), &h.run_dir).unwrap();
    started.shim.wait().unwrap();
    h.pretend_running();
    let seen = h.control_socket(&["Poweroff", "Freeze"]);
    h.rec.expect_ok("kill -s TERM 4242", "");
    h.rt.stop("web").unwrap();
    // A guest whose filesystems do not freeze is not paused either.
    let e = h.rt.freeze("web").unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(!h.rt.observe("web").unwrap().unwrap().frozen);
    h.rec.finish();
    assert_eq!(*seen.lock().unwrap(), ["Poweroff 10000", "Freeze"]);
}
