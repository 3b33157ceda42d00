//! `cargo xtask bench vm`: a microVM under warren against bare QEMU running the same machine,
//! side by side in one run.
//!
//! - **Boot to the agent's greeting.** Each round applies a `kind = "vm"` workload (busybox
//!   world, `network = "none"`, 256 MiB) to the bench daemon and deletes it afterwards; the VM
//!   shim records its boot's timeline in the run directory (`boot-times`: QEMU spawned, the
//!   agent's greeting, the main process started). Then the same QEMU argv (taken from the run's
//!   `vm.json`, so the same kernel, initramfs, disks and machine; only the run directory's
//!   paths differ) is spawned bare. "Boot" ends, on both sides, when the agent's reply to the
//!   host's `Hello` has arrived: the first bytes the guest writes on its port (it never writes
//!   before it read the host's greeting, which both sides send as soon as the socket connects,
//!   long before the guest is up). warren's time runs from `warren apply` (daemon, root disk,
//!   cgroup, shim included), bare QEMU's from its spawn; the shim's own spawn → greeting is
//!   printed beside them, as is each side's greeting → `Started` (the same `Start` message).
//! - **Memory per VM.** QEMU's resident memory beyond the guest's RAM (smaps: everything but
//!   the guest RAM mapping), plus the shim's RSS for warren; bare QEMU's for comparison.
//! - **exec round trip.** `warren exec VM -- true` against the same exec sent straight to the
//!   bare VM's agent, and `warren exec C -- true` against `runc exec` into that container.
//!
//! The bare VM's disks are copies of the first warren VM's, taken after it powered off. The
//! two VMs of a round boot at the same time, so both see the same load from the rest of the
//! machine; a first warren boot alone, not counted, gives the bare VM its argv. The
//! accelerator is whatever the daemon's VM runtime chose (`WARREN_VM_ACCEL`, else its probe):
//! the argv carries it. Every QEMU started here is killed by its PID.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Boots on each side.
const ROUNDS: usize = 3;
/// Exec round trips on each side (after one warm-up).
const EXECS: usize = 5;
const VM: &str = "vmbench";
const CT: &str = "ctbench";
const GUEST_MIB: u64 = 256;
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

const HELLO: u8 = 1;
const START: u8 = 2;
const EXEC: u8 = 3;
const STARTED: u8 = 4;
const EXIT: u8 = 8;
const ERROR: u8 = 15;

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join("/")
}

fn ok(cmd: &mut Command) -> Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One agent frame: `u32 BE len | u8 kind | u32 BE channel | payload`.
fn frame(kind: u8, channel: u32, body: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(body).expect("JSON of a value");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(5 + payload.len() as u32).to_be_bytes());
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&payload);
    f
}

/// Reads one frame: (kind, channel, payload). `first` is the length's first byte when the
/// caller already read it.
fn read_frame(s: &mut UnixStream, first: Option<u8>) -> Result<(u8, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    match first {
        Some(b) => {
            len[0] = b;
            s.read_exact(&mut len[1..])?;
        }
        None => s.read_exact(&mut len)?,
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(5..=(1 << 20) + 5).contains(&len) {
        bail!("agent frame of {len} bytes");
    }
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest)?;
    let channel = u32::from_be_bytes(rest[1..5].try_into().unwrap());
    Ok((rest[0], channel, rest[5..].to_vec()))
}

/// Reads frames until `want` on `channel`; an `Error` there fails.
fn await_kind(s: &mut UnixStream, channel: u32, want: u8) -> Result<Vec<u8>> {
    loop {
        let (kind, ch, payload) = read_frame(s, None)?;
        if ch != channel {
            continue;
        }
        if kind == want {
            return Ok(payload);
        }
        if kind == ERROR {
            bail!("the agent: {}", String::from_utf8_lossy(&payload));
        }
    }
}

/// The shim's `boot-times` of the start at or after `since` (unix µs), by phase.
fn boot_times(run_dir: &Path, since: u64) -> Option<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(run_dir.join("boot-times")).ok()?;
    let times: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let (p, t) = l.split_once(' ')?;
            Some((p.to_string(), t.parse().ok()?))
        })
        .collect();
    let at = |p: &str| times.iter().find(|(q, _)| q == p).map(|(_, t)| *t);
    (at("shim")? >= since && at("started").is_some()).then_some(times)
}

