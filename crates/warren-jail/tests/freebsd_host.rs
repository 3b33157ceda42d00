//! Real-host tests of the FreeBSD backend: a jail made from a release world runs a command, a
//! ZFS dataset is snapshotted and rolled back, and warren's pf anchor is loaded, read back and
//! flushed. They run only on a FreeBSD host, as root. On any other OS each test prints that it
//! did not run, by name, and passes; on FreeBSD without root, or without the release world or
//! pool it needs, it fails saying what is missing.
//!
//! Inputs on FreeBSD: `WARREN_TEST_BASE_TXZ` (default `/usr/freebsd-dist/base.txz`, the
//! release's base set) and `WARREN_TEST_ZPOOL` (default `zroot`). Everything made is removed
//! at the end, whether the test passed or not.

/// Whether this host can run `name`: false (after saying so) off FreeBSD; a failure on FreeBSD
/// without root.
fn host_ready(name: &str) -> bool {
    if !cfg!(target_os = "freebsd") {
        // Straight to the process's stderr, past the test harness's capture, so the report
        // shows in every run.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "did not run: {name}: needs a FreeBSD host (this is {})",
            std::env::consts::OS
        );
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{name}: FreeBSD host tests need root (jail, zfs and pfctl change the host)"
    );
    true
}

#[test]
fn jail_from_release_world_runs_a_command() {
    if host_ready("jail_from_release_world_runs_a_command") {
        #[cfg(target_os = "freebsd")]
        host::jail_runs_a_command();
    }
}

#[test]
fn zfs_snapshot_and_rollback() {
    if host_ready("zfs_snapshot_and_rollback") {
        #[cfg(target_os = "freebsd")]
        host::zfs_snapshot_rollback();
    }
}

#[test]
fn pf_forward_anchor_loads_and_flushes() {
    if host_ready("pf_forward_anchor_loads_and_flushes") {
        #[cfg(target_os = "freebsd")]
        host::pf_forward();
    }
}

#[cfg(target_os = "freebsd")]
mod host {
    use std::path::PathBuf;
    use std::sync::Arc;

    use warren_exec::{Cmd, Executor, HostExecutor};
    use warren_jail::devfs::Ruleset;
    use warren_jail::runtime::JailRuntime;
    use warren_model::Resources;
    use warren_runtime::{NetNamespace, Runtime, WorkloadRun};

    fn env_or(key: &str, default: &str) -> String {
        std::env::var(key).unwrap_or_else(|_| default.to_string())
    }

