//! Kubernetes manifests: one multi-document YAML file (`warren.yaml`) for a whole spec.
//!
//! Per workload, in name order: a PersistentVolumeClaim for its data dataset (when the spec
//! refers to it, see [`super::data_used`]), a StatefulSet (it has a data claim: one pod at a
//! time owns it) or else a Deployment (`Recreate` when it mounts volumes, so two pods never
//! share a writer's volume), a Service (its route port and published ports), an Ingress (its
//! domains). Each volume is a PersistentVolumeClaim named after it. Published `ports` become
//! `hostPort`s on the node (a NodePort cannot take a port below 30000). The full table is
//! `docs/export.md`.
//!
//! Objects are built as JSON values and written as YAML block style with keys sorted and every
//! string double-quoted (a JSON string is a YAML double-quoted scalar), so the text is
//! deterministic and needs no YAML library.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::{built_image, common_unmapped, data_used, key, skip_reason, volume_unmapped};
use super::{Export, ExportFile, Skipped, Unmapped};
use crate::health::{HealthCheck, OnUnhealthy, Probe};
use crate::ports::Proto;
use crate::spec::*;

/// The claim size when the spec gives none.
const DEFAULT_CLAIM: &str = "1Gi";

/// A Kubernetes quantity of bytes: `Gi`, `Mi` or `Ki` when exact, else plain bytes.
pub fn bytes(n: u64) -> String {
    for (shift, unit) in [(30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if n > 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// A CPU quantity: whole cores, or millicores.
fn cpu(c: f64) -> String {
    let milli = ((c * 1000.0).round() as u64).max(1);
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn labels(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": name })
}

fn meta(name: &str) -> Value {
    json!({ "name": name, "labels": labels(name) })
}

fn claim(name: &str, size: Option<u64>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(name),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": size.map(bytes).unwrap_or(DEFAULT_CLAIM.into()) } },
        },
    })
}

fn probe(h: &HealthCheck) -> Value {
    let mut p = match &h.probe {
        Probe::Http { path, port } => json!({ "httpGet": { "path": path, "port": port } }),
        Probe::Tcp(port) => json!({ "tcpSocket": { "port": port } }),
        Probe::Exec(argv) => json!({ "exec": { "command": argv } }),
    };
    p["periodSeconds"] = json!(h.interval_secs.max(1));
    p["timeoutSeconds"] = json!(h.timeout_secs.max(1));
    p["failureThreshold"] = json!(h.retries.max(1));
    p
}

/// A port's name in the pod and the Service: `http` for the route's, `pPORT` otherwise.
fn port_name(w: &WorkloadSpec, port: u16, proto: Proto) -> String {
    let routed = !w.route.domains.is_empty() && w.route.port == Some(port);
    if routed && proto == Proto::Tcp {
        "http".into()
    } else if proto == Proto::Udp {
        format!("u{port}")
    } else {
        format!("p{port}")
    }
}

fn proto(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

/// The documents of one workload (each with its comment lines), and what could not be mapped.
pub fn workload(w: &WorkloadSpec) -> (Vec<(Vec<String>, Value)>, Vec<Unmapped>) {
    let mut unmapped = Vec::new();
    let mut notes: BTreeSet<String> = BTreeSet::new();
    common_unmapped(w, &mut unmapped);
    let n = w.name.as_str();
    let data = data_used(w);
    let mut docs = Vec::new();

    // The container.
    let mut c = Map::new();
    c.insert("name".into(), json!(n));
    match &w.source {
        Source::Image(r) => {
            c.insert("image".into(), json!(r));
            if let Some(ep) = &w.entrypoint {
                c.insert("command".into(), json!(ep));
            }
            if !w.command.is_empty() {
                c.insert("args".into(), json!(w.command));
            }
        }
        src => {
            let (image, need) = built_image(src).expect("not an image");
            c.insert("image".into(), json!(image));
            notes.insert(need);
            let argv = if w.command.is_empty() {
                vec!["/bin/sh".to_string()]
            } else {
                w.command.clone()
            };
            c.insert("command".into(), json!(argv));
        }
    }
    if !w.env.is_empty() {
        let env: Vec<Value> = w
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        c.insert("env".into(), json!(env));
    }
    if let Some(wd) = &w.workdir {
        c.insert("workingDir".into(), json!(wd));
    }

    // Ports: the published ones on the node, the route's.
    let mut ports: Vec<Value> = Vec::new();
    let mut service_ports: Vec<Value> = Vec::new();
    let mut seen: BTreeSet<(u16, Proto)> = BTreeSet::new();
    if w.network == NetworkMode::None && (!w.ports.is_empty() || !w.route.domains.is_empty()) {
        unmapped.push(Unmapped {
            key: key(w, "network"),
            why: "\"none\": every pod has a network; its ports are left out".into(),
        });
    } else {
        if w.network == NetworkMode::None {
            unmapped.push(Unmapped {
                key: key(w, "network"),
                why: "\"none\": every pod has a network (a NetworkPolicy can deny its traffic)"
                    .into(),
            });
        }
        for m in &w.ports {
            let name = port_name(w, m.container_port, m.proto);
            let mut p = json!({
                "containerPort": m.container_port,
                "hostPort": m.host_port,
                "protocol": proto(m.proto),
            });
            if let Some(ip) = m.host_ip {
                p["hostIP"] = json!(ip.to_string());
            }
            if seen.insert((m.container_port, m.proto)) {
                p["name"] = json!(name);
                service_ports.push(json!({
                    "name": name, "port": m.container_port,
                    "targetPort": m.container_port, "protocol": proto(m.proto),
                }));
            }
            ports.push(p);
        }
        if let (false, Some(rp)) = (w.route.domains.is_empty(), w.route.port) {
            if seen.insert((rp, Proto::Tcp)) {
                ports.push(json!({ "containerPort": rp, "name": "http", "protocol": "TCP" }));
                service_ports.push(json!({
                    "name": "http", "port": rp, "targetPort": rp, "protocol": "TCP",
                }));
            }
        }
    }
    if !ports.is_empty() {
        c.insert("ports".into(), json!(ports));
    }

    // Resources: limits only (the requests default to them).
    let mut limits = Map::new();
    if let Some(m) = w.resources.memory {
        limits.insert("memory".into(), json!(bytes(m)));
    }
    if let Some(cpus) = w.resources.cpus {
        limits.insert("cpu".into(), json!(cpu(cpus)));
    }
    if let Some(d) = w.resources.disk {
        limits.insert("ephemeral-storage".into(), json!(bytes(d)));
        notes.insert(
            "resources.disk is the container's ephemeral-storage limit (writes to the root \
             filesystem and logs); the data claim has its own size"
                .into(),
        );
    }
    if !limits.is_empty() {
        c.insert("resources".into(), json!({ "limits": limits }));
    }

    // Security: read-only root, the user.
    let mut sc = Map::new();
    if w.readonly_rootfs {
        sc.insert("readOnlyRootFilesystem".into(), json!(true));
    }
    if let Some(u) = &w.user {
        let mut parts = u.splitn(2, ':');
        let uid = parts.next().and_then(|s| s.parse::<u32>().ok());
        let gid = parts.next().map(|s| s.parse::<u32>().ok());
        match (uid, gid) {
            (Some(uid), None | Some(Some(_))) => {
                sc.insert("runAsUser".into(), json!(uid));
                if let Some(Some(gid)) = gid {
                    sc.insert("runAsGroup".into(), json!(gid));
                }
            }
            _ => unmapped.push(Unmapped {
                key: key(w, "user"),
                why: format!("{u:?}: Kubernetes takes numeric ids only (runAsUser, runAsGroup)"),
            }),
        }
    }
    if !sc.is_empty() {
        c.insert("securityContext".into(), Value::Object(sc));
    }

    // Probes.
    if let Some(h) = &w.health {
        let p = probe(h);
        c.insert("readinessProbe".into(), p.clone());
        if h.on_unhealthy == OnUnhealthy::Restart {
            c.insert("livenessProbe".into(), p.clone());
            if h.start_period_secs > 0 {
                let mut s = p;
                let period = h.interval_secs.max(1);
                s["failureThreshold"] = json!(h.start_period_secs.div_ceil(period).max(1));
                c.insert("startupProbe".into(), s);
            }
        }
    }

    // Volumes and their mounts.
    let mut volumes: Vec<Value> = Vec::new();
    let mut mounts: Vec<Value> = Vec::new();
    if data {
        volumes.push(json!({ "name": "data", "persistentVolumeClaim": { "claimName": format!("{n}-data") } }));
        mounts.push(json!({ "name": "data", "mountPath": w.data_path }));
    }
    for v in &w.volumes {
        let vname = format!("vol-{}", v.volume);
        let mut src = json!({ "claimName": v.volume });
        let mut m = json!({ "name": vname, "mountPath": v.path });
        if v.readonly {
            src["readOnly"] = json!(true);
            m["readOnly"] = json!(true);
        }
        volumes.push(json!({ "name": vname, "persistentVolumeClaim": src }));
        mounts.push(m);
    }
    if w.readonly_rootfs {
        for (vname, path) in [("tmp", "/tmp"), ("var-tmp", "/var/tmp"), ("run", "/run")] {
            volumes.push(json!({ "name": vname, "emptyDir": {} }));
            mounts.push(json!({ "name": vname, "mountPath": path }));
        }
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), json!(mounts));
    }

    // The pod.
    let mut pod = Map::new();
    pod.insert("containers".into(), json!([Value::Object(c)]));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), json!(volumes));
    }
    if w.network == NetworkMode::Host {
        pod.insert("hostNetwork".into(), json!(true));
    }
    if let Some(h) = &w.hostname {
        pod.insert("hostname".into(), json!(h));
    }
    if w.userns {
        pod.insert("hostUsers".into(), json!(false));
        notes.insert(
            "userns = true is hostUsers: false (a user namespace, Kubernetes 1.33 or newer); \
             runAsNonRoot would be a different thing"
                .into(),
        );
    }
    match w.restart {
        RestartPolicy::Always => {}
        r => unmapped.push(Unmapped {
            key: key(w, "restart"),
            why: format!(
                "{:?}: the pods of a Deployment or StatefulSet always restart; a Job \
                 (restartPolicy OnFailure or Never) runs once to completion instead",
                r.as_str()
            ),
        }),
    }
    if w.resources.cpus.is_some() || w.resources.memory.is_some() {
        notes.insert("resources are limits; the requests default to them".into());
    }

    let replicas = if w.state == DesiredState::Stopped {
        0
    } else {
        1
    };
    let template = json!({ "metadata": { "labels": labels(n) }, "spec": pod });
    let selector = json!({ "matchLabels": labels(n) });
    let mut head = vec![format!("warren workload {n:?}")];
    if data {
        docs.push((
            vec![format!("the data dataset of {n:?} ({})", w.data_path)],
            claim(&format!("{n}-data"), None),
        ));
        head.push(format!(
            "a StatefulSet: its data claim {n}-data has one owner at a time (size {DEFAULT_CLAIM}: \
             adjust it)"
        ));
        docs.push((
            head,
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": meta(n),
                "spec": {
                    "replicas": replicas,
                    "serviceName": n,
                    "selector": selector,
                    "template": template,
                },
            }),
        ));
    } else {
        head.push(format!(
            "its data dataset ({}) is not referred to by the spec and is left out",
            w.data_path
        ));
        let mut spec = json!({ "replicas": replicas, "selector": selector, "template": template });
        if !w.volumes.is_empty() {
            spec["strategy"] = json!({ "type": "Recreate" });
        }
        docs.push((
            head,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(n), "spec": spec }),
        ));
    }
    if !service_ports.is_empty() {
        docs.push((
            vec![format!("{n:?} by name inside the cluster")],
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(n),
                "spec": { "selector": labels(n), "ports": service_ports },
            }),
        ));
    }

    // The route.
    let r = &w.route;
    match (r.domains.is_empty(), r.port) {
        (true, _) => {}
        (false, None) => unmapped.push(Unmapped {
            key: key(w, "domains"),
            why: "a route without a port: an Ingress needs the Service's port".into(),
        }),
        (false, Some(_)) if w.network == NetworkMode::None => {}
        (false, Some(port)) => {
            let paths = json!([{
                "path": r.path,
                "pathType": "Prefix",
                "backend": { "service": { "name": n, "port": { "number": port } } },
            }]);
            let rules: Vec<Value> = r
                .domains
                .iter()
                .map(|d| json!({ "host": d, "http": { "paths": paths } }))
                .collect();
            let mut spec = json!({ "rules": rules });
            let mut comments = vec![format!("the domains of {n:?}")];
            if r.tls != TlsChoice::None {
                spec["tls"] = json!([{ "hosts": r.domains, "secretName": format!("{n}-tls") }]);
                comments.push(format!(
                    "TLS from the secret {n}-tls: create it (kubectl create secret tls {n}-tls \
                     --cert ... --key ...) or let cert-manager issue it"
                ));
            }
            let mut metadata = meta(n);
            if let Some(max) = r.max_body {
                metadata["annotations"] =
                    json!({ "nginx.ingress.kubernetes.io/proxy-body-size": max.to_string() });
                comments.push(
                    "max_body is an ingress-nginx annotation; other controllers ignore it".into(),
                );
            }
            if r.websocket {
                comments.push("websocket: ingress controllers pass upgrades through".into());
            }
            docs.push((
                comments,
                json!({
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": metadata,
                    "spec": spec,
                }),
            ));
        }
    }

    unmapped.sort();
    unmapped.dedup();
    if let Some((head, _)) = docs
        .iter_mut()
        .find(|(_, d)| d["kind"] != "PersistentVolumeClaim")
    {
        head.extend(notes.into_iter().map(|n| format!("Note: {n}")));
        if !unmapped.is_empty() {
            head.push("Cannot map:".into());
            head.extend(unmapped.iter().map(|u| format!("  {u}")));
        }
    }
    (docs, unmapped)
}

