//! Access modes, session tokens and password hashing.
//!
//! Session tokens are stateless: `v1.<payload>.<mac>` where the payload (base64url)
//! holds the user id, an expiry and a random nonce, and the mac is HMAC-SHA256 under the
//! server secret. Any process that shares the secret verifies them without a lookup
//! other than "does this user still exist", so deleting a user revokes their tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use kurz_schemas::{Id, Ts};
use kurz_storage::ReadStore;
use kurz_web::ApiError;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The replaced service's trust-the-network mode: no token anywhere.
    Open,
    /// Reads are public; every write needs a bearer token.
    Token,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(AuthMode::Open),
            "token" => Ok(AuthMode::Token),
            other => Err(format!("KURZ_AUTH must be 'token' or 'open', not '{other}'")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// Open mode: may do everything.
    Anyone,
    Admin,
    User(Id),
}

impl Principal {
    pub fn actor(self) -> kurz_schemas::Actor {
        match self {
            Principal::Anyone => kurz_schemas::Actor::Anonymous,
            Principal::Admin => kurz_schemas::Actor::Admin,
            Principal::User(id) => kurz_schemas::Actor::User(id),
        }
    }

    /// The owner a link command must match (`None`: no ownership check).
    pub fn owner(self) -> Option<Id> {
        match self {
            Principal::User(id) => Some(id),
            _ => None,
        }
    }

    /// A stable name used to scope idempotency keys.
    pub fn scope(self) -> String {
        match self {
            Principal::Anyone => "anyone".into(),
            Principal::Admin => "admin".into(),
            Principal::User(id) => format!("user:{id}"),
        }
    }

    pub fn require_admin(self) -> Result<(), ApiError> {
        match self {
            Principal::Anyone | Principal::Admin => Ok(()),
            Principal::User(_) => Err(ApiError::Forbidden("this operation needs the admin token".into())),
        }
    }

    pub fn require_self(self, user: Id) -> Result<(), ApiError> {
        match self {
            Principal::User(me) if me != user => Err(ApiError::Forbidden("a user may only change their own record".into())),
            _ => Ok(()),
        }
    }
}

/// Session lifetime.
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

pub struct Auth {
    pub mode: AuthMode,
    admin_token: Option<String>,
    secret: Vec<u8>,
}

impl Auth {
    pub fn new(mode: AuthMode, admin_token: Option<String>, secret: Vec<u8>) -> Auth {
        Auth { mode, admin_token: admin_token.filter(|t| !t.is_empty()), secret }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes any key length");
        mac.update(b"kurz-session-v1");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn issue(&self, user: Id) -> String {
        let mut payload = Vec::with_capacity(32);
        payload.extend_from_slice(&user.get().to_be_bytes());
        payload.extend_from_slice(&(Ts::now().0 + SESSION_TTL_MS).to_be_bytes());
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        payload.extend_from_slice(&nonce);
        format!("v1.{}.{}", B64.encode(&payload), B64.encode(self.mac(&payload)))
    }

    /// The user a session token names, if its mac is right and it has not expired.
    pub fn verify_session(&self, token: &str) -> Option<Id> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(p), Some(m), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return None };
        let payload = B64.decode(p).ok()?;
        let mac = B64.decode(m).ok()?;
        if payload.len() != 32 || !bool::from(self.mac(&payload).ct_eq(&mac)) {
            return None;
        }
        let user = u64::from_be_bytes(payload[0..8].try_into().ok()?);
        let exp = i64::from_be_bytes(payload[8..16].try_into().ok()?);
        if exp < Ts::now().0 {
            return None;
        }
        Id::new(user).ok()
    }

    /// Who is calling. In open mode everyone may do everything; in token mode a missing
    /// or invalid token is a 401.
    pub async fn principal(&self, headers: &axum::http::HeaderMap, store: &dyn ReadStore) -> Result<Principal, ApiError> {
        if self.mode == AuthMode::Open {
            return Ok(Principal::Anyone);
        }
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("this request needs Authorization: Bearer <token>".into()))?;
        if let Some(admin) = &self.admin_token {
            if bool::from(admin.as_bytes().ct_eq(token.as_bytes())) {
                return Ok(Principal::Admin);
            }
        }
        let user = self.verify_session(token).ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
        if store.user(user).await?.is_none() {
            return Err(ApiError::Unauthorized("invalid or expired token".into()));
        }
        Ok(Principal::User(user))
    }
}

/// argon2id with the crate's default (OWASP) parameters, off the async threads.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Verifies `password` against a PHC hash. With no hash (unknown user, or a user made
/// without a password) it still spends one hash's time, so timing does not tell which.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8rOJo6qbE3wLEr4cCvXRvE7k6P1a4kl0IXyXnXW1pn8";
        let (h, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (DUMMY, false),
        };
        let ok = PasswordHash::new(h).map(|p| argon2::Argon2::default().verify_password(password.as_bytes(), &p).is_ok()).unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_verify_and_reject_tampering() {
        let a = Auth::new(AuthMode::Token, None, b"secret".to_vec());
        let id = Id::new(42).unwrap();
        let t = a.issue(id);
        assert_eq!(a.verify_session(&t), Some(id));
        let other = Auth::new(AuthMode::Token, None, b"other".to_vec());
        assert_eq!(other.verify_session(&t), None, "another secret");
        let mut bad = t.clone();
        bad.push('x');
        assert_eq!(a.verify_session(&bad), None);
        assert_eq!(a.verify_session("v1.AAAA.BBBB"), None);
        assert_eq!(a.verify_session(""), None);
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(h.clone()), "correct horse".into()).await);
        assert!(!verify_password(Some(h), "wrong".into()).await);
        assert!(!verify_password(None, "anything".into()).await);
    }
}
