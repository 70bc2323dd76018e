//! API errors: each maps to a status and a JSON body `{"error": message}`; internal failures
//! are logged here and answered with a generic message, so nothing internal leaks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use orca_core::definition::LoadError;
use orca_runner::RunError;
use orca_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A definition that does not load or compile; the body carries its position.
    #[error("{0}")]
    Definition(Box<LoadError>),
    #[error("{0}")]
    Conflict(String),
    /// A body over its limit (413), or another rejection of the request's body.
    #[error("{message}")]
    Body { status: StatusCode, message: String },
    /// Over a tenant's quota.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    /// Anything the client cannot fix; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(super) fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Definition(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Body { status, .. } => *status,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                json!({ "error": "internal error; see the server's log" })
            }
            ApiError::Definition(e) => json!({
                "error": e.to_string(),
                "file": e.file,
                "line": e.line,
                "column": e.column,
                "field": e.field,
                "hint": e.hint,
            }),
            other => json!({ "error": other.to_string() }),
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        ApiError::Definition(Box::new(e))
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RunError::NotRunning { .. } | RunError::Leased { .. } => {
                ApiError::Conflict(e.to_string())
            }
            RunError::Definition { error, .. } => ApiError::Definition(error),
            RunError::Store(store) => store.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        ApiError::Body {
            status: e.status(),
            message: e.body_text(),
        }
    }
}

/// A JSON body that cannot be read answers 400 whatever the reason (not JSON, the wrong
/// shape, the wrong content type), so a client has one status to handle; only a body over the
/// limit keeps its 413.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::Body {
            status,
            message: e.body_text(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}
