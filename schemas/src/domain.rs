//! Domains: hosts besides the default one that links may live on, and where each
//! sends a visit that reaches no link.
//!
//! A link on a domain is found by `(host, code)`: its lookup key is `host/code`
//! ([`lookup_key`]; a code never holds `/`), and its commands route by that key, so a
//! code exists once per domain and the default one. A request whose `Host` is a
//! registered domain asks for `host/code` first, then for `code` (a link on no domain
//! answers on every host, as Shlink's do). Every domain, and the default entry
//! ([`DEFAULT`]), may name three fallbacks: `base_url_redirect` (for `/`),
//! `not_found_redirect` and `expired_redirect`; a domain without one uses the
//! default's.
//!
//! The registry is one aggregate ([`DOMAINS_KEY`]): one decider partition holds every
//! domain, so [`MAX_DOMAINS`] is exact.

use crate::{OrphanKind, Ts, ValueError};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The aggregate key every domain command routes by.
pub const DOMAINS_KEY: &str = "domains";
/// The registry entry that holds the fallbacks of every host that is not a domain.
/// Not a host a domain can have: those need a dot.
pub const DEFAULT: &str = "default";
/// Domains a registry holds (the default entry not counted).
pub const MAX_DOMAINS: usize = 1000;
/// Longest host name (RFC 1035).
pub const MAX_HOST: usize = 253;

/// A domain's host name: lowercase ASCII (an international name in punycode), at least
/// two labels of letters, digits and inner `-`, no port, not an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainHost(String);

impl DomainHost {
    pub fn parse(s: &str) -> Result<DomainHost, ValueError> {
        let h = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let labels: Vec<&str> = h.split('.').collect();
        let top = labels.last().copied().unwrap_or_default();
        if h.len() > MAX_HOST || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) || top.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::BadDomain);
        }
        Ok(DomainHost(h))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainHost {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DomainHost::parse(&s)
    }
}
impl From<DomainHost> for String {
    fn from(h: DomainHost) -> String {
        h.0
    }
}
impl std::fmt::Display for DomainHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key a link is found by: its code, or `host/code` on a domain.
pub fn lookup_key<'a>(domain: Option<&str>, code: &'a str) -> Cow<'a, str> {
    match domain {
        None => Cow::Borrowed(code),
        Some(d) => Cow::Owned(format!("{d}/{code}")),
    }
}

/// A registry entry: a domain ([`DomainHost`]) or the [`DEFAULT`] one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Domain {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_redirect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found_redirect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_redirect: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

impl Domain {
    pub fn is_default(&self) -> bool {
        self.host == DEFAULT
    }

    /// This entry's own target for an orphan visit of `kind` (`/`, no link, an
    /// expired link).
    pub fn fallback(&self, kind: OrphanKind) -> Option<&str> {
        match kind {
            OrphanKind::Base => self.base_url_redirect.as_deref(),
            OrphanKind::NotFound => self.not_found_redirect.as_deref(),
            OrphanKind::Expired => self.expired_redirect.as_deref(),
        }
        .filter(|t| !t.is_empty())
    }

    /// The registry entry as the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host,
            "is_default": self.is_default(),
            "base_url_redirect": self.base_url_redirect,
            "not_found_redirect": self.not_found_redirect,
            "expired_redirect": self.expired_redirect,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercase_names_of_two_labels_or_more() {
        assert_eq!(DomainHost::parse("Go.Example.").unwrap().as_str(), "go.example");
        assert_eq!(DomainHost::parse("a-b.xn--bcher-kva.example").unwrap().as_str(), "a-b.xn--bcher-kva.example");
        let long = format!("{}.example", "a".repeat(MAX_HOST));
        for bad in [
            "",
            "default",
            "localhost",
            "go.example:8080",
            "-go.example",
            "go-.example",
            "go..example",
            "10.0.0.1",
            "[::1]",
            "bücher.example",
            "go.example/x",
            "go example.io",
            long.as_str(),
        ] {
            assert_eq!(DomainHost::parse(bad), Err(ValueError::BadDomain), "{bad}");
        }
        assert!(serde_json::from_str::<DomainHost>("\"evil:1\"").is_err(), "decoding checks too");
    }

    #[test]
    fn a_domain_link_is_found_by_host_and_code() {
        assert_eq!(lookup_key(None, "abc"), "abc");
        assert_eq!(lookup_key(Some("go.example"), "abc"), "go.example/abc");
    }

    #[test]
    fn an_empty_fallback_is_none() {
        let d = Domain {
            host: DEFAULT.into(),
            base_url_redirect: Some(String::new()),
            not_found_redirect: Some("https://x.io".into()),
            expired_redirect: None,
            created_at: Ts(0),
            updated_at: Ts(0),
        };
        assert_eq!(d.fallback(OrphanKind::Base), None);
        assert_eq!(d.fallback(OrphanKind::NotFound), Some("https://x.io"));
        assert_eq!(d.fallback(OrphanKind::Expired), None);
        assert!(d.is_default());
    }
}
