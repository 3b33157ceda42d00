//! The error every service returns to its caller: an HTTP status and a JSON body (the message
//! and, for an invalid spec, its located diagnostics). Services produce it; the HTTP front end
//! and the REPL turn it into a response or a Scheme error. It lives below both so a service
//! never reaches up into the routes for it.

use crate::wire::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use warren_model::Diagnostic;

/// An API error: status plus a JSON body.
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: msg.into(),
                diagnostics: Vec::new(),
            },
        }
    }
    pub fn not_found(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no workload named {name:?}"))
    }
    pub(crate) fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        let error = diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody { error, diagnostics },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl From<warren_store::StoreError> for ApiError {
    fn from(e: warren_store::StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
