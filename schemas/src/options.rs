//! How a link answers beyond "302 to its target": a validity window, the redirect
//! status, and what of the request it forwards. Pure data and pure evaluation: the
//! command-api validates them, events and read models carry them inside the link, and
//! the edge evaluates them per redirect ([`LinkOptions::target`]) with no lookup.
//!
//! Every field is optional and absent means the default, so a link from before options
//! (and every event of one) encodes as it always did.

use crate::rules::{Rule, Visit};
use crate::sealed::Sealed;
use crate::Ts;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

/// The longest `Location` a redirect answers with once the request's query or path is
/// forwarded, in bytes: a longer one is refused (414), never cut.
pub const MAX_LOCATION: usize = 8 * 1024;

/// The status a link redirects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RedirectType {
    /// 301 Moved Permanently.
    Moved,
    /// 302 Found: the default.
    #[default]
    Found,
    /// 307 Temporary Redirect (keeps the method and body).
    Temporary,
    /// 308 Permanent Redirect (keeps the method and body).
    Permanent,
}

impl RedirectType {
    pub const ALL: [RedirectType; 4] = [RedirectType::Moved, RedirectType::Found, RedirectType::Temporary, RedirectType::Permanent];

    pub fn status(self) -> u16 {
        match self {
            RedirectType::Moved => 301,
            RedirectType::Found => 302,
            RedirectType::Temporary => 307,
            RedirectType::Permanent => 308,
        }
    }

    pub fn from_status(status: u64) -> Result<RedirectType, OptionError> {
        RedirectType::ALL.into_iter().find(|t| u64::from(t.status()) == status).ok_or(OptionError::RedirectType)
    }

    /// 301 and 308: a browser may keep the answer, so later visits may never reach
    /// the edge (and are not counted) while its cache lasts.
    pub fn is_permanent(self) -> bool {
        matches!(self, RedirectType::Moved | RedirectType::Permanent)
    }
}

impl Serialize for RedirectType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.status())
    }
}

impl<'de> Deserialize<'de> for RedirectType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RedirectType::from_status(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for RedirectType {
    fn schema_name() -> Cow<'static, str> {
        "RedirectType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The HTTP status a link redirects with (302 when absent).",
            "type": "integer",
            "enum": [301, 302, 307, 308]
        })
    }
}

/// Why an option in a request is refused (the caller's 400 names it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("redirect_type must be one of 301, 302, 307, 308")]
    RedirectType,
    #[error("{0} must be an RFC 3339 date-time, such as 2027-01-31T23:59:59Z")]
    Time(&'static str),
    #[error("valid_since must be before valid_until")]
    Window,
    #[error("max_visits must be an integer from 1 to 9007199254740991, or null")]
    MaxVisits,
    #[error("{0}")]
    Rules(String),
}

/// A link's options. `None` everywhere is a link as it always was: 302, forever, the
/// request's query forwarded (as Shlink does), its path not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkOptions {
    /// Before this instant the link answers as not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_since: Option<Ts>,
    /// From this instant on the link answers as not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Ts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_type: Option<RedirectType>,
    /// Merge the request's query parameters into the target's (default true; a
    /// parameter the request names replaces the target's of that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_query: Option<bool>,
    /// Append what follows the code in the request path (`/{code}/rest`) to the
    /// target's path (default false: such a path is not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_path: Option<bool>,
    /// Redirect rules, in order: the first whose conditions all hold for a visit picks
    /// the target ([`crate::rules`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// A protected link's password: its argon2id hash (a PHC string), sealed under a data
    /// key of its own in the key vault ([`crate::sealed`]), so the public events topic
    /// and the read models never hold the hash in the clear. The edge asks a visitor for
    /// the password before it redirects; no JSON answer shows this, only whether it is
    /// set (`password_protected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Sealed>,
    /// Whether search engines may follow the link: `GET /robots.txt` allows only
    /// crawlable links (default false: every other path is disallowed, as Shlink does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawlable: Option<bool>,
    /// After this many counted visits (bots and HEAD requests are not counted) the
    /// link answers as expired. 1 to [`MAX_VISITS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_visits: Option<u64>,
}

/// The largest `max_visits`: 2^53 - 1, the largest integer JSON carries exactly.
pub const MAX_VISITS: u64 = (1 << 53) - 1;

/// What a redirect answers, from [`LinkOptions::target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// Redirect with this status to this `Location`.
    Redirect { status: u16, location: Cow<'a, str> },
    /// Outside the validity window: answered as not found.
    Expired,
    /// The request carries a path after the code and the link does not forward paths.
    NoPath,
    /// The `Location` would exceed [`MAX_LOCATION`].
    TooLong,
}

