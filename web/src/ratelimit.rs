//! Rate limits: GCRA (governor), keyed by client address or by principal, answered
//! `429` with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy` headers
//! (draft-ietf-httpapi-ratelimit-headers).
//!
//! Limits are per process: a deployment of N processes serving one class of route lets
//! a caller through N times the configured rate at most (kurz's README has the math).
//! The client address is the peer's, or, behind a trusted proxy, the rightmost entry of
//! its header that is not itself a trusted proxy ([`ClientIp`]); never a value the
//! client chooses. IPv6 clients are keyed by their /64, the block one subscriber gets.

use crate::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A rate: `per_second` sustained, `burst` at once. Written `<per-second>:<burst>`
/// (`20:200`; `0.2:5` is one every five seconds, five at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("'{s}' is not a rate: write <per-second>:<burst>, e.g. 20:200");
        let (r, b) = s.trim().split_once(':').ok_or_else(bad)?;
        let per_second: f64 = r.trim().parse().map_err(|_| bad())?;
        let burst: u32 = b.trim().parse().map_err(|_| bad())?;
        if !(per_second.is_finite() && per_second > 0.0 && burst > 0) {
            return Err(bad());
        }
        Ok(Rate { per_second, burst })
    }
}

/// A rate that may be off: `off` or empty is none (settings that default to off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaybeRate(pub Option<Rate>);

impl std::str::FromStr for MaybeRate {
    type Err = String;
    fn from_str(s: &str) -> Result<MaybeRate, String> {
        match s.trim() {
            "" | "off" => Ok(MaybeRate(None)),
            r => r.parse().map(|r| MaybeRate(Some(r))),
        }
    }
}

/// A comma-separated list of networks; empty is none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nets(pub Vec<Net>);

impl std::str::FromStr for Nets {
    type Err = String;
    fn from_str(s: &str) -> Result<Nets, String> {
        s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::parse).collect::<Result<_, _>>().map(Nets)
    }
}

impl Rate {
    fn quota(&self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        Quota::with_period(period).expect("a positive period").allow_burst(NonZeroU32::new(self.burst).expect("burst > 0"))
    }

    /// The `RateLimit-Policy` value: the burst, over the window in which it refills.
    fn policy(&self, name: &str) -> HeaderValue {
        let window = (self.burst as f64 / self.per_second).ceil().max(1.0) as u64;
        HeaderValue::from_str(&format!("\"{name}\";q={};w={window}", self.burst)).expect("ASCII")
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One class of limit (`writes`, `auth`, `redirects`, `principal`), keyed by `K`.
pub struct Limiter<K: Hash + Eq + Clone> {
    name: &'static str,
    rate: Rate,
    inner: Keyed<K>,
    policy: HeaderValue,
    refused: prometheus::IntCounter,
}

/// A request the limit let through, or the answer to one it did not.
pub enum Checked {
    Allowed {
        remaining: u32,
    },
    /// The 429, and how long to hold it before answering ([`tarpit`]).
    Refused(Response, Duration),
}

/// The longest a refusal is held before it is answered.
pub const TARPIT_MAX: Duration = Duration::from_secs(1);

/// Holds a refused request until its allowance returns (at most [`TARPIT_MAX`]) before
/// answering. A client that ignores `Retry-After` and asks again at once would
/// otherwise turn cheap refusals into a CPU flood: held, each of its connections asks
/// about once a second, whatever its speed. A held request costs a timer, not a thread.
pub async fn tarpit(resp: Response, wait: Duration) -> Response {
    tokio::time::sleep(wait.min(TARPIT_MAX)).await;
    resp
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> {
    /// A limiter, and a task that forgets keys whose buckets are full again every 10 s
    /// (memory stays proportional to recent callers, not to every caller ever).
    pub fn new(name: &'static str, rate: Rate) -> Arc<Limiter<K>> {
        let l = Arc::new(Limiter {
            name,
            rate,
            inner: RateLimiter::dashmap(rate.quota()).with_middleware::<StateInformationMiddleware>(),
            policy: rate.policy(name),
            refused: crate::observe::rate_limited(name),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&l);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let Some(l) = weak.upgrade() else { return };
                    l.inner.retain_recent();
                    l.inner.shrink_to_fit();
                }
            });
        }
        l
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.inner.len()
    }

