//! Password hashing's own bounded pool, shared by every role of a process: sign-ins and
//! registrations (command-api) and password-protected links (query-edge).
//!
//! At most [`hashers`] argon2 runs at once (each takes a core for ~50 ms and 19 MiB),
//! and at most [`MAX_WAITING_PER_HASHER`] per hasher waiting; past that the caller
//! answers 429 at once. A guessing flood therefore takes at most those cores:
//! deciders, projectors and redirects keep the rest, and the blocking pool they share
//! is never filled with hashes.

use crate::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct HashPool {
    slots: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Callers that may wait for a hasher, per hasher.
pub const MAX_WAITING_PER_HASHER: usize = 16;

/// Hashers: `KURZ_PASSWORD_HASHERS`, else half the cores (at least one), so hashing
/// never takes every core.
pub fn hashers() -> usize {
    std::env::var("KURZ_PASSWORD_HASHERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get().div_ceil(2)).unwrap_or(1))
}

fn pool() -> &'static HashPool {
    static P: OnceLock<HashPool> = OnceLock::new();
    P.get_or_init(|| {
        let n = hashers();
        HashPool { slots: tokio::sync::Semaphore::new(n), waiting: Default::default(), max_waiting: n * MAX_WAITING_PER_HASHER }
    })
}

/// `kurz_password_hash_refused_total`, registered by every HTTP role at start
/// ([`crate::finish`]) so it reads 0 before the first refusal rather than being absent.
pub fn refused() -> &'static prometheus::IntCounter {
    static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
    C.get_or_init(|| {
        prometheus::register_int_counter!(
            "kurz_password_hash_refused_total",
            "Password checks (sign-ins, registrations, protected links) answered 429 because the password-hashing pool was full."
        )
        .expect("registered once")
    })
}

/// Runs `f` (an argon2 hash or verify) on the hashing pool, or answers 429.
async fn on_hash_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let p = pool();
    if p.waiting.fetch_add(1, Ordering::AcqRel) >= p.max_waiting {
        p.waiting.fetch_sub(1, Ordering::AcqRel);
        refused().inc();
        // Held before the answer, as rate-limit refusals are (`ratelimit::tarpit`).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return Err(ApiError::TooManyRequests(1, "too many password checks at once; retry in a second".into()));
    }
    let permit = p.slots.acquire().await;
    p.waiting.fetch_sub(1, Ordering::AcqRel);
    let _permit = permit.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

/// argon2id with the crate's default (OWASP) parameters, on the hashing pool.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    on_hash_pool(move || {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(ApiError::internal)
}

/// Verifies `password` against a PHC hash. With no hash (unknown user, or a user made
/// without a password) it still spends one hash's time, so timing does not tell which.
/// `Err`: the hashing pool is full (429).
pub async fn verify_password(hash: Option<String>, password: String) -> Result<bool, ApiError> {
    on_hash_pool(move || {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(h.clone()), "correct horse".into()).await.unwrap());
        assert!(!verify_password(Some(h), "wrong".into()).await.unwrap());
        assert!(!verify_password(None, "anything".into()).await.unwrap());
    }
}
