//! The errors services return, and the one place they become HTTP statuses.
//!
//! Each area has a typed error (`WorkloadError`, `DatasetError`, `ImageError`, `WorldError`,
//! `ApplyError`, `TransferError`); every variant belongs to one [`ErrorKind`], and
//! [`ErrorKind::status`] is the only mapping from kinds to statuses. Services that return
//! `anyhow` carry their typed error inside it; [`classify`] finds it in the chain (and reads
//! storage, store and I/O errors: a full disk or a quota is out of space, a locked database is
//! busy), so nothing the operator can cause ends as a 500. [`ApiError`] is the wire form (the
//! status and a JSON body with the message and, for an invalid spec, its located
//! diagnostics); it lives below the routes so a service never reaches up into them for it.

use crate::wire::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use warren_model::Diagnostic;

/// What went wrong, as far as the caller can act on it; each kind has exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (bad JSON, bad query, a name or label that can never
    /// be valid): 400.
    BadRequest,
    /// No credentials or bad ones (remote API): 401.
    Unauthorized,
    /// Authenticated but not allowed (remote API): 403.
    Forbidden,
    /// The named thing does not exist: 404.
    NotFound,
    /// The request conflicts with what exists: already exists, in use, a port or domain
    /// taken, newer snapshots in the way, refused for the routing workload: 409.
    Conflict,
    /// The content is well-formed but invalid (a spec, an archive, a recipe), with located
    /// diagnostics when there is a file: 422.
    Invalid,
    /// Another operation on the same thing is in flight, or the database is locked: 423.
    Busy,
    /// Too many attempts (remote API claim): 429.
    RateLimited,
    /// A part of the daemon is not running (the REPL): 503.
    Unavailable,
    /// The storage is full or a quota is reached: 507.
    OutOfSpace,
    /// A fault of the daemon or the host, not of the request: 500.
    Internal,
}

impl ErrorKind {
    /// The one mapping from error kinds to HTTP statuses.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Busy => StatusCode::LOCKED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::OutOfSpace => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Operations on one workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("no workload named {0:?}")]
    NotFound(String),
    /// Another operation holds the workload.
    #[error("workload {0:?} is busy with another operation; try again when it finishes")]
    Busy(String),
    /// The name is taken or the workload's state is in the way.
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed on this workload (the routing workload).
    #[error("{0}")]
    Refused(String),
    /// The workload did not reach the state asked for (its start failed: see its events).
    #[error("{0}")]
    Failed(String),
}

impl WorkloadError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkloadError::NotFound(_) => ErrorKind::NotFound,
            WorkloadError::Busy(_) => ErrorKind::Busy,
            WorkloadError::Conflict(_) | WorkloadError::Refused(_) | WorkloadError::Failed(_) => {
                ErrorKind::Conflict
            }
        }
    }
}

/// Snapshots, rollback, clones and volumes.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("no workload named {0:?}")]
    NoWorkload(String),
    #[error("no volume named {0:?}")]
    NoVolume(String),
    #[error("{target} has no snapshot {label:?}")]
    NoSnapshot { target: String, label: String },
    #[error("invalid snapshot label {0:?}: use 1-64 letters, digits, '.', '_' or '-', not starting with '.'")]
    BadLabel(String),
    #[error("{0}")]
    BadName(String),
    /// Already exists, in use, or newer snapshots in the way.
    #[error("{0}")]
    Conflict(String),
}

impl DatasetError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DatasetError::NoWorkload(_)
            | DatasetError::NoVolume(_)
            | DatasetError::NoSnapshot { .. } => ErrorKind::NotFound,
            DatasetError::BadLabel(_) | DatasetError::BadName(_) => ErrorKind::BadRequest,
            DatasetError::Conflict(_) => ErrorKind::Conflict,
        }
    }
}

/// Stored images and pulls.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    BadReference(String),
    #[error("{0}")]
    NotFound(String),
    /// A workload names it.
    #[error("{0}")]
    InUse(String),
    /// The registry or the archive gave something warren cannot use.
    #[error("{0}")]
    Invalid(String),
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::BadReference(_) => ErrorKind::BadRequest,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::InUse(_) => ErrorKind::Conflict,
            ImageError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Worlds: building, importing, exporting, deleting.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A name, mirror or command that can never be valid.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Exists already, or a workload names it.
    #[error("{0}")]
    Conflict(String),
    /// The tarball or the build gave something warren cannot use.
    #[error("{0}")]
    Invalid(String),
}

