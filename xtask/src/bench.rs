//! `cargo xtask bench`: warren against its baselines, side by side in one run.
//!
//! - `warren run --rm busybox -- /bin/true` vs `runc run` of an equivalent bundle vs
//!   `podman run --rm --rootfs` of the same root filesystem (medians and ratios);
//! - datasets: snapshot and clone time for 10 MiB vs 1 GiB of data, export and import
//!   throughput against `btrfs send | zstd` and `zstd -d | btrfs receive`;
//! - `warren apply` of 50 workloads until all are running;
//! - a scrape of `/v1/metrics` with those 50 workloads (median time, the daemon's CPU per
//!   scrape);
//! - idle daemon RSS and CPU with those 50 workloads; each shim's proportional set size
//!   (compared with podman's conmon when podman is present);
//! - the ingress: a workload running to its route serving;
//! - images: `warren image import` of a ~100 MiB image vs `umoci unpack`, and a Warrenfile
//!   rebuild on a cache hit (see `bench_images`);
//! - vm: a microVM's boot to its agent's greeting against bare QEMU running the same machine,
//!   its memory beyond the guest's RAM, and exec through the agent against `runc exec` (see
//!   `bench_vm`).
//!
//! `cargo xtask bench run|datasets|apply...` runs only the parts named (`run` is the first
//! item, `apply` the last two). The `warren` binary is built in release mode into
//! `CARGO_TARGET_DIR` (or `target/`) and taken from there.
//!
//! Needs root, runc and btrfs-progs; podman is optional (its rows say why they are missing).
//! Everything it starts is ended by PID and removed at the end.

use crate::bench_targets::Results;
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 25;
/// Rounds of the export and import measurements (each warren, then its baseline).
const ROUNDS: usize = 3;
const WORKLOADS: usize = 50;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn time_n(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?; // warm-up
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

struct Bench {
    dir: PathBuf,
    warren: PathBuf,
    daemon: Option<Child>,
    http_port: u16,
    /// What this run measured against the targets.
    results: RefCell<Results>,
}

impl Bench {
    /// Records a measured value for the target `key`; the verdict text to print with it.
    fn record(&self, key: &str, value: f64) -> String {
        self.results.borrow_mut().record(key, value)
    }

    fn cli(&self) -> Command {
        let mut c = Command::new(&self.warren);
        c.env("WARREN_STATE_DIR", self.dir.join("state"));
        c
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Ok(out) = self.cli().args(["list", "-o", "json"]).output() {
            if let Ok(list) = serde_list(&out.stdout) {
                for name in list {
                    let _ = self.cli().args(["delete", "--purge", &name]).output();
                }
            }
        }
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling the daemon process this bench started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let _ = Command::new("umount")
            .arg(self.dir.join("state/pool"))
            .status();
        // Network state: the workloads' namespaces went with their deletion; the bridge and
        // the table stay until removed.
        let _ = Command::new("ip")
            .args(["link", "del", "dev", BRIDGE])
            .output();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", NFT_TABLE])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Workload names from `list -o json` without a JSON dependency: every `"name": "X"`.
fn serde_list(json: &[u8]) -> Result<Vec<String>> {
    let s = String::from_utf8_lossy(json);
    let mut out = Vec::new();
    for part in s.split("\"name\": \"").skip(1) {
        if let Some(end) = part.find('"') {
            out.push(part[..end].to_string());
        }
    }
    Ok(out)
}

fn field_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn children_named(comm: &str) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.get(1) == Some(&comm.as_bytes()) {
                v.push(pid);
            }
        }
    }
    v
}

/// podman's default rlimits (nofile 1048576, and its nproc for root) exceed what a root
/// without CAP_SYS_RESOURCE may set on some hosts, where every podman run then fails; the bench
/// passes the host's own hard nofile limit (what warren and the runc bundle get) and a fixed
/// nproc instead.
fn podman_limits() -> Vec<String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let nofile = lim.rlim_max.min(1 << 20);
    vec![
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        "nproc=4096:4096".into(),
    ]
}