/// Every volume's claim and every exportable workload's objects, as `warren.yaml`.
pub fn export(spec: &SpecFile) -> Export {
    let mut out = Export::default();
    let mut docs: Vec<(Vec<String>, Value)> = Vec::new();
    for v in spec.volumes.values() {
        docs.push((vec![format!("volume {:?}", v.name)], claim(&v.name, v.size)));
    }
    for w in spec.workloads.values() {
        if let Some(why) = skip_reason(w) {
            out.skipped.push(Skipped {
                workload: w.name.clone(),
                why,
            });
            continue;
        }
        let (d, unmapped) = workload(w);
        docs.extend(d);
        out.unmapped.extend(unmapped);
    }
    volume_unmapped(spec, &mut out.unmapped);

    let mut text =
        String::from("# Kubernetes objects from `warren spec export --format kubernetes`.\n");
    for s in &out.skipped {
        let _ = writeln!(text, "# Skipped: {s}.");
    }
    let vol: Vec<&Unmapped> = out
        .unmapped
        .iter()
        .filter(|u| u.key.starts_with("volume."))
        .collect();
    if !vol.is_empty() {
        text.push_str("# Cannot map:\n");
        for u in vol {
            let _ = writeln!(text, "#   {u}");
        }
    }
    for (comments, doc) in &docs {
        text.push_str("---\n");
        for c in comments {
            let _ = writeln!(text, "# {c}");
        }
        yaml(doc, 0, &mut text);
    }
    out.files.push(ExportFile {
        name: "warren.yaml".into(),
        text,
    });
    out
}

