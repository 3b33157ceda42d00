//! The OpenAPI 3.1 document of the API, generated from the code: the routes come from the same
//! [`api!`](crate::api) declarations that build the routers (so a route cannot exist without
//! its documentation), and the request and response schemas from the Rust types with
//! `schemars`. The checked-in copy is `docs/openapi.json`; a test fails when it is stale
//! (`WARREN_BLESS=1 cargo test -p warren openapi` rewrites it).

use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The local socket (root on the host) or the remote API with an operator token.
    Token,
    /// The remote API without a token (enrolment and the host's identity).
    Open,
    /// The local socket only.
    Local,
}

/// What a request or response carries.
pub enum Payload {
    None,
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// Newline-delimited JSON, one value per line.
    Ndjson(fn(&mut SchemaGenerator) -> Schema),
    /// Bytes of the given media type.
    Binary(&'static str),
    /// A connection upgraded to warren's framed stream protocol.
    Upgrade,
}

/// One documented operation.
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub query: &'static [(&'static str, &'static str)],
    pub request: Payload,
    pub response: Payload,
}

/// Declares routes once for both the router and the document:
/// `METHOD "PATH" => handler, Access, "summary", query [..], request PAYLOAD, response PAYLOAD;`
#[macro_export]
macro_rules! api {
    ($routes:ident, $ops:ident, $state:ty;
     $( $m:ident $path:literal => $handler:path, $access:ident, $summary:literal,
        [$($q:literal : $qd:literal),*], $req:expr, $resp:expr; )*) => {
        fn $routes() -> axum::Router<$state> {
            let r = axum::Router::new();
            $( let r = r.route($path, axum::routing::$m($handler)); )*
            r
        }
        /// The operations this module serves, for the OpenAPI document.
        pub fn $ops() -> Vec<$crate::daemon::openapi::Op> {
            use $crate::daemon::openapi::{Access, Op};
            #[allow(unused_imports)]
            use $crate::daemon::openapi::Payload::*;
            vec![ $( Op {
                method: stringify!($m),
                path: $path,
                summary: $summary,
                access: Access::$access,
                query: &[$(($q, $qd)),*],
                request: $req,
                response: $resp,
            } ),* ]
        }
    };
}

/// `Payload::Json` of a type.
#[macro_export]
macro_rules! json_of {
    ($t:ty) => {
        $crate::daemon::openapi::Payload::Json(|g| g.subschema_for::<$t>())
    };
}

/// `Payload::Ndjson` of a type.
#[macro_export]
macro_rules! ndjson_of {
    ($t:ty) => {
        $crate::daemon::openapi::Payload::Ndjson(|g| g.subschema_for::<$t>())
    };
}

fn content(p: &Payload, g: &mut SchemaGenerator) -> Option<Value> {
    match p {
        Payload::None => None,
        Payload::Json(f) => Some(json!({ "application/json": { "schema": f(g) } })),
        Payload::Ndjson(f) => Some(json!({ "application/x-ndjson": { "schema": f(g) } })),
        Payload::Binary(mt) => {
            Some(json!({ *mt: { "schema": { "type": "string", "format": "binary" } } }))
        }
        Payload::Upgrade => None,
    }
}

/// The whole document for `ops`.
pub fn document(ops: &[Op]) -> Value {
    let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths: Map<String, Value> = Map::new();
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.path, o.method));
    for op in sorted {
        let mut o = Map::new();
        o.insert("summary".into(), json!(op.summary));
        o.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                op.method,
                op.path
                    .replace("/v1/", "_")
                    .replace(['/', '-'], "_")
                    .replace(['{', '}'], "")
            )),
        );
        let mut params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|c| c.strip_prefix('{').and_then(|c| c.strip_suffix('}')))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        params.extend(op.query.iter().map(|(name, desc)| {
            json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": { "type": "string" } })
        }));
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(c) = content(&op.request, &mut g) {
            o.insert(
                "requestBody".into(),
                json!({ "required": true, "content": c }),
            );
        }
        let mut responses = Map::new();
        match &op.response {
            Payload::Upgrade => {
                responses.insert(
                    "101".into(),
                    json!({ "description": "switched to warren's framed stream protocol (Upgrade: warren-stream)" }),
                );
            }
            p => {
                let mut ok = json!({ "description": "success" });
                if let Some(c) = content(p, &mut g) {
                    ok["content"] = c;
                }
                responses.insert("200".into(), ok);
            }
        }
        responses.insert(
            "default".into(),
            json!({ "description": "an error", "content": { "application/json": { "schema": g.subschema_for::<crate::wire::ErrorBody>() } } }),
        );
        if op.access == Access::Token {
            responses.insert(
                "401".into(),
                json!({ "description": "remote request without a valid, fresh operator token" }),
            );
        }
        o.insert("responses".into(), Value::Object(responses));
        match op.access {
            Access::Token => {
                o.insert("security".into(), json!([{ "operatorToken": [] }]));
            }
            Access::Open => {
                o.insert("security".into(), json!([]));
            }
            Access::Local => {
                o.insert("security".into(), json!([]));
                o.insert("x-warren-local-only".into(), json!(true));
            }
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = Value::Object(o);
    }
    let schemas: Map<String, Value> = g
        .take_definitions(true)
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "warren API",
            "version": "1",
            "description": "The same API on the local Unix socket (root on the host) and, over TLS 1.3, on the remote listener. Remote requests carry `Authorization: Bearer TOKEN`: a compact JWT signed with the operator's Ed25519 key (alg EdDSA, kid = key fingerprint, aud = host id, lifetime at most 300 s, unique jti, single use)."
        },
        "servers": [{ "url": "https://HOST:7443" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "operatorToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)" }
            }
        }
    })
}

/// Every operation of the daemon.
pub fn all_ops() -> Vec<Op> {
    let mut ops = super::api::ops();
    ops.extend(super::remote::ops());
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_current() {
        let doc = document(&all_ops());
        let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("WARREN_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == text,
            "docs/openapi.json is stale: regenerate it with `WARREN_BLESS=1 cargo test -p warren openapi` and review the diff"
        );
    }

    #[test]
    fn every_operation_is_unique_and_described() {
        let ops = all_ops();
        let mut seen = std::collections::BTreeSet::new();
        for op in &ops {
            assert!(
                seen.insert((op.path, op.method)),
                "{} {} twice",
                op.method,
                op.path
            );
            assert!(op.path.starts_with("/v1/"), "{}", op.path);
            assert!(
                !op.summary.is_empty() && op.summary.len() < 200,
                "{}",
                op.path
            );
        }
        let doc = document(&ops);
        assert!(
            doc["paths"]["/v1/workloads"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]
                .is_object()
        );
        assert!(doc["components"]["schemas"]["WorkloadSpec"].is_object());
    }
}