fn wait_running(b: &Bench, name: &str) -> Result<()> {
    let t = Instant::now();
    loop {
        let out = b.cli().args(["get", name, "-o", "json"]).output()?;
        // The top-level "pid" is a number once the main process runs ("null" before).
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("\"pid\": ") && !text.contains("\"pid\": null") {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{name} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dir_bytes(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Snapshot and clone time for 10 MB vs 1 GB of data; export and import throughput against
/// raw `btrfs send | zstd` and `zstd -d | btrfs receive` of the same data.
fn datasets(b: &Bench) -> Result<()> {
    let toml = "[workload.small]\nworld = \"busybox\"\ncommand = [\"sleep\", \"100000\"]\n\n\
                [workload.big]\nworld = \"busybox\"\ncommand = [\"sleep\", \"100000\"]\n";
    let file = b.dir.join("datasets.toml");
    std::fs::write(&file, toml)?;
    run_ok(b.cli().arg("apply").arg("-f").arg(&file))?;
    wait_running(b, "small")?;
    wait_running(b, "big")?;
    for (name, mb) in [("small", 10), ("big", 1024)] {
        run_ok(b.cli().args(["exec", name, "--", "sh", "-c"]).arg(format!(
            "head -c 1048576 /dev/urandom > /tmp/r && i=0; while [ $i -lt {mb} ]; do cat /tmp/r; i=$((i+1)); done > /data/blob && sync"
        )))?;
    }
    let mut seq = 0u32;
    let mut timed = |args: &dyn Fn(u32) -> Vec<String>| -> Result<Duration> {
        time_n(5, || {
            seq += 1;
            run_ok(b.cli().args(args(seq)))
        })
    };
    let snap_small = timed(&|i| {
        vec![
            "snapshot".into(),
            "small".into(),
            "--label".into(),
            format!("s{i}"),
        ]
    })?;
    let snap_big = timed(&|i| {
        vec![
            "snapshot".into(),
            "big".into(),
            "--label".into(),
            format!("s{i}"),
        ]
    })?;
    // Each clone is started by the reconciler right after the command returns; waiting for
    // it before the next clone keeps one clone's start out of the next one's time.
    let clone_times = |src: &str, prefix: &str| -> Result<Duration> {
        let mut v = Vec::new();
        for i in 0..6 {
            let name = format!("{prefix}{i}");
            let t = Instant::now();
            run_ok(b.cli().args(["clone", src, &name]))?;
            let took = t.elapsed();
            wait_running(b, &name)?;
            if i > 0 {
                v.push(took); // the first is a warm-up
            }
        }
        Ok(median(v))
    };
    let clone_small = clone_times("small", "cs")?;
    let clone_big = clone_times("big", "cb")?;
    println!(
        "\ndatasets (10 MiB vs 1 GiB of data; snapshot and clone: medians of 5, export and \
         import: medians of {ROUNDS} rounds)"
    );
    for (what, small, big) in [
        ("snapshot", snap_small, snap_big),
        ("clone", clone_small, clone_big),
    ] {
        let ratio = ms(big) / ms(small);
        println!(
            "{what:<9} 10 MiB {:>7.1}ms   1 GiB {:>7.1}ms   ratio {ratio:.2} {}",
            ms(small),
            ms(big),
            b.record(what, ratio)
        );
    }
    let pool = b.dir.join("state/pool");
    let data_bytes = dir_bytes(&pool.join("workloads/big/data"));
    // Each round times warren and its baseline back to back, after the previous round's
    // writes reached the disk and deleted subvolumes were cleaned, so neither pays for the
    // other's leftovers; the ratio is that of the medians.
    let settle = || {
        let _ = Command::new("sync").status();
        let _ = Command::new("btrfs")
            .args(["subvolume", "sync"])
            .arg(&pool)
            .stdout(Stdio::null())
            .status();
    };
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<Duration> {
        settle();
        let t = Instant::now();
        f()?;
        Ok(t.elapsed())
    };
    // warren export of the big workload vs btrfs send | zstd of the same data.
    let archive = b.dir.join("big.warx");
    let raw = b.dir.join("raw.zst");
    let snapdir = pool.join("snapshots/workloads/big/data");
    let (mut exports, mut raw_sends) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        exports.push(timed(&mut || {
            run_ok(b.cli().args(["export", "big", "-o"]).arg(&archive))
        })?);
        let newest = std::fs::read_dir(&snapdir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("export-") && e.path().is_dir())
            .map(|e| e.path())
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
            .context("export snapshot not found")?;
        raw_sends.push(timed(&mut || {
            run_ok(Command::new("sh").arg("-c").arg(format!(
                "btrfs send -q {} | zstd -q -3 -T1 > {}",
                newest.display(),
                raw.display()
            )))
        })?);
    }
    report(
        b,
        "export",
        "btrfs send | zstd",
        data_bytes,
        &exports,
        &raw_sends,
    );
    // warren import of that archive vs zstd -d | btrfs receive of the raw stream.
    let (mut imports, mut raw_recvs) = (Vec::new(), Vec::new());
    let recv = pool.join("bench-recv");
    for round in 0..ROUNDS {
        let name = format!("big-import-{round}");
        imports.push(timed(&mut || {
            run_ok(
                b.cli()
                    .args(["import"])
                    .arg(&archive)
                    .args(["--name", &name]),
            )
        })?);
        std::fs::create_dir_all(&recv)?;
        raw_recvs.push(timed(&mut || {
            run_ok(Command::new("sh").arg("-c").arg(format!(
                "zstd -q -d -c {} | btrfs receive -q {}",
                raw.display(),
                recv.display()
            )))
        })?);
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "btrfs subvolume delete {}/* >/dev/null; rmdir {}",
                recv.display(),
                recv.display()
            ))
            .status();
        let _ = b.cli().args(["delete", "--purge", &name]).output();
    }
    report(
        b,
        "import",
        "zstd -d | btrfs receive",
        data_bytes,
        &imports,
        &raw_recvs,
    );
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&raw);
    let mut names: Vec<String> = vec!["small".into(), "big".into()];
    names.extend((0..6).flat_map(|i| [format!("cs{i}"), format!("cb{i}")]));
    for n in names {
        let _ = b.cli().args(["delete", "--purge", &n]).output();
    }
    Ok(())
}

