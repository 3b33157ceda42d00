//! End-to-end networking and ingress: a real daemon with its own bridge, nftables table and
//! routing workload (Debian's nginx), reached with curl on loopback and from a network namespace
//! acting as another machine.

mod common;

use common::{wait_until, Daemon};
use std::process::Command;
use std::time::Duration;

fn require_net_tools() {
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("nginx", "nginx-light"),
        ("curl", "curl"),
        ("python3", "python3"),
    ] {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "{tool} is missing: apt-get install {pkg}"
        );
    }
}

/// `curl` with `args`; returns (HTTP status, body). Status 0 means no HTTP answer.
fn curl(args: &[&str]) -> (u32, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn via_ingress(d: &Daemon, host: &str) -> (u32, String) {
    curl(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://127.0.0.1:{}/", d.net.http_port),
    ])
}

/// A host-world web server answering `text` on `port`.
fn web(name: &str, text: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
[workload.{name}]
world = "host"
command = ["sh", "-c", "mkdir -p /data/www && echo {text} > /data/www/index.html && exec python3 -m http.server {port} --directory /data/www"]
{extra}
"#
    )
}

fn wait_http(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ingress_routes_by_host_header_and_follows_workload_state() {
    require_net_tools();
    let d = Daemon::start(&[]);
    let spec = web(
        "alpha",
        "hello-alpha",
        8000,
        r#"domains = ["alpha.test"]
port = 8000"#,
    ) + &web(
        "beta",
        "hello-beta",
        8000,
        r#"domains = ["beta.test"]
port = 8000"#,
    );
    // The plan shows the routing workload the apply will bring up.
    let file = d.state_dir().join("routes.toml");
    std::fs::write(&file, &spec).unwrap();
    let plan = d.ok(&["plan", "-f", file.to_str().unwrap()]);
    assert!(plan.contains("start warren-ingress"), "{plan}");
    d.apply("routes.toml", &spec);
    d.wait_running("alpha");
    d.wait_running("beta");
    d.wait_running("warren-ingress");
    // Once it runs, planning the same file again changes nothing (the router included).
    let plan = d.ok(&["plan", "-f", file.to_str().unwrap()]);
    assert!(plan.contains("no changes"), "{plan}");
    assert!(!plan.contains("warren-ingress"), "{plan}");
    wait_http("alpha routed", || {
        via_ingress(&d, "alpha.test").1.trim() == "hello-alpha"
    });
    wait_http("beta routed", || {
        via_ingress(&d, "beta.test").1.trim() == "hello-beta"
    });
    let (code, _) = via_ingress(&d, "unknown.test");
    assert_eq!(code, 404, "an unknown host gets the default server's 404");

    // Stop one: its route stops serving it (503 page) within the reconcile interval.
    d.ok(&["stop", "beta"]);
    wait_http("beta answered 503", || {
        via_ingress(&d, "beta.test").0 == 503
    });
    assert_eq!(via_ingress(&d, "alpha.test").1.trim(), "hello-alpha");

    // Add one: its route appears.
    let more = spec.clone()
        + &web(
            "gamma",
            "hello-gamma",
            9000,
            r#"domains = ["gamma.test"]
port = 9000"#,
        );
    d.apply("routes.toml", &more);
    d.wait_running("gamma");
    wait_http("gamma routed", || {
        via_ingress(&d, "gamma.test").1.trim() == "hello-gamma"
    });
    let events = d.ok(&["events", "-n", "200"]);
    assert!(events.contains("nginx reloaded"), "{events}");
}

#[test]
fn https_verifies_with_the_exported_ca() {
    require_net_tools();
    let d = Daemon::start(&[]);
    d.apply(
        "tls.toml",
        &web(
            "secure",
            "hello-tls",
            8000,
            r#"domains = ["secure.test"]
port = 8000
tls = "local""#,
        ),
    );
    d.wait_running("secure");
    let ca = d.state_dir().join("exported-ca.pem");
    d.ok(&["ca", "export", "-o", ca.to_str().unwrap()]);
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let resolve = format!("secure.test:{}:127.0.0.1", d.net.https_port);
    let url = format!("https://secure.test:{}/", d.net.https_port);
    wait_http("https with the CA", || {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
        .1
        .trim()
            == "hello-tls"
    });
    // Without the CA, verification fails.
    let (code, _) = curl(&["--resolve", &resolve, &url]);
    assert_eq!(code, 0, "an unverified certificate must be refused");
    // Plain HTTP redirects to HTTPS.
    let (code, _) = via_ingress(&d, "secure.test");
    assert_eq!(code, 308, "plain HTTP is redirected to HTTPS");
}

#[test]
fn published_port_reaches_the_workload_from_host_and_other_machine() {
    require_net_tools();
    let d = Daemon::start(&[]);
    let port = common::free_port();
    d.apply(
        "ports.toml",
        &web(
            "pub",
            "hello-port",
            8000,
            &format!(r#"ports = ["{port}:8000"]"#),
        ),
    );
    d.wait_running("pub");
    let local = format!("http://127.0.0.1:{port}/");
    wait_http("port from the host", || {
        curl(&[&local]).1.trim() == "hello-port"
    });
    let tag = &d.instance()[..6];
    let peer = common::Peer::new(tag, 200 + (std::process::id() % 50));
    let remote = format!("http://{}:{port}/", peer.host_ip);
    wait_http("port from another machine", || {
        peer.curl(&remote).1.trim() == "hello-port"
    });
    // The rule goes with the workload.
    d.ok(&["delete", "pub"]);
    wait_http("port closed after delete", || curl(&[&local]).0 == 0);
    let table = Command::new("nft")
        .args(["list", "table", "inet", &d.net.table])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(!text.contains(&format!("dport {port}")), "{text}");
}

#[test]
fn workloads_resolve_each_other_by_name() {
    require_net_tools();
    let d = Daemon::start(&[]);
    d.apply(
        "names.toml",
        &(web("db", "hello-db", 8000, "") + &web("app", "hello-app", 8000, "")),
    );
    d.wait_running("db");
    d.wait_running("app");
    let fetch = |host: &str| {
        d.cli(&[
            "exec",
            "app",
            "--",
            "python3",
            "-c",
            &format!(
                "import urllib.request;print(urllib.request.urlopen('http://{host}:8000/',timeout=5).read().decode().strip())"
            ),
        ])
    };
    for host in ["db", "db.warren"] {
        let mut last = String::new();
        wait_http(&format!("app reaches {host}"), || {
            let out = fetch(host);
            last = String::from_utf8_lossy(&out.stdout).trim().to_string();
            last == "hello-db"
        });
    }
    // A deleted workload's name goes away.
    d.ok(&["delete", "db"]);
    let hosts = std::fs::read_to_string(d.state_dir().join("net/hosts")).unwrap();
    assert!(!hosts.contains(" db "), "{hosts}");
    wait_http("db no longer resolves", || !fetch("db").status.success());
}

#[test]
fn conflicting_ports_and_domains_are_refused_at_apply() {
    require_net_tools();
    let d = Daemon::start(&[]);
    let port = common::free_port();
    d.apply(
        "a.toml",
        &web(
            "first",
            "x",
            8000,
            &format!("ports = [\"{port}:8000\"]\ndomains = [\"taken.test\"]\nport = 8000"),
        ),
    );
    // Another file (no prune) claiming the same host port and the same domain.
    let path = d.state_dir().join("b.toml");
    std::fs::write(
        &path,
        web(
            "second",
            "y",
            8000,
            &format!("ports = [\"{port}:80\"]\ndomains = [\"taken.test\"]\nport = 8000"),
        ),
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "host port {port}/tcp is already published by workload \"first\""
        )),
        "{err}"
    );
    assert!(
        err.contains("domain \"taken.test\" (path \"/\") is already routed to workload \"first\""),
        "{err}"
    );
    assert!(err.contains("b.toml:"), "errors name the file: {err}");
    // A port the host itself listens on.
    // (Not the port "first" publishes: nft's DNAT holds no socket, so the kernel may hand that
    // very port out again.)
    let busy = loop {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        if l.local_addr().unwrap().port() != port {
            break l;
        }
    };
    let busy_port = busy.local_addr().unwrap().port();
    std::fs::write(
        &path,
        web(
            "third",
            "z",
            8000,
            &format!("ports = [\"{busy_port}:8000\"]"),
        ),
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use on this host"), "{err}");
    let names: Vec<String> = d
        .list()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"second".to_string()) && !names.contains(&"third".to_string()));
}

