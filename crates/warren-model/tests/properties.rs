//! Property tests for the `warren.toml` parser: valid specs (workloads and volumes, with
//! mounts, published ports, routed domains and a start order that respect the file-wide rules)
//! rendered to TOML in any of the table styles parse back to the same [`SpecFile`], specs
//! survive a JSON round trip with the same hashes, and no input makes the parser panic.

use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;
use std::fmt::Write;
use warren_model::{
    parse_spec, Dependency, DesiredState, JailOptions, Kind, NetworkMode, PortMapping, Proto,
    Resources, RestartPolicy, RouteSpec, SiteSpec, SnapshotPolicy, Source, SpecFile, TlsChoice,
    VmFirmware, VmOptions, VolumeMount, VolumeSpec, WaitFor, WorkloadSpec, JAIL_ALLOW,
};

#[path = "properties/render.rs"]
mod render;
#[path = "properties/strategies.rs"]
mod strategies;
use render::*;
use strategies::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rendered_specs_parse_back(spec in spec_file(), style in style()) {
        let text = render(&spec, style);
        match parse_spec(&text, "gen.toml") {
            Ok(parsed) => prop_assert_eq!(&parsed.spec, &spec, "\n{}", text),
            Err(e) => prop_assert!(false, "{}\n---\n{}", e, text),
        }
    }

    #[test]
    fn exported_specs_parse_back_and_export_the_same(spec in spec_file()) {
        let text = warren_model::render::to_toml(&spec, "exported");
        match parse_spec(&text, "export.toml") {
            Ok(parsed) => {
                prop_assert_eq!(&parsed.spec, &spec, "\n{}", text);
                prop_assert_eq!(warren_model::render::to_toml(&parsed.spec, "exported"), text);
            }
            Err(e) => prop_assert!(false, "{}\n---\n{}", e, text),
        }
    }

    #[test]
    fn specs_survive_json_with_the_same_hash(spec in spec_file()) {
        let json = serde_json::to_string(&spec).expect("serializes");
        let back: SpecFile = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(&back, &spec);
        for (name, w) in &spec.workloads {
            prop_assert_eq!(back.workloads[name].hash(), w.hash());
            let mut unrouted = w.clone();
            unrouted.ports.clear();
            unrouted.route = RouteSpec::default();
            prop_assert_eq!(unrouted.hash(), w.hash());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_spec(&text, "any.toml");
    }

    #[test]
    fn toml_like_text_never_panics(text in toml_ish()) {
        if let Err(e) = parse_spec(&text, "any.toml") {
            prop_assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                prop_assert!(d.line >= 1 && d.column >= 1);
                prop_assert!(!d.message.contains('\n'), "{}", d);
            }
        }
    }

    #[test]
    fn located_paths_are_inside_the_file(spec in spec_file(), style in style()) {
        let text = render(&spec, style);
        let parsed = parse_spec(&text, "gen.toml").expect("valid");
        let lines = text.lines().count();
        for name in spec.workloads.keys() {
            for field in [
                "",
                ".world",
                ".image",
                ".kind",
                ".resources.memory",
                ".resources.disk",
                ".env",
                ".command[0]",
                ".volumes[0]",
                ".snapshots.every",
                ".snapshots.keep",
                ".network",
                ".readonly_rootfs",
                ".userns",
                ".jail.allow[0]",
                ".jail.vnet",
                ".vm",
                ".vm.kernel",
                ".vm.disk",
                ".vm.firmware",
                ".ports[0]",
                ".domains[0]",
                ".port",
                ".tls.cert",
            ] {
                let (line, column) = parsed.locate(&format!("workload.{name}{field}"));
                prop_assert!(line >= 2 && line <= lines && column >= 1);
            }
        }
        for name in spec.volumes.keys() {
            for field in [
                "",
                ".size",
                ".snapshots",
                ".snapshots.every",
                ".site.domains[0]",
                ".site.tls",
            ] {
                let (line, column) = parsed.locate(&format!("volume.{name}{field}"));
                prop_assert!(line >= 2 && line <= lines && column >= 1);
            }
        }
    }
}

#[test]
fn renderer_styles_cover_every_field() {
    let mut w = WorkloadSpec::new("web", Source::World("host".into()));
    w.env = BTreeMap::from([
        ("A.B".into(), "\"quoted\"\n".into()),
        ("N".into(), "12".into()),
    ]);
    w.resources.memory = Some(256 << 20);
    w.resources.cpus = Some(0.5);
    w.resources.disk = Some(2 << 30);
    w.volumes = vec![
        VolumeMount {
            volume: "media".into(),
            path: "/srv/media".into(),
            readonly: true,
        },
        VolumeMount {
            volume: "cache".into(),
            path: "/var/cache".into(),
            readonly: false,
        },
    ];
    w.snapshots = Some(SnapshotPolicy {
        every_secs: 5400,
        keep: 10,
    });
    w.ports = vec![
        PortMapping::parse("8080:80").unwrap(),
        PortMapping::parse("[::1]:5353:53/udp").unwrap(),
    ];
    w.readonly_rootfs = true;
    w.userns = true;
    w.jail = JailOptions {
        allow: vec!["raw_sockets".into(), "sysvipc".into()],
        vnet: Some(false),
        jailed_dataset: true,
    };
    w.route = RouteSpec {
        domains: vec!["web.home.arpa".into(), "*.apps.home.arpa".into()],
        port: Some(80),
        path: "/app".into(),
        websocket: true,
        max_body: Some(50 << 20),
        tls: TlsChoice::Files {
            cert: "/etc/warren/tls/web.pem".into(),
            key: "/etc/warren/tls/web.key".into(),
        },
    };
    let mut reader = WorkloadSpec::new("reader", Source::Image("alpine".into()));
    reader.volumes = vec![VolumeMount {
        volume: "cache".into(),
        path: "/cache".into(),
        readonly: true,
    }];
    reader.network = NetworkMode::Host;
    reader.route = RouteSpec {
        domains: vec!["reader.home.arpa".into()],
        port: Some(8080),
        max_body: Some(0),
        tls: TlsChoice::Local,
        ..RouteSpec::default()
    };
    let spec = SpecFile {
        workloads: BTreeMap::from([("web".into(), w), ("reader".into(), reader)]),
        volumes: BTreeMap::from([
            (
                "media".into(),
                VolumeSpec {
                    name: "media".into(),
                    size: Some(10 << 30),
                    snapshots: Some(SnapshotPolicy {
                        every_secs: 6 * 3600,
                        keep: 5,
                    }),
                    site: Some(SiteSpec {
                        domains: vec!["media.home.arpa".into()],
                        path: "/files".into(),
                        autoindex: true,
                        tls: TlsChoice::Files {
                            cert: "/etc/warren/tls/media.pem".into(),
                            key: "/etc/warren/tls/media.key".into(),
                        },
                    }),
                },
            ),
            (
                "cache".into(),
                VolumeSpec {
                    name: "cache".into(),
                    size: None,
                    snapshots: None,
                    site: Some(SiteSpec {
                        domains: vec!["cache.home.arpa".into()],
                        ..SiteSpec::default()
                    }),
                },
            ),
        ]),
        host: None,
    };
    for bits in 0..64u8 {
        let style = Style::from_bits(std::array::from_fn(|i| bits & (1 << i) != 0));
        let text = render(&spec, style);
        let parsed = parse_spec(&text, "r.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.spec, spec, "{text}");
    }
}