impl WorldError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorldError::BadRequest(_) => ErrorKind::BadRequest,
            WorldError::NotFound(_) => ErrorKind::NotFound,
            WorldError::Conflict(_) => ErrorKind::Conflict,
            WorldError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Validating and applying a spec file.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file is invalid here: located diagnostics (parse errors, unknown worlds and images,
    /// a port or domain another workload holds, a kind this host cannot run).
    #[error("{}", join_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ApplyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApplyError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Export and import of archives.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The archive is damaged, incomplete or for something else.
    #[error("{0}")]
    Invalid(String),
    /// The storage filled up while receiving.
    #[error("{0}")]
    OutOfSpace(String),
}

impl TransferError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::BadRequest(_) => ErrorKind::BadRequest,
            TransferError::NotFound(_) => ErrorKind::NotFound,
            TransferError::Conflict(_) => ErrorKind::Conflict,
            TransferError::Invalid(_) => ErrorKind::Invalid,
            TransferError::OutOfSpace(_) => ErrorKind::OutOfSpace,
        }
    }
}

fn join_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether an OS error means the disk is full or a quota is reached.
fn io_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Whether a tool's message says the disk is full or a quota is reached (the tools report
/// ENOSPC and EDQUOT in their output, not in their exit status; zfs says "out of space" for
/// both).
pub fn text_out_of_space(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s.contains("no space left on device")
        || s.contains("disk quota exceeded")
        || s.contains("out of space")
}

pub fn storage_kind(e: &warren_storage::StorageError) -> ErrorKind {
    use warren_storage::StorageError as S;
    match e {
        S::NoSuchWorld(_) | S::NoSuchDataset(_) | S::NoSuchSnapshot { .. } => ErrorKind::NotFound,
        S::Exists(_) | S::SnapshotExists { .. } | S::NewerSnapshots { .. } => ErrorKind::Conflict,
        S::UnknownWorld(_) | S::InvalidLabel(_) => ErrorKind::BadRequest,
        S::Unsupported(_) => ErrorKind::Conflict,
        S::Io { source, .. } if io_out_of_space(source) => ErrorKind::OutOfSpace,
        S::Exec(warren_exec::ExecError::Failed { stderr, stdout, .. })
            if text_out_of_space(stderr) || text_out_of_space(stdout) =>
        {
            ErrorKind::OutOfSpace
        }
        S::Other(m) if text_out_of_space(m) => ErrorKind::OutOfSpace,
        _ => ErrorKind::Internal,
    }
}

fn store_kind(e: &warren_store::StoreError) -> ErrorKind {
    use rusqlite::ErrorCode;
    match e {
        warren_store::StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Busy,
            ErrorCode::DiskFull => ErrorKind::OutOfSpace,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// The kind of an error from a service: the first typed error in its chain decides.
pub fn classify(e: &anyhow::Error) -> ErrorKind {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<WorkloadError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<DatasetError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<ImageError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<WorldError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<ApplyError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<TransferError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<warren_storage::StorageError>() {
            return storage_kind(x);
        }
        if let Some(x) = cause.downcast_ref::<warren_store::StoreError>() {
            return store_kind(x);
        }
        if let Some(x) = cause.downcast_ref::<std::io::Error>() {
            if io_out_of_space(x) {
                return ErrorKind::OutOfSpace;
            }
        }
        if let Some(warren_exec::ExecError::Failed { stderr, .. }) = cause.downcast_ref() {
            if text_out_of_space(stderr) {
                return ErrorKind::OutOfSpace;
            }
        }
    }
    ErrorKind::Internal
}

/// The kind of `e`, or `otherwise` where nothing in its chain says (instead of a fault): for
/// errors that are the request's unless the disk filled up.
pub fn kind_or(e: &anyhow::Error, otherwise: ErrorKind) -> ErrorKind {
    match classify(e) {
        ErrorKind::Internal => otherwise,
        k => k,
    }
}

/// An API error: its kind (hence its status) plus a JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ApiError {
            kind,
            body: ErrorBody {
                error: msg.into(),
                diagnostics: Vec::new(),
            },
        }
    }
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
    pub fn not_found(name: &str) -> Self {
        WorkloadError::NotFound(name.to_string()).into()
    }
    pub(crate) fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        ApplyError::Invalid(diagnostics).into()
    }
}

macro_rules! from_typed {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::new(e.kind(), e.to_string())
            }
        }
    )*};
}
from_typed!(
    WorkloadError,
    DatasetError,
    ImageError,
    WorldError,
    TransferError
);

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let error = e.to_string();
        let ApplyError::Invalid(diagnostics) = e;
        ApiError {
            kind: ErrorKind::Invalid,
            body: ErrorBody { error, diagnostics },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if let Some(ApplyError::Invalid(d)) = e.downcast_ref::<ApplyError>() {
            return ApplyError::Invalid(d.clone()).into();
        }
        ApiError::new(classify(&e), format!("{e:#}"))
    }
}