/// Prints warren's and the baseline's median throughput, each round's, and their ratio.
fn report(
    b: &Bench,
    what: &str,
    baseline: &str,
    bytes: u64,
    warren: &[Duration],
    base: &[Duration],
) {
    let rounds = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", mb_s(bytes, *d)))
            .collect::<Vec<_>>()
            .join("/")
    };
    let (w, r) = (median(warren.to_vec()), median(base.to_vec()));
    let ratio = mb_s(bytes, w) / mb_s(bytes, r);
    println!(
        "{what:<9} warren {:>7.1} MiB/s   {baseline} {:>7.1} MiB/s   ratio {ratio:.2} {}",
        mb_s(bytes, w),
        mb_s(bytes, r),
        b.record(what, ratio)
    );
    println!(
        "{:<9} rounds: warren {} MiB/s, baseline {} MiB/s",
        "",
        rounds(warren),
        rounds(base)
    );
}

/// The parts of the bench, in the order they run; `cargo xtask bench PART...` runs only those.
pub const PARTS: &[&str] = &["run", "datasets", "apply", "ingress", "images", "vm"];

/// The bench daemon's own bridge, nft table and ingress ports, so it never touches an operator's
/// `warren0` or `inet warren` and cleans up after itself.
const BRIDGE: &str = "wbench0";
const NFT_TABLE: &str = "warren_bench";
const SUBNET: &str = "10.231.0.0/24";

/// `cargo xtask bench`: every part.
pub fn bench(root: &Path) -> Result<()> {
    bench_parts(root, &[], false)
}

/// Where cargo puts the release binaries: `CARGO_TARGET_DIR` (relative to the workspace) when
/// set, else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("target"),
    }
}

