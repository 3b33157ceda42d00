//! Tests of networking and ingress: network modes, published ports, domains, routes, TLS
//! and static sites.

use super::*;

fn pm(s: &str) -> PortMapping {
    PortMapping::parse(s).unwrap()
}

#[test]
fn networking_and_route_fields() {
    let w = web(r#"
[workload.web]
world = "host"
network = "bridge"
ports = ["8080:80/tcp", "127.0.0.1:5353:53/udp", "[::1]:9000:9000"]
domains = ["git.home.arpa", "*.apps.home.arpa"]
port = 3000
path = "/api"
websocket = true
max_body = "50M"
tls = "local"
"#);
    assert_eq!(w.network, NetworkMode::Bridge);
    assert_eq!(
        w.ports,
        [
            pm("8080:80/tcp"),
            pm("127.0.0.1:5353:53/udp"),
            pm("[::1]:9000:9000")
        ]
    );
    assert_eq!(
        w.route,
        RouteSpec {
            domains: vec!["git.home.arpa".into(), "*.apps.home.arpa".into()],
            port: Some(3000),
            path: "/api".into(),
            websocket: true,
            max_body: Some(50 << 20),
            tls: TlsChoice::Local,
        }
    );
    // Defaults when only `domains` and `port` are given.
    let w = web("[workload.web]\nworld = \"host\"\ndomains = [\"a.home\"]\nport = 80\n");
    assert_eq!(w.route.path, "/");
    assert!(!w.route.websocket);
    assert_eq!(w.route.max_body, None);
    assert_eq!(w.route.tls, TlsChoice::None);
    assert_eq!(w.network, NetworkMode::Bridge);
    assert!(w.ports.is_empty());
}

#[test]
fn network_modes() {
    for (text, mode) in [
        ("bridge", NetworkMode::Bridge),
        ("host", NetworkMode::Host),
        ("none", NetworkMode::None),
    ] {
        let w = web(&format!(
            "[workload.web]\nworld = \"host\"\nnetwork = \"{text}\"\n"
        ));
        assert_eq!(w.network, mode);
    }
    assert_eq!(
        web_error("network = \"hots\""),
        "3:11: workload.web.network: unknown value \"hots\"; did you mean \"host\"?"
    );
    assert_eq!(
        web_error("network = \"overlay\""),
        "3:11: workload.web.network: unknown value \"overlay\"; expected one of bridge, host, none"
    );
    // A host-network workload may still be routed (through the host).
    let w = web(
        "[workload.web]\nworld = \"host\"\nnetwork = \"host\"\ndomains = [\"a.home\"]\nport = 80\n",
    );
    assert_eq!(w.route.port, Some(80));
}

#[test]
fn port_mappings() {
    assert_eq!(
        web_error("ports = [\"8080:80\", \"0:80\"]"),
        "3:21: workload.web.ports[1]: invalid port mapping \"0:80\": host port 0 is not allowed"
    );
    assert_eq!(
        web_error("ports = [\"8080:80/sctp\"]"),
        "3:10: workload.web.ports[0]: invalid port mapping \"8080:80/sctp\": unknown protocol \"sctp\" (expected tcp or udp)"
    );
    assert_eq!(
        web_error("ports = [8080]"),
        "3:10: workload.web.ports[0]: expected a string, found integer; e.g. \"8080:80/tcp\""
    );
    assert_eq!(
        web_error("ports = \"8080:80\""),
        "3:9: workload.web.ports: expected an array of port mappings, found string; e.g. ports = [\"8080:80/tcp\"]"
    );
    assert_eq!(
        web_error("ports = [\"8080:80\", \"127.0.0.1:8080:81\"]"),
        "3:21: workload.web.ports[1]: host port 8080/tcp (127.0.0.1:8080:81/tcp) is already published by workload.web.ports[0] (8080:80/tcp)"
    );
    // Same port, other protocol or other address: no overlap.
    let w = web("[workload.web]\nworld = \"host\"\nports = [\"53/udp\", \"53/tcp\", \"127.0.0.1:80:80\", \"127.0.0.2:80:80\"]\n");
    assert_eq!(w.ports.len(), 4);
    // An empty array is harmless, whatever the network.
    let w = web("[workload.web]\nworld = \"host\"\nnetwork = \"host\"\nports = []\n");
    assert!(w.ports.is_empty());
}

#[test]
fn ports_need_the_bridge() {
    assert_eq!(
        web_error("network = \"host\"\nports = [\"8080:80\"]"),
        "4:1: workload.web.ports: ports need network = \"bridge\"; with network = \"host\" the workload's own sockets are already on the host"
    );
    // `network` after `ports` counts too.
    assert_eq!(
        web_error("ports = [\"8080:80\"]\nnetwork = \"none\""),
        "3:1: workload.web.ports: ports need network = \"bridge\"; with network = \"none\" the workload has no network to publish"
    );
}

#[test]
fn published_ports_across_workloads() {
    let text = "[workload.web]\nworld = \"host\"\nports = [\"8080:80\"]\n\n\
                [workload.api]\nworld = \"host\"\nports = [\"9000:9000\", \"127.0.0.1:8080:3000\"]\n\n\
                [workload.dns]\nworld = \"host\"\nports = [\"53/udp\", \"8080:80/udp\"]\n\n\
                [workload.zed]\nworld = \"host\"\nports = [\"8080\"]\n";
    assert_eq!(
        errors(text),
        [
            "7:23: workload.api.ports[1]: host port 8080/tcp (127.0.0.1:8080:3000/tcp) is already published by workload \"web\" (8080:80/tcp)",
            "15:10: workload.zed.ports[0]: host port 8080/tcp (8080:8080/tcp) is already published by workload \"web\" (8080:80/tcp)",
        ]
    );
}

#[test]
fn domains_rules() {
    assert_eq!(
        web_error("domains = [\"Git.Home.arpa\"]\nport = 80"),
        "3:12: workload.web.domains[0]: domain \"Git.Home.arpa\" has uppercase letters; write \"git.home.arpa\""
    );
    assert_eq!(
        web_error("domains = [\"git\"]\nport = 80"),
        "3:12: workload.web.domains[0]: domain \"git\" needs at least two labels, e.g. \"git.home.arpa\""
    );
    assert_eq!(
        web_error("domains = [\"a.home\", \"b.home\", \"a.home\"]\nport = 80"),
        "3:32: workload.web.domains[2]: domain \"a.home\" is already listed at workload.web.domains[0]"
    );
    assert_eq!(
        web_error("domains = \"a.home\"\nport = 80"),
        "3:11: workload.web.domains: expected an array of domain names, found string; use an array, e.g. domains = [\"git.home.arpa\"]"
    );
    assert_eq!(
        web_error("domains = []\nport = 80"),
        "3:11: workload.web.domains: must list at least one domain, e.g. domains = [\"git.home.arpa\"]"
    );
    assert_eq!(
        web_error("domains = [1]\nport = 80"),
        "3:12: workload.web.domains[0]: expected a string, found integer"
    );
}

#[test]
fn domains_need_port_and_port_needs_domains() {
    assert_eq!(
        web_error("domains = [\"a.home\"]"),
        "3:1: workload.web.domains: `domains` needs `port`, the workload port to route to"
    );
    assert_eq!(
        web_error("port = 80"),
        "3:1: workload.web.port: `port` is only meaningful with `domains`; it is the workload port the ingress routes to (publish host ports with `ports`)"
    );
    for (line, key) in [
        ("path = \"/x\"", "path"),
        ("websocket = true", "websocket"),
        ("max_body = 0", "max_body"),
        ("tls = \"local\"", "tls"),
    ] {
        assert_eq!(
            web_error(line),
            format!("3:1: workload.web.{key}: `{key}` is only meaningful with `domains`")
        );
    }
    assert_eq!(
        web_error("network = \"none\"\ndomains = [\"a.home\"]\nport = 80"),
        "4:1: workload.web.domains: the ingress cannot reach a workload with network = \"none\"; use \"bridge\" or \"host\""
    );
}

#[test]
fn route_values() {
    let route = |extra: &str| format!("domains = [\"a.home\"]\nport = 80\n{extra}");
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = 0"),
        "4:8: workload.web.port: must be between 1 and 65535, found 0"
    );
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = 65536"),
        "4:8: workload.web.port: must be between 1 and 65535, found 65536"
    );
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = \"80\""),
        "4:8: workload.web.port: expected a port number, found string; e.g. port = 3000"
    );
    assert_eq!(
        web_error(&route("path = \"api\"")),
        "5:8: workload.web.path: must start with '/', found \"api\""
    );
    assert_eq!(
        web_error(&route("path = \"/a/../b\"")),
        "5:8: workload.web.path: path \"/a/../b\" must not contain a '..' segment"
    );
    assert_eq!(
        web_error(&route("websocket = \"yes\"")),
        "5:13: workload.web.websocket: expected true or false, found string"
    );
    assert_eq!(
        web_error(&route("max_body = \"5 parsecs\"")),
        "5:12: workload.web.max_body: unknown unit \"parsecs\" in \"5 parsecs\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\""
    );
    for (text, bytes) in [("0", 0), ("\"0\"", 0), ("\"1K\"", 1024), ("1", 1)] {
        let w = web(&format!(
            "[workload.web]\nworld = \"host\"\n{}",
            route(&format!("max_body = {text}\n"))
        ));
        assert_eq!(w.route.max_body, Some(bytes), "{text}");
    }
}