    /// Takes one request of `key`'s allowance.
    pub fn check(&self, key: &K) -> Checked {
        match self.inner.check_key(key) {
            Ok(snap) => Checked::Allowed { remaining: remaining(&snap) },
            Err(not_until) => {
                self.refused.inc();
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Checked::Refused(self.refusal(wait), wait)
            }
        }
    }

    /// The 429 for a caller that must wait `wait`.
    pub fn refusal(&self, wait: Duration) -> Response {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp =
            ApiError::TooManyRequests(secs, format!("too many requests ({} limit); retry in {secs} s", self.name)).into_response();
        self.headers(resp.headers_mut(), 0, secs);
        resp
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to an answer.
    pub fn headers(&self, h: &mut HeaderMap, remaining: u32, reset: u64) {
        h.insert(HeaderName::from_static("ratelimit-policy"), self.policy.clone());
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r={remaining};t={reset}", self.name)) {
            h.insert(HeaderName::from_static("ratelimit"), v);
        }
    }
}

fn remaining(s: &StateSnapshot) -> u32 {
    s.remaining_burst_capacity()
}

/// Where a request comes from: the peer address, or behind trusted proxies the address
/// they saw.
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    /// The header a trusted proxy writes the client's address into (`x-forwarded-for`,
    /// `x-real-ip`). Unset: the peer address, always.
    pub header: Option<HeaderName>,
    /// Proxies whose header is believed, as networks. Empty with a header set: every
    /// peer is a proxy (kurz is reachable only through one).
    pub trusted: Vec<Net>,
}