impl LinkOptions {
    pub fn is_default(&self) -> bool {
        *self == LinkOptions::default()
    }

    pub fn redirect_type(&self) -> RedirectType {
        self.redirect_type.unwrap_or_default()
    }

    pub fn forwards_query(&self) -> bool {
        self.forward_query.unwrap_or(true)
    }

    /// Whether a visitor must give a password before the link redirects.
    pub fn is_protected(&self) -> bool {
        self.password.is_some()
    }

    pub fn forwards_path(&self) -> bool {
        self.forward_path.unwrap_or(false)
    }

    pub fn is_crawlable(&self) -> bool {
        self.crawlable.unwrap_or(false)
    }

    /// Whether `now` lies in the window (`valid_since` inclusive, `valid_until` not).
    pub fn live_at(&self, now: Ts) -> bool {
        self.valid_since.is_none_or(|s| now >= s) && self.valid_until.is_none_or(|u| now < u)
    }

    /// The options' own consistency: a window that can never be open is refused.
    pub fn check(&self) -> Result<(), OptionError> {
        match (self.valid_since, self.valid_until) {
            (Some(s), Some(u)) if s >= u => return Err(OptionError::Window),
            _ => {}
        }
        if self.max_visits.is_some_and(|m| m == 0 || m > MAX_VISITS) {
            return Err(OptionError::MaxVisits);
        }
        crate::rules::check(&self.rules).map_err(|e| OptionError::Rules(e.to_string()))
    }

    /// The target a visit goes to: the first matching rule's, else `original_url`.
    pub fn pick<'a>(&'a self, original_url: &'a str, visit: &dyn Visit) -> &'a str {
        if self.rules.is_empty() {
            return original_url;
        }
        crate::rules::pick(&self.rules, visit).unwrap_or(original_url)
    }

    /// What a request for this link answers at `now`: `target` is the link's
    /// `original_url` (a valid absolute URL), `rest` what follows `/{code}/` in the
    /// request path (raw, as received), `query` the request's raw query string, `now`
    /// read only for a link with a window. Costs nothing beyond a few comparisons when
    /// there is nothing to forward.
    pub fn target<'a>(&self, target: &'a str, rest: Option<&str>, query: Option<&str>, now: impl FnOnce() -> Ts) -> Target<'a> {
        if (self.valid_since.is_some() || self.valid_until.is_some()) && !self.live_at(now()) {
            return Target::Expired;
        }
        let rest = rest.filter(|r| !r.is_empty());
        if rest.is_some() && !self.forwards_path() {
            return Target::NoPath;
        }
        let query = query.filter(|q| !q.is_empty() && self.forwards_query());
        let status = self.redirect_type().status();
        if rest.is_none() && query.is_none() {
            return Target::Redirect { status, location: Cow::Borrowed(target) };
        }
        match forwarded(target, rest, query) {
            Some(location) => Target::Redirect { status, location: Cow::Owned(location) },
            None => Target::TooLong,
        }
    }

    /// The options as the public link JSON shows them: every one, defaults filled in.
    pub fn write_json(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let time = |t: Option<Ts>| t.map_or(serde_json::Value::Null, |t| t.to_rfc3339().into());
        out.insert("valid_since".into(), time(self.valid_since));
        out.insert("valid_until".into(), time(self.valid_until));
        out.insert("redirect_type".into(), self.redirect_type().status().into());
        out.insert("forward_query".into(), self.forwards_query().into());
        out.insert("forward_path".into(), self.forwards_path().into());
        out.insert("rules".into(), serde_json::to_value(&self.rules).unwrap_or_default());
        out.insert("password_protected".into(), self.password.is_some().into());
        out.insert("crawlable".into(), self.is_crawlable().into());
        out.insert("max_visits".into(), self.max_visits.into());
    }
}