fn phase(times: &[(String, u64)], p: &str) -> Result<u64> {
    times
        .iter()
        .find(|(q, _)| q == p)
        .map(|(_, t)| *t)
        .with_context(|| format!("no {p} in boot-times"))
}

/// Resident kB of `pid`: (total, the guest RAM mapping's). The guest's RAM is the anonymous
/// mapping of the guest's size (QEMU may round it up by a few MiB).
fn resident_kb(pid: u32, guest_kb: u64) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let (mut total, mut guest) = (0u64, 0u64);
    let mut size = 0u64;
    let field = |l: &str| -> u64 {
        l.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for l in text.lines() {
        if l.starts_with("Size:") {
            size = field(l);
        } else if l.starts_with("Rss:") {
            let rss = field(l);
            total += rss;
            if (guest_kb..=guest_kb + 8192).contains(&size) {
                guest = guest.max(rss);
            }
        }
    }
    Ok((total, guest))
}

/// User and system CPU seconds of `pid` so far.
fn cpu_s(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime (fields 14 and 15 of proc(5)).
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn get_json(cli: &dyn Fn() -> Command, name: &str) -> Result<Value> {
    let out = ok(cli().args(["get", name, "-o", "json"]))?;
    Ok(serde_json::from_str(&out)?)
}

/// Times `n` runs of `f` (after one warm-up), in ms.
fn exec_times(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(ms(t.elapsed()));
    }
    Ok(v)
}

/// What one warren round measured.
struct WarrenRound {
    /// apply → greeting, shim's QEMU spawn → greeting, greeting → Started, apply → shim.
    apply_hello: f64,
    spawn_hello: f64,
    hello_started: f64,
    apply_shim: f64,
    overhead_kb: u64,
    shim_kb: u64,
    guest_kb: u64,
}

/// What one bare round measured.
struct BareRound {
    spawn_hello: f64,
    hello_started: f64,
    overhead_kb: u64,
    guest_kb: u64,
}

/// The bare VM: its argv (paths moved to `dir`), its Start message and its disks' copies.
struct Bare {
    dir: PathBuf,
    argv: Vec<String>,
    start: Value,
}

/// A bare QEMU, killed by its PID when dropped.
struct BareQemu(Child);

