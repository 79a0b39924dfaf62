//! Short-code generation.
//!
//! A code is also the key that routes a link's commands, so a command retried under the
//! same id must draw the same code, or the retry would land on another partition and
//! escape deduplication. Codes are therefore drawn as follows:
//! - no `Idempotency-Key`: from the OS CSPRNG (`OsRng`);
//! - with a key, or for `/shorten`: HMAC-SHA256 under the server secret of the request's
//!   identity and the attempt number: unpredictable without the secret, and the same on
//!   every retry.

use hmac::{Hmac, Mac};
use kurz_schemas::ShortCode;
use rand::RngCore;
use sha2::Sha256;

pub const DEFAULT_CODE_LEN: usize = 7;

pub fn random_code(len: usize) -> ShortCode {
    loop {
        let mut b = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut b);
        if let Some(c) = ShortCode::from_entropy(&b, len).filter(|c| ShortCode::parse(c.as_str()).is_ok()) {
            return c;
        }
    }
}

pub fn keyed_code(secret: &[u8], parts: &[&[u8]], attempt: u32, len: usize) -> ShortCode {
    let mut counter = 0u32;
    loop {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.update(&attempt.to_be_bytes());
        mac.update(&counter.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        if let Some(c) = ShortCode::from_entropy(&digest, len).filter(|c| ShortCode::parse(c.as_str()).is_ok()) {
            return c;
        }
        counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_base62_of_the_requested_length() {
        for _ in 0..100 {
            let c = random_code(DEFAULT_CODE_LEN);
            assert_eq!(c.as_str().len(), 7);
            assert!(c.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn keyed_codes_are_stable_per_input_and_differ_per_attempt_and_secret() {
        let a = keyed_code(b"s", &[b"user", b"key"], 0, 7);
        assert_eq!(a, keyed_code(b"s", &[b"user", b"key"], 0, 7));
        assert_ne!(a, keyed_code(b"s", &[b"user", b"key"], 1, 7));
        assert_ne!(a, keyed_code(b"t", &[b"user", b"key"], 0, 7));
        assert_ne!(keyed_code(b"s", &[b"ab", b"c"], 0, 7), keyed_code(b"s", &[b"a", b"bc"], 0, 7));
    }
}
