//! User-agent classes: browser, OS and device from woothee's rules, plus a bot flag
//! (woothee's crawler category and common tool and bot markers). Results are cached
//! per user-agent string: a site's traffic repeats a few thousand of them. Each thread
//! keeps the last agents it saw (a direct-mapped table of [`NEAR_SLOTS`], no lock, its
//! own reference counts); behind it each classifier keeps a plain map behind a lock held
//! for one lookup, emptied when full (cheaper per click than a concurrent LRU, and the
//! working set refills it).

use kurz_schemas::{Agent, Device};
use std::sync::Arc;

const CACHE: usize = 10_000;
/// Longer headers are classified by their first bytes.
const MAX_LEN: usize = 512;

/// Markers of automated clients woothee does not call crawlers.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "headless",
    "phantomjs",
    "facebookexternalhit",
    "preview",
    "monitor",
    "uptime",
    "scan",
];

/// An agent's class and whether it is a bot, shared by every lookup that finds it.
pub type Classified = Arc<(Agent, bool)>;

/// Slots of the per-thread cache in front of each classifier's own.
const NEAR_SLOTS: usize = 64;
const _: () = assert!(NEAR_SLOTS.is_power_of_two(), "near_slot takes the hash's top bits");

/// One slot of [`NEAR`]: a header and its class.
type NearSlot = Option<(Box<str>, Classified)>;

thread_local! {
    static NEAR: std::cell::RefCell<Vec<NearSlot>> = std::cell::RefCell::new(vec![None; NEAR_SLOTS]);
}

/// A header's slot in [`NEAR`]: a multiplicative hash over its bytes eight at a time
/// (one multiply per word rather than per byte: a browser's header is 70 to 150
/// bytes, hashed on every redirect a rule reads), its top bits the slot. The slot only
/// picks where to look; the header itself is compared, so a collision costs a miss.
fn near_slot(ua: &str) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, w: u64| (h.rotate_left(23) ^ w).wrapping_mul(K);
    let mut words = ua.as_bytes().chunks_exact(8);
    let mut h = (ua.len() as u64).wrapping_mul(K);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = mix(h, u64::from_le_bytes(tail));
    (h >> (64 - NEAR_SLOTS.trailing_zeros())) as usize
}

pub struct Classifier {
    parser: woothee::parser::Parser,
    cache: std::sync::Mutex<std::collections::HashMap<Box<str>, Classified>>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new()
    }
}

impl Classifier {
    pub fn new() -> Classifier {
        Classifier { parser: woothee::parser::Parser::new(), cache: Default::default() }
    }

    /// The agent's class and whether it is a bot.
    pub fn classify(&self, ua: &str) -> (Agent, bool) {
        let got = self.shared(ua);
        (got.0.clone(), got.1)
    }

    /// [`Classifier::classify`] without copying the class: what a redirect rule reads
    /// on the request path. The lock is held for a map lookup only; an agent not yet
    /// seen is parsed outside it.
    pub fn shared(&self, ua: &str) -> Classified {
        let ua = truncate(ua, MAX_LEN);
        // A few recent agents per thread first: no lock, and a class of this thread's own,
        // so its reference count is touched by no other core. Classes depend on the
        // header alone, so every classifier may share these.
        let slot = near_slot(ua);
        if let Some(hit) = NEAR.with_borrow(|near| near[slot].as_ref().filter(|(k, _)| **k == *ua).map(|(_, c)| c.clone())) {
            return hit;
        }
        let own: Classified = Arc::new((*self.shared_by_all(ua)).clone());
        NEAR.with_borrow_mut(|near| near[slot] = Some((ua.into(), own.clone())));
        own
    }

    /// The classifier's own cache (one lock per lookup), parsing an agent not yet seen.
    fn shared_by_all(&self, ua: &str) -> Classified {
        if let Some(hit) = self.cache.lock().expect("agent cache poisoned").get(ua) {
            return hit.clone();
        }
        let got = Arc::new(self.parse(ua));
        let mut cache = self.cache.lock().expect("agent cache poisoned");
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(ua.into(), got.clone());
        got
    }

