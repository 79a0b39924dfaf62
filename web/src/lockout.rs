//! Failed password guesses per key (an account, a client address, a protected link):
//! after a number of free failures in a row, the key's guesses are refused (429,
//! without running argon2) for 1 s, doubling with every further failure up to 15
//! minutes; a success clears it. Bounded: at most [`Lockout::KEYS`] keys are tracked
//! (S3-FIFO evicts the rest).

use crate::ApiError;

pub struct Lockout {
    on: bool,
    free: u32,
    what: &'static str,
    keys: quick_cache::sync::Cache<String, (u32, i64)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Lockout {
    /// Free failures of a sign-in account.
    pub const FREE_FAILURES: u32 = 5;
    pub const KEYS: usize = 100_000;
    pub const MAX_LOCK_MS: i64 = 15 * 60 * 1000;

    /// Sign-ins per account ([`Lockout::FREE_FAILURES`] free failures).
    pub fn new(on: bool) -> Lockout {
        Lockout::of("failed sign-ins for this account", on, Self::FREE_FAILURES)
    }

    /// A lockout after `free` failures in a row; `what` names the failures in the 429.
    pub fn of(what: &'static str, on: bool, free: u32) -> Lockout {
        Lockout { on, free, what, keys: quick_cache::sync::Cache::new(Self::KEYS) }
    }

    /// `Err(seconds)`: the key is locked for that long.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if !self.on {
            return Ok(());
        }
        let now = now_ms();
        match self.keys.get(key) {
            Some((_, until)) if until > now => Err(((until - now) as u64).div_ceil(1000).max(1)),
            _ => Ok(()),
        }
    }

    /// A 429 for a locked key, held before it goes out as rate-limit refusals are
    /// (`ratelimit::tarpit`), so hammering a locked key costs a timer per second.
    pub async fn refuse_if_locked(&self, key: &str) -> Result<(), ApiError> {
        if let Err(secs) = self.check(key) {
            tokio::time::sleep(crate::ratelimit::TARPIT_MAX).await;
            return Err(ApiError::TooManyRequests(secs, format!("too many {}; retry in {secs} s", self.what)));
        }
        Ok(())
    }

    pub fn failed(&self, key: &str) {
        if !self.on {
            return;
        }
        let failures = self.keys.get(key).map_or(0, |(n, _)| n) + 1;
        let until = match failures.checked_sub(self.free) {
            None => 0,
            Some(k) => now_ms() + 1000i64.saturating_mul(1i64 << k.min(20)).min(Self::MAX_LOCK_MS),
        };
        self.keys.insert(key.to_string(), (failures, until));
    }

    pub fn succeeded(&self, key: &str) {
        self.keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_its_free_failures_and_a_success_clears_it() {
        let l = Lockout::of("guesses", true, 3);
        for _ in 0..2 {
            l.failed("k");
            assert_eq!(l.check("k"), Ok(()));
        }
        l.failed("k");
        assert!(l.check("k").is_err(), "the third failure in a row locks it");
        assert_eq!(l.check("other"), Ok(()), "per key");
        l.succeeded("k");
        assert_eq!(l.check("k"), Ok(()));
        let off = Lockout::of("guesses", false, 0);
        off.failed("k");
        assert_eq!(off.check("k"), Ok(()));
    }
}
