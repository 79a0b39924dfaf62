//! Sealed personal data: what a public topic carries instead of an e-mail address, a
//! user name or a credential (crypto-shredding).
//!
//! A [`Sealed`] value is ChaCha20-Poly1305 ciphertext under its subject's 256-bit data
//! key, which lives in the key vault (`kurz_storage::vault`), never in the log. The
//! subject's id is the associated data, so a sealed value cannot be moved to another
//! subject. Erasing the key leaves every copy of the value, in the log, in consumers
//! and in backups, unreadable, while the records around it stay.
//!
//! Pure: the caller brings the key and a fresh random nonce.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

/// Ciphertext under a subject's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sealed {
    /// The subject (a random UUID) whose key seals this.
    pub subject: String,
    /// 12 bytes, base64 (standard alphabet, unpadded).
    pub nonce: String,
    /// Ciphertext and its 16-byte tag, base64 (standard alphabet, unpadded).
    pub ct: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    /// Wrong key, wrong subject, or tampered ciphertext.
    #[error("sealed value does not open under this key")]
    Forged,
}

/// Seals `plaintext` for `subject` under `key` with `nonce` (12 random bytes, never
/// reused with one key: draw them from a CSPRNG).
pub fn seal(key: &[u8; 32], nonce: [u8; 12], subject: &str, plaintext: &[u8]) -> Sealed {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: subject.as_bytes() })
        .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory input");
    Sealed { subject: subject.to_string(), nonce: B64.encode(nonce), ct: B64.encode(ct) }
}

/// Opens a sealed value with its subject's key.
pub fn open(key: &[u8; 32], sealed: &Sealed) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; 12] = B64.decode(&sealed.nonce).map_err(|_| SealError::Malformed)?.try_into().map_err(|_| SealError::Malformed)?;
    let ct = B64.decode(&sealed.ct).map_err(|_| SealError::Malformed)?;
    if ct.len() < 16 {
        return Err(SealError::Malformed);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: sealed.subject.as_bytes() }).map_err(|_| SealError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_subject() {
        let key = [7u8; 32];
        let s = seal(&key, [1; 12], "subject-a", b"ann@example.com");
        assert!(!s.ct.contains("ann") && !serde_json::to_string(&s).unwrap().contains("example.com"));
        assert_eq!(open(&key, &s).unwrap(), b"ann@example.com");
        assert_eq!(open(&[8u8; 32], &s), Err(SealError::Forged), "another key");
        let moved = Sealed { subject: "subject-b".into(), ..s.clone() };
        assert_eq!(open(&key, &moved), Err(SealError::Forged), "another subject");
        let mut tampered = B64.decode(&s.ct).unwrap();
        tampered[0] ^= 1;
        assert_eq!(open(&key, &Sealed { ct: B64.encode(tampered), ..s.clone() }), Err(SealError::Forged));
        for bad in
            [Sealed { nonce: "x".into(), ..s.clone() }, Sealed { ct: "AAAA".into(), ..s.clone() }, Sealed { ct: "!!".into(), ..s.clone() }]
        {
            assert_eq!(open(&key, &bad), Err(SealError::Malformed), "{bad:?}");
        }
        assert_ne!(seal(&key, [2; 12], "subject-a", b"ann@example.com").ct, s.ct, "another nonce, another ciphertext");
    }
}