impl From<warren_store::StoreError> for ApiError {
    fn from(e: warren_store::StoreError) -> Self {
        ApiError::new(store_kind(&e), e.to_string())
    }
}

impl From<warren_storage::StorageError> for ApiError {
    fn from(e: warren_storage::StorageError) -> Self {
        ApiError::new(storage_kind(&e), e.to_string())
    }
}

/// A JSON request body. A body that is not the JSON the route takes (unreadable, not JSON,
/// missing fields, wrong types, no JSON content type) is a 400 with the usual error body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("bad request body: {}", r.body_text()),
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<ApiError>) -> u16 {
        e.into().status().as_u16()
    }

    #[test]
    fn each_variant_maps_to_its_status() {
        let s = || "x".to_string();
        let table: Vec<(ApiError, u16)> = vec![
            (WorkloadError::NotFound(s()).into(), 404),
            (WorkloadError::Busy(s()).into(), 423),
            (WorkloadError::Conflict(s()).into(), 409),
            (WorkloadError::Refused(s()).into(), 409),
            (WorkloadError::Failed(s()).into(), 409),
            (DatasetError::NoWorkload(s()).into(), 404),
            (DatasetError::NoVolume(s()).into(), 404),
            (
                DatasetError::NoSnapshot {
                    target: s(),
                    label: s(),
                }
                .into(),
                404,
            ),
            (DatasetError::BadLabel(s()).into(), 400),
            (DatasetError::BadName(s()).into(), 400),
            (DatasetError::Conflict(s()).into(), 409),
            (ImageError::BadReference(s()).into(), 400),
            (ImageError::NotFound(s()).into(), 404),
            (ImageError::InUse(s()).into(), 409),
            (ImageError::Invalid(s()).into(), 422),
            (WorldError::BadRequest(s()).into(), 400),
            (WorldError::NotFound(s()).into(), 404),
            (WorldError::Conflict(s()).into(), 409),
            (WorldError::Invalid(s()).into(), 422),
            (ApplyError::Invalid(vec![]).into(), 422),
            (TransferError::BadRequest(s()).into(), 400),
            (TransferError::NotFound(s()).into(), 404),
            (TransferError::Conflict(s()).into(), 409),
            (TransferError::Invalid(s()).into(), 422),
            (TransferError::OutOfSpace(s()).into(), 507),
        ];
        for (e, want) in table {
            assert_eq!(e.status().as_u16(), want, "{}", e.body.error);
        }
    }

    #[test]
    fn typed_errors_inside_anyhow_keep_their_status() {
        let e = anyhow::Error::from(DatasetError::NoSnapshot {
            target: "web".into(),
            label: "x".into(),
        })
        .context("rolling back");
        assert_eq!(status(e), 404);
        let e = anyhow::Error::from(WorkloadError::Busy("web".into()));
        assert_eq!(status(e), 423);
        assert_eq!(status(anyhow::anyhow!("a real fault")), 500);
    }

    #[test]
    fn full_disks_and_quotas_are_507() {
        use warren_storage::StorageError;
        let io = |code| StorageError::Io {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(code),
        };
        assert_eq!(status(io(libc::ENOSPC)), 507);
        assert_eq!(status(io(libc::EDQUOT)), 507);
        assert_eq!(status(io(libc::EACCES)), 500);
        let failed = |stderr: &str| {
            StorageError::Exec(warren_exec::ExecError::Failed {
                argv: "btrfs subvolume snapshot a b".into(),
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: stderr.into(),
            })
        };
        assert_eq!(
            status(failed("ERROR: cannot snapshot: No space left on device")),
            507
        );
        assert_eq!(status(failed("cannot create snapshot: out of space")), 507);
        assert_eq!(status(failed("ERROR: something else")), 500);
        // Inside an anyhow chain, as the engine returns them.
        let e = anyhow::Error::from(io(libc::ENOSPC)).context("taking snapshot");
        assert_eq!(status(e), 507);
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(status(e), 507);
    }

    #[test]
    fn storage_and_store_errors_the_operator_causes_are_not_500() {
        use warren_storage::StorageError;
        assert_eq!(status(StorageError::NoSuchWorld("w".into())), 404);
        assert_eq!(
            status(StorageError::SnapshotExists {
                dataset: "d".into(),
                label: "l".into()
            }),
            409
        );
        assert_eq!(status(StorageError::InvalidLabel("x.json".into())), 400);
        let busy = warren_store::StoreError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert_eq!(status(busy), 423);
        let full = warren_store::StoreError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert_eq!(status(full), 507);
    }
}