impl Drop for BareQemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the vm part; `cli` gives a `warren` command aimed at the bench daemon whose state dir
/// is `state` and runc root `runc_root`; `record` records a value against its target.
pub fn vm(
    cli: &dyn Fn() -> Command,
    dir: &Path,
    state: &Path,
    runc_root: &Path,
    daemon: u32,
    record: &dyn Fn(&str, f64) -> String,
) -> Result<()> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("qemu-system-x86_64 is missing: run scripts/install-deps");
    }
    let load = |when: &str| {
        let up = Command::new("uptime").output().ok();
        let up = up.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        println!("  uptime {when}: {}", up.unwrap_or_default());
    };
    println!("\nvm (microVM under warren vs bare QEMU, {ROUNDS} boots each; exec: {EXECS} runs)");
    load("before");
    let work = dir.join("vm");
    std::fs::create_dir_all(&work)?;
    let toml = format!(
        "[workload.{VM}]\nkind = \"vm\"\nworld = \"busybox\"\nnetwork = \"none\"\n\
         resources = {{ memory = \"{GUEST_MIB}M\" }}\ncommand = [\"sleep\", \"100000\"]\n"
    );
    let vm_file = work.join("vm.toml");
    std::fs::write(&vm_file, toml)?;
    let ct_file = work.join("ct.toml");
    std::fs::write(
        &ct_file,
        format!(
            "[workload.{CT}]\nworld = \"busybox\"\nnetwork = \"none\"\n\
             command = [\"sleep\", \"100000\"]\n"
        ),
    )?;
    let run_dir = state.join("workloads").join(VM);
    let guest_kb = GUEST_MIB * 1024;

    // A first warren boot alone: the bare VM's argv, Start message and disks come from it
    // (and both sides then find the kernel and initramfs in the page cache).
    let t_apply = unix_us();
    ok(cli().arg("apply").arg("-f").arg(&vm_file))?;
    let times = wait_boot(&run_dir, t_apply)?;
    println!(
        "  first boot, warren alone (not counted): apply → greeting {:.0} ms",
        phase(&times, "hello")?.saturating_sub(t_apply) as f64 / 1000.0
    );
    let bare = prepare_bare(cli, &work, &run_dir)?;
    ok(cli().args(["delete", "--purge", VM]))?;

    let mut warren = Vec::new();
    let mut bare_rounds = Vec::new();
    let (mut vm_exec, mut agent_exec) = (Vec::new(), Vec::new());
    let mut cpu = Vec::new();
    for round in 0..ROUNDS {
        // Both boot at once, so both see the same load from the rest of the machine.
        let mut b = BareBoot::spawn(&bare)?;
        let daemon_cpu = cpu_s(daemon);
        let t_apply = unix_us();
        ok(cli().arg("apply").arg("-f").arg(&vm_file))?;
        let times = wait_boot(&run_dir, t_apply)?;
        let (hello, started, mut agent) = b.handshake.take().unwrap().join().unwrap()?;
        let at = |p: &str| phase(&times, p);
        let since = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
        let st: Value = serde_json::from_slice(&std::fs::read(run_dir.join("state.json"))?)?;
        let qemu_pid = st["container_pid"].as_u64().context("state.json")? as u32;
        let shim_pid = st["shim_pid"].as_u64().context("state.json")? as u32;
        cpu.push(format!(
            "warren QEMU {:.1} s, shim {:.2} s, daemon {:.2} s; bare QEMU {:.1} s",
            cpu_s(qemu_pid),
            cpu_s(shim_pid),
            cpu_s(daemon) - daemon_cpu,
            cpu_s(b.qemu.0.id())
        ));
        if round == 0 {
            // The exec round trip: through the CLI, daemon, shim and agent; straight to the
            // bare VM's agent.
            vm_exec = exec_times(EXECS, || {
                ok(cli().args(["exec", VM, "--", "true"])).map(drop)
            })?;
            let mut ch = 0u32;
            agent_exec = exec_times(EXECS, || {
                ch += 1;
                let spec = json!({"argv": ["true"], "env": [], "cwd": null, "tty": false,
                                  "rows": 0, "cols": 0});
                agent.write_all(&frame(EXEC, ch, &spec))?;
                await_kind(&mut agent, ch, EXIT).map(drop)
            })?;
        }
        let (total, guest) = resident_kb(qemu_pid, guest_kb)?;
        warren.push(WarrenRound {
            apply_hello: since(t_apply, at("hello")?),
            spawn_hello: since(at("qemu")?, at("hello")?),
            hello_started: since(at("hello")?, at("started")?),
            apply_shim: since(t_apply, at("shim")?),
            overhead_kb: total - guest,
            shim_kb: rss_kb(shim_pid),
            guest_kb: guest,
        });
        let (total, guest) = resident_kb(b.qemu.0.id(), guest_kb)?;
        bare_rounds.push(BareRound {
            spawn_hello: ms(hello),
            hello_started: ms(started - hello),
            overhead_kb: total - guest,
            guest_kb: guest,
        });
        drop(b);
        ok(cli().args(["delete", "--purge", VM]))?;
    }

    // Containers: warren exec against runc exec of the same container.
    ok(cli().arg("apply").arg("-f").arg(&ct_file))?;
    let t = Instant::now();
    let id = loop {
        let v = get_json(cli, CT)?;
        if v["pid"].is_u64() {
            let ids = ok(Command::new("runc")
                .arg("--root")
                .arg(runc_root)
                .args(["list", "-q"]))?;
            if let Some(id) = ids.lines().find(|l| l.ends_with(&format!("-{CT}"))) {
                break id.to_string();
            }
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{CT} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ct_exec = exec_times(EXECS, || {
        ok(cli().args(["exec", CT, "--", "true"])).map(drop)
    })?;
    let runc_exec = exec_times(EXECS, || {
        ok(Command::new("runc")
            .arg("--root")
            .arg(runc_root)
            .args(["exec", &id, "true"]))
        .map(drop)
    })?;
    let _ = cli().args(["delete", "--purge", CT]).output();
    load("after");

    let col = |f: &dyn Fn(&WarrenRound) -> f64| warren.iter().map(f).collect::<Vec<_>>();
    let bcol = |f: &dyn Fn(&BareRound) -> f64| bare_rounds.iter().map(f).collect::<Vec<_>>();
    let w_apply = col(&|r| r.apply_hello);
    let w_spawn = col(&|r| r.spawn_hello);
    let b_spawn = bcol(&|r| r.spawn_hello);
    println!("boot to the agent's greeting (ms; median, then every round)");
    let row = |what: &str, v: &[f64]| {
        println!("  {what:<44} {:>8.0}   ({})", median(v.to_vec()), list(v));
    };
    row("warren: apply → greeting", &w_apply);
    row("  of which apply → shim running", &col(&|r| r.apply_shim));
    row("  of which shim: QEMU spawn → greeting", &w_spawn);
    row("bare QEMU: spawn → greeting", &b_spawn);
    let ratio = median(w_apply.clone()) / median(b_spawn.clone());
    println!(
        "  ratio warren/bare: {ratio:.2} {}",
        record("vm-boot", ratio)
    );
    println!(
        "  (QEMU spawn → greeting, shim/bare: {:.2})",
        median(w_spawn) / median(b_spawn)
    );
    for (i, c) in cpu.iter().enumerate() {
        println!("  CPU time by the end of boot, round {}: {c}", i + 1);
    }
    row("warren: greeting → Started", &col(&|r| r.hello_started));
    row("bare QEMU: greeting → Started", &bcol(&|r| r.hello_started));

    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("memory per VM ({GUEST_MIB} MiB guest; MB, every round)");
    let mem = |v: Vec<f64>| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    println!(
        "  warren: QEMU beyond guest RAM {}  + shim RSS {}  (guest RAM resident {})",
        mem(col(&|r| mb(r.overhead_kb))),
        mem(col(&|r| mb(r.shim_kb))),
        mem(col(&|r| mb(r.guest_kb)))
    );
    println!(
        "  bare:   QEMU beyond guest RAM {}  (guest RAM resident {})",
        mem(bcol(&|r| mb(r.overhead_kb))),
        mem(bcol(&|r| mb(r.guest_kb)))
    );
    let w_total = median(col(&|r| mb(r.overhead_kb + r.shim_kb)));
    let b_total = median(bcol(&|r| mb(r.overhead_kb)));
    println!(
        "  overhead per VM, median: warren {w_total:.1} MB (QEMU + shim), bare {b_total:.1} MB, \
         difference {:.1} MB",
        w_total - b_total
    );

    println!("exec round trip of `true` (ms; median, then every run)");
    row("warren exec VM -- true", &vm_exec);
    row("agent Exec → Exit on the bare VM", &agent_exec);
    row("warren exec C -- true", &ct_exec);
    row("runc exec C true", &runc_exec);
    let (v, a, c, r) = (
        median(vm_exec),
        median(agent_exec),
        median(ct_exec),
        median(runc_exec),
    );
    println!(
        "  ratios: warren exec VM / agent exec {:.2}, warren exec C / runc exec {:.2}, \
         VM / container (warren exec) {:.2}",
        v / a,
        c / r,
        v / c
    );
    Ok(())
}

/// After the first warren VM booted: its argv and Start message from `vm.json` with the run
/// directory's paths moved to `work/bare`, and copies of its disks taken once it powered off.
fn prepare_bare(cli: &dyn Fn() -> Command, work: &Path, run_dir: &Path) -> Result<Bare> {
    let cfg: Value = serde_json::from_slice(&std::fs::read(run_dir.join("vm.json"))?)?;
    let argv: Vec<String> = cfg["qemu"]
        .as_array()
        .context("vm.json: qemu")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let start = cfg["start"].clone();
    let dir = work.join("bare");
    std::fs::create_dir_all(&dir)?;
    // The disks: `file=PATH,` in a -drive option.
    let disks: Vec<String> = argv
        .iter()
        .filter_map(|a| {
            let rest = a.split("file=").nth(1)?;
            let path = rest.split(',').next()?;
            (path.ends_with(".ext4")).then(|| path.to_string())
        })
        .collect();
    if disks.is_empty() {
        bail!("no disk in {VM}'s QEMU argv: {argv:?}");
    }
    ok(cli().args(["stop", VM]))?;
    let t = Instant::now();
    while get_json(cli, VM)?["pid"].is_u64() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{VM} did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = run_dir.canonicalize()?.display().to_string();
    let mut moved = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let copy = dir.join(format!("disk{i}.ext4"));
        ok(Command::new("cp").arg("--sparse=always").arg(d).arg(&copy))?;
        moved.push((d.clone(), copy.display().to_string()));
    }
    let bare_dir = dir.display().to_string();
    let argv = argv
        .into_iter()
        .map(|a| {
            let mut a = a;
            for (from, to) in &moved {
                a = a.replace(from, to);
            }
            a.replace(&run, &bare_dir)
        })
        .collect();
    Ok(Bare { dir, argv, start })
}

