//! The remote API: the same HTTP/JSON API (and its upgraded streams) over TLS 1.3 on
//! `--listen` (default `0.0.0.0:7443`), every request authenticated by a fresh EdDSA token
//! (see `warren_auth::token`).
//!
//! - On first start the host identity is created (`<state>/remote/`) and the **claim window**
//!   opens for 30 minutes with a new claim code, printed in the log; root on the host reads it
//!   with `warren daemon claim-code` and reopens the window with `warren daemon reset-auth`
//!   (both on the local socket only).
//! - `GET /v1/auth/info` (no token) tells the host id, so a client can address its tokens.
//! - `POST /v1/auth/enroll` (no token) enrolls an operator key with the claim code, only while
//!   the window is open; success closes the window.
//! - Every other remote request needs `Authorization: Bearer TOKEN`; refusals are 401 with no
//!   detail (the reason is logged), and repeated failures from one address are refused with
//!   429 for a growing time.
//! - Keys are listed, added and revoked with `/v1/auth/keys` (remote with a token, or local).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use warren_model::event::EventKind;

use anyhow::{Context, Result};
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use warren_auth::ratelimit::RateLimiter;
use warren_auth::tls::HostIdentity;
use warren_auth::token::{PublicKey, ReplayCache};
use warren_store::{OperatorKeyRow, Store};

use super::engine::Engine;
use super::error::{ApiError, ApiJson, ErrorKind};

const CLAIM_CODE: &str = "claim_code";
const CLAIM_OPENED: &str = "claim_opened_at";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The remote side's state.
pub struct Remote {
    pub identity: HostIdentity,
    replay: Mutex<ReplayCache>,
    limiter: Mutex<RateLimiter>,
}

/// The client's address, per connection.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// Loads (or creates, opening the claim window) the host identity.
pub fn init(state_dir: &std::path::Path, store: &Store) -> Result<Arc<Remote>> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let (identity, created) = HostIdentity::load_or_create(&state_dir.join("remote"), &host)
        .context("the remote API's host identity")?;
    if created {
        open_claim_window(store)?;
    }
    Ok(Arc::new(Remote {
        identity,
        replay: Mutex::new(ReplayCache::new()),
        limiter: Mutex::new(RateLimiter::new()),
    }))
}

/// Opens a new claim window with a new code; returns the code.
pub fn open_claim_window(store: &Store) -> Result<String> {
    let code = warren_auth::claim::new_code();
    store.set_meta(&[
        (CLAIM_CODE, Some(&code)),
        (CLAIM_OPENED, Some(&now().to_string())),
    ])?;
    Ok(code)
}

/// The claim code and when its window closes, while it is open.
pub fn claim_state(store: &Store) -> Result<Option<(String, u64)>> {
    let opened: Option<u64> = store.meta(CLAIM_OPENED)?.and_then(|v| v.parse().ok());
    let code = store.meta(CLAIM_CODE)?;
    Ok(match (code, opened) {
        (Some(c), Some(o)) if warren_auth::claim::window_open(Some(o), now()) => {
            Some((c, o + warren_auth::claim::CLAIM_WINDOW))
        }
        _ => None,
    })
}

/// Binds the remote API's address, at the daemon's start: an address another process holds
/// is an error naming the remedy, so a daemon never runs on without the API it was asked for.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "address {addr} in use by another process; pass --listen ADDR:PORT \
                 (or --listen none), or stop it"
            )
        } else {
            anyhow::anyhow!(
                "cannot listen on {addr} for the remote API: {e} (--listen ADDR:PORT or --listen none)"
            )
        }
    })
}

/// Serves the remote API on `listener` (from [`bind`]) until `shutdown` resolves.
pub async fn serve(
    engine: Arc<Engine>,
    remote: Arc<Remote>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(remote.identity.server_config()?));
    let router = remote_router(engine.clone(), remote.clone());
    let _ = engine.telemetry.remote.set(super::telemetry::RemoteFacts {
        address: addr.to_string(),
        host_id: remote.identity.host_id.to_string(),
        fingerprint: remote.identity.fingerprint().to_string(),
    });
    let msg = EventKind::RemoteApiListening {
        address: addr.to_string(),
        host_id: remote.identity.host_id.to_string(),
        fingerprint: remote.identity.fingerprint().to_string(),
    };
    engine.event(None, msg);
    if let Some((code, until)) = claim_state(&engine.store)? {
        tracing::warn!(
            "claim code {code}: `warren adopt` accepts it until {} (unix time; {} s from now)",
            until,
            until.saturating_sub(now())
        );
    }
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("remote API accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    let router = router.clone();
                    async move {
                        use tower::ServiceExt;
                        router.oneshot(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("remote connection from {peer}: {e}");
            }
        });
    }
}

#[derive(Clone)]
struct RemoteState {
    engine: Arc<Engine>,
    remote: Arc<Remote>,
}

fn remote_router(engine: Arc<Engine>, remote: Arc<Remote>) -> Router {
    let state = RemoteState {
        engine: engine.clone(),
        remote,
    };
    let authed = super::api::router(engine.clone())
        .merge(keys_router(engine))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    open_routes().with_state(state).merge(authed)
}