/// `target` with `rest` appended to its path and `query` merged into its query, or
/// `None` past [`MAX_LOCATION`]. Both are raw request parts (already valid in a URI),
/// kept as received; a parameter `query` names replaces every one of that name in the
/// target, the others keep their order, and the request's follow.
fn forwarded(target: &str, rest: Option<&str>, query: Option<&str>) -> Option<String> {
    if target.len() + rest.map_or(0, str::len) + query.map_or(0, str::len) + 2 > MAX_LOCATION {
        return None;
    }
    let (before_fragment, fragment) = match target.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (target, None),
    };
    let (path, own_query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(target.len() + rest.map_or(0, str::len) + query.map_or(0, str::len) + 2);
    out.push_str(path);
    if let Some(rest) = rest {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(rest.trim_start_matches('/'));
    }
    fn name(pair: &str) -> &str {
        pair.split_once('=').map_or(pair, |(n, _)| n)
    }
    // A target's own parameter is dropped if the request names it. The request's names
    // are borrowed, sorted and searched: listed only when the target has a query of its
    // own, and never a scan per pair (both sides may hold thousands of pairs). Up to
    // `FEW` names (nearly every request) sit on the stack: no allocation.
    const FEW: usize = 16;
    let mut few: [&str; FEW] = [""; FEW];
    let mut many: Vec<&str> = Vec::new();
    let names: &[&str] = if own_query.is_some_and(|q| !q.is_empty()) {
        let mut all = query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()).map(name);
        let mut n = 0;
        for nm in all.by_ref().take(FEW) {
            few[n] = nm;
            n += 1;
        }
        let rest: Vec<&str> = all.collect();
        if rest.is_empty() {
            few[..n].sort_unstable();
            &few[..n]
        } else {
            many.extend_from_slice(&few[..n]);
            many.extend(rest);
            many.sort_unstable();
            &many
        }
    } else {
        &[]
    };
    let named = |n: &str| names.binary_search(&n).is_ok();
    let mut sep = '?';
    let own = own_query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty() && !named(name(p)));
    for pair in own.chain(query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty())) {
        out.push(sep);
        out.push_str(pair);
        sep = '&';
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// A change to a link's options (`PUT /urls/{id}`): a field left out stays as it is;
/// `null` sets it back to its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub valid_since: Option<Option<Ts>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub valid_until: Option<Option<Ts>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub redirect_type: Option<Option<RedirectType>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub forward_query: Option<Option<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub forward_path: Option<Option<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub rules: Option<Option<Vec<Rule>>>,
    /// A new sealed password hash, or `null` to remove the protection.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub password: Option<Option<Sealed>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub crawlable: Option<Option<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub max_visits: Option<Option<u64>>,
}

