//! Salted visitor hashes: `SipHash-2-4-128(day key, address ‖ 0 ‖ user agent)` in hex,
//! where the day key is the first 16 bytes of `HMAC-SHA256(secret, "kurz-visitor" ‖ UTC
//! day)`. Within a day a visitor always hashes the same (unique visitors per day);
//! across days the hashes are unrelated, and without the secret none leads back to an
//! address. The address itself is never stored or logged.
//!
//! SipHash is a keyed pseudorandom function built for short inputs: per click it costs
//! a fraction of an HMAC-SHA256 (two SHA-256 compressions), on the flusher's share of
//! the edge's cores; the once-a-day key derivation keeps HMAC-SHA256.

use hmac::{Hmac, Mac};
// The UTC day the clicks projection counts unique visitors by.
use kurz_schemas::analytics::DAY_MS;
use kurz_schemas::Ts;
use sha2::Sha256;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

pub struct VisitorHasher {
    secret: Vec<u8>,
    /// The current day's key: (day number, SipHash key).
    day: Mutex<(i64, [u8; 16])>,
}

impl VisitorHasher {
    pub fn new(secret: &[u8]) -> VisitorHasher {
        VisitorHasher { secret: secret.to_vec(), day: Mutex::new((i64::MIN, [0; 16])) }
    }

    fn day_key(&self, day: i64) -> [u8; 16] {
        let mut cur = self.day.lock().expect("visitor day key poisoned");
        if cur.0 != day {
            let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
            mac.update(b"kurz-visitor");
            mac.update(&day.to_be_bytes());
            let digest = mac.finalize().into_bytes();
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            *cur = (day, key);
        }
        cur.1
    }

    pub fn visitor(&self, at: Ts, ip: IpAddr, user_agent: &str) -> String {
        let mut h = SipHasher24::new_with_key(&self.day_key(at.0.div_euclid(DAY_MS)));
        match ip {
            IpAddr::V4(v4) => h.write(&v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.write(&[0]);
        h.write(user_agent.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(32);
        for b in h.finish128().as_bytes() {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_day_same_hash_next_day_or_other_secret_different() {
        let h = VisitorHasher::new(b"secret-a");
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        let day = Ts(1_800_000_000_000 - 1_800_000_000_000 % DAY_MS);
        let a = h.visitor(Ts(day.0 + 1_000), ip, "UA");
        assert_eq!(a, h.visitor(Ts(day.0 + DAY_MS - 1), ip, "UA"), "one visitor within a UTC day");
        assert_ne!(a, h.visitor(Ts(day.0 + DAY_MS), ip, "UA"), "unlinkable across days");
        assert_ne!(a, h.visitor(Ts(day.0 + 1_000), ip, "other UA"));
        assert_ne!(a, h.visitor(Ts(day.0 + 1_000), "198.51.100.5".parse().unwrap(), "UA"));
        assert_ne!(a, VisitorHasher::new(b"secret-b").visitor(Ts(day.0 + 1_000), ip, "UA"));
        assert!(a.len() == 32 && a.bytes().all(|b| b.is_ascii_hexdigit()));
        // An IPv4 address and its IPv6-mapped form are one visitor.
        assert_eq!(a, h.visitor(Ts(day.0 + 1_000), "::ffff:198.51.100.4".parse().unwrap(), "UA"));
    }
}