#[test]
fn broken_config_leaves_the_old_one_serving() {
    require_net_tools();
    let d = Daemon::start(&[]);
    let good = web(
        "good",
        "still-good",
        8000,
        "domains = [\"good.test\"]\nport = 8000",
    );
    d.apply("good.toml", &good);
    d.wait_running("good");
    wait_http("good routed", || {
        via_ingress(&d, "good.test").1.trim() == "still-good"
    });
    // Operator TLS files that are not certificates: nginx -t refuses the new file.
    let bad_cert = d.state_dir().join("bad.crt");
    std::fs::write(&bad_cert, "not a certificate\n").unwrap();
    let bad = web(
        "bad",
        "never",
        8000,
        &format!(
            "domains = [\"bad.test\"]\nport = 8000\ntls = {{ cert = \"{0}\", key = \"{0}\" }}",
            bad_cert.display()
        ),
    );
    d.apply("bad.toml", &bad);
    d.wait_running("bad");
    wait_until(30, "a refusal event", || {
        d.ok(&["events", "-n", "200"])
            .contains("ingress configuration refused")
    });
    assert_eq!(via_ingress(&d, "good.test").1.trim(), "still-good");
    assert_eq!(
        via_ingress(&d, "bad.test").0,
        404,
        "the refused route is not live"
    );
    let live = std::fs::read_to_string(d.state_dir().join("ingress/nginx.conf")).unwrap();
    assert!(!live.contains("bad.test"), "{live}");
}

