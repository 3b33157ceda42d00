//! Golden corpus for the `warren.toml` parser.
//!
//! `corpus/invalid/NN-name.toml` must fail to parse with exactly the rendered error in the
//! matching `NN-name.err`; every mismatch is listed before the test fails. Run with
//! `WARREN_BLESS=1` to rewrite the `.err` files from the current output (then review the diff).
//! `corpus/valid/*.toml` must parse, and a few values are checked.

use std::fs;
use std::path::{Path, PathBuf};
use warren_model::{
    parse_spec, DesiredState, JailOptions, Kind, NetworkMode, PortMapping, RestartPolicy,
    RouteSpec, SiteSpec, SnapshotPolicy, Source, TlsChoice, VolumeMount,
};

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn invalid_specs_match_their_golden_errors() {
    let dir = corpus("invalid");
    let bless = std::env::var_os("WARREN_BLESS").is_some_and(|v| v == "1");
    let specs = files(&dir, "toml");
    assert!(specs.len() >= 30, "only {} invalid specs", specs.len());
    let mut failures = Vec::new();
    for spec in &specs {
        let file = name(spec);
        let text = fs::read_to_string(spec).expect("readable spec");
        let actual = match parse_spec(&text, &file) {
            Ok(parsed) => format!("<parsed successfully: {:?}>", parsed.spec),
            Err(e) => e.to_string(),
        };
        let golden = spec.with_extension("err");
        if bless {
            fs::write(&golden, format!("{actual}\n")).expect("writable golden");
            continue;
        }
        match fs::read_to_string(&golden) {
            Ok(expected) if expected.trim_end_matches('\n') == actual => {}
            Ok(expected) => failures.push(format!(
                "{file}:\n--- expected\n{}\n+++ actual\n{actual}",
                expected.trim_end_matches('\n')
            )),
            Err(e) => failures.push(format!("{file}: no golden {}: {e}", name(&golden))),
        }
    }
    for golden in files(&dir, "err") {
        if !golden.with_extension("toml").exists() {
            failures.push(format!("{}: golden without a spec", name(&golden)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus mismatch(es) (WARREN_BLESS=1 rewrites the goldens):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_invalid_spec_points_inside_the_file() {
    for spec in files(&corpus("invalid"), "toml") {
        let text = fs::read_to_string(&spec).unwrap();
        let Err(err) = parse_spec(&text, "x.toml") else {
            panic!("{} parsed", spec.display());
        };
        assert!(!err.diagnostics.is_empty());
        let lines = text.lines().count().max(1);
        let mut previous = (0, 0);
        for d in &err.diagnostics {
            assert!(
                d.line >= 1 && d.line <= lines + 1,
                "{}: {d}",
                spec.display()
            );
            assert!(d.column >= 1, "{}: {d}", spec.display());
            assert!(
                (d.line, d.column) >= previous,
                "{}: unsorted",
                spec.display()
            );
            assert!(!d.message.ends_with('.'), "{}: {d}", spec.display());
            assert!(!d.message.contains('\n'), "{}: {d}", spec.display());
            assert!(
                d.message.starts_with(|c: char| !c.is_uppercase()),
                "{}: {d}",
                spec.display()
            );
            previous = (d.line, d.column);
        }
    }
}

#[test]
fn valid_specs_parse() {
    let specs = files(&corpus("valid"), "toml");
    assert!(specs.len() >= 6);
    for spec in &specs {
        let text = fs::read_to_string(spec).unwrap();
        if let Err(e) = parse_spec(&text, &name(spec)) {
            panic!("{} should parse:\n{e}", spec.display());
        }
    }
}

fn valid(file: &str) -> warren_model::Parsed {
    let text = fs::read_to_string(corpus("valid").join(file)).unwrap();
    parse_spec(&text, file).unwrap_or_else(|e| panic!("{file}:\n{e}"))
}

#[test]
fn valid_full() {
    let parsed = valid("full.toml");
    let w = &parsed.spec.workloads;
    assert_eq!(w.len(), 2);
    let web = &w["web"];
    assert_eq!(web.source, Source::World("host".into()));
    assert_eq!(web.command, ["python3", "-m", "http.server", "8080"]);
    assert_eq!(web.env["PORT"], "8080");
    assert_eq!(web.env["RATIO"], "0.25");
    assert_eq!(web.env["DEBUG"], "false");
    assert_eq!(web.resources.memory, Some(256 * 1024 * 1024));
    assert_eq!(web.resources.cpus, Some(0.5));
    assert_eq!(web.resources.pids, Some(100));
    let db = &w["db"];
    assert_eq!(
        db.source,
        Source::Image("docker.io/library/postgres:16".into())
    );
    assert_eq!(db.restart, RestartPolicy::OnFailure);
    assert_eq!(db.state, DesiredState::Stopped);
    assert_eq!(db.user.as_deref(), Some("999:999"));
    assert_eq!(db.env["dotted.name"], "ok");
    assert_eq!(db.resources.memory, Some(1_000_000_000));
    assert_eq!(db.resources.cpus, Some(2.0));
    assert_eq!(db.resources.pids, None);
    assert_eq!(parsed.locate("workload.db.resources.cpus"), (28, 8));
    assert_eq!(parsed.locate("workload.db.env.\"dotted.name\""), (24, 17));
}

#[test]
fn valid_minimal_and_empty() {
    let minimal = valid("minimal.toml");
    let s = &minimal.spec.workloads["sleeper"];
    assert_eq!(s.kind, Kind::Container);
    assert_eq!(s.data_path, "/data");
    assert_eq!(s.restart, RestartPolicy::Always);
    assert_eq!(s.state, DesiredState::Running);
    assert!(s.command.is_empty());
    assert!(valid("empty.toml").spec.workloads.is_empty());
}

#[test]
fn valid_kinds_are_located_for_the_daemon() {
    let parsed = valid("kinds.toml");
    assert_eq!(parsed.spec.workloads["cell"].kind, Kind::Jail);
    assert_eq!(parsed.spec.workloads["guest"].kind, Kind::Vm);
    assert_eq!(
        parsed.spec.workloads["guest"].resources.memory,
        Some(512 << 20)
    );
    assert_eq!(parsed.locate("workload.cell.kind"), (2, 22));
    assert_eq!(parsed.locate("workload.guest.kind"), (4, 27));
    let d = parsed.diagnostic(
        "workload.cell.kind",
        "workload.cell.kind: jails need a FreeBSD host",
    );
    assert_eq!(
        d.to_string(),
        "kinds.toml:2:22: workload.cell.kind: jails need a FreeBSD host"
    );
}

#[test]
fn valid_crlf() {
    let text = fs::read_to_string(corpus("valid").join("crlf.toml")).unwrap();
    assert!(
        text.contains("\r\n"),
        "crlf.toml lost its CRLF line endings"
    );
    let parsed = valid("crlf.toml");
    assert_eq!(parsed.spec.workloads["web"].env["GRÜSSE"], "😀");
    assert_eq!(parsed.locate("workload.web.env.\"GRÜSSE\""), (3, 20));
}

#[test]
fn valid_volumes() {
    let parsed = valid("volumes.toml");
    let spec = &parsed.spec;
    let mount = |volume: &str, path: &str, readonly| VolumeMount {
        volume: volume.into(),
        path: path.into(),
        readonly,
    };

    assert_eq!(
        spec.volumes.keys().collect::<Vec<_>>(),
        ["cache", "logs", "media"]
    );
    let media = &spec.volumes["media"];
    assert_eq!(media.size, Some(10 << 30));
    assert_eq!(
        media.snapshots,
        Some(SnapshotPolicy {
            every_secs: 6 * 3600,
            keep: 5
        })
    );
    assert_eq!(spec.volumes["cache"].size, None);
    assert_eq!(spec.volumes["cache"].snapshots, None);
    assert_eq!(
        spec.volumes["logs"].snapshots,
        Some(SnapshotPolicy {
            every_secs: 36 * 3600,
            keep: 1000
        })
    );

    let web = &spec.workloads["web"];
    assert_eq!(
        web.volumes,
        [
            mount("media", "/srv/media", true),
            mount("cache", "/var/cache", false),
            mount("logs", "/var/log/web", true),
        ]
    );
    assert_eq!(web.resources.memory, Some(256 << 20));
    assert_eq!(web.resources.disk, Some(2 << 30));
    assert_eq!(
        web.snapshots,
        Some(SnapshotPolicy {
            every_secs: 1800,
            keep: 10
        })
    );

    let uploader = &spec.workloads["uploader"];
    assert_eq!(uploader.volumes, [mount("media", "/srv/media", false)]);
    assert_eq!(uploader.resources.disk, Some(1 << 20));
    assert_eq!(uploader.snapshots, None);

    let shipper = &spec.workloads["shipper"];
    assert_eq!(shipper.volumes, [mount("logs", "/logs", false)]);
    assert_eq!(
        shipper.snapshots,
        Some(SnapshotPolicy {
            every_secs: 90,
            keep: 1
        })
    );

    assert_eq!(parsed.locate("volume.media.size"), (3, 8));
    assert_eq!(parsed.locate("volume.logs.snapshots.every"), (9, 9));
    assert_eq!(parsed.locate("workload.web.volumes[1]"), (14, 35));
    assert_eq!(parsed.locate("workload.web.snapshots.every"), (16, 23));
    assert_eq!(parsed.locate("workload.uploader.resources.disk"), (22, 18));
    assert_eq!(parsed.locate("workload.shipper.snapshots.keep"), (30, 8));
}

#[test]
fn valid_network() {
    let parsed = valid("network.toml");
    let spec = &parsed.spec;
    let pm = |s: &str| PortMapping::parse(s).unwrap();

    let git = &spec.workloads["git"];
    assert_eq!(git.network, NetworkMode::Bridge);
    assert_eq!(
        git.ports,
        [
            pm("2222:22/tcp"),
            pm("127.0.0.1:5353:53/udp"),
            pm("[::1]:9000:9000/tcp")
        ]
    );
    assert_eq!(
        git.route,
        RouteSpec {
            domains: vec!["git.home.arpa".into(), "*.apps.home.arpa".into()],
            port: Some(3000),
            path: "/".into(),
            websocket: true,
            max_body: Some(50 << 20),
            tls: TlsChoice::Local,
        }
    );

    let api = &spec.workloads["api"];
    assert!(api.ports.is_empty());
    assert_eq!(api.route.path, "/api");
    assert_eq!(api.route.max_body, Some(0));
    assert!(!api.route.websocket);
    assert_eq!(
        api.route.tls,
        TlsChoice::Files {
            cert: "/etc/warren/tls/git.pem".into(),
            key: "/etc/warren/tls/git.key".into(),
        }
    );

    let metrics = &spec.workloads["metrics"];
    assert_eq!(metrics.network, NetworkMode::Host);
    assert_eq!(metrics.route.port, Some(9100));
    assert!(matches!(metrics.route.tls, TlsChoice::Files { .. }));

    let batch = &spec.workloads["batch"];
    assert_eq!(batch.network, NetworkMode::None);
    assert!(batch.route.is_empty());

    assert_eq!(
        spec.volumes["www"].site,
        Some(SiteSpec {
            domains: vec!["www.home.arpa".into()],
            path: "/".into(),
            autoindex: true,
            tls: TlsChoice::Local,
        })
    );
    assert_eq!(
        spec.volumes["docs"].site,
        Some(SiteSpec {
            domains: vec!["docs.home.arpa".into(), "git.home.arpa".into()],
            path: "/docs".into(),
            autoindex: false,
            tls: TlsChoice::None,
        })
    );

    assert_eq!(parsed.locate("workload.git.ports[2]"), (6, 50));
    assert_eq!(parsed.locate("workload.git.domains"), (7, 11));
    assert_eq!(parsed.locate("workload.api.tls.key"), (23, 7));
    assert_eq!(parsed.locate("volume.docs.site.domains[1]"), (41, 30));
}

#[test]
fn valid_jail_options() {
    let parsed = valid("jail.toml");
    let w = &parsed.spec.workloads;
    let cell = &w["cell"];
    assert_eq!(cell.kind, Kind::Jail);
    assert_eq!(
        cell.jail,
        JailOptions {
            allow: vec!["mount.zfs".into(), "raw_sockets".into(), "sysvipc".into()],
            vnet: Some(true),
            jailed_dataset: true,
        }
    );
    assert_eq!(w["aliased"].kind, Kind::Container);
    assert_eq!(w["aliased"].jail.vnet, Some(false));
    assert!(!w["aliased"].jail.vnet());
    assert_eq!(w["tools"].network, NetworkMode::Host);
    assert_eq!(w["tools"].jail.vnet, Some(false));
    assert!(w["tools"].jail.allow.is_empty());
    assert_eq!(parsed.locate("workload.cell.jail"), (7, 16));
    assert_eq!(parsed.locate("workload.cell.jail.allow[2]"), (8, 36));
    assert_eq!(parsed.locate("workload.cell.jail.jailed_dataset"), (10, 18));
    assert_eq!(parsed.locate("workload.tools.jail.vnet"), (19, 13));
    let text = warren_model::render::to_toml(&parsed.spec, "");
    let again = parse_spec(&text, "again.toml").unwrap().spec;
    assert_eq!(again, parsed.spec, "{text}");
}
