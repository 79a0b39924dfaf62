//! The bearer token of a request, and the operator's admin token: one parser and one
//! constant-time check, shared by the write side (`command-api`'s `Auth`), the rate
//! limits that exempt the admin, `/health/ready` and the query edge's e-mail rule.

use axum::http::HeaderMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The bearer token of a request (`Authorization: Bearer <token>`), trimmed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The admin token, if one is configured; cheap to clone.
#[derive(Clone, Default)]
pub struct AdminToken(Option<Arc<[u8]>>);

impl AdminToken {
    /// `None` or an empty token: no admin token (nobody is the admin).
    pub fn new(token: Option<&str>) -> AdminToken {
        AdminToken(token.filter(|t| !t.is_empty()).map(|t| Arc::from(t.as_bytes())))
    }

    pub fn is_configured(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `token` is the admin token, in time independent of where they differ.
    pub fn is(&self, token: &str) -> bool {
        self.0.as_ref().is_some_and(|admin| bool::from(admin.as_ref().ct_eq(token.as_bytes())))
    }

    /// Whether the request carries the admin token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.is(t))
    }
}