/// Runs the named parts of the bench (all when `parts` is empty) and prints every measured
/// value against its target; with `check`, fails when one missed.
pub fn bench_parts(root: &Path, parts: &[String], check: bool) -> Result<()> {
    for p in parts {
        if !PARTS.contains(&p.as_str()) {
            bail!("unknown bench part {p:?} (parts: {})", PARTS.join(", "));
        }
    }
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench needs root (containers, loop devices)");
    }
    for tool in ["runc", "mkfs.btrfs", "busybox"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()?
            .code()
            != Some(0)
        {
            bail!("{tool} is missing: run scripts/install-deps");
        }
    }
    run_ok(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "--bin",
        "warren",
    ]))?;
    if wanted("vm") {
        // The VM runtime puts the agent next to the warren binary into its initramfs.
        run_ok(Command::new("cargo").current_dir(root).args([
            "build",
            "--release",
            "-p",
            "warren-agent",
        ]))?;
    }
    let dir = PathBuf::from(format!("/tmp/warren-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut b = Bench {
        dir: dir.clone(),
        warren: target_dir(root).join("release/warren"),
        daemon: None,
        http_port: free_port(),
        results: RefCell::default(),
    };
    let https_port = free_port().to_string();
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    // The VM runtime's kernel, initramfs and accelerator probe are kept across bench runs.
    let vm_cache = std::env::var_os("WARREN_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(root).join("bench-vm-cache"));
    b.daemon = Some(
        b.cli()
            .env("WARREN_VM_CACHE", &vm_cache)
            .args([
                "daemon",
                "--pool-gib",
                "8",
                "--stop-timeout",
                "1",
                "--listen",
                "none",
            ])
            .args([
                "--bridge",
                BRIDGE,
                "--nft-table",
                NFT_TABLE,
                "--subnet",
                SUBNET,
            ])
            .args([
                "--http-port",
                &b.http_port.to_string(),
                "--https-port",
                &https_port,
            ])
            .arg("--runc-root")
            .arg(dir.join("runc-warren"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let t = Instant::now();
    while b.cli().arg("list").output()?.status.code() != Some(0) {
        if t.elapsed() > Duration::from_secs(30) {
            bail!(
                "daemon did not start; see {}",
                dir.join("daemon.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run_ok(b.cli().args(["world", "create", "busybox"]))?;

    // Baseline bundle: the same busybox world, copied, with runc's default spec.
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    run_ok(
        Command::new("cp")
            .args(["-a"])
            .arg(dir.join("state/pool/worlds/busybox"))
            .arg(bundle.join("rootfs")),
    )?;
    run_ok(Command::new("runc").args(["spec"]).current_dir(&bundle))?;
    let spec = std::fs::read_to_string(bundle.join("config.json"))?
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", "\"/bin/true\"");
    std::fs::write(bundle.join("config.json"), spec)?;
    let runc_root = dir.join("runc-baseline");

    if wanted("run") {
        run_part(&b, &bundle, &runc_root)?;
    }
    if wanted("datasets") {
        datasets(&b)?;
    }
    if wanted("apply") {
        apply_part(&b, &bundle)?;
    }
    if wanted("ingress") {
        crate::bench_ingress::latency(&|| b.cli(), &dir, b.http_port)?;
        println!("          (render time and reload cost: cargo bench -p warren-ingress)");
    }
    if wanted("images") {
        crate::bench_images::images(&|| b.cli(), &dir)?;
    }
    if wanted("vm") {
        crate::bench_vm::vm(
            &|| b.cli(),
            &dir,
            &dir.join("state"),
            &dir.join("runc-warren"),
            b.daemon.as_ref().map(|d| d.id()).unwrap_or(0),
            &|key, value| b.record(key, value),
        )?;
    }
    let results = b.results.borrow();
    print!("{}", results.summary());
    let missed = results.missed();
    if check && !missed.is_empty() {
        bail!(
            "{} bench target(s) missed: {}",
            missed.len(),
            missed.iter().map(|t| t.key).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

/// `warren run --rm` against `runc run` and `podman run` of the same root filesystem.
fn run_part(b: &Bench, bundle: &Path, runc_root: &Path) -> Result<()> {
    println!("warren benchmarks ({RUNS} runs each, medians)\n");
    let warren_run = time_n(RUNS, || {
        run_ok(b.cli().args(["run", "--rm", "busybox", "--", "/bin/true"]))
    })?;
    let mut n = 0;
    let runc_run = time_n(RUNS, || {
        n += 1;
        run_ok(
            Command::new("runc")
                .arg("--root")
                .arg(runc_root)
                .args(["run", "--bundle"])
                .arg(bundle)
                .arg(format!("bench-{n}")),
        )
    })?;
    let podman = time_n(RUNS, || {
        run_ok(
            Command::new("podman")
                .args(["run", "--rm", "--network=none"])
                .args(podman_limits())
                .arg("--rootfs")
                .arg(bundle.join("rootfs"))
                .arg("/bin/true"),
        )
    });
    println!("{:<44} {:>10}", "run --rm /bin/true", "median");
    println!(
        "{:<44} {:>8.1}ms",
        "warren run --rm busybox -- /bin/true",
        ms(warren_run)
    );
    println!("{:<44} {:>8.1}ms", "runc run (same rootfs)", ms(runc_run));
    let vs_runc = ms(warren_run) / ms(runc_run);
    println!(
        "  ratio warren/runc: {vs_runc:.2} {}",
        b.record("run", vs_runc)
    );
    match &podman {
        Ok(p) => {
            println!(
                "{:<44} {:>8.1}ms",
                "podman run --rm --rootfs (same rootfs)",
                ms(*p)
            );
            let speedup = ms(*p) / ms(warren_run);
            println!(
                "  podman/warren: {speedup:.2}x faster {}",
                b.record("run-podman", speedup)
            );
        }
        Err(e) => println!("podman run: unavailable ({e:#})"),
    }
    Ok(())
}

/// Whether podman can run the bench's root filesystem here (one run).
fn podman_works(bundle: &Path) -> Result<()> {
    run_ok(
        Command::new("podman")
            .args(["run", "--rm", "--network=none"])
            .args(podman_limits())
            .arg("--rootfs")
            .arg(bundle.join("rootfs"))
            .arg("/bin/true"),
    )
}

/// One `GET /v1/metrics` over the daemon's local socket; the response's length.
fn scrape_once(sock: &Path) -> Result<usize> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.write_all(b"GET /v1/metrics HTTP/1.1\r\nHost: warren\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!(
            "/v1/metrics: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(body.len())
}

/// Scrapes of `/v1/metrics` with the 50 workloads running: the median time and the daemon's
/// CPU per scrape.
fn scrape(b: &Bench, pid: u32) -> Result<()> {
    const SCRAPES: usize = 20;
    let sock = b.dir.join("state").join("warren.sock");
    let bytes = scrape_once(&sock)?;
    let c0 = cpu_ticks(pid).unwrap_or(0);
    let mut times = Vec::new();
    for _ in 0..SCRAPES {
        let t = Instant::now();
        scrape_once(&sock)?;
        times.push(t.elapsed());
    }
    let c1 = cpu_ticks(pid).unwrap_or(0);
    let cpu_ms = (c1 - c0) as f64 * 10.0 / SCRAPES as f64;
    println!(
        "metrics scrape with {WORKLOADS} workloads: median {:.1}ms, daemon CPU {cpu_ms:.1}ms per scrape ({} KiB)",
        ms(median(times)),
        bytes / 1024
    );
    Ok(())
}

/// `warren apply` of 50 workloads until all run; the idle daemon and its shims; podman's
/// conmon for comparison.
fn apply_part(b: &Bench, bundle: &Path) -> Result<()> {
    let dir = &b.dir;
    let podman = podman_works(bundle);
    // apply of 50 workloads until all run.
    let mut toml = String::new();
    for i in 0..WORKLOADS {
        toml.push_str(&format!(
            "[workload.w{i}]\nworld = \"busybox\"\ncommand = [\"sleep\", \"100000\"]\n\n"
        ));
    }
    let file = dir.join("fifty.toml");
    std::fs::write(&file, toml)?;
    let t = Instant::now();
    run_ok(b.cli().arg("apply").arg("-f").arg(&file))?;
    let applied = t.elapsed();
    loop {
        let out = b.cli().args(["list", "-o", "json"]).output()?;
        let running = String::from_utf8_lossy(&out.stdout)
            .matches("\"state\": \"running\"")
            .count();
        if running == WORKLOADS {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("only {running} of {WORKLOADS} workloads running after 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let converged = t.elapsed();
    println!(
        "\napply of {WORKLOADS} workloads: accepted in {:.0}ms, all running after {:.0}ms",
        ms(applied),
        ms(converged)
    );

    // Idle daemon.
    std::thread::sleep(Duration::from_secs(2));
    let pid = b.daemon.as_ref().unwrap().id();
    let c0 = cpu_ticks(pid).unwrap_or(0);
    let idle = Duration::from_secs(10);
    std::thread::sleep(idle);
    let c1 = cpu_ticks(pid).unwrap_or(0);
    let hz = 100.0;
    let cpu = (c1 - c0) as f64 / hz / idle.as_secs_f64() * 100.0;
    let rss = field_kb(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0);
    let rss_mb = rss as f64 / 1024.0;
    println!(
        "idle daemon with {WORKLOADS} workloads: RSS {rss_mb:.1} MB {}, CPU {cpu:.2}% over {}s",
        b.record("idle-rss", rss_mb),
        idle.as_secs()
    );
    scrape(b, pid)?;
    let shims = children_named("shim");
    let mut pss: Vec<u64> = shims
        .iter()
        .filter_map(|p| field_kb(&format!("/proc/{p}/smaps_rollup"), "Pss:"))
        .collect();
    pss.sort();
    if let Some(mid) = pss.get(pss.len() / 2) {
        let mid_mb = *mid as f64 / 1024.0;
        println!(
            "shim PSS: median {mid_mb:.2} MB over {} shims {}",
            pss.len(),
            b.record("shim-pss", mid_mb)
        );
    }
    if podman.is_ok() {
        let out = Command::new("podman")
            .args(["run", "-d", "--rm", "--network=none"])
            .args(podman_limits())
            .arg("--rootfs")
            .arg(bundle.join("rootfs"))
            .args(["sleep", "1000"])
            .output()?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::thread::sleep(Duration::from_millis(500));
        let conmon: Vec<u64> = std::fs::read_dir("/proc")?
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() == "conmon")
                    .unwrap_or(false)
            })
            .filter_map(|p| field_kb(&format!("/proc/{p}/smaps_rollup"), "Pss:"))
            .collect();
        if let Some(c) = conmon.first() {
            println!("podman conmon PSS: {:.2} MB", *c as f64 / 1024.0);
        }
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &id])
            .output();
    }
    Ok(())
}
