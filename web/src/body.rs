//! Body extractors that answer every malformed body with a JSON 4xx.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

/// The raw body, with the oversize case answered as JSON 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge(crate::JSON_BODY_LIMIT)),
            Err(e) if body_timeout(&e).is_some() => Err(ApiError::RequestTimeout(body_timeout(&e).expect("checked").to_string())),
            Err(e) => Err(ApiError::BadRequest(format!("could not read request body: {}", e.body_text()))),
        }
    }
}

/// The body deadline (`crate::limits::DeadlineBody`) behind a body error, if that is
/// what ended it.
pub fn body_timeout<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a crate::limits::BodyTimeout> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<crate::limits::BodyTimeout>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// A JSON object body. Fields are read with the typed getters below, whose messages
/// name the field and the expected type.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        JsonObject::parse(&bytes)
    }
}

/// The raw body of a JSON route, read only when the request says it is JSON
/// (`application/json`, or `application/<x>+json`); anything else is a 415 before a
/// byte of the body is read. A cross-site HTML form can only send
/// `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`, so no
/// form post can write through a JSON route.
pub struct JsonBytes(pub Bytes);

/// Whether `Content-Type` names JSON.
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType("this route takes a JSON body: send Content-Type: application/json".into()));
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(JsonBytes(bytes))
    }
}

impl JsonObject {
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("request body must be a JSON object".into()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(JsonObject(m)),
            Ok(_) => Err(ApiError::BadRequest("request body must be a JSON object".into())),
            Err(e) => Err(ApiError::BadRequest(format!("request body is not valid JSON: {e}"))),
        }
    }

    /// Whether the body names `field` at all (`null` included): for updates, where a
    /// `null` clears a field and an absent one leaves it.
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// A required string field.
    pub fn str(&self, field: &str) -> Result<&str, ApiError> {
        match self.present(field) {
            None => Err(ApiError::BadRequest(format!("{field} is required"))),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
        }
    }

    /// An optional integer id; integers sent as strings of digits are accepted.
    pub fn opt_id(&self, field: &str) -> Result<Option<u64>, ApiError> {
        let bad = || ApiError::BadRequest(format!("{field} must be an integer"));
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a boolean"))),
        }
    }

    pub fn opt_array(&self, field: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a JSON array"))),
        }
    }

    pub fn opt_object(&self, field: &str) -> Result<Option<&Map<String, Value>>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a JSON object"))),
        }
    }
}
