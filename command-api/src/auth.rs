//! Access modes, session tokens and password hashing.
//!
//! Session tokens are signed, not stored: `v2.<kid>.<payload>.<mac>`, where the payload
//! (base64url) holds the user id, the issue time, the expiry and a random nonce (the
//! session's id), the mac is HMAC-SHA256 under the secret named by `kid` (a digest of
//! it, so `KURZ_SECRET` can be rotated while `KURZ_PREVIOUS_SECRETS` still verifies
//! older tokens). Any process that shares the secrets verifies them with one lookup,
//! the user's record, which also says which sessions ended: deleting the user ends
//! them all, a password change ends those issued before it (`User::sessions_from`),
//! a logout ends one (`User::revoked_sessions`). `v1` tokens (no key id, no issue
//! time) from before are still accepted until they expire.

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
    admin: kurz_web::admin::AdminToken,
    secret: Vec<u8>,
    /// `(key id, secret)`: the current secret first, then the previous ones, which
    /// verify sessions but sign none.
    keys: Vec<(String, Vec<u8>)>,
}

/// A verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: Id,
    pub issued: Ts,
    pub expires: Ts,
    /// The token's nonce: what a logout revokes.
    pub id: String,
}

/// A secret's key id: 8 hex digits of a digest of it, naming it in tokens without
/// revealing it.
pub fn key_id(secret: &[u8]) -> String {
    use sha2::Digest;
    let d = Sha256::new().chain_update(b"kurz-key-id").chain_update(secret).finalize();
    hex::encode(&d[..4])
}

impl Auth {
    pub fn new(mode: AuthMode, admin_token: Option<String>, secret: Vec<u8>) -> Auth {
        let keys = vec![(key_id(&secret), secret.clone())];
        Auth { mode, admin: kurz_web::admin::AdminToken::new(admin_token.as_deref()), secret, keys }
    }