#[test]
fn deleted_bridge_and_table_are_restored() {
    require_net_tools();
    let d = Daemon::start(&[]);
    let port = common::free_port();
    d.apply(
        "r.toml",
        &web(
            "svc",
            "hello-again",
            8000,
            &format!("ports = [\"{port}:8000\"]"),
        ),
    );
    d.wait_running("svc");
    let url = format!("http://127.0.0.1:{port}/");
    wait_http("svc published", || curl(&[&url]).1.trim() == "hello-again");
    // Simulate a host reboot's loss of network state.
    assert!(Command::new("ip")
        .args(["link", "del", "dev", &d.net.bridge])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("nft")
        .args(["delete", "table", "inet", &d.net.table])
        .status()
        .unwrap()
        .success());
    assert_eq!(curl(&[&url]).0, 0, "the port is dead without the table");
    wait_http("restored by the reconciler", || {
        curl(&[&url]).1.trim() == "hello-again"
    });
    let events = d.ok(&["events", "-n", "200"]);
    assert!(events.contains("repaired"), "{events}");

    // Someone deletes the workload's veth: it is re-attached with the same address.
    let address = d.get("svc")["address"].as_str().unwrap().to_string();
    let out = Command::new("ip")
        .args(["-j", "link", "show", "master", &d.net.bridge])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let veths: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    assert_eq!(veths.len(), 1, "one workload, one veth: {veths:?}");
    assert!(Command::new("ip")
        .args(["link", "del", "dev", veths[0]])
        .status()
        .unwrap()
        .success());
    wait_http("veth re-attached", || {
        curl(&[&url]).1.trim() == "hello-again"
    });
    assert_eq!(d.get("svc")["address"].as_str().unwrap(), address);

    // A recreated workload (drift) keeps its address.
    let pid = d.wait_running("svc");
    d.apply(
        "r.toml",
        &web(
            "svc",
            "hello-recreated",
            8000,
            &format!("ports = [\"{port}:8000\"]"),
        ),
    );
    d.wait_for("svc", 30, "a new run", |v| {
        v["state"] == "running" && v["pid"].as_i64() != Some(pid as i64)
    });
    assert_eq!(d.get("svc")["address"].as_str().unwrap(), address);
    wait_http("recreated svc published", || {
        curl(&[&url]).1.trim() == "hello-recreated"
    });
}