#[test]
fn tls_choices() {
    let route = |extra: &str| format!("domains = [\"a.home\"]\nport = 80\n{extra}");
    let w = web(&format!(
        "[workload.web]\nworld = \"host\"\n{}",
        route("tls = { cert = \"/etc/tls/a.pem\", key = \"/etc/tls/a.key\" }\n")
    ));
    assert_eq!(
        w.route.tls,
        TlsChoice::Files {
            cert: "/etc/tls/a.pem".into(),
            key: "/etc/tls/a.key".into()
        }
    );
    let w = web(&format!(
        "[workload.web]\nworld = \"host\"\n{}[workload.web.tls]\ncert = \"/c\"\nkey = \"/k\"\n",
        route("")
    ));
    assert_eq!(
        w.route.tls,
        TlsChoice::Files {
            cert: "/c".into(),
            key: "/k".into()
        }
    );
    assert_eq!(
        web(&format!(
            "[workload.web]\nworld = \"host\"\n{}",
            route("tls = \"none\"\n")
        ))
        .route
        .tls,
        TlsChoice::None
    );
    assert_eq!(
        web_error(&route("tls = \"locl\"")),
        "5:7: workload.web.tls: unknown value \"locl\"; did you mean \"local\"?"
    );
    assert_eq!(
        web_error(&route("tls = \"acme\"")),
        "5:7: workload.web.tls: unknown value \"acme\"; expected \"none\", \"local\" or a table such as tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = true")),
        "5:7: workload.web.tls: expected \"none\", \"local\" or a table { cert, key }, found boolean"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"/c.pem\" }")),
        "5:1: workload.web.tls: missing `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = {}")),
        "5:1: workload.web.tls: missing `cert` and `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"/c.pem\", kye = \"/k.pem\" }")),
        "5:26: workload.web.tls.kye: unknown key; did you mean `key`?"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"c.pem\", key = \"/k.pem\" }")),
        "5:16: workload.web.tls.cert: must be an absolute path, found \"c.pem\""
    );
}