    /// Secrets that verify sessions signed before a rotation (`KURZ_PREVIOUS_SECRETS`).
    pub fn with_previous(mut self, previous: &[Vec<u8>]) -> Auth {
        for p in previous.iter().filter(|p| !p.is_empty() && **p != self.secret) {
            self.keys.push((key_id(p), p.clone()));
        }
        self
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// HMAC-SHA256 under `key` of the `context` parts, then `payload`.
    fn mac(key: &[u8], context: &[&[u8]], payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
        for part in context {
            mac.update(part);
        }
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    /// A new session of `user`, issued now.
    pub fn issue(&self, user: Id) -> String {
        self.issue_at(user, Ts::now())
    }

    /// A new session of `user` issued at `issued` (never before the user's
    /// `sessions_from`, whatever this process's clock says).
    pub fn issue_at(&self, user: Id, issued: Ts) -> String {
        let mut payload = Vec::with_capacity(40);
        payload.extend_from_slice(&user.get().to_be_bytes());
        payload.extend_from_slice(&issued.0.to_be_bytes());
        payload.extend_from_slice(&(issued.0 + SESSION_TTL_MS).to_be_bytes());
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        payload.extend_from_slice(&nonce);
        let (kid, key) = &self.keys[0];
        let mac = Self::mac(key, &[b"kurz-session-v2.", kid.as_bytes()], &payload);
        format!("v2.{kid}.{}.{}", B64.encode(&payload), B64.encode(mac))
    }

    /// The session a token names, if its mac is right under a known key and it has not
    /// expired. Whether the user still accepts it is [`kurz_schemas::User::accepts_session`].
    pub fn verify(&self, token: &str) -> Option<Session> {
        let parts: Vec<&str> = token.splitn(5, '.').collect();
        let (payload, issued, exp_at) = match parts.as_slice() {
            ["v2", kid, p, m] => {
                let (_, key) = self.keys.iter().find(|(k, _)| k == kid)?;
                let payload = B64.decode(p).ok()?;
                let mac = B64.decode(m).ok()?;
                let want = Self::mac(key, &[b"kurz-session-v2.", kid.as_bytes()], &payload);
                if payload.len() != 40 || !bool::from(want.ct_eq(&mac)) {
                    return None;
                }
                let issued = i64::from_be_bytes(payload[8..16].try_into().ok()?);
                let exp = i64::from_be_bytes(payload[16..24].try_into().ok()?);
                (payload, issued, exp)
            }
            // Before key ids: signed with whichever secret was current.
            ["v1", p, m] => {
                let payload = B64.decode(p).ok()?;
                let mac = B64.decode(m).ok()?;
                if payload.len() != 32
                    || !self.keys.iter().any(|(_, k)| bool::from(Self::mac(k, &[b"kurz-session-v1"], &payload).ct_eq(&mac)))
                {
                    return None;
                }
                let exp = i64::from_be_bytes(payload[8..16].try_into().ok()?);
                (payload, exp - SESSION_TTL_MS, exp)
            }
            _ => return None,
        };
        if exp_at < Ts::now().0 {
            return None;
        }
        let user = Id::new(u64::from_be_bytes(payload[0..8].try_into().ok()?)).ok()?;
        let nonce = &payload[payload.len() - 16..];
        Some(Session { user, issued: Ts(issued), expires: Ts(exp_at), id: B64.encode(nonce) })
    }

    /// The user a session token names, if its mac is right and it has not expired.
    pub fn verify_session(&self, token: &str) -> Option<Id> {
        self.verify(token).map(|s| s.user)
    }

    /// The session of a request's bearer token that its user still accepts, or a 401.
    pub async fn session(&self, headers: &axum::http::HeaderMap, store: &dyn ReadStore) -> Result<(Session, kurz_schemas::User), ApiError> {
        self.session_of(bearer(headers)?, store).await
    }

    async fn session_of(&self, token: &str, store: &dyn ReadStore) -> Result<(Session, kurz_schemas::User), ApiError> {
        let invalid = || ApiError::Unauthorized("invalid or expired token".into());
        let session = self.verify(token).ok_or_else(invalid)?;
        let user = store.user(session.user).await?.ok_or_else(invalid)?;
        if !user.accepts_session(session.issued, &session.id) {
            return Err(invalid());
        }
        Ok((session, user))
    }

    /// Who is calling. In open mode everyone may do everything; in token mode a missing
    /// or invalid token is a 401. With an API key, also which key.
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        store: &dyn ReadStore,
    ) -> Result<(Principal, Option<UsedKey>), ApiError> {
        if self.mode == AuthMode::Open {
            return Ok((Principal::Anyone, None));
        }
        let token = bearer(headers)?;
        if self.admin.is(token) {
            return Ok((Principal::Admin, None));
        }
        if let Some((user, key_id)) = parse_api_key(token) {
            let invalid = || ApiError::Unauthorized("invalid or revoked API key".into());
            let record = store.user(user).await?.ok_or_else(invalid)?;
            let key = record.api_keys.iter().find(|k| k.id == key_id).ok_or_else(invalid)?;
            if !bool::from(api_key_hash(token).as_bytes().ct_eq(key.hash.as_bytes())) {
                return Err(invalid());
            }
            return Ok((Principal::User(user), Some(UsedKey { user, id: key.id.clone(), scope: key.scope, last_used: key.last_used_at })));
        }
        let (session, _) = self.session_of(token, store).await?;
        Ok((Principal::User(session.user), None))
    }

    /// An API key for `user`, derived from the command that creates it (so a retry of
    /// that command shows the same key): `(key id, the key, its hash)`. The key is
    /// `kurz_<user id>_<key id>_<43 characters of secret>`; only the hash is stored.
    pub fn mint_api_key(&self, user: Id, command_id: &str) -> (String, String, String) {
        let id = Self::mac(&self.secret, &[b"kurz-api-key-id"], command_id.as_bytes());
        let secret = Self::mac(&self.secret, &[b"kurz-api-key-secret"], command_id.as_bytes());
        let key_id = hex::encode(&id[..8]);
        let key = format!("{API_KEY_PREFIX}{}_{key_id}_{}", user.get(), B64.encode(secret));
        let hash = api_key_hash(&key);
        (key_id, key, hash)
    }
}

/// API keys start with this, so a key is told from a session token by its look.
pub const API_KEY_PREFIX: &str = "kurz_";

/// The API key a request used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedKey {
    pub user: Id,
    pub id: String,
    pub scope: kurz_schemas::KeyScope,
    pub last_used: Option<Ts>,
}

/// `(user, key id)` of a token that looks like an API key.
fn parse_api_key(token: &str) -> Option<(Id, &str)> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let mut parts = rest.splitn(3, '_');
    let user = Id::new(parts.next()?.parse().ok()?).ok()?;
    let key_id = parts.next().filter(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))?;
    parts.next().filter(|s| s.len() == 43)?;
    Some((user, key_id))
}

/// The stored form of an API key: SHA-256, hex. The key holds 256 random bits, so a
/// fast hash is enough (no password-hashing work factor is needed against guessing).
pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The bearer token of a request, or a 401.
fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    kurz_web::admin::bearer(headers).ok_or_else(|| ApiError::Unauthorized("this request needs Authorization: Bearer <token>".into()))
}

impl Auth {
    /// The admin token, for what else checks it (rate-limit exemption, `/health/ready`,
    /// e-mail visibility).
    pub fn admin_token(&self) -> kurz_web::admin::AdminToken {
        self.admin.clone()
    }

    /// Whether the request carries the admin token.
    pub fn is_admin(&self, headers: &axum::http::HeaderMap) -> bool {
        self.admin.allows(headers)
    }