/// What the handshake thread of a bare boot gives: spawn → greeting, spawn → `Started`, and
/// the agent's connection.
type Handshake = std::thread::JoinHandle<Result<(Duration, Duration, UnixStream)>>;

/// A bare boot under way: QEMU (killed by its PID when dropped) and the thread greeting its
/// agent and starting the main process.
struct BareBoot {
    qemu: BareQemu,
    handshake: Option<Handshake>,
}

impl BareBoot {
    fn spawn(b: &Bare) -> Result<BareBoot> {
        let sock = b.dir.join("agent.sock");
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::File::create(b.dir.join("qemu.log"))?;
        let t0 = Instant::now();
        let child = Command::new(&b.argv[0])
            .args(&b.argv[1..])
            .current_dir(&b.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning bare QEMU")?;
        let start = b.start.clone();
        let handshake = std::thread::spawn(move || handshake(&sock, t0, start));
        Ok(BareBoot {
            qemu: BareQemu(child),
            handshake: Some(handshake),
        })
    }
}

/// Greets the bare VM's agent as soon as its socket connects and sends `start`: the times
/// from `t0` to the first byte of its greeting and to `Started`.
fn handshake(
    sock: &Path,
    t0: Instant,
    mut start: Value,
) -> Result<(Duration, Duration, UnixStream)> {
    let mut s = loop {
        if let Ok(s) = UnixStream::connect(sock) {
            break s;
        }
        if t0.elapsed() > BOOT_DEADLINE {
            bail!("bare QEMU made no agent socket; see its qemu.log");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(BOOT_DEADLINE))?;
    s.write_all(&frame(HELLO, 0, &json!({ "version": 1 })))?;
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let hello = t0.elapsed();
    let (kind, _, _) = read_frame(&mut s, Some(first[0]))?;
    if kind != HELLO {
        bail!("the bare VM's agent greeted with kind {kind}");
    }
    start["time_unix_ns"] = json!(unix_us() * 1000);
    s.write_all(&frame(START, 0, &start))?;
    await_kind(&mut s, 0, STARTED)?;
    Ok((hello, t0.elapsed(), s))
}

/// The shim's timeline of the boot started at `since` (unix µs), once it has `Started`.
fn wait_boot(run_dir: &Path, since: u64) -> Result<Vec<(String, u64)>> {
    let t = Instant::now();
    loop {
        if let Some(times) = boot_times(run_dir, since) {
            return Ok(times);
        }
        if t.elapsed() > BOOT_DEADLINE {
            bail!(
                "{VM} did not boot; see {}",
                run_dir.join("qemu.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_kind_channel_payload() {
        let f = frame(HELLO, 7, &json!({"version": 1}));
        let payload = br#"{"version":1}"#;
        assert_eq!(&f[..4], &(5 + payload.len() as u32).to_be_bytes());
        assert_eq!(f[4], HELLO);
        assert_eq!(&f[5..9], &7u32.to_be_bytes());
        assert_eq!(&f[9..], payload);
    }

    #[test]
    fn boot_times_of_an_older_start_are_not_taken() {
        let d = std::env::temp_dir().join(format!("bench-vm-times-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("boot-times"),
            "shim 100\nqemu 110\nconnected 120\nhello 900\nstarted 950\n",
        )
        .unwrap();
        let t = boot_times(&d, 100).unwrap();
        assert_eq!(phase(&t, "hello").unwrap(), 900);
        assert!(boot_times(&d, 101).is_none());
        std::fs::write(d.join("boot-times"), "shim 200\nqemu 210\n").unwrap();
        assert!(boot_times(&d, 100).is_none(), "not started yet");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
