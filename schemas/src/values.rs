//! Validated newtypes. Construct them only through `parse`, so an invalid value cannot
//! reach a command or an event.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ValueError {
    #[error("short_code must be 3 to 32 characters of A-Z, a-z, 0-9, '-' or '_'")]
    BadShortCode,
    #[error("short_code '{0}' is reserved")]
    ReservedShortCode(String),
    #[error("domain must be a host name of two labels or more (letters, digits, inner '-'; punycode for international names), without a port, at most 253 characters")]
    BadDomain,
    #[error("email must look like name@domain and be at most 254 characters")]
    BadEmail,
    #[error("url must be an absolute http or https URL")]
    BadUrl,
    #[error("url must be at most {0} characters")]
    UrlTooLong(usize),
    #[error("url must be written scheme://host/…, not '{0}'")]
    UrlWithoutAuthority(String),
    #[error("url must not carry a user name or password (user@host)")]
    UrlWithUserinfo,
    #[error("{field} must be at most {max} {unit}")]
    TooLong { field: &'static str, max: usize, unit: &'static str },
    #[error("{field} must be nested at most {max} levels deep")]
    TooDeep { field: &'static str, max: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
}

/// Paths the HTTP API serves itself; an alias may not shadow them. Every route of one
/// static path segment must be listed here: the edge answers any other single-segment
/// `GET` as a redirect before its router ([`ShortCode::is_plain_code`]).
pub const RESERVED: &[&str] =
    &["health", "users", "urls", "events", "auth", "shorten", "links", "metrics", "api", "admin", "static", "visits", "domains"];
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShortCode(String);