/// The objects of [`export`] as JSON values, in document order (for validation).
pub fn objects(spec: &SpecFile) -> Vec<Value> {
    let mut docs: Vec<Value> = spec
        .volumes
        .values()
        .map(|v| claim(&v.name, v.size))
        .collect();
    for w in spec.workloads.values().filter(|w| skip_reason(w).is_none()) {
        docs.extend(workload(w).0.into_iter().map(|(_, d)| d));
    }
    docs
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(dquote(s)),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// A YAML double-quoted scalar: JSON's escaping, plus the characters YAML does not allow
/// unescaped (DEL and the C1 controls) as `\uXXXX`.
fn dquote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn yaml_key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
    if plain {
        k.to_string()
    } else {
        dquote(k)
    }
}

/// `v` as block-style YAML at `indent` spaces, keys sorted.
pub fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for k in keys {
                let val = &o[k];
                match scalar(val) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}{}: {s}", yaml_key(k));
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{}:", yaml_key(k));
                        let inner = if val.is_array() { indent } else { indent + 2 };
                        yaml(val, inner, out);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match scalar(item) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    None => {
                        let mut inner = String::new();
                        yaml(item, indent + 2, &mut inner);
                        // The item's first line starts on the dash.
                        let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                    }
                }
            }
        }
        v => {
            let _ = writeln!(out, "{pad}{}", scalar(v).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortMapping;

    fn world(name: &str) -> WorkloadSpec {
        WorkloadSpec::new(name, Source::World("busybox".into()))
    }

    /// The objects of one workload by kind, and the unmapped keys.
    fn objs(w: &WorkloadSpec) -> (Vec<Value>, Vec<String>) {
        let (docs, u) = workload(w);
        (
            docs.into_iter().map(|(_, d)| d).collect(),
            u.into_iter().map(|u| u.key).collect(),
        )
    }

    fn kind<'a>(docs: &'a [Value], k: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    }

    fn container(docs: &[Value]) -> &Value {
        let d = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
            .expect("a workload object");
        &d["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn quantities() {
        assert_eq!(bytes(128 << 20), "128Mi");
        assert_eq!(bytes(1 << 30), "1Gi");
        assert_eq!(bytes(3 << 10), "3Ki");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(cpu(0.5), "500m");
        assert_eq!(cpu(2.0), "2");
        assert_eq!(cpu(0.0001), "1m");
    }

    #[test]
    fn used_data_makes_a_statefulset_with_a_claim() {
        let mut w = world("db");
        w.command = vec!["sh".into(), "-c".into(), "exec db --dir /data".into()];
        let (docs, _) = objs(&w);
        let claim = kind(&docs, "PersistentVolumeClaim");
        assert_eq!(claim["metadata"]["name"], "db-data");
        let s = kind(&docs, "StatefulSet");
        assert_eq!(s["spec"]["serviceName"], "db");
        let pod = &s["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "db-data"
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/data"
        );
        assert_eq!(container(&docs)["image"], "warren/world-busybox:latest");
    }

    #[test]
    fn no_data_is_a_deployment_recreated_when_it_mounts_volumes() {
        let mut w = world("pub");
        let (docs, _) = objs(&w);
        assert_eq!(docs.len(), 1);
        assert!(kind(&docs, "Deployment")["spec"].get("strategy").is_none());
        w.volumes = vec![VolumeMount {
            volume: "files".into(),
            path: "/out".into(),
            readonly: true,
        }];
        let (docs, _) = objs(&w);
        let d = kind(&docs, "Deployment");
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0],
            json!({ "name": "vol-files", "persistentVolumeClaim": { "claimName": "files", "readOnly": true } })
        );
        w.state = DesiredState::Stopped;
        assert_eq!(kind(&objs(&w).0, "Deployment")["spec"]["replicas"], 0);
    }

    #[test]
    fn an_image_keeps_its_entrypoint_and_command_apart() {
        let mut w = WorkloadSpec::new("a", Source::Image("nginx:1".into()));
        w.entrypoint = Some(vec!["/init".into()]);
        w.command = vec!["nginx".into()];
        w.workdir = Some("/srv".into());
        w.env.insert("A".into(), "1".into());
        let (docs, _) = objs(&w);
        let c = container(&docs);
        assert_eq!(c["image"], "nginx:1");
        assert_eq!(c["command"], json!(["/init"]));
        assert_eq!(c["args"], json!(["nginx"]));
        assert_eq!(c["workingDir"], "/srv");
        assert_eq!(c["env"], json!([{ "name": "A", "value": "1" }]));
    }

    #[test]
    fn health_checks_become_probes() {
        let mut w = world("a");
        w.health = Some(HealthCheck {
            probe: Probe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            interval_secs: 10,
            timeout_secs: 5,
            retries: 3,
            start_period_secs: 25,
            on_unhealthy: OnUnhealthy::Restart,
        });
        let (docs, _) = objs(&w);
        let c = container(&docs);
        let want = json!({ "httpGet": { "path": "/healthz", "port": 8080 },
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3 });
        assert_eq!(c["readinessProbe"], want);
        assert_eq!(c["livenessProbe"], want);
        assert_eq!(
            c["startupProbe"]["failureThreshold"], 3,
            "25 s in 10 s periods"
        );
        w.health.as_mut().unwrap().on_unhealthy = OnUnhealthy::None;
        w.health.as_mut().unwrap().probe = Probe::Exec(vec!["true".into()]);
        let (docs, _) = objs(&w);
        let c = container(&docs);
        assert_eq!(c["readinessProbe"]["exec"]["command"], json!(["true"]));
        assert!(c.get("livenessProbe").is_none() && c.get("startupProbe").is_none());
    }

    #[test]
    fn security_resources_and_users() {
        let mut w = world("a");
        w.readonly_rootfs = true;
        w.userns = true;
        w.user = Some("999:998".into());
        w.resources.memory = Some(64 << 20);
        w.resources.cpus = Some(0.25);
        w.resources.disk = Some(1 << 30);
        let (docs, unmapped) = objs(&w);
        assert!(unmapped.is_empty(), "{unmapped:?}");
        let c = container(&docs);
        assert_eq!(
            c["securityContext"],
            json!({ "readOnlyRootFilesystem": true, "runAsUser": 999, "runAsGroup": 998 })
        );
        assert_eq!(
            c["resources"]["limits"],
            json!({ "memory": "64Mi", "cpu": "250m", "ephemeral-storage": "1Gi" })
        );
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            ["/tmp", "/var/tmp", "/run"],
            "warren keeps these writable"
        );
        let pod = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(pod["hostUsers"], false);
        w.user = Some("www-data".into());
        assert_eq!(objs(&w).1, ["workload.a.user"]);
    }

    #[test]
    fn ports_services_and_ingress() {
        let mut w = world("git");
        w.ports = vec![
            PortMapping::parse("127.0.0.1:2222:22").unwrap(),
            PortMapping::parse("5353:53/udp").unwrap(),
        ];
        w.route.domains = vec!["git.example".into()];
        w.route.port = Some(3000);
        w.route.path = "/git".into();
        w.route.tls = TlsChoice::Local;
        w.route.max_body = Some(1 << 20);
        let (docs, _) = objs(&w);
        let c = container(&docs);
        assert_eq!(
            c["ports"][0],
            json!({ "containerPort": 22, "hostPort": 2222, "hostIP": "127.0.0.1", "name": "p22", "protocol": "TCP" })
        );
        assert_eq!(c["ports"][1]["protocol"], "UDP");
        assert_eq!(
            c["ports"][2],
            json!({ "containerPort": 3000, "name": "http", "protocol": "TCP" })
        );
        let names: Vec<&str> = kind(&docs, "Service")["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["p22", "u53", "http"]);
        let ing = kind(&docs, "Ingress");
        assert_eq!(ing["spec"]["rules"][0]["host"], "git.example");
        let path = &ing["spec"]["rules"][0]["http"]["paths"][0];
        assert_eq!(path["path"], "/git");
        assert_eq!(path["backend"]["service"]["port"]["number"], 3000);
        assert_eq!(ing["spec"]["tls"][0]["secretName"], "git-tls");
        assert_eq!(
            ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"],
            "1048576"
        );
    }

    #[test]
    fn networks_and_restarts_that_do_not_map() {
        let mut w = world("a");
        w.network = NetworkMode::Host;
        let (docs, _) = objs(&w);
        assert_eq!(
            kind(&docs, "Deployment")["spec"]["template"]["spec"]["hostNetwork"],
            true
        );
        w.network = NetworkMode::None;
        w.restart = RestartPolicy::Never;
        assert_eq!(objs(&w).1, ["workload.a.network", "workload.a.restart"]);
        w.route.domains = vec!["a.example".into()];
        w.route.port = Some(80);
        let (docs, _) = objs(&w);
        assert!(
            docs.iter().all(|d| d["kind"] != "Ingress"),
            "no network, no route"
        );
    }

    #[test]
    fn vms_and_jails_are_skipped_and_said_so() {
        let mut spec = SpecFile::default();
        let mut vm = world("vm");
        vm.kind = Kind::Vm;
        spec.workloads.insert("vm".into(), vm);
        spec.workloads.insert("ok".into(), world("ok"));
        let e = export(&spec);
        assert_eq!(e.skipped.len(), 1);
        assert!(e.files[0]
            .text
            .contains("# Skipped: workload vm skipped: a VM"));
        assert_eq!(objects(&spec).len(), 1);
    }

    #[test]
    fn yaml_is_block_style_sorted_and_quoted() {
        let v = json!({
            "b": [{ "y": 1, "x": ["p", "q"] }, "s"],
            "a": { "k": "line\nbreak \"q\"", "e": [], "o": {} },
            "weird key": true,
            "c": "del\u{7f}",
        });
        let mut out = String::new();
        yaml(&v, 0, &mut out);
        assert_eq!(
            out,
            "a:\n  e: []\n  k: \"line\\nbreak \\\"q\\\"\"\n  o: {}\nb:\n- x:\n  - \"p\"\n  - \"q\"\n  y: 1\n- \"s\"\nc: \"del\\u007F\"\n\"weird key\": true\n"
        );
    }

    /// A YAML node as the JSON value it stands for: quoted scalars are strings, plain ones
    /// numbers, booleans or null.
    fn from_yaml(n: &crate::compose::yaml::Node) -> Value {
        use crate::compose::yaml::Value as Y;
        match &n.value {
            Y::Scalar { text, plain: false } => json!(text),
            Y::Scalar { text, plain: true } => serde_json::from_str(text)
                .unwrap_or_else(|_| panic!("plain scalar {text:?} at {:?}", n.at)),
            Y::Seq(items) => Value::Array(items.iter().map(from_yaml).collect()),
            Y::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), from_yaml(v)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_yaml_text_reads_back_as_the_objects() {
        for (name, text) in [
            ("homelab", include_str!("../../../../examples/homelab.toml")),
            (
                "kitchen-sink",
                include_str!("../../tests/export/kitchen-sink.toml"),
            ),
        ] {
            let spec = crate::parse_spec(text, name).expect("parses").spec;
            let file = &export(&spec).files[0].text;
            let docs: Vec<&str> = file.split("\n---\n").skip(1).collect();
            let want = objects(&spec);
            assert_eq!(docs.len(), want.len(), "{name}");
            for (doc, want) in docs.iter().zip(&want) {
                let node = crate::compose::yaml::parse(doc)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}\n{doc}"));
                assert_eq!(&from_yaml(&node), want, "{name}");
            }
        }
    }
}
