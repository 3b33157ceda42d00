//! `cargo bench -p warren-ingress`: render time for 1000 routes, and the cost of a warren
//! ingress update (render, write beside the live file, `nginx -t`, atomic rename, reload)
//! against a bare `nginx -t && nginx -s reload` of the same configuration, side by side on one
//! running nginx. Prints medians and the ratio.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warren_exec::HostExecutor;
use warren_ingress::{render, render_checked, IngressOptions, Route, Target, Validator};

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn routes(n: usize, generation: usize) -> Vec<Route> {
    (0..n)
        .map(|i| {
            Route::new(
                format!("w{i}"),
                format!("app{i}.g{generation}.home.arpa"),
                Target::Upstream {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 88, (i / 250) as u8, (i % 250 + 2) as u8)),
                    port: 8080,
                },
            )
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let opts_for = |prefix: &Path, port: u16| IngressOptions {
        http_port: port,
        https_port: free_port(),
        listen: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        prefix: prefix.to_path_buf(),
        access_log: false,
        worker_processes: Some(1),
        daemon: false,
    };

    // Render time for 1000 routes.
    let dir = tempfile::tempdir().unwrap();
    let opts = opts_for(dir.path(), free_port());
    let many = routes(1000, 0);
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let text = render(&many, &opts);
        samples.push(t.elapsed());
        assert!(text.len() > 1000);
    }
    let render_1000 = median(samples);
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        render_checked(&many, &opts).unwrap();
        samples.push(t.elapsed());
    }
    println!(
        "render 1000 routes          {:>8.3} ms (validated: {:.3} ms)",
        ms(render_1000),
        ms(median(samples))
    );

    // Update cost on a running nginx with 100 routes.
    let Some(nginx) = warren_exec::resolve("nginx") else {
        panic!("nginx is missing: apt-get install nginx-light");
    };
    let prefix = dir.path().join("prefix");
    let conf = dir.path().join("nginx.conf");
    let opts = opts_for(&prefix, free_port());
    let validator = Validator::new(nginx.display().to_string(), &prefix);
    validator
        .install(
            &render_checked(&routes(100, 0), &opts).unwrap(),
            &conf,
            &HostExecutor,
        )
        .unwrap();
    let mut child = validator
        .serve_command(&conf)
        .unwrap()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, opts.http_port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rounds = 20;
    let mut warren = Vec::new();
    let mut bare = Vec::new();
    for g in 1..=rounds {
        // warren: render, install with nginx -t, reload.
        let t = Instant::now();
        let text = render_checked(&routes(100, g), &opts).unwrap();
        let installed = validator.install(&text, &conf, &HostExecutor).unwrap();
        assert!(installed.changed);
        validator.reload(&conf, &HostExecutor).unwrap();
        warren.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
        // bare: the same kind of change written by hand, then nginx -t && nginx -s reload.
        let text = render(&routes(100, g + 1000), &opts);
        std::fs::write(&conf, text).unwrap();
        let t = Instant::now();
        let ok = Command::new(&nginx)
            .args(["-t", "-q", "-p"])
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .status()
            .unwrap()
            .success()
            && Command::new(&nginx)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .args(["-s", "reload"])
                .status()
                .unwrap()
                .success();
        assert!(ok, "bare reload failed");
        bare.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (w, b) = (median(warren), median(bare));
    println!(
        "update, 100 routes          warren {:>7.2} ms   nginx -t && nginx -s reload {:>7.2} ms   ratio {:.2}",
        ms(w),
        ms(b),
        w.as_secs_f64() / b.as_secs_f64()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGQUIT,
    );
    let _ = child.wait();
}