    fn parse(&self, ua: &str) -> (Agent, bool) {
        let lower = ua.to_ascii_lowercase();
        let r = self.parser.parse(ua);
        let known = |s: &str| if s.is_empty() || s == "UNKNOWN" { "other".to_string() } else { s.to_string() };
        let (browser, os, category) = match &r {
            Some(r) => (known(r.name), os_family(r.os), r.category),
            None => ("other".to_string(), "other".to_string(), ""),
        };
        let bot = category == "crawler" || BOT_MARKERS.iter().any(|m| lower.contains(m));
        let device = if bot {
            Device::Bot
        } else if r.as_ref().is_some_and(|r| r.os == "iPad")
            || lower.contains("tablet")
            || (lower.contains("android") && !lower.contains("mobile"))
        {
            Device::Tablet
        } else {
            match category {
                "pc" => Device::Desktop,
                "smartphone" | "mobilephone" => Device::Mobile,
                _ => Device::Other,
            }
        };
        (Agent { browser, os, device }, bot)
    }
}

/// OS families, not versions: woothee's `Windows 10`, `Mac OSX`, `iPhone` become
/// `Windows`, `macOS`, `iOS`.
fn os_family(os: &str) -> String {
    match os {
        "" | "UNKNOWN" => "other",
        o if o.starts_with("Windows") => "Windows",
        "Mac OSX" | "Mac OS Classic" => "macOS",
        "iPhone" | "iPad" | "iPod" => "iOS",
        o => o,
    }
    .to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents_get_their_class() {
        let c = Classifier::new();
        let cases = [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Safari", "iOS", Device::Mobile, false),
            ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "Safari", "iOS", Device::Tablet, false),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "Android", Device::Mobile, false),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "macOS", Device::Desktop, false),
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", "other", Device::Bot, true),
            ("python-requests/2.31.0", "other", "other", Device::Bot, true),
            ("something nobody knows", "other", "other", Device::Other, false),
        ];
        for (ua, browser, os, device, bot) in cases {
            let (a, b) = c.classify(ua);
            assert_eq!((a.browser.as_str(), a.os.as_str(), a.device, b), (browser, os, device, bot), "{ua}");
            assert_eq!(c.classify(ua), (a, b), "cached answer is the same");
        }
        let long = "é".repeat(1000);
        assert!(!c.classify(&long).1, "long headers are cut on a character boundary");
    }

    #[test]
    fn headers_that_differ_only_in_a_version_spread_over_the_slots() {
        // Browsers' headers share long prefixes and suffixes; a slot picked from a few of
        // their bytes would put them all in one.
        let slots: std::collections::BTreeSet<usize> = (0..NEAR_SLOTS)
            .map(|i| {
                near_slot(&format!(
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36",
                    100 + i
                ))
            })
            .collect();
        assert!(slots.len() >= NEAR_SLOTS / 2, "{} slots used of {NEAR_SLOTS}", slots.len());
        for len in 0..40 {
            assert!(near_slot(&"a".repeat(len)) < NEAR_SLOTS);
        }
    }

    #[test]
    fn the_per_thread_cache_answers_by_the_whole_header_even_when_slots_collide() {
        let c = Classifier::new();
        // More agents than slots: some share a slot, and each still gets its own class.
        let agents: Vec<String> =
            (0..3 * NEAR_SLOTS).map(|i| format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0")).collect();
        let bots: Vec<String> = (0..3 * NEAR_SLOTS).map(|i| format!("crawler-{i}/1.0")).collect();
        for _ in 0..2 {
            for (ua, bot) in agents.iter().zip(&bots) {
                assert_eq!((c.shared(ua).0.browser.as_str(), c.shared(ua).1), ("Firefox", false), "{ua}");
                assert!(c.shared(bot).1, "{bot}");
            }
        }
        let a = c.shared(&agents[0]);
        assert!(Arc::ptr_eq(&a, &c.shared(&agents[0])), "a repeated header is answered from this thread's cache");
    }
}