    /// Runs `f` for cleanup when dropped.
    struct Cleanup<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Cleanup<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }

    pub fn jail_runs_a_command() {
        let base = PathBuf::from(env_or("WARREN_TEST_BASE_TXZ", "/usr/freebsd-dist/base.txz"));
        assert!(
            base.is_file(),
            "{} is missing: fetch the release's base.txz there or set WARREN_TEST_BASE_TXZ",
            base.display()
        );
        let exec: Arc<dyn Executor> = Arc::new(HostExecutor);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        exec.run(
            &Cmd::new("tar")
                .args(["-xf"])
                .arg(&base)
                .arg("-C")
                .arg(&root),
        )
        .expect("extracting the release world");
        let rt = JailRuntime::new(exec.clone(), "bridge0", Ruleset::warren_default(4712)).unwrap();
        rt.prepare_host().unwrap();
        let id = format!("warren-test-{}", std::process::id());
        let spec = WorkloadRun {
            id: id.clone(),
            rootfs: root.clone(),
            readonly_rootfs: false,
            binds: Vec::new(),
            args: vec!["/bin/sleep".into(), "30".into()],
            env: Vec::new(),
            cwd: "/".into(),
            user: None,
            hostname: "warren-test".into(),
            resources: Resources {
                memory: Some(256 << 20),
                cpus: None,
                pids: Some(64),
                disk: None,
            },
            terminal: false,
            cgroup_path: String::new(),
            network: NetNamespace::Private,
            userns: None,
            backend: warren_runtime::Backend::Jail(Default::default()),
        };
        let plan = rt.plan(&spec).unwrap();
        rt.create(&plan).unwrap();
        let _gone = Cleanup(|| {
            let _ = rt.destroy(&id);
            let _ = exec.run(&Cmd::new("umount").arg(root.join("dev")));
            let _ = exec.run(&Cmd::new("chflags").args(["-R", "noschg"]).arg(&root));
        });
        let out = rt
            .run_in(&id, &["/bin/echo".into(), "hello from a jail".into()])
            .unwrap();
        assert_eq!(out.stdout_str(), "hello from a jail\n");
        assert!(rt.observe(&id).unwrap().is_some_and(|o| o.running));
        let rules = exec
            .run(&warren_jail::rctl::list_cmd())
            .unwrap()
            .stdout_str();
        let rules = warren_jail::rctl::parse_rules(&rules).unwrap();
        assert_eq!(
            warren_jail::rctl::jail_rules(&rules, &id).len(),
            2,
            "{rules:?}"
        );
        rt.destroy(&id).unwrap();
        assert_eq!(rt.observe(&id).unwrap(), None);
    }

    pub fn zfs_snapshot_rollback() {
        let pool = env_or("WARREN_TEST_ZPOOL", "zroot");
        let exec = HostExecutor;
        exec.run(&Cmd::new("zfs").args(["list", "-Hp", "-o", "name", &pool]))
            .unwrap_or_else(|e| panic!("pool {pool} is needed (set WARREN_TEST_ZPOOL): {e}"));
        let ds = format!("{pool}/warren-test-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        exec.run(
            &Cmd::new("zfs")
                .args(["create", "-o"])
                .arg(format!("mountpoint={}", mnt.display()))
                .arg(&ds),
        )
        .unwrap();
        let _gone = Cleanup(|| {
            let _ = HostExecutor.run(&Cmd::new("zfs").args(["destroy", "-r", &ds]));
        });
        std::fs::write(mnt.join("f"), "one").unwrap();
        exec.run(&Cmd::new("zfs").args(["snapshot", &format!("{ds}@s1")]))
            .unwrap();
        std::fs::write(mnt.join("f"), "two").unwrap();
        exec.run(&Cmd::new("zfs").args(["rollback", &format!("{ds}@s1")]))
            .unwrap();
        assert_eq!(std::fs::read_to_string(mnt.join("f")).unwrap(), "one");
    }

    pub fn pf_forward() {
        use warren_net::ipam::Subnet;
        use warren_net::pf;
        use warren_net::ports::PortMapping;
        use warren_net::ruleset::{Forward, Ruleset as NetRules};

        let exec = HostExecutor;
        exec.run(&Cmd::new("pfctl").arg("-si"))
            .unwrap_or_else(|e| panic!("pf is needed (kldload pf; pfctl -e): {e}"));
        let mut r = NetRules::new("lo0", Subnet::parse("10.231.0.0/24").unwrap());
        r.table = format!("test{}", std::process::id());
        r.forwards.push(Forward {
            workload: "web".into(),
            mapping: PortMapping::parse("127.0.0.1:18080:80").unwrap(),
            address: "10.231.0.2".parse().unwrap(),
        });
        let anchor = pf::anchor(&r.table).unwrap();
        let text = pf::render(&r, "lo0").unwrap();
        exec.run(&pf::load_cmd(&anchor, &text)).unwrap();
        let _gone = Cleanup(|| {
            let _ = HostExecutor.run(&pf::flush_cmd(&anchor));
        });
        let nat = exec.run(&pf::show_nat_cmd(&anchor)).unwrap().stdout_str();
        let rules = exec.run(&pf::show_rules_cmd(&anchor)).unwrap().stdout_str();
        let d = pf::drift(&text, &nat, &rules).unwrap();
        assert!(d.is_empty(), "{d:#?}\nnat:\n{nat}\nrules:\n{rules}");
        exec.run(&pf::flush_cmd(&anchor)).unwrap();
        let nat = exec.run(&pf::show_nat_cmd(&anchor)).unwrap().stdout_str();
        assert!(pf::parse_rules(&nat).unwrap().is_empty(), "{nat}");
    }
}