/// A field that is present, `null` or not: absent ones take the field's `default`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl OptionsPatch {
    pub fn is_empty(&self) -> bool {
        *self == OptionsPatch::default()
    }

    /// `options` with this change made, checked as a whole.
    pub fn applied_to(&self, options: &LinkOptions) -> Result<LinkOptions, OptionError> {
        let mut o = options.clone();
        fn set<T: Clone>(field: &mut Option<T>, change: &Option<Option<T>>) {
            if let Some(v) = change {
                *field = v.clone();
            }
        }
        set(&mut o.valid_since, &self.valid_since);
        set(&mut o.valid_until, &self.valid_until);
        set(&mut o.redirect_type, &self.redirect_type);
        set(&mut o.forward_query, &self.forward_query);
        set(&mut o.forward_path, &self.forward_path);
        set(&mut o.password, &self.password);
        set(&mut o.crawlable, &self.crawlable);
        set(&mut o.max_visits, &self.max_visits);
        if let Some(rules) = &self.rules {
            o.rules = rules.clone().unwrap_or_default();
        }
        o.check()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(t: Target<'_>) -> (u16, String) {
        match t {
            Target::Redirect { status, location } => (status, location.into_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_options_encode_to_nothing_and_redirect_as_before() {
        let o = LinkOptions::default();
        assert_eq!(serde_json::to_string(&o).unwrap(), "{}");
        let t = o.target("https://t.example/p?a=1", None, None, || Ts(5));
        assert!(matches!(t, Target::Redirect { status: 302, location: Cow::Borrowed("https://t.example/p?a=1") }), "{t:?}");
    }

    #[test]
    fn the_window_includes_its_start_and_excludes_its_end() {
        let o = LinkOptions { valid_since: Some(Ts(10)), valid_until: Some(Ts(20)), ..Default::default() };
        assert_eq!(o.target("https://t.example/", None, None, || Ts(9)), Target::Expired);
        assert_eq!(redirect(o.target("https://t.example/", None, None, || Ts(10))).0, 302);
        assert_eq!(redirect(o.target("https://t.example/", None, None, || Ts(19))).0, 302);
        assert_eq!(o.target("https://t.example/", None, None, || Ts(20)), Target::Expired);
        assert_eq!(
            LinkOptions { valid_since: Some(Ts(20)), valid_until: Some(Ts(20)), ..Default::default() }.check(),
            Err(OptionError::Window)
        );
    }

    #[test]
    fn the_query_is_merged_with_the_requests_parameters_winning() {
        let o = LinkOptions::default();
        let at = |target, q| redirect(o.target(target, None, Some(q), || Ts(0))).1;
        assert_eq!(at("https://t.example/p?a=1", "utm_source=x&gclid=y"), "https://t.example/p?a=1&utm_source=x&gclid=y");
        assert_eq!(at("https://t.example/p", "a=2"), "https://t.example/p?a=2");
        assert_eq!(at("https://t.example/p?a=1&b=2&a=3", "a=9"), "https://t.example/p?b=2&a=9");
        assert_eq!(at("https://t.example/p?a=1#top", "b=%20x"), "https://t.example/p?a=1&b=%20x#top");
        assert_eq!(at("https://t.example/p?a=1", "&&"), "https://t.example/p?a=1");
        // More names than fit on the stack: the same answer.
        let long: String = (0..40).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
        let merged = at("https://t.example/p?k3=old&keep=1&k39=old", &long);
        assert_eq!(merged, format!("https://t.example/p?keep=1&{long}"));
        let off = LinkOptions { forward_query: Some(false), ..Default::default() };
        assert_eq!(redirect(off.target("https://t.example/p?a=1", None, Some("b=2"), || Ts(0))).1, "https://t.example/p?a=1");
    }

    #[test]
    fn the_path_is_forwarded_only_when_asked() {
        let o = LinkOptions { forward_path: Some(true), redirect_type: Some(RedirectType::Permanent), ..Default::default() };
        assert_eq!(
            redirect(o.target("https://t.example/docs?v=1", Some("a/b"), None, || Ts(0))),
            (308, "https://t.example/docs/a/b?v=1".into())
        );
        assert_eq!(redirect(o.target("https://t.example/", Some("a"), Some("q=1"), || Ts(0))).1, "https://t.example/a?q=1");
        assert_eq!(LinkOptions::default().target("https://t.example/", Some("a"), None, || Ts(0)), Target::NoPath);
        assert_eq!(redirect(LinkOptions::default().target("https://t.example/", Some(""), None, || Ts(0))).1, "https://t.example/");
    }

    #[test]
    fn a_location_past_the_limit_is_refused_not_cut() {
        let q = "a=".to_string() + &"x".repeat(MAX_LOCATION);
        assert_eq!(LinkOptions::default().target("https://t.example/", None, Some(&q), || Ts(0)), Target::TooLong);
    }

    #[test]
    fn redirect_types_are_the_four_statuses() {
        for t in RedirectType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<RedirectType>(&json).unwrap(), t);
        }
        assert!(serde_json::from_str::<RedirectType>("303").is_err());
        assert!(RedirectType::Moved.is_permanent() && !RedirectType::Temporary.is_permanent());
    }

    #[test]
    fn a_visit_limit_is_positive_and_json_safe_and_patched_like_the_rest() {
        for bad in [0, MAX_VISITS + 1] {
            assert_eq!(LinkOptions { max_visits: Some(bad), ..Default::default() }.check(), Err(OptionError::MaxVisits));
        }
        let limited = LinkOptions { max_visits: Some(3), ..Default::default() };
        assert!(limited.check().is_ok());
        assert_eq!(serde_json::to_string(&limited).unwrap(), r#"{"max_visits":3}"#);
        let cleared: OptionsPatch = serde_json::from_str(r#"{"max_visits": null}"#).unwrap();
        assert_eq!(cleared.applied_to(&limited).unwrap(), LinkOptions::default());
        let raised: OptionsPatch = serde_json::from_str(r#"{"max_visits": 9}"#).unwrap();
        assert_eq!(raised.applied_to(&limited).unwrap().max_visits, Some(9));
    }

    #[test]
    fn a_patch_sets_clears_or_leaves_each_field() {
        let p: OptionsPatch = serde_json::from_str(r#"{"valid_until": 50, "redirect_type": null}"#).unwrap();
        assert_eq!(p.valid_until, Some(Some(Ts(50))));
        assert_eq!(p.redirect_type, Some(None));
        assert_eq!(p.valid_since, None);
        let before = LinkOptions { valid_since: Some(Ts(10)), redirect_type: Some(RedirectType::Moved), ..Default::default() };
        let after = p.applied_to(&before).unwrap();
        assert_eq!(after, LinkOptions { valid_since: Some(Ts(10)), valid_until: Some(Ts(50)), ..Default::default() });
        let closing: OptionsPatch = serde_json::from_str(r#"{"valid_until": 10}"#).unwrap();
        assert_eq!(closing.applied_to(&before), Err(OptionError::Window));
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"valid_until":50,"redirect_type":null}"#);
    }
}