/// The key-management routes, on both the local socket and the remote API.
pub fn keys_router(engine: Arc<Engine>) -> Router {
    keys_routes().with_state(engine)
}

/// The local-only routes (root on the host), with the key routes and the OpenAPI document.
pub fn local_router(engine: Arc<Engine>) -> Router {
    local_routes()
        .with_state(engine.clone())
        .merge(keys_router(engine))
        .route("/v1/openapi.json", axum::routing::get(openapi_doc))
}

async fn openapi_doc() -> Json<crate::wire::OpenApiDocument> {
    match super::openapi::document(&super::openapi::all_ops()) {
        serde_json::Value::Object(m) => Json(crate::wire::OpenApiDocument(m)),
        _ => unreachable!("the OpenAPI document is an object"),
    }
}

/// Every operation this module serves.
pub fn ops() -> Vec<super::openapi::Op> {
    let mut v = open_ops();
    v.extend(keys_ops());
    v.extend(local_ops());
    v
}

crate::api! { open_routes, open_ops, RemoteState;
    get "/v1/openapi.json" => openapi_doc, Open, "This API's OpenAPI document; no token needed", [],
        None, crate::json_of!(crate::wire::OpenApiDocument);
    get "/v1/auth/info" => info, Open, "The host id (the audience of tokens) and certificate fingerprint; no token needed", [],
        None, crate::json_of!(AuthInfo);
    post "/v1/auth/enroll" => enroll, Open, "Enroll an operator key with the claim code, while the claim window is open; closes the window", [],
        crate::json_of!(EnrollRequest), crate::json_of!(crate::wire::Enrolled);
}

crate::api! { keys_routes, keys_ops, Arc<Engine>;
    get "/v1/auth/keys" => list_keys, Token, "Enrolled operator keys", [],
        None, crate::json_of!(Vec<OperatorKeyRow>);
    post "/v1/auth/keys" => add_key, Token, "Enroll another operator key", [],
        crate::json_of!(AddKey), crate::json_of!(OperatorKeyRow);
    delete "/v1/auth/keys/{fingerprint}" => revoke_key, Token, "Revoke an operator key", [],
        None, crate::json_of!(crate::wire::Revoked);
}

crate::api! { local_routes, local_ops, Arc<Engine>;
    get "/v1/auth/claim-code" => claim_code, Local, "The claim code and when its window closes (local socket only)", [],
        None, crate::json_of!(crate::wire::ClaimWindow);
    post "/v1/auth/reset" => reset, Local, "Open a new claim window with a new claim code (local socket only)", [],
        None, crate::json_of!(crate::wire::ClaimWindow);
}

fn unauthorized() -> Response {
    (
        ErrorKind::Unauthorized.status(),
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "unauthorized: a valid, fresh operator token is required" })),
    )
        .into_response()
}

fn too_many(wait: u64) -> Response {
    (
        ErrorKind::RateLimited.status(),
        [(header::RETRY_AFTER, wait.to_string())],
        Json(
            serde_json::json!({ "error": format!("too many failed attempts; retry in {wait} s") }),
        ),
    )
        .into_response()
}

