//! The ingress part of `cargo xtask bench`: latency from "workload running" (its `started`
//! event) to "route serving" (the first 200 through the ingress for its domain), for a workload
//! that listens at once (busybox httpd), over several runs. Render time and the update cost
//! against a bare `nginx -t && nginx -s reload` are measured by `cargo bench -p warren-ingress`.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One HTTP/1.0 GET of `/` for `host` on 127.0.0.1:`port`; true on a 200.
fn get_ok(port: u16, host: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// The `ts_ms` of the newest `started` event of `name`, from `events -o json`.
fn started_ms(cli: &dyn Fn() -> Command, name: &str) -> Result<Option<u64>> {
    let out = cli()
        .args(["events", "--workload", name, "-n", "50", "-o", "json"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // No JSON dependency in xtask: find `"kind": "started"` records and their ts_ms.
    let mut best = None;
    for rec in text.split('{').skip(1) {
        if !rec.contains("\"started\"") {
            continue;
        }
        if let Some(rest) = rec.split("\"ts_ms\":").nth(1) {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(ts) = digits.parse::<u64>() {
                best = best.max(Some(ts));
            }
        }
    }
    Ok(best)
}

/// Applies a routed workload `runs` times (deleting it in between) and prints the median and
/// worst latency from its `started` event to the first 200 through the ingress.
pub fn latency(cli: &dyn Fn() -> Command, dir: &std::path::Path, http_port: u16) -> Result<()> {
    let runs = 10;
    // A workload that stays routed, so the routing workload keeps running between runs and
    // what is measured is a route appearing, not the proxy starting.
    let anchor = dir.join("ingress-anchor.toml");
    std::fs::write(
        &anchor,
        "[workload.anchor]\nworld = \"busybox\"\n\
         command = [\"sh\", \"-c\", \"echo ok > /data/index.html; exec httpd -f -p 8000 -h /data\"]\n\
         domains = [\"anchor.test\"]\nport = 8000\n",
    )?;
    let out = cli().arg("apply").arg("-f").arg(&anchor).output()?;
    if !out.status.success() {
        bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let t = Instant::now();
    while !get_ok(http_port, "anchor.test") {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the ingress did not come up within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lat = Vec::new();
    for i in 0..runs {
        let domain = format!("bench{i}.test");
        // A new name each run, so its events are its own.
        let name = format!("routed{i}");
        let spec = format!(
            "[workload.{name}]\nworld = \"busybox\"\n\
             command = [\"sh\", \"-c\", \"echo ok > /data/index.html; exec httpd -f -p 8000 -h /data\"]\n\
             domains = [\"{domain}\"]\nport = 8000\n"
        );
        let file = dir.join("ingress-bench.toml");
        std::fs::write(&file, spec)?;
        let out = cli().arg("apply").arg("-f").arg(&file).output()?;
        if !out.status.success() {
            bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let t = Instant::now();
        let served = loop {
            if get_ok(http_port, &domain) {
                break now_ms();
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("{domain} was not served within 60 s");
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let started = started_ms(cli, &name)?.context("no started event")?;
        lat.push(served.saturating_sub(started));
        cli().args(["delete", "--purge", &name]).output()?;
    }
    cli().args(["delete", "--purge", "anchor"]).output()?;
    lat.sort();
    println!(
        "ingress   workload running -> route serving: median {} ms, worst {} ms ({runs} runs)",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    Ok(())
}
