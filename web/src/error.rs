//! The HTTP error type. The caller sees 4xx details; 5xx details are logged once, here,
//! and hidden behind a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but not acceptable, e.g. an idempotency key reused with another body.
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body did not arrive in time (`kurz_web::limits::BodyTimeout`).
    #[error("{0}")]
    RequestTimeout(String),
    /// Too many requests; retry after this many seconds.
    #[error("{1}")]
    TooManyRequests(u64, String),
    /// An answer a limiter already made (a 429 with its `RateLimit` headers).
    #[error("rate limited")]
    Limited(Box<Response>),
    /// A dependency is down; safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// The command was accepted but its outcome did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Any status the decider decided (e.g. a rejection carried through the log).
    #[error("{1}")]
    Status(u16, String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(..) | ApiError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status(s, _) => StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl From<kurz_storage::StorageError> for ApiError {
    fn from(e: kurz_storage::StorageError) -> Self {
        ApiError::Unavailable(format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Limited(resp) = self {
            return *resp;
        }
        let status = self.status();
        let message = if status.is_server_error() {
            // Logged once, here; the caller gets no internals.
            tracing::error!(event = "request_failed", status = status.as_u16(), error = %self);
            match &self {
                ApiError::Unavailable(_) => "service temporarily unavailable, retry later".to_string(),
                ApiError::Timeout(m) => m.clone(),
                _ => "internal server error".to_string(),
            }
        } else {
            self.to_string()
        };
        let mut resp = (status, Json(serde_json::json!({ "error": message }))).into_response();
        use axum::http::{header, HeaderValue};
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        match &self {
            ApiError::TooManyRequests(secs, _) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from((*secs).max(1)));
            }
            // The rest of the body may still be on its way: this connection is done.
            ApiError::RequestTimeout(_) => {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

pub async fn not_found_route() -> ApiError {
    ApiError::NotFound("not found".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::Status(405, "method not allowed".into())
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}