#[test]
fn domains_across_workloads_and_sites() {
    let text = r#"[workload.git]
world = "host"
domains = ["git.home.arpa"]
port = 3000

[workload.gitweb]
world = "host"
domains = ["web.home.arpa", "git.home.arpa"]
port = 80

[workload.api]
world = "host"
domains = ["git.home.arpa"]
port = 8080
path = "/api"

[volume.www]
site = { domains = ["git.home.arpa"], path = "/api" }
"#;
    assert_eq!(
        errors(text),
        [
            "8:29: workload.gitweb.domains[1]: domain \"git.home.arpa\" (path \"/\") is already routed to workload \"git\"",
            "18:21: volume.www.site.domains[0]: domain \"git.home.arpa\" (path \"/api\") is already routed to workload \"api\"",
        ]
    );
}

#[test]
fn volume_sites() {
    let p = ok(r#"
[volume.www]
size = "1G"
site = { domains = ["www.home.arpa", "*.static.home.arpa"], path = "/files", autoindex = true, tls = "local" }

[volume.docs]
[volume.docs.site]
domains = ["docs.home.arpa"]
"#);
    assert_eq!(
        p.spec.volumes["www"].site,
        Some(SiteSpec {
            domains: vec!["www.home.arpa".into(), "*.static.home.arpa".into()],
            path: "/files".into(),
            autoindex: true,
            tls: TlsChoice::Local,
        })
    );
    assert_eq!(
        p.spec.volumes["docs"].site,
        Some(SiteSpec {
            domains: vec!["docs.home.arpa".into()],
            ..SiteSpec::default()
        })
    );
    assert_eq!(p.spec.volumes["docs"].site.as_ref().unwrap().path, "/");
    assert_eq!(p.locate("volume.www.site.domains[1]"), (4, 38));
    assert_eq!(
        errors("[volume.www]\nsite = { path = \"/\" }\n"),
        ["2:1: volume.www.site: missing `domains`; e.g. site = { domains = [\"www.home.arpa\"] }"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domain = [\"a.home\"] }\n"),
        ["2:10: volume.www.site.domain: unknown key; did you mean `domains`?"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [] }\n"),
        ["2:20: volume.www.site.domains: must list at least one domain, e.g. domains = [\"git.home.arpa\"]"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [\"WWW.home\"], autoindex = 1 }\n"),
        [
            "2:21: volume.www.site.domains[0]: domain \"WWW.home\" has uppercase letters; write \"www.home\"",
            "2:46: volume.www.site.autoindex: expected true or false, found integer",
        ]
    );
    assert_eq!(
        errors("[volume.www]\nsite = \"www.home\"\n"),
        ["2:8: volume.www.site: expected a table, found string; e.g. site = { domains = [\"www.home.arpa\"], autoindex = true }"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [\"a.home\"], tls = { cert = \"/c\" } }\n"),
        ["2:32: volume.www.site.tls: missing `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"]
    );
}

#[test]
fn locate_network_fields() {
    let p = ok("[workload.web]\nworld = \"host\"\nports = [\"80\", \"443\"]\ndomains = [\"a.home\"]\nport = 80\n");
    assert_eq!(p.locate("workload.web.ports"), (3, 9));
    assert_eq!(p.locate("workload.web.ports[1]"), (3, 16));
    assert_eq!(p.locate("workload.web.domains"), (4, 11));
    assert_eq!(p.locate("workload.web.domains[0]"), (4, 12));
    assert_eq!(p.locate("workload.web.port"), (5, 8));
}
