//! The converter's refusals and warnings, each with its location, and the mapping of single
//! keys.

use super::*;

fn files(path: &str) -> Result<String, ReadError> {
    match path {
        "app.env" => Ok("A=from-file\nB=file\n".into()),
        "broken.env" => Ok("A=1\nnot a line\n".into()),
        "locked.env" => Err(ReadError::Other("permission denied".into())),
        _ => Err(ReadError::NotFound),
    }
}

fn run_with(
    text: &str,
    dotenv: Option<&str>,
    env: &[(&str, &str)],
) -> Result<Conversion, SpecError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    convert(&ComposeInput {
        file: "compose.yml",
        text,
        dotenv: dotenv.map(|d| (".env", d)),
        env: &env,
        read: &files,
    })
}

fn ok(text: &str) -> Conversion {
    match run_with(text, None, &[]) {
        Ok(c) => {
            if let Err(e) = c.parse() {
                panic!("the conversion does not parse:\n{e}\n{}", c.toml);
            }
            c
        }
        Err(e) => panic!("{text}\nrefused:\n{e}"),
    }
}

/// The rendered errors, one per line.
fn errors(text: &str) -> String {
    match run_with(text, None, &[]) {
        Ok(c) => panic!("converted:\n{}", c.toml),
        Err(e) => e.to_string(),
    }
}

fn warnings(c: &Conversion) -> String {
    c.warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A service with one more key, written at line 4, column 5.
fn service_with(extra: &str) -> String {
    format!("services:\n  web:\n    image: nginx:1\n    {extra}\n")
}

#[test]
fn every_refused_service_key_is_an_error_at_its_key() {
    for (key, why) in service::REFUSED {
        let text = service_with(&format!("{key}: x"));
        let err = errors(&text);
        let want = format!("compose.yml:4:5: services.web.{key}: cannot be converted: {why}");
        assert_eq!(err, want, "{key}");
    }
}

#[test]
fn unmappable_values_are_located_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "volumes: [\"./html:/usr/share/nginx/html:ro\"]",
            "compose.yml:4:15: services.web.volumes[0]: the bind mount of \"./html\" cannot be converted",
        ),
        (
            "volumes: [{type: bind, source: /srv, target: /srv}]",
            "compose.yml:4:15: services.web.volumes[0]: the bind mount of \"/srv\"",
        ),
        (
            "ports: [\"80\"]",
            "compose.yml:4:13: services.web.ports[0]: container port 80 has no host port",
        ),
        (
            "network_mode: \"service:db\"",
            "compose.yml:4:5: services.web.network_mode: cannot be converted",
        ),
        (
            "deploy: {replicas: 3}",
            "compose.yml:4:14: services.web.deploy.replicas: cannot be converted: a workload runs one instance",
        ),
        (
            "deploy: {resources: {limits: {devices: []}}}",
            "compose.yml:4:35: services.web.deploy.resources.limits.devices: cannot be converted",
        ),
        (
            "scale: 2",
            "compose.yml:4:5: services.web.scale: cannot be converted",
        ),
        (
            "mem_limit: 1m",
            "compose.yml:4:16: services.web.mem_limit: 1m is below warren's minimum of 4M",
        ),
        (
            "healthcheck: {interval: 5s}",
            "compose.yml:4:5: services.web.healthcheck: cannot be converted: it has no `test`",
        ),
        (
            "labels: [\"traefik.http.routers.w.rule=HostRegexp(`{a:.+}`)\"]",
            "compose.yml:4:14: services.web.labels.traefik.http.routers.w.rule: cannot be converted: the matcher HostRegexp()",
        ),
        (
            "labels: [\"traefik.tcp.routers.w.rule=HostSNI(`*`)\"]",
            "compose.yml:4:14: services.web.labels.traefik.tcp.routers.w.rule: cannot be converted",
        ),
        (
            "labels: {caddy: a.example.org}",
            "compose.yml:4:14: services.web.labels: the route needs the service's port",
        ),
        (
            "restart: sometimes",
            "compose.yml:4:14: services.web.restart: unknown policy \"sometimes\"",
        ),
        (
            "imgae: x",
            "compose.yml:4:5: services.web.imgae: unknown key; did you mean `image`?",
        ),
        (
            "depends_on: [ghost]",
            "compose.yml:4:18: services.web.depends_on: depends on \"ghost\", which is not a service of this file",
        ),
        (
            "env_file: missing.env",
            "compose.yml:4:15: services.web.env_file: missing.env does not exist",
        ),
        (
            "env_file: locked.env",
            "compose.yml:4:15: services.web.env_file: reading locked.env: permission denied",
        ),
        (
            "env_file: broken.env",
            "compose.yml:4:15: services.web.env_file: broken.env:2:1: expected KEY=VALUE",
        ),
        (
            "environment: [\"A=${NOPE:?needed}\"]",
            "compose.yml:4:19: services.web.environment[0]: required variable NOPE is not set: needed",
        ),
    ];
    for (extra, want) in cases {
        let err = errors(&service_with(extra));
        assert!(
            err.starts_with(want),
            "{extra}:\n  got  {err}\n  want {want}..."
        );
    }
}