    /// The operator routes (`/admin/*`) need the admin token in every mode: open mode
    /// opens the contract's routes, not the operator's. Without a configured admin token
    /// (open mode without `KURZ_ADMIN_TOKEN`) they are off: 404.
    pub fn require_admin_token(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        if !self.admin.is_configured() {
            return Err(ApiError::NotFound("the admin routes are off: set KURZ_ADMIN_TOKEN to use them".into()));
        }
        if self.admin.is(bearer(headers)?) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("this route needs the admin token".into()))
        }
    }
}

/// The state of routes that authenticate: where the [`Auth`] is.
pub trait HasAuth {
    fn auth(&self) -> &Auth;
}

/// Who is calling, read from the request head. axum runs head extractors before the
/// body extractor, so a route that takes a `Principal` answers 401 without reading a
/// byte of the body.
impl axum::extract::FromRequestParts<crate::AppState> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, s: &crate::AppState) -> Result<Self, ApiError> {
        let p = s.principal(&parts.headers).await?;
        // Per signed-in user: one account cannot flood the write path from many
        // addresses. The admin token is exempt (bulk loads, operators).
        if let (Principal::User(id), Some(l)) = (p, &s.limits.principal) {
            if let kurz_web::ratelimit::Checked::Refused(resp, wait) = l.check(&id.get()) {
                return Err(ApiError::Limited(Box::new(kurz_web::ratelimit::tarpit(resp, wait).await)));
            }
        }
        Ok(p)
    }
}

/// Failed sign-ins per account (`kurz_web::lockout`); protected links at the edge use
/// the same rule per address and per link.
pub use kurz_web::lockout::Lockout;

/// A request that carries the admin token ([`Auth::require_admin_token`]), checked from
/// the head before the body is read.
pub struct AdminOnly;

impl<S: HasAuth + Send + Sync> axum::extract::FromRequestParts<S> for AdminOnly {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, s: &S) -> Result<Self, ApiError> {
        s.auth().require_admin_token(&parts.headers).map(|()| AdminOnly)
    }
}

// Password hashing runs on the process's bounded pool (`kurz_web::hashing`), which
// protected links at the edge share.
pub use kurz_web::hashing::{hash_password, hashers, verify_password, MAX_WAITING_PER_HASHER};

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

    #[test]
    fn sessions_name_their_key_and_survive_a_rotation() {
        let old = b"old-secret-0123456789abcdef-0123456789".to_vec();
        let new = b"new-secret-0123456789abcdef-0123456789".to_vec();
        let before = Auth::new(AuthMode::Token, None, old.clone());
        let id = Id::new(7).unwrap();
        let t = before.issue_at(id, Ts::now());
        assert!(t.starts_with(&format!("v2.{}.", key_id(&old))), "{t}");
        let s = before.verify(&t).unwrap();
        assert_eq!(s.user, id);
        assert_eq!(s.id.len(), 22, "16 bytes of nonce, base64url");
        // Rotated with the old secret kept as previous: old sessions verify, new ones
        // are signed with the new secret.
        let rotated = Auth::new(AuthMode::Token, None, new.clone()).with_previous(std::slice::from_ref(&old));
        assert_eq!(rotated.verify(&t).map(|s| s.user), Some(id));
        let t2 = rotated.issue(id);
        assert!(t2.starts_with(&format!("v2.{}.", key_id(&new))));
        assert_eq!(before.verify(&t2), None, "the old deployment does not know the new key");
        // Dropped from the previous list: the old sessions end.
        assert_eq!(Auth::new(AuthMode::Token, None, new).verify(&t), None);
        // A token naming one key with another key's mac does not verify.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("v2.{}.{}.{}", key_id(b"other"), parts[2], parts[3]);
        assert_eq!(rotated.verify(&forged), None);
        // An expired token does not verify.
        let expired = before.issue_at(id, Ts(Ts::now().0 - SESSION_TTL_MS - 1));
        assert_eq!(before.verify(&expired), None);
    }

    #[test]
    fn api_keys_are_derived_per_command_and_parse_strictly() {
        let a = Auth::new(AuthMode::Token, None, b"secret-0123456789abcdef-0123456789".to_vec());
        let user = Id::new(42).unwrap();
        let (id, key, hash) = a.mint_api_key(user, "cmd-1");
        assert_eq!(a.mint_api_key(user, "cmd-1"), (id.clone(), key.clone(), hash.clone()), "a retry shows the same key");
        assert_ne!(a.mint_api_key(user, "cmd-2").1, key);
        assert_eq!(parse_api_key(&key), Some((user, id.as_str())));
        assert_eq!(api_key_hash(&key), hash);
        assert!(!hash.contains(&key[key.len() - 43..]));
        for bad in ["kurz_", "kurz_42", "kurz_x_0011223344556677_AAAA", "kurz_42_00112233_x", "v2.a.b.c", "kurz_0_0011223344556677_", ""] {
            assert_eq!(parse_api_key(bad), None, "{bad}");
        }
        let short_secret = format!("kurz_42_{id}_{}", "A".repeat(42));
        assert_eq!(parse_api_key(&short_secret), None);
    }
}