/// The token check in front of every authenticated remote route.
async fn authenticate(State(s): State<RemoteState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let t = now();
    if let Err(wait) = s
        .remote
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(ip, t)
    {
        return too_many(wait);
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let result = match token {
        None => Err("no token".to_string()),
        Some(token) => match s.engine.store.operator_keys() {
            Err(e) => Err(format!("reading keys: {e}")),
            Ok(keys) => {
                let lookup = |kid: &str| {
                    keys.iter()
                        .find(|k| k.fingerprint == kid)
                        .and_then(|k| PublicKey::decode(&k.public_key).ok())
                };
                let mut replay = s.remote.replay.lock().unwrap_or_else(|p| p.into_inner());
                warren_auth::token::verify(
                    &token,
                    &s.remote.identity.host_id,
                    t,
                    &lookup,
                    &mut replay,
                )
                .map_err(|e| e.to_string())
            }
        },
    };
    {
        let mut limiter = s.remote.limiter.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => limiter.success(ip),
            Err(why) => {
                limiter.failure(ip, t);
                tracing::warn!("remote request from {ip} refused: {why}");
            }
        }
    }
    match result {
        Ok(_) => next.run(req).await,
        Err(_) => unauthorized(),
    }
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuthInfo {
    pub host_id: String,
    pub fingerprint: String,
}

async fn info(State(s): State<RemoteState>) -> Json<AuthInfo> {
    Json(AuthInfo {
        host_id: s.remote.identity.host_id.clone(),
        fingerprint: s.remote.identity.fingerprint(),
    })
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnrollRequest {
    pub public_key: String,
    pub claim_code: String,
    pub name: String,
}

async fn enroll(
    State(s): State<RemoteState>,
    req: Request,
) -> Result<Json<crate::wire::Enrolled>, Response> {
    let ip = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let t = now();
    if let Err(wait) = s
        .remote
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(ip, t)
    {
        return Err(too_many(wait));
    }
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| {
            ApiError::new(ErrorKind::BadRequest, "unreadable request body").into_response()
        })?;
    let body: EnrollRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(ErrorKind::BadRequest, format!("bad enrolment request: {e}")).into_response()
    })?;
    let fail = |kind: ErrorKind, msg: &str| {
        s.remote
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failure(ip, t);
        tracing::warn!("enrolment from {ip} refused: {msg}");
        ApiError::new(kind, msg).into_response()
    };
    let Some((code, _)) =
        claim_state(&s.engine.store).map_err(|e| ApiError::from(e).into_response())?
    else {
        return Err(fail(
            ErrorKind::Forbidden,
            "the claim window is closed: root on the host reopens it with `warren daemon reset-auth`",
        ));
    };
    if !warren_auth::claim::matches(&code, &body.claim_code) {
        return Err(fail(ErrorKind::Forbidden, "wrong claim code"));
    }
    let key = PublicKey::decode(&body.public_key)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()).into_response())?;
    let row = OperatorKeyRow {
        fingerprint: key.fingerprint(),
        public_key: key.encode(),
        name: clean_name(&body.name),
        added_ms: warren_store::now_ms(),
    };
    s.engine
        .store
        .add_operator_key(&row, &[CLAIM_CODE, CLAIM_OPENED])
        .map_err(|e| ApiError::from(e).into_response())?;
    s.remote
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .success(ip);
    s.engine.event(
        None,
        EventKind::KeyEnrolled {
            fingerprint: row.fingerprint.clone(),
            name: row.name.clone(),
            from: ip.to_string(),
        },
    );
    Ok(Json(crate::wire::Enrolled {
        host_id: s.remote.identity.host_id.clone(),
        fingerprint: row.fingerprint,
    }))
}

fn clean_name(name: &str) -> String {
    let n: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    if n.trim().is_empty() {
        "operator".into()
    } else {
        n
    }
}

async fn list_keys(State(e): State<Arc<Engine>>) -> Result<Json<Vec<OperatorKeyRow>>, ApiError> {
    Ok(Json(e.store.operator_keys()?))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct AddKey {
    public_key: String,
    #[serde(default)]
    name: String,
}

async fn add_key(
    State(e): State<Arc<Engine>>,
    ApiJson(body): ApiJson<AddKey>,
) -> Result<Json<OperatorKeyRow>, ApiError> {
    let key = PublicKey::decode(&body.public_key)
        .map_err(|x| ApiError::new(ErrorKind::BadRequest, x.to_string()))?;
    let row = OperatorKeyRow {
        fingerprint: key.fingerprint(),
        public_key: key.encode(),
        name: clean_name(&body.name),
        added_ms: warren_store::now_ms(),
    };
    if !e.store.add_operator_key(&row, &[])? {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("key {} is already enrolled", row.fingerprint),
        ));
    }
    e.event(
        None,
        EventKind::KeyAdded {
            fingerprint: row.fingerprint.clone(),
            name: row.name.clone(),
        },
    );
    Ok(Json(row))
}

async fn revoke_key(
    State(e): State<Arc<Engine>>,
    Path(fingerprint): Path<String>,
) -> Result<Json<crate::wire::Revoked>, ApiError> {
    if !e.store.revoke_operator_key(&fingerprint)? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no enrolled key {fingerprint}"),
        ));
    }
    e.event(
        None,
        EventKind::KeyRevoked {
            fingerprint: fingerprint.to_string(),
        },
    );
    Ok(Json(crate::wire::Revoked {
        revoked: fingerprint,
    }))
}

/// The fingerprint of the host certificate, for root to compare with what `adopt` shows.
fn host_fingerprint(e: &Engine) -> Option<String> {
    let pem = std::fs::read_to_string(e.cfg.state_dir.join("remote/host.crt")).ok()?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(warren_auth::tls::fingerprint(&der))
}

async fn claim_code(
    State(e): State<Arc<Engine>>,
) -> Result<Json<crate::wire::ClaimWindow>, ApiError> {
    match claim_state(&e.store)? {
        Some((code, until)) => Ok(Json(crate::wire::ClaimWindow {
            code,
            until,
            fingerprint: host_fingerprint(&e),
        })),
        None => Err(ApiError::new(
            ErrorKind::Conflict,
            "the claim window is closed; `warren daemon reset-auth` opens a new one",
        )),
    }
}

async fn reset(State(e): State<Arc<Engine>>) -> Result<Json<crate::wire::ClaimWindow>, ApiError> {
    let code = open_claim_window(&e.store)?;
    let until = now() + warren_auth::claim::CLAIM_WINDOW;
    e.event(None, EventKind::ClaimReopened);
    tracing::warn!("claim code {code}: `warren adopt` accepts it for 30 minutes");
    Ok(Json(crate::wire::ClaimWindow {
        code,
        until,
        fingerprint: host_fingerprint(&e),
    }))
}