#[test]
fn file_level_refusals() {
    let e = errors("services:\n  web:\n    image: a\n  db:\n    build: ./db\n");
    assert!(
        e.starts_with("compose.yml:5:5: services.db.build: cannot be converted: warren does not build Dockerfiles"),
        "{e}"
    );
    let e = errors("include: [other.yml]\nservices:\n  a: {image: x}\n");
    assert!(
        e.starts_with("compose.yml:1:1: include: cannot be converted"),
        "{e}"
    );
    let e = errors("servises:\n  a: {image: x}\n");
    assert!(
        e.contains("compose.yml:1:1: servises: unknown key; did you mean `services`?"),
        "{e}"
    );
    let e = errors("services:\n  a: {image: x, volumes: [\"data:/d\"]}\n");
    assert!(e.contains("volume \"data\" is not declared"), "{e}");
    let e = errors(
        "services:\n  a: {image: x, volumes: [\"v:/d\"]}\n  b: {image: x, volumes: [\"v:/e\"]}\nvolumes:\n  v:\n",
    );
    assert!(
        e.starts_with("compose.yml:3:27: volume \"v\" is mounted read-write by \"a\" too (line 2)"),
        "{e}"
    );
    let e = errors(
        "volumes:\n  v:\n    driver: nfs\nservices:\n  a: {image: x, volumes: [\"v:/d\"]}\n",
    );
    assert!(
        e.starts_with("compose.yml:3:5: volumes.v.driver: cannot be converted"),
        "{e}"
    );
    let e = errors("services:\n  My_App: {image: x}\n  my-app: {image: y}\n");
    assert!(e.contains("compose.yml:3:3: services.my-app: becomes workload \"my-app\", like the service at line 2"), "{e}");
    let e = errors(
        "services:\n  a:\n    image: x\n    depends_on: {b: {condition: service_healthy}}\n  b: {image: y}\n",
    );
    assert!(e.contains("compose.yml:4:18: services.a.depends_on: waits for \"b\" to be healthy, but it has no healthcheck"), "{e}");
    let e = errors("services: {a: {image: x}}\nservices: {}\n");
    assert!(
        e.starts_with("compose.yml:2:1: duplicate key `services`"),
        "{e}"
    );
    let e = errors("services:\n  a: {image: x\n");
    assert!(e.contains("invalid YAML"), "{e}");
    assert!(errors("version: '3'\n").contains("the file has no services"));
    let e = errors("services:\n  a: {image: x, privileged: true}\n  b: {command: [sh]}\n");
    assert!(
        e.contains("compose.yml:3:3: services.b: needs `image`"),
        "{e}"
    );
    // Every error is reported, not only the first.
    let e =
        errors("services:\n  a:\n    image: x\n    privileged: true\n    cap_add: [NET_ADMIN]\n");
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn harmless_drops_are_located_warnings_and_comments() {
    let c = ok(&service_with("container_name: web-1"));
    assert_eq!(
        warnings(&c),
        "compose.yml:4:5: services.web.container_name: dropped: the workload is named after the service"
    );
    assert!(
        c.toml.contains("# services.web.container_name: dropped"),
        "{}",
        c.toml
    );

    let c = ok("services:\n  web:\n    image: x\n    volumes: [/cache]\n    tmpfs: /run\n    labels: {team: a}\n");
    let w = warnings(&c);
    assert!(
        w.contains(
            "compose.yml:4:15: services.web.volumes[0]: dropped the anonymous volume at /cache"
        ),
        "{w}"
    );
    assert!(
        w.contains("compose.yml:5:5: services.web.tmpfs: dropped"),
        "{w}"
    );
    assert!(
        w.contains("compose.yml:6:5: services.web.labels: dropped: team"),
        "{w}"
    );

    let c = ok("services:\n  web: {image: x}\nvolumes:\n  old:\n    external: true\n");
    assert!(warnings(&c).contains("compose.yml:4:3: volumes.old: dropped: no service mounts it"));
    let c = ok("services:\n  web: {image: x, volumes: [\"old:/o\"]}\nvolumes:\n  old:\n    external: true\n");
    assert!(warnings(&c)
        .contains("compose.yml:5:5: volumes.old.external: warren creates an empty volume"));
    assert!(c.toml.contains("[volume.old]"));

    let c = ok(
        "services:\n  web:\n    image: x\n    privileged: false\n    environment: [UNSET_HERE]\n",
    );
    assert!(warnings(&c).contains("compose.yml:5:19: services.web.environment.UNSET_HERE: not set in the environment; left out"));
    let c = ok("services:\n  web:\n    image: \"x:${TAG}\"\n");
    assert!(warnings(&c).contains(
        "compose.yml:3:12: services.web.image: variable TAG is not set; it is an empty string"
    ));
}

#[test]
fn keys_map_to_warren() {
    let c = ok(r#"services:
  web:
    image: nginx:1.27
    entrypoint: ["/docker-entrypoint.sh"]
    command: nginx -g 'daemon off;'
    working_dir: /srv
    user: "101"
    hostname: www
    read_only: true
    network_mode: host
    restart: unless-stopped
    env_file: [app.env, {path: optional.env, required: false}]
    environment:
      B: env
      EMPTY:
      N: 1.10
    cpus: 0.25
    pids_limit: 64
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost/"]
      interval: 500ms
      timeout: 2s
"#);
    let t = &c.toml;
    for want in [
        "entrypoint = [\"/docker-entrypoint.sh\"]",
        "command = [\"nginx\", \"-g\", \"daemon off;\"]",
        "workdir = \"/srv\"",
        "user = \"101\"",
        "hostname = \"www\"",
        "readonly_rootfs = true",
        "network = \"host\"",
        "restart = \"always\"",
        "resources = { cpus = 0.25, pids = 64 }",
        "health = { exec = [\"curl\", \"-f\", \"http://localhost/\"], interval = \"1s\", timeout = \"2s\", retries = 3, on_unhealthy = \"none\" }",
        "A = \"from-file\"",
        "B = \"env\"",
        "N = \"1.10\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    assert!(!t.contains("EMPTY"), "{t}");
    let w = warnings(&c);
    assert!(
        w.contains("services.web.env_file: optional.env does not exist (not required)"),
        "{w}"
    );
    assert!(
        w.contains("services.web.healthcheck.interval: 500ms rounded up to 1s"),
        "{w}"
    );
    let parsed = c.parse().unwrap();
    let web = &parsed.spec.workloads["web"];
    assert_eq!(web.env["A"], "from-file");
    assert_eq!(web.env["B"], "env");
}

#[test]
fn interpolation_reads_env_then_dotenv() {
    let text = "services:\n  web:\n    image: \"app:${TAG}\"\n    ports: [\"${PORT:-80}:80\"]\n    environment: [\"X=$$HOME\"]\n";
    let c = run_with(
        text,
        Some("TAG=from-dotenv\nPORT=8081\n"),
        &[("TAG", "from-env")],
    )
    .unwrap();
    assert!(c.toml.contains("image = \"app:from-env\""), "{}", c.toml);
    assert!(c.toml.contains("ports = [\"8081:80\"]"), "{}", c.toml);
    assert!(c.toml.contains("X = \"$HOME\""), "{}", c.toml);
    let e = run_with(text, Some("TAG='open\n"), &[]).unwrap_err();
    assert_eq!(e.to_string(), ".env:1:5: unterminated single-quoted value");
}

#[test]
fn profiles_pick_services() {
    let text = "services:\n  web: {image: x}\n  dbg: {image: y, profiles: [debug]}\n";
    let c = run_with(text, None, &[]).unwrap();
    assert!(!c.toml.contains("[workload.dbg]"));
    let c = run_with(text, None, &[("COMPOSE_PROFILES", "debug,other")]).unwrap();
    assert!(c.toml.contains("[workload.dbg]"));
}

#[test]
fn parser_errors_point_back_into_the_compose_file() {
    // Two services publishing one host port: the warren.toml parser's file-wide check.
    let c = ok("services:\n  a: {image: x}\n");
    assert!(c.parse().is_ok());
    let c = run_with(
        "services:\n  a:\n    image: x\n    ports: [\"8080:80\"]\n  b:\n    image: y\n    ports: [\"8080:81\"]\n",
        None,
        &[],
    )
    .unwrap();
    let e = c.parse().unwrap_err().to_string();
    assert!(
        e.starts_with("compose.yml:7:12: in the converted warren.toml: "),
        "{e}"
    );
}

#[test]
fn compose_file_names() {
    for name in [
        "docker-compose.yml",
        "compose.yaml",
        "/srv/app/docker-compose.prod.yml",
        "x.YML",
    ] {
        assert!(is_compose_file(name), "{name}");
    }
    for name in ["warren.toml", "compose.toml", "yml"] {
        assert!(!is_compose_file(name), "{name}");
    }
}
