//! Query-string parameters, parsed leniently (a malformed query never fails the
//! request) with typed getters that answer bad values as the contract says.

use crate::ApiError;
use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use std::collections::HashMap;

pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(q) = RawQuery::from_request_parts(parts, state).await?;
        let map = q.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Ok(Params(map))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// An optional integer; anything else is a 400 that names the parameter.
    pub fn id(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| ApiError::BadRequest(format!("{name} must be an integer"))),
        }
    }

    /// A strictly parsed positive integer with a default (400 if not an integer).
    pub fn strict_usize(&self, name: &str, default: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<usize>().map_err(|_| ApiError::BadRequest(format!("{name} must be an integer"))),
        }
    }

    /// `limit`: falls back to `default` when absent or not a positive integer, capped.
    pub fn limit(&self, default: usize, max: usize) -> usize {
        match self.get("limit").and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(0) | None => default,
            Some(n) => n.min(max),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(_) => Err(ApiError::BadRequest(format!("{name} must be true or false"))),
        }
    }
}
