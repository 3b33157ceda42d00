//! The HTTP status of each kind of error, over the real router: an [`Engine`] on a temporary
//! state dir (the dir storage driver, an executor that refuses every command, no reconcile
//! loop), requests sent in-process. None of these requests may run a command or start a
//! workload, so they need no root.

use crate::daemon::engine::Engine;
use crate::daemon::{Config, NetSettings};
use axum::body::Body;
use axum::http::{Method, Request};
use std::sync::Arc;
use tower::ServiceExt;
use warren_model::{Source, WorkloadSpec};

struct Host {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let exec: Arc<dyn warren_exec::Executor> = Arc::new(warren_exec::RecordingExecutor::new());
    let storage = warren_storage::pool::open_storage(
        &state,
        &warren_storage::pool::PoolOptions {
            driver: warren_storage::pool::Driver::Dir,
            image_size: 0,
            zfs_pool: String::new(),
        },
        exec.clone(),
    )
    .unwrap();
    let store = warren_store::Store::open(&state.join("warren.db")).unwrap();
    let runtime = Arc::new(warren_runtime::oci::OciRuntime::new(
        exec.clone(),
        warren_runtime::runc::Runc::new("/nonexistent/runc", state.join("runc")),
        "/nonexistent/warren".into(),
    ));
    let cfg = Config {
        socket: state.join("warren.sock"),
        driver: warren_storage::pool::Driver::Dir,
        pool_size: 0,
        zfs_pool: String::new(),
        tick: std::time::Duration::from_secs(3600),
        parallel: 1,
        stop_timeout: std::time::Duration::from_secs(1),
        backoff: Default::default(),
        instance: Config::instance_of(&state),
        runc_root: state.join("runc"),
        net: NetSettings::default(),
        ingress: Default::default(),
        listen: None,
        allow_host_hooks: false,
        spec: None,
        repl_time_limit: std::time::Duration::from_secs(1),
        metrics_listen: None,
        state_dir: state,
    };
    let net = crate::daemon::engine::fakes::FakeNet::new();
    let engine = Engine::new(cfg, store, storage, runtime, exec, net).unwrap();
    Host { engine, _dir: dir }
}