#[test]
fn reloads_under_load_fail_no_request() {
    require_net_tools();
    assert!(
        warren_exec::resolve("wrk").is_some(),
        "wrk is missing: apt-get install wrk"
    );
    let d = Daemon::start(&[]);
    // A threaded server with a deep accept queue, so the upstream is not what fails.
    let base = r#"
[workload.steady]
world = "host"
command = ["python3", "-c", "import http.server as h, os; os.makedirs('/data/www', exist_ok=True); open('/data/www/index.html', 'w').write('steady'); os.chdir('/data/www'); h.ThreadingHTTPServer.request_queue_size = 1024; h.ThreadingHTTPServer(('', 8000), h.SimpleHTTPRequestHandler).serve_forever()"]
domains = ["steady.test"]
port = 8000
"#
    .to_string();
    // A second workload whose routes change on every apply (routes never restart a workload).
    let churn = |i: usize| {
        web(
            "churn",
            "churn",
            8000,
            &format!("domains = [\"churn{i}.test\"]\nport = 8000"),
        )
    };
    d.apply("load.toml", &(base.clone() + &churn(0)));
    d.wait_running("steady");
    d.wait_running("churn");
    wait_http("steady routed", || {
        via_ingress(&d, "steady.test").1.trim() == "steady"
    });
    let reloads = || {
        d.ok(&["events", "-n", "1000"])
            .matches("nginx reloaded")
            .count()
    };
    // One request per connection: a graceful reload hands the listening sockets to the new
    // workers without dropping a connection. (On a kept-alive connection HTTP/1.1 lets a server
    // close an idle connection at any time and clients retry; wrk does not retry, so it would
    // count that as an error of its own.)
    let wrk = Command::new("wrk")
        .args([
            "-t1",
            "-c8",
            "-d40s",
            "-H",
            "Connection: close",
            "-H",
            "Host: steady.test",
            &format!("http://127.0.0.1:{}/", d.net.http_port),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wrk");
    std::thread::sleep(Duration::from_secs(1));
    for i in 1..=20 {
        let before = reloads();
        d.apply("load.toml", &(base.clone() + &churn(i)));
        wait_until(20, &format!("reload {i}"), || reloads() > before);
    }
    let out = wrk.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "wrk made too few requests: {report}");
}

#[test]
fn volume_site_serves_files_with_autoindex() {
    require_net_tools();
    let d = Daemon::start(&[]);
    d.apply(
        "site.toml",
        r#"
[volume.repo]
size = "64M"
site = { domains = ["repo.test"], autoindex = true }

[workload.builder]
world = "busybox"
command = ["sh", "-c", "mkdir -p /out/pool && echo artifact-1 > /out/pool/app_1.0.deb && exec sleep 100000"]
volumes = ["repo:/out"]
"#,
    );
    d.wait_running("builder");
    let file = || {
        curl(&[
            "-H",
            "Host: repo.test",
            &format!("http://127.0.0.1:{}/pool/app_1.0.deb", d.net.http_port),
        ])
    };
    wait_http("the file is served", || file().1.trim() == "artifact-1");
    let (code, listing) = curl(&[
        "-H",
        "Host: repo.test",
        &format!("http://127.0.0.1:{}/pool/", d.net.http_port),
    ]);
    assert_eq!(code, 200);
    assert!(
        listing.contains("app_1.0.deb"),
        "autoindex lists the directory: {listing}"
    );
    // The routing workload mounts the volume read-only.
    let out = d.cli(&[
        "exec",
        "warren-ingress",
        "--",
        "sh",
        "-c",
        "echo x > /srv/sites/repo/x",
    ]);
    assert!(
        !out.status.success(),
        "the site volume must be read-only in the routing workload"
    );
}

#[test]
fn a_reused_address_is_routed_at_once() {
    require_net_tools();
    let d = Daemon::start(&[]);
    // A route that stays, so the routing workload (and its neighbour cache) stays too.
    d.apply(
        "keep.toml",
        &web(
            "keep",
            "kept",
            8000,
            "domains = [\"keep.test\"]\nport = 8000",
        ),
    );
    d.wait_running("keep");
    d.wait_running("warren-ingress");
    d.apply(
        "one.toml",
        &web(
            "one",
            "first",
            8000,
            "domains = [\"one.test\"]\nport = 8000",
        ),
    );
    d.wait_running("one");
    wait_http("one routed", || {
        via_ingress(&d, "one.test").1.trim() == "first"
    });
    let address = d.get("one")["address"].as_str().unwrap().to_string();
    d.ok(&["delete", "one"]);
    d.apply(
        "two.toml",
        &web(
            "two",
            "second",
            8000,
            "domains = [\"two.test\"]\nport = 8000",
        ),
    );
    d.wait_running("two");
    assert_eq!(
        d.get("two")["address"].as_str().unwrap(),
        address,
        "the freed address is handed out again"
    );
    // The new workload's MAC follows its address, so the routing workload's neighbour cache
    // is right at once (a new MAC would leave it pointing at the deleted veth for ~30 s).
    wait_until(5, "two routed", || {
        via_ingress(&d, "two.test").1.trim() == "second"
    });
}
