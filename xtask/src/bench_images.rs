//! `cargo xtask bench images`: OCI image import against `umoci unpack` of the same image, and
//! a Warrenfile rebuild that hits the cache.
//!
//! The image (~100 MiB in four layers of random bytes plus 2000 small files, built with umoci
//! and written as a docker-save archive with skopeo) is imported with `warren image import`
//! (upload over the socket, blob verification, one copy-on-write world per layer), then removed
//! and its layers collected before the next round; the baseline unpacks the same image from
//! its OCI layout with `umoci unpack`, and its tree is removed before the next round.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const REBUILDS: usize = 5;

fn sh(dir: &Path, script: &str) -> Result<()> {
    let out = Command::new("sh")
        .args(["-euc", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running sh")?;
    if !out.status.success() {
        bail!(
            "bench setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed(f: &mut dyn FnMut() -> Result<()>) -> Result<Duration> {
    let _ = Command::new("sync").status();
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// Runs the images part; `cli` gives a `warren` command aimed at the bench daemon.
pub fn images(cli: &dyn Fn() -> Command, dir: &Path) -> Result<()> {
    for tool in ["umoci", "skopeo"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is missing: run scripts/install-deps");
        }
    }
    let work = dir.join("images");
    std::fs::create_dir_all(&work)?;
    sh(
        &work,
        r#"
        umoci init --layout L
        umoci new --image L:v1
        for i in 1 2 3 4; do
            rm -rf B
            umoci unpack --image L:v1 B
            mkdir -p B/rootfs/data$i/small
            head -c 26214400 /dev/urandom > B/rootfs/data$i/blob
            j=0; while [ $j -lt 500 ]; do echo "file $i $j" > B/rootfs/data$i/small/f$j; j=$((j+1)); done
            umoci repack --image L:v1 B
        done
        rm -rf B
        skopeo --insecure-policy copy -q oci:L:v1 docker-archive:image.tar:bench:v1
        "#,
    )?;
    let archive = work.join("image.tar");
    let size = std::fs::metadata(&archive)?.len();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(timed(&mut || {
            ok(cli().args(["image", "import"]).arg(&archive))
        })?);
        ok(cli().args(["image", "rm", "bench:v1"]))?;
        ok(cli().args(["image", "gc"]))?;
        let out = work.join("unpacked");
        theirs.push(timed(&mut || {
            ok(Command::new("umoci")
                .args(["unpack", "--image", "L:v1"])
                .arg(&out)
                .current_dir(&work))
        })?);
        std::fs::remove_dir_all(&out)?;
    }
    let (w, u) = (median(ours.clone()), median(theirs.clone()));
    println!(
        "\nimages ({:.0} MiB docker-save archive, 4 layers; medians of {ROUNDS})",
        size as f64 / (1 << 20) as f64
    );
    println!(
        "import    warren {:>7.1}ms   umoci unpack {:>7.1}ms   ratio {:.2} (warren/umoci)",
        ms(w),
        ms(u),
        ms(w) / ms(u)
    );
    println!(
        "          rounds: warren {} ms, umoci {} ms",
        ours.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join("/"),
        theirs
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join("/")
    );

    // Pull from a local registry vs skopeo copy from the same registry into an OCI layout.
    if std::path::Path::new("/usr/bin/docker-registry").exists() {
        pull_vs_skopeo(cli, &work, size)?;
    } else {
        println!("pull      skipped: docker-registry is not installed (scripts/install-deps)");
    }

    // A recipe: the first build, then rebuilds of the unchanged recipe (cache hits).
    let recipe = work.join("recipe");
    std::fs::create_dir_all(&recipe)?;
    std::fs::write(
        recipe.join("Warrenfile"),
        "name bench/app\nversion 1\nworld busybox\ncopy /opt/app\n---\necho built > /etc/app-built\n",
    )?;
    std::fs::write(recipe.join("payload"), vec![7u8; 1 << 20])?;
    let first = timed(&mut || ok(cli().arg("build").arg(&recipe)))?;
    let mut hits = Vec::new();
    for _ in 0..REBUILDS {
        hits.push(timed(&mut || ok(cli().arg("build").arg(&recipe)))?);
    }
    println!(
        "build     first {:>7.1}ms   rebuild on a cache hit {:>7.1}ms (median of {REBUILDS})",
        ms(first),
        ms(median(hits))
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A `docker-registry serve` on a loopback port, ended by PID when dropped.
struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pull_vs_skopeo(cli: &dyn Fn() -> Command, work: &Path, size: u64) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = work.join("registry");
    std::fs::create_dir_all(&store)?;
    std::fs::write(
        work.join("registry.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: bench\n",
            store.display()
        ),
    )?;
    let _reg = Registry(
        Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(work.join("registry.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("docker-registry did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reference = format!("127.0.0.1:{port}/bench:v1");
    ok(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "oci:L:v1",
        ])
        .arg(format!("docker://{reference}"))
        .current_dir(work))?;
    let (mut ours, mut theirs, mut unpacks) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(timed(
            &mut || ok(cli().args(["image", "pull", &reference])),
        )?);
        ok(cli().args(["image", "rm", &reference]))?;
        ok(cli().args(["image", "gc"]))?;
        let dest = work.join("copied");
        theirs.push(timed(&mut || {
            ok(Command::new("skopeo")
                .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:v1", dest.display())))
        })?);
        // What warren's pull also does: unpack the layers into a root filesystem.
        let tree = work.join("copied-tree");
        unpacks.push(timed(&mut || {
            ok(Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:v1", dest.display()))
                .arg(&tree))
        })?);
        std::fs::remove_dir_all(&dest)?;
        std::fs::remove_dir_all(&tree)?;
    }
    let (w, c) = (median(ours.clone()), median(theirs.clone()));
    let both = median(theirs.iter().zip(&unpacks).map(|(a, b)| *a + *b).collect());
    println!(
        "pull      warren {:>7.1}ms   skopeo copy {:>7.1}ms   ratio {:.2} (warren/skopeo; warren also applies the {:.0} MiB into layer worlds)",
        ms(w),
        ms(c),
        ms(w) / ms(c),
        size as f64 / (1 << 20) as f64
    );
    println!(
        "          skopeo copy + umoci unpack {:>7.1}ms   ratio {:.2} (warren/both)",
        ms(both),
        ms(w) / ms(both)
    );
    println!(
        "          rounds: warren {} ms, skopeo {} ms",
        ours.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join("/"),
        theirs
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join("/")
    );
    Ok(())
}
