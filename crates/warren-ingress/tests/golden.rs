//! Snapshot tests of the renderer: each route set's nginx.conf is compared byte for byte with
//! `tests/golden/NAME.conf`. Run with `WARREN_BLESS=1` to rewrite the files from the current
//! output (then review the diff). Also a property: rendering does not depend on route order.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use warren_ingress::{render, validate, IngressOptions, Route, Target, Tls};

fn opts() -> IngressOptions {
    IngressOptions {
        http_port: 80,
        https_port: 443,
        listen: None,
        prefix: PathBuf::from("/var/lib/warren/ingress"),
        access_log: true,
        worker_processes: Some(2),
        daemon: false,
    }
}

fn upstream(last: u8, port: u16) -> Target {
    Target::Upstream {
        addr: IpAddr::V4(Ipv4Addr::new(10, 88, 0, last)),
        port,
    }
}

fn check(name: &str, routes: &[Route], opts: &IngressOptions) {
    validate(routes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = render(routes, opts);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.conf"));
    if std::env::var_os("WARREN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .map_or_else(
                || got.lines().count().min(want.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the rendered config at line {line} (rerun with WARREN_BLESS=1 to \
             accept)\n--- rendered ---\n{got}",
            path.display()
        );
    }
}

#[test]
fn empty() {
    check("empty", &[], &opts());
}

#[test]
fn two_upstreams() {
    let routes = vec![
        Route::new("web", "web.home.arpa", upstream(3, 8080)),
        Route::new("git", "git.home.arpa", upstream(2, 3000)),
    ];
    check("two_upstreams", &routes, &opts());
}

#[test]
fn static_autoindex() {
    let routes = vec![
        Route::new(
            "repo",
            "repo.home.arpa",
            Target::Static {
                root: PathBuf::from("/var/lib/warren/volumes/repo"),
                autoindex: true,
            },
        ),
        Route::new(
            "artifacts",
            "repo.home.arpa",
            Target::Static {
                root: PathBuf::from("/var/lib/warren/volumes/artifacts/"),
                autoindex: false,
            },
        )
        .with_path("/artifacts"),
    ];
    let opts = IngressOptions {
        access_log: false,
        ..opts()
    };
    check("static_autoindex", &routes, &opts);
}

#[test]
fn tls_local_and_operator() {
    let routes = vec![
        Route::new("git", "git.home.arpa", upstream(2, 3000)).with_tls(Tls::Local {
            cert: PathBuf::from("/var/lib/warren/ca/git.home.arpa.crt"),
            key: PathBuf::from("/var/lib/warren/ca/git.home.arpa.key"),
        }),
        Route::new("shop", "shop.example.org", upstream(4, 8000)).with_tls(Tls::Operator {
            cert: PathBuf::from("/etc/warren/tls/shop.pem"),
            key: PathBuf::from("/etc/warren/tls/shop.key"),
        }),
        Route::new("wiki", "wiki.home.arpa", upstream(5, 80)),
    ];
    check("tls", &routes, &opts());
    let moved = IngressOptions {
        http_port: 8080,
        https_port: 8443,
        listen: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))),
        ..opts()
    };
    check("tls_other_ports", &routes, &moved);
}

#[test]
fn websocket_and_body_size() {
    let routes = vec![
        Route::new("chat", "chat.home.arpa", upstream(6, 4000))
            .with_websocket()
            .with_max_body(10 * 1024 * 1024),
        Route::new("api", "chat.home.arpa", upstream(7, 5000))
            .with_path("/api/")
            .with_max_body(0),
        Route::new("ws", "chat.home.arpa", upstream(6, 4001))
            .with_path("/api/stream")
            .with_websocket(),
    ];
    check("websocket_body", &routes, &opts());
}

#[test]
fn unavailable() {
    let routes = vec![
        Route::new(
            "git",
            "git.home.arpa",
            Target::Unavailable {
                workload: "git".into(),
            },
        ),
        Route::new("web", "web.home.arpa", upstream(3, 8080)),
    ];
    check("unavailable", &routes, &opts());
}

#[test]
fn wildcard() {
    let routes = vec![
        Route::new("catchall", "*.apps.home.arpa", upstream(8, 80)),
        Route::new("special", "one.apps.home.arpa", upstream(9, 80)),
    ];
    let opts = IngressOptions {
        worker_processes: None,
        daemon: true,
        ..opts()
    };
    check("wildcard", &routes, &opts);
}

fn arb_route() -> impl Strategy<Value = Route> {
    let domain = prop::sample::select(vec![
        "a.home.arpa",
        "b.home.arpa",
        "*.apps.home.arpa",
        "z.test",
    ]);
    let path = prop::sample::select(vec!["/", "/api", "/api/", "/api/v2", "/static/"]);
    let target = prop_oneof![
        (any::<u8>(), 1u16..).prop_map(|(a, p)| upstream(a, p)),
        any::<bool>().prop_map(|autoindex| Target::Static {
            root: PathBuf::from("/srv/site"),
            autoindex
        }),
        Just(Target::Unavailable {
            workload: "gone".into()
        }),
    ];
    let workload = prop::sample::select(vec!["web", "api", "git"]);
    (
        workload,
        domain,
        path,
        target,
        any::<bool>(),
        prop::option::of(0u64..1 << 30),
    )
        .prop_map(|(w, d, p, t, ws, mb)| Route {
            workload: w.to_string(),
            domain: d.to_string(),
            path_prefix: p.to_string(),
            target: t,
            websocket: ws,
            max_body: mb,
            tls: Tls::None,
        })
}

proptest! {
    #[test]
    fn render_ignores_route_order(
        (routes, shuffled) in prop::collection::vec(arb_route(), 0..12)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        prop_assert_eq!(render(&routes, &opts()), render(&shuffled, &opts()));
    }
}