impl Host {
    /// Stores a workload as desired state (nothing is provisioned or started).
    fn declare(&self, spec: WorkloadSpec) {
        self.engine.store.apply(&[spec], &[]).unwrap();
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        let resp = crate::daemon::api::router(self.engine.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }
}

fn plan(text: &str) -> String {
    serde_json::json!({ "file": "w.toml", "text": text, "prune": false, "dry_run": true })
        .to_string()
}

fn web() -> WorkloadSpec {
    let mut w = WorkloadSpec::new("web", Source::World("busybox".into()));
    // A port nothing on a test host listens on.
    w.ports = vec!["47811:80".parse().unwrap()];
    w.route.domains = vec!["web.home.arpa".into()];
    w.route.port = Some(80);
    w
}

#[tokio::test]
async fn each_error_has_its_status_over_the_router() {
    let h = host();
    h.declare(web());
    let snap = |label: &str| serde_json::json!({ "label": label }).to_string();
    let cases: Vec<(&str, Method, String, Option<String>, u16)> = vec![
        (
            "unknown workload",
            Method::GET,
            "/v1/workloads/nope".into(),
            None,
            404,
        ),
        (
            "unknown workload stop",
            Method::POST,
            "/v1/workloads/nope/stop".into(),
            None,
            404,
        ),
        (
            "unknown workload delete",
            Method::DELETE,
            "/v1/workloads/nope".into(),
            None,
            404,
        ),
        (
            "unknown snapshot",
            Method::DELETE,
            "/v1/workloads/web/snapshots/nope".into(),
            None,
            404,
        ),
        (
            "rollback to an unknown snapshot",
            Method::POST,
            "/v1/workloads/web/rollback".into(),
            Some(serde_json::json!({ "label": "nope" }).to_string()),
            404,
        ),
        (
            "snapshots of an unknown volume",
            Method::GET,
            "/v1/volumes/nope/snapshots".into(),
            None,
            404,
        ),
        (
            "snapshot label that can never be valid",
            Method::POST,
            "/v1/workloads/web/snapshots".into(),
            Some(snap(".hidden")),
            400,
        ),
        (
            "clone onto an existing name",
            Method::POST,
            "/v1/workloads/web/clone".into(),
            Some(serde_json::json!({ "name": "web" }).to_string()),
            409,
        ),
        (
            "clone under a bad name",
            Method::POST,
            "/v1/workloads/web/clone".into(),
            Some(serde_json::json!({ "name": "Not_A_Label" }).to_string()),
            400,
        ),
        (
            "stopping the routing workload by hand",
            Method::POST,
            format!("/v1/workloads/{}/stop", crate::daemon::ingress::ROUTER),
            None,
            409,
        ),
        (
            "body that is not JSON",
            Method::POST,
            "/v1/plan".into(),
            Some("{not json".into()),
            400,
        ),
        (
            "body missing a field",
            Method::POST,
            "/v1/plan".into(),
            Some(r#"{"file": "w.toml"}"#.into()),
            400,
        ),
        (
            "unknown image reference to forget",
            Method::DELETE,
            "/v1/images?reference=example.org/nothing:1".into(),
            None,
            404,
        ),
        (
            "image reference that cannot parse",
            Method::DELETE,
            "/v1/images?reference=UPPER%20case".into(),
            None,
            400,
        ),
        (
            "unknown world to delete",
            Method::DELETE,
            "/v1/worlds/nope".into(),
            None,
            404,
        ),
        (
            "unknown volume to delete",
            Method::DELETE,
            "/v1/volumes/nope".into(),
            None,
            404,
        ),
        (
            "export of an unknown workload",
            Method::GET,
            "/v1/workloads/nope/export".into(),
            None,
            404,
        ),
        (
            "unknown snapshot of a volume",
            Method::DELETE,
            "/v1/volumes/nope/snapshots/x".into(),
            None,
            404,
        ),
    ];
    for (what, method, path, body, want) in cases {
        let (got, json) = h.send(method, &path, body.as_deref()).await;
        assert_eq!(got, want, "{what}: {path} answered {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: the error body says what went wrong: {json}"
        );
    }
    // Nothing above ran a command.
    assert!(h.engine.observed_row("web").is_none_or(|r| r.pid.is_none()));
}

/// A spec that does not parse, and one that parses but takes a port or a domain another
/// workload holds, are both 422 with located diagnostics: the file is what is wrong (the
/// request is well-formed and the operator fixes the file), so conflicts found while
/// validating a file are diagnostics of the file, not 409s.
#[tokio::test]
async fn invalid_specs_and_taken_ports_or_domains_are_422_with_diagnostics() {
    let h = host();
    h.declare(web());
    let cases = [
        (
            "[workload.a]\nworld = \"busybox\"\nbogus = 1\n",
            "workload.a",
        ),
        (
            "[workload.b]\nworld = \"busybox\"\nports = [\"47811:80\"]\n",
            "already published by workload \"web\"",
        ),
        (
            "[workload.c]\nworld = \"busybox\"\ndomains = [\"web.home.arpa\"]\nport = 80\n",
            "already routed to workload \"web\"",
        ),
        (
            "[workload.d]\nworld = \"no-such-world\"\n",
            "does not exist",
        ),
    ];
    for (text, says) in cases {
        let (status, json) = h.send(Method::POST, "/v1/plan", Some(&plan(text))).await;
        assert_eq!(status, 422, "{text}: {json}");
        let diags = json["diagnostics"].as_array().expect("diagnostics");
        assert!(!diags.is_empty(), "{text}: {json}");
        assert!(
            diags
                .iter()
                .all(|d| d["line"].as_u64().is_some_and(|l| l > 0)),
            "{text}: every diagnostic is located: {json}"
        );
        assert!(
            json["error"].as_str().unwrap().contains(says),
            "{text}: {json}"
        );
    }
    // The same file without the conflict plans.
    let ok = "[workload.b]\nworld = \"busybox\"\nports = [\"47812:80\"]\n";
    let (status, json) = h.send(Method::POST, "/v1/plan", Some(&plan(ok))).await;
    assert_eq!(status, 200, "{json}");
}

/// The VM checks against the host: a boot file missing on the daemon's host, a VM larger than
/// the host's memory, VMs that together overcommit it, and a full VM with an image are each a
/// located 422, and an apply of such a file stores and changes nothing.
#[tokio::test]
async fn bad_vms_are_422_with_located_diagnostics_and_change_nothing() {
    let h = host();
    let total = crate::daemon::vmcheck::host_memory(&*h.engine.exec).expect("host memory");
    // A VM already declared, using just over half of the host's memory.
    let half = total / 2 + (1 << 20);
    let mut stored = WorkloadSpec::new("old", Source::World("busybox".into()));
    stored.kind = warren_model::Kind::Vm;
    stored.resources.memory = Some(half);
    h.declare(stored);
    let generation = h.engine.store.generation().unwrap();
    let vm = |name: &str, body: &str| format!("[workload.{name}]\nkind = \"vm\"\n{body}\n");
    let cases = [
        (
            vm(
                "a",
                "world = \"busybox\"\nvm = { kernel = \"/nonexistent/vmlinuz\" }",
            ),
            "workload.a.vm.kernel: /nonexistent/vmlinuz does not exist on the daemon's host",
            (4, 17),
        ),
        (
            vm("b", "[workload.b.vm]\niso = \"/nonexistent/install.iso\""),
            "workload.b.vm.iso: /nonexistent/install.iso does not exist on the daemon's host",
            (4, 7),
        ),
        (
            vm(
                "c",
                "world = \"busybox\"\nresources = { memory = \"1000T\" }",
            ),
            "workload.c.resources.memory: a vm of 1024000.0 GiB does not fit this host's",
            (4, 24),
        ),
        (
            vm(
                "d",
                &format!("world = \"busybox\"\nresources = {{ memory = {half} }}"),
            ),
            "workload.d.resources.memory: the workloads set to run need",
            (4, 24),
        ),
        (
            vm("e", "image = \"alpine:3.20\"\nvm = { disk = \"/tmp\" }"),
            "workload.e.image: a full VM boots its own disk",
            (3, 1),
        ),
    ];
    for (text, says, (line, column)) in cases {
        for path in ["/v1/plan", "/v1/apply"] {
            let body = serde_json::json!({ "file": "w.toml", "text": text, "prune": false, "dry_run": false })
                .to_string();
            let (status, json) = h.send(Method::POST, path, Some(&body)).await;
            assert_eq!(status, 422, "{path} {text}: {json}");
            let diags = json["diagnostics"].as_array().expect("diagnostics");
            let d = diags
                .iter()
                .find(|d| d["message"].as_str().unwrap().starts_with(says))
                .unwrap_or_else(|| panic!("{path} {text}: no {says:?} in {json}"));
            assert_eq!(
                (d["line"].as_u64(), d["column"].as_u64()),
                (Some(line), Some(column)),
                "{json}"
            );
        }
    }
    // Nothing was stored or changed.
    assert_eq!(h.engine.store.generation().unwrap(), generation);
    let desired = h.engine.store.desired().unwrap();
    assert_eq!(desired.keys().collect::<Vec<_>>(), ["old"]);
    // Without the stored VM, the same VM fits and plans.
    let fits = vm(
        "d",
        &format!("world = \"busybox\"\nresources = {{ memory = {half} }}"),
    );
    let body =
        serde_json::json!({ "file": "w.toml", "text": fits, "prune": true, "dry_run": true })
            .to_string();
    let (status, json) = h.send(Method::POST, "/v1/plan", Some(&body)).await;
    let caps_refusal = h.engine.caps.refusal(warren_model::Kind::Vm);
    match caps_refusal {
        None => assert_eq!(status, 200, "{json}"),
        // A host without QEMU refuses the kind, and nothing else.
        Some(reason) => {
            assert_eq!(status, 422, "{json}");
            assert!(json["error"].as_str().unwrap().contains(reason), "{json}");
            assert_eq!(json["diagnostics"].as_array().unwrap().len(), 1, "{json}");
        }
    }
}

/// An operation on a workload another operation holds waits (`LOCK_WAIT`), then answers 423.
#[tokio::test]
async fn a_workload_held_by_another_operation_is_423() {
    let h = host();
    h.declare(web());
    let _held = h.engine.lock("web").await;
    let body = serde_json::json!({ "label": "pre" }).to_string();
    let (status, json) = h
        .send(Method::POST, "/v1/workloads/web/snapshots", Some(&body))
        .await;
    assert_eq!(status, 423, "{json}");
    assert!(json["error"].as_str().unwrap().contains("busy"), "{json}");
    drop(_held);
}

/// The services (layer 1) never refer to the routes, the wire-level streams, the remote API or
/// the REPL (layer 2); those call down into the services, never the other way.
#[test]
fn services_never_reach_up_into_the_api_layer() {
    const SERVICES: &[&str] = &[
        "apply", "archive", "datasets", "images", "recipes", "worlds", "transfer", "hooks",
        "specfile", "watch", "error",
    ];
    const ABOVE: &[&str] = &["api", "openapi", "remote", "stream", "repl"];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon");
    let mut found = Vec::new();
    for service in SERVICES {
        let text = std::fs::read_to_string(dir.join(format!("{service}.rs"))).unwrap();
        for (n, line) in text.lines().enumerate() {
            for above in ABOVE {
                for prefix in ["super::", "daemon::"] {
                    let needle = format!("{prefix}{above}::");
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains(&needle) {
                        found.push(format!("{service}.rs:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "upward references:\n{}", found.join("\n"));
}

/// `console` is refused before any upgrade: an unknown workload is 404; a container, a
/// microVM without `console = true`, a VM that is not running and one whose run has no
/// console socket are each a 409 saying why.
#[tokio::test]
async fn console_refusals_have_their_status_and_reason() {
    let h = host();
    h.declare(web());
    let mut micro = WorkloadSpec::new("micro", Source::World("busybox".into()));
    micro.kind = warren_model::Kind::Vm;
    h.declare(micro);
    let mut full = WorkloadSpec::new("full", Source::World("busybox".into()));
    full.kind = warren_model::Kind::Vm;
    full.vm.iso = Some("/srv/install.iso".into());
    h.declare(full);
    let cases = [
        ("nope", 404, "no workload named"),
        ("web", 409, "only a VM has a serial console"),
        ("micro", 409, "`console = true`"),
        ("full", 409, "not running"),
    ];
    for (name, want, says) in cases {
        let (status, json) = h
            .send(Method::GET, &format!("/v1/workloads/{name}/console"), None)
            .await;
        assert_eq!(status, want, "{name}: {json}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{name}: {msg}");
    }
    // Running, but its run directory has no VM shim config (so no console socket).
    h.engine.update("full", |r| r.pid = Some(1));
    let (status, json) = h
        .send(Method::GET, "/v1/workloads/full/console", None)
        .await;
    assert_eq!(status, 409, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("not available"),
        "{json}"
    );
}

/// `/v1/info` over the router: the dir driver's pool (statvfs of the state dir) and the
/// declared workload's counts; `/v1/metrics` then counts that request by its route template.
#[tokio::test]
async fn info_and_metrics_over_the_router() {
    let h = host();
    h.declare(web());
    let (status, info) = h.send(Method::GET, "/v1/info", None).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["storage"]["driver"], "dir");
    assert!(
        info["storage"]["size_bytes"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert_eq!(info["workloads"]["total"], 1, "{info}");
    assert_eq!(
        info["workloads"]["by_kind"]["container"]["pending"], 1,
        "{info}"
    );
    assert_eq!(info["ingress"]["domains"][0], "web.home.arpa");
    assert_eq!(info["ingress"]["state"], "pending", "{info}");
    let (status, _) = h.send(Method::GET, "/v1/workloads/nope", None).await;
    assert_eq!(status, 404);

    let resp = crate::daemon::api::router(h.engine.clone())
        .oneshot(
            Request::builder()
                .uri("/v1/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        r#"warren_api_requests_total{method="GET",route="/v1/info",status="200"} 1"#,
        r#"warren_api_requests_total{method="GET",route="/v1/workloads/{name}",status="404"} 1"#,
        r#"warren_workload_state{name="web",kind="container",state="pending"} 1"#,
        r#"warren_workload_restarts_total{name="web",kind="container"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE warren_pool_size_bytes gauge"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}