impl ShortCode {
    pub fn parse(s: &str) -> Result<ShortCode, ValueError> {
        if !(3..=32).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ValueError::BadShortCode);
        }
        if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(ValueError::ReservedShortCode(s.to_string()));
        }
        Ok(ShortCode(s.to_string()))
    }

    /// Whether `s`, as a whole path segment, can only be a short code: URL-safe (as
    /// [`ShortCode::parse_lenient`] takes it) and none of the reserved names. Every
    /// single-segment route the HTTP API serves itself is a reserved name, so the edge
    /// answers such a `GET /{s}` as a redirect without asking the router.
    pub fn is_plain_code(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
    }

    /// Codes already stored by the replaced service are taken as they are, as long as
    /// they are URL-safe; used by bulk loads of history.
    pub fn parse_lenient(s: &str) -> Result<ShortCode, ValueError> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ValueError::BadShortCode);
        }
        Ok(ShortCode(s.to_string()))
    }

    /// A base62 code of `len` characters built from `bytes` (each byte picks one
    /// character; bytes >= 248 are skipped to keep the draw unbiased). Returns `None` when
    /// `bytes` runs out; callers pass CSPRNG or keyed-hash output.
    pub fn from_entropy(bytes: &[u8], len: usize) -> Option<ShortCode> {
        let mut out = String::with_capacity(len);
        for &b in bytes {
            if out.len() == len {
                break;
            }
            if b < 248 {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
        (out.len() == len).then_some(ShortCode(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ShortCode {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ShortCode::parse_lenient(&s)
    }
}
impl From<ShortCode> for String {
    fn from(c: ShortCode) -> String {
        c.0
    }
}
impl std::fmt::Display for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, trimmed and compared case-insensitively (stored lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, ValueError> {
        let s = s.trim();
        let Some((local, domain)) = s.rsplit_once('@') else { return Err(ValueError::BadEmail) };
        if local.is_empty() || domain.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::BadEmail);
        }
        Ok(Email(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Email {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// A redirect target: an absolute `http` or `https` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetUrl(String);

pub const MAX_URL_LEN: usize = 8192;

impl TargetUrl {
    /// A new target from outside: checked, then stored in its canonical form.
    ///
    /// - It must be written `http://host…` or `https://host…`: `http:abc` and
    ///   `https:\\host` are refused, although URL parsers (and browsers) guess a host
    ///   for them.
    /// - It may not carry userinfo: `https://bank.com@evil.tld/` reads as bank.com and
    ///   goes to evil.tld.
    /// - The stored form is the WHATWG serialization (lowercase scheme and host,
    ///   punycode, percent-encoding, dot segments resolved), so the host a deny-list
    ///   checks is the host a browser visits; except that a bare origin keeps the
    ///   spelling without the trailing `/` the serializer adds (`https://a.io`).
    pub fn parse(s: &str) -> Result<TargetUrl, ValueError> {
        let s = s.trim();
        let checked = TargetUrl::parse_stored(s)?;
        let scheme_end = s.find(':').ok_or(ValueError::BadUrl)?;
        if !s[scheme_end..].starts_with("://") {
            return Err(ValueError::UrlWithoutAuthority(s.chars().take(40).collect()));
        }
        let u = url::Url::parse(checked.as_str()).map_err(|_| ValueError::BadUrl)?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err(ValueError::UrlWithUserinfo);
        }
        let mut canon = String::from(u);
        if canon.ends_with('/') && !s.ends_with('/') && !s[scheme_end + 3..].contains(['/', '?', '#']) {
            canon.pop();
        }
        if canon.len() > MAX_URL_LEN {
            return Err(ValueError::UrlTooLong(MAX_URL_LEN));
        }
        Ok(TargetUrl(canon))
    }

    /// The host the target goes to (lowercase; punycode for international names).
    pub fn host(&self) -> Option<String> {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()))
    }

    /// A target as stored in a record: the rules every build of kurz has applied, so
    /// records written before a rule was added still decode (an event is never made
    /// unreadable by a stricter [`TargetUrl::parse`]).
    pub fn parse_stored(s: &str) -> Result<TargetUrl, ValueError> {
        let s = s.trim();
        if s.len() > MAX_URL_LEN {
            return Err(ValueError::UrlTooLong(MAX_URL_LEN));
        }
        let u = url::Url::parse(s).map_err(|_| ValueError::BadUrl)?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(|h| h.is_empty()) {
            return Err(ValueError::BadUrl);
        }
        // Keep the caller's spelling: the redirect must send back what was stored.
        // A Location header cannot carry control characters; url::Url already rejects
        // them in the parsed form, check the raw form too.
        if s.chars().any(|c| c.is_control()) {
            return Err(ValueError::BadUrl);
        }
        Ok(TargetUrl(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for TargetUrl {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TargetUrl::parse_stored(&s)
    }
}
impl From<TargetUrl> for String {
    fn from(u: TargetUrl) -> String {
        u.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_codes() {
        assert!(ShortCode::parse("my-alias_1").is_ok());
        for bad in ["ab", "", "has space", "ünï", "a+b", "x".repeat(33).as_str()] {
            assert_eq!(ShortCode::parse(bad), Err(ValueError::BadShortCode), "{bad}");
        }
        assert!(matches!(ShortCode::parse("Health"), Err(ValueError::ReservedShortCode(_))));
        assert!(ShortCode::is_plain_code("abc") && ShortCode::is_plain_code("a-b_C9") && ShortCode::is_plain_code("ab"));
        for not in ["", "Health", "users", "METRICS", "abc+", "a%62c", "a/b", "a.b"] {
            assert!(!ShortCode::is_plain_code(not), "{not}");
        }
        let c = ShortCode::from_entropy(&[0, 61, 62, 250, 123, 7, 8, 9, 10], 7).unwrap();
        assert_eq!(c.as_str(), "0z0z789");
        assert!(ShortCode::from_entropy(&[250, 251], 2).is_none());
    }

    #[test]
    fn emails_and_urls() {
        assert_eq!(Email::parse(" A@B.io ").unwrap().as_str(), "a@b.io");
        assert!(Email::parse("nope").is_err());
        assert!(Email::parse("@x").is_err());
        assert!(TargetUrl::parse("https://example.com/a?b=c").is_ok());
        assert!(TargetUrl::parse("ftp://example.com").is_err());
        assert!(TargetUrl::parse("javascript:alert(1)").is_err());
        assert!(TargetUrl::parse("http://").is_err());
        assert!(TargetUrl::parse("not a url").is_err());
    }

    #[test]
    fn targets_need_an_authority_and_no_userinfo_and_are_stored_canonical() {
        for (bad, want) in [
            ("http:abc1234", "scheme://host"),
            ("https:evil.tld/x", "scheme://host"),
            ("https:\\\\evil.tld/", "scheme://host"),
            ("https:/evil.tld/", "scheme://host"),
            ("https://bank.com@evil.tld/", "user name"),
            ("https://bank.com:pw@evil.tld/", "user name"),
            ("https://:pw@evil.tld/", "user name"),
        ] {
            let e = TargetUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        for (raw, canon) in [
            ("https://example.com", "https://example.com"),
            ("HTTPS://Example.COM", "https://example.com"),
            ("https://example.com/", "https://example.com/"),
            ("https://example.com?q=1", "https://example.com/?q=1"),
            ("https://example.com/a/../b c", "https://example.com/b%20c"),
            ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
            ("https://example.com:443/x", "https://example.com/x"),
        ] {
            assert_eq!(TargetUrl::parse(raw).unwrap().as_str(), canon, "{raw}");
        }
        assert_eq!(TargetUrl::parse("https://Bücher.example/").unwrap().host().as_deref(), Some("xn--bcher-kva.example"));
        // A record written before these rules still decodes, as it was written.
        let old: TargetUrl = serde_json::from_str("\"https://bank.com@evil.tld/\"").unwrap();
        assert_eq!(old.as_str(), "https://bank.com@evil.tld/");
    }

    #[test]
    fn the_seed_data_targets_are_already_canonical() {
        // The replaced service's links load byte for byte: the contract's data set.
        let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../kurz/tests/fixtures/seed-data/urls.csv")).unwrap();
        let mut n = 0;
        for line in csv.lines().skip(1) {
            let url = line.split(',').nth(3).unwrap();
            assert_eq!(TargetUrl::parse(url).unwrap().as_str(), url);
            n += 1;
        }
        assert_eq!(n, 2000);
    }
}