/// An IP network, `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (a, p) = s.split_once('/').map(|(a, p)| (a, Some(p))).unwrap_or((s, None));
        let addr: IpAddr = a.parse().map_err(|_| format!("'{s}' is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("'{s}': bad prefix length"))?,
        };
        Ok(Net { addr, prefix })
    }
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl ClientIp {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.is_empty() || self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// rightmost address in the header that is not a trusted proxy (entries left of it
    /// were written by the client and prove nothing).
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let Some(h) = &self.header else { return peer };
        if !self.trusts(peer) {
            return peer;
        }
        let mut found = peer;
        for v in headers.get_all(h).iter().rev() {
            let Ok(v) = v.to_str() else { return found };
            for entry in v.rsplit(',') {
                let Some(ip) = parse_entry(entry) else { return found };
                found = ip;
                if !(self.trusted.iter().any(|n| n.contains(ip))) {
                    return ip;
                }
            }
        }
        found
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:80`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

/// The key an address is limited under: itself for IPv4, its /64 for IPv6.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match unmap(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// Every rate limit of a process: a setting each (kurz's README, `KURZ_RATE_*`), and
/// one that turns them all off.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    /// Writes (POST, PUT, DELETE) per client address.
    pub writes: Rate,
    /// `/auth/*` per client address.
    pub auth: Rate,
    /// Redirects per client address; off unless set.
    pub redirects: Option<Rate>,
    /// Writes per signed-in user (the admin token is exempt).
    pub principal: Rate,
    pub client: ClientIp,
}

impl Default for Policy {
    /// Loose enough for a busy office behind one NAT address, tight enough that one
    /// address cannot flood the write path or try passwords at speed.
    fn default() -> Self {
        Policy {
            enabled: true,
            writes: Rate { per_second: 50.0, burst: 500 },
            auth: Rate { per_second: 2.0, burst: 30 },
            redirects: None,
            principal: Rate { per_second: 20.0, burst: 200 },
            client: ClientIp::default(),
        }
    }
}

impl Policy {
    /// The per-address limiter of one class, if limits are on.
    pub fn by_address(&self, name: &'static str, rate: Option<Rate>) -> Option<ByAddress> {
        let rate = rate.filter(|_| self.enabled)?;
        Some(ByAddress { limiter: Limiter::new(name, rate), client: Arc::new(self.client.clone()), exempt: None })
    }
}

/// A per-address limit as middleware, for a router of routes of one class.
#[derive(Clone)]
pub struct ByAddress {
    pub limiter: Arc<Limiter<IpAddr>>,
    pub client: Arc<ClientIp>,
    /// Requests the limit does not apply to, judged from the head (the operator's admin
    /// token on the write routes).
    pub exempt: Option<Exempt>,
}

/// Which requests a limit lets through uncounted, judged from the head.
pub type Exempt = Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync>;

impl ByAddress {
    /// The same limit, with `exempt` requests let through uncounted.
    pub fn exempting(mut self, exempt: impl Fn(&HeaderMap) -> bool + Send + Sync + 'static) -> ByAddress {
        self.exempt = Some(Arc::new(exempt));
        self
    }

    pub fn key(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(ip_key(self.client.of(peer, req.headers())))
    }
}

/// `axum::middleware::from_fn_with_state(ByAddress { .. }, by_address)`.
pub async fn by_address(State(l): State<ByAddress>, req: Request, next: Next) -> Response {
    if l.exempt.as_ref().is_some_and(|e| e(req.headers())) {
        return next.run(req).await;
    }
    let Some(key) = l.key(&req) else { return next.run(req).await };
    match l.limiter.check(&key) {
        Checked::Refused(r, wait) => tarpit(r, wait).await,
        Checked::Allowed { remaining } => {
            let mut resp = next.run(req).await;
            // An inner limit that refused (per user) reports its own.
            if !resp.headers().contains_key("ratelimit") {
                l.limiter.headers(resp.headers_mut(), remaining, 0);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        assert_eq!("20:200".parse::<Rate>().unwrap(), Rate { per_second: 20.0, burst: 200 });
        assert_eq!("0.2:5".parse::<Rate>().unwrap(), Rate { per_second: 0.2, burst: 5 });
        for bad in ["", "20", "0:5", "-1:5", "5:0", "x:y", "inf:3", "NaN:1"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_burst_passes_then_429_with_retry_after_and_ratelimit_headers() {
        let l = Limiter::<IpAddr>::new("test", Rate { per_second: 0.5, burst: 3 });
        let me: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut remaining = Vec::new();
        for _ in 0..3 {
            match l.check(&me) {
                Checked::Allowed { remaining: r } => remaining.push(r),
                Checked::Refused(..) => panic!("within the burst"),
            }
        }
        assert_eq!(remaining, vec![2, 1, 0]);
        let Checked::Refused(r, wait) = l.check(&me) else { panic!("past the burst") };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "one more every 2 s: {retry}");
        assert_eq!(r.headers()["ratelimit-policy"], "\"test\";q=3;w=6");
        assert_eq!(r.headers()["ratelimit"], format!("\"test\";r=0;t={retry}"));
        assert!(matches!(l.check(&other), Checked::Allowed { .. }), "another address has its own allowance");
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let xff = HeaderName::from_static("x-forwarded-for");
        let none = ClientIp::default();
        assert_eq!(none.of(peer, &h(&[("x-forwarded-for", "1.1.1.1")])), peer, "no header configured: the peer");
        let behind = ClientIp { header: Some(xff.clone()), trusted: vec!["10.0.0.0/8".parse().unwrap()] };
        assert_eq!(behind.of(peer, &h(&[("x-forwarded-for", "1.1.1.1")])), peer, "an untrusted peer's header is ignored");
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // The client wrote 6.6.6.6 itself; the proxy appended what it saw.
        assert_eq!(behind.of(proxy, &h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")])), "198.51.100.7".parse::<IpAddr>().unwrap());
        // Two trusted hops: skip the inner proxy.
        assert_eq!(
            behind.of(proxy, &h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.9.9.9")])),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Several header lines count as one list, in order.
        assert_eq!(
            behind.of(proxy, &h(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8:4711")])),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(behind.of(proxy, &h(&[("x-forwarded-for", "nonsense, 10.9.9.9")])), "10.9.9.9".parse::<IpAddr>().unwrap());
        assert_eq!(behind.of(proxy, &h(&[])), proxy, "no header: the proxy itself");
    }

    #[test]
    fn networks_and_ipv6_keys() {
        let n: Net = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()) && !n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped IPv6");
        assert!("fd00::/8".parse::<Net>().unwrap().contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Net>().is_err() && "x".parse::<Net>().is_err());
        let a = ip_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ip_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b, "one /64, one key");
        assert_ne!(a, ip_key("2001:db8:1:3::1".parse().unwrap()));
    }
}
