//! Redirect rules: an ordered list of `{conditions, target}` on a link; the first rule
//! whose conditions all hold for a visit picks the target, else the link's own
//! `original_url` does. Pure: the edge supplies what it knows of the visit ([`Visit`]),
//! classifying the user agent only when a rule asks about it.
//!
//! On the wire a condition is `{"type": …, "value": "…"}`:
//!
//! | type | value | holds when |
//! |---|---|---|
//! | `device` | `ios`, `android`, `desktop`, `mobile`, `tablet` | the user agent is one |
//! | `os` | an OS family (`Windows`, `macOS`, `iOS`, `Android`, `Linux`) | the same, any case |
//! | `browser` | a browser family (`Chrome`, `Safari`, `Firefox`, …) | the same, any case |
//! | `language` | a language tag (`de`, `pt-BR`) | `Accept-Language` names it (`de` also matches `de-DE`) with a weight above 0 |
//! | `country` | an ISO 3166-1 alpha-2 code | the edge's country header says so, any case |
//! | `query` | `name=value`, or `name` | the request's query has that parameter (with that value), compared as sent |
//! | `time` | `<since>/<until>`, RFC 3339, either side may be empty | now is in the window (`since` inclusive) |

use crate::{Agent, Device, Ts};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Rules on one link, at most.
pub const MAX_RULES: usize = 10;
/// Conditions in one rule, at most (and at least one).
pub const MAX_CONDITIONS: usize = 8;
/// Bytes of one condition's value, at most.
pub const MAX_VALUE_BYTES: usize = 256;
/// `Accept-Language` entries looked at, at most.
const MAX_LANGUAGES: usize = 16;

/// One rule: when every condition holds, redirect to `target` (a checked redirect
/// target, as `original_url`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rule {
    pub conditions: Vec<Condition>,
    pub target: String,
}

/// Which kind of device a `device` condition names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClass {
    Ios,
    Android,
    Desktop,
    Mobile,
    Tablet,
}

impl DeviceClass {
    const ALL: [(DeviceClass, &'static str); 5] = [
        (DeviceClass::Ios, "ios"),
        (DeviceClass::Android, "android"),
        (DeviceClass::Desktop, "desktop"),
        (DeviceClass::Mobile, "mobile"),
        (DeviceClass::Tablet, "tablet"),
    ];

    fn name(self) -> &'static str {
        DeviceClass::ALL.iter().find(|(d, _)| *d == self).map_or("", |(_, n)| n)
    }

    fn holds(self, a: &Agent) -> bool {
        match self {
            DeviceClass::Ios => a.os == "iOS",
            DeviceClass::Android => a.os == "Android",
            DeviceClass::Desktop => a.device == Device::Desktop,
            DeviceClass::Mobile => a.device == Device::Mobile,
            DeviceClass::Tablet => a.device == Device::Tablet,
        }
    }
}

/// One condition of a rule (the table in the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCondition", into = "RawCondition")]
pub enum Condition {
    Device(DeviceClass),
    Os(String),
    Browser(String),
    Language(String),
    Country(String),
    Query { name: String, value: Option<String> },
    Time { since: Option<Ts>, until: Option<Ts> },
}

/// A condition as it travels: `{"type": …, "value": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawCondition {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// Why a rule is refused (a 400 naming the rule and condition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rules: at most {MAX_RULES} rules")]
    TooManyRules,
    #[error("rules[{0}]: a rule needs 1 to {MAX_CONDITIONS} conditions")]
    Conditions(usize),
    #[error("rules[{rule}].conditions[{condition}]: {why}")]
    Condition { rule: usize, condition: usize, why: String },
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;

    fn try_from(raw: RawCondition) -> Result<Condition, String> {
        Condition::parse(&raw.kind, &raw.value)
    }
}

impl Condition {
    /// A condition from its wire form (`type`, `value`), or why not.
    pub fn parse(kind: &str, value: &str) -> Result<Condition, String> {
        let v = value.trim();
        if v.is_empty() || v.len() > MAX_VALUE_BYTES || v.chars().any(char::is_control) {
            return Err(format!("value must be 1 to {MAX_VALUE_BYTES} bytes of text"));
        }
        let word = |what: &str| {
            if v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_ .".contains(&b)) {
                Ok(v.to_string())
            } else {
                Err(format!("{what} must be letters, digits, '-', '_', '.' or spaces"))
            }
        };
        Ok(match kind {
            "device" => Condition::Device(
                DeviceClass::ALL
                    .iter()
                    .find(|(_, n)| n.eq_ignore_ascii_case(v))
                    .map(|(d, _)| *d)
                    .ok_or("device must be one of ios, android, desktop, mobile, tablet")?,
            ),
            "os" => Condition::Os(word("os")?),
            "browser" => Condition::Browser(word("browser")?),
            "language" => {
                let ok =
                    v.len() <= 35 && v.split('-').all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
                if !ok {
                    return Err("language must be a language tag such as de or pt-BR".into());
                }
                Condition::Language(v.to_string())
            }
            "country" => {
                if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err("country must be a two-letter ISO 3166-1 code".into());
                }
                Condition::Country(v.to_ascii_uppercase())
            }
            "query" => {
                if v.bytes().any(|b| b == b'&' || b == b'#' || b == b' ') {
                    return Err("query must be name=value or name, without '&', '#' or spaces".into());
                }
                match v.split_once('=') {
                    Some(("", _)) => return Err("query needs a parameter name".into()),
                    Some((n, val)) => Condition::Query { name: n.to_string(), value: Some(val.to_string()) },
                    None => Condition::Query { name: v.to_string(), value: None },
                }
            }
            "time" => {
                let (s, u) = v.split_once('/').ok_or("time must be <since>/<until> (RFC 3339, either may be empty)")?;
                let at = |t: &str| -> Result<Option<Ts>, String> {
                    if t.trim().is_empty() {
                        return Ok(None);
                    }
                    Ts::parse_rfc3339(t).map(Some).ok_or_else(|| format!("time: '{t}' is not an RFC 3339 date-time"))
                };
                let (since, until) = (at(s)?, at(u)?);
                match (since, until) {
                    (None, None) => return Err("time needs a start or an end".into()),
                    (Some(s), Some(u)) if s >= u => return Err("time: the start must be before the end".into()),
                    _ => {}
                }
                Condition::Time { since, until }
            }
            other => {
                let other: String = other.chars().take(32).collect();
                return Err(format!("unknown condition type '{other}' (device, os, browser, language, country, query, time)"));
            }
        })
    }
}

impl From<Condition> for RawCondition {
    fn from(c: Condition) -> RawCondition {
        let (kind, value) = match c {
            Condition::Device(d) => ("device", d.name().to_string()),
            Condition::Os(v) => ("os", v),
            Condition::Browser(v) => ("browser", v),
            Condition::Language(v) => ("language", v),
            Condition::Country(v) => ("country", v),
            Condition::Query { name, value: Some(v) } => ("query", format!("{name}={v}")),
            Condition::Query { name, value: None } => ("query", name),
            Condition::Time { since, until } => {
                let t = |t: Option<Ts>| t.map(Ts::to_rfc3339).unwrap_or_default();
                ("time", format!("{}/{}", t(since), t(until)))
            }
        };
        RawCondition { kind: kind.to_string(), value }
    }
}

impl schemars::JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "RuleCondition".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One condition of a redirect rule (schemas/src/rules.rs).",
            "type": "object",
            "properties": {
                "type": {"enum": ["device", "os", "browser", "language", "country", "query", "time"]},
                "value": {"type": "string", "maxLength": MAX_VALUE_BYTES}
            },
            "required": ["type", "value"]
        })
    }
}

/// What the edge knows of one visit. The agent is asked for only when a condition
/// needs it, so a link whose rules never ask does not pay for classifying it.
pub trait Visit {
    /// The user agent's class, if it sent one.
    fn agent(&self) -> Option<&Agent>;
    fn accept_language(&self) -> Option<&str>;
    fn country(&self) -> Option<&str>;
    /// The raw query string.
    fn query(&self) -> Option<&str>;
    fn now(&self) -> Ts;
}

impl Condition {
    pub fn holds(&self, v: &dyn Visit) -> bool {
        match self {
            Condition::Device(d) => v.agent().is_some_and(|a| d.holds(a)),
            Condition::Os(os) => v.agent().is_some_and(|a| a.os.eq_ignore_ascii_case(os)),
            Condition::Browser(b) => v.agent().is_some_and(|a| a.browser.eq_ignore_ascii_case(b)),
            Condition::Language(want) => v.accept_language().is_some_and(|h| accepts(h, want)),
            Condition::Country(c) => v.country().is_some_and(|got| got.trim().eq_ignore_ascii_case(c)),
            Condition::Query { name, value } => v.query().is_some_and(|q| {
                q.split('&').any(|pair| match pair.split_once('=') {
                    Some((n, val)) => n == name && value.as_deref().is_none_or(|want| want == val),
                    None => pair == name && value.as_deref().is_none_or(str::is_empty),
                })
            }),
            Condition::Time { since, until } => {
                let now = v.now();
                since.is_none_or(|s| now >= s) && until.is_none_or(|u| now < u)
            }
        }
    }
}

/// Whether an `Accept-Language` header names `want` with a weight above 0: `de`
/// matches `de` and `de-DE`; `de-AT` only `de-AT`; case does not matter.
fn accepts(header: &str, want: &str) -> bool {
    header.split(',').take(MAX_LANGUAGES).any(|entry| {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        // `get`, not `split_at`: a tag cut inside a character is no match, never a panic.
        match (refused, tag.get(..want.len()), tag.get(want.len()..)) {
            (false, Some(head), Some(tail)) => head.eq_ignore_ascii_case(want) && (tail.is_empty() || tail.starts_with('-')),
            _ => false,
        }
    })
}

/// Checks a list of rules as a whole (the conditions were checked as they were read).
pub fn check(rules: &[Rule]) -> Result<(), RuleError> {
    if rules.len() > MAX_RULES {
        return Err(RuleError::TooManyRules);
    }
    for (i, r) in rules.iter().enumerate() {
        if r.conditions.is_empty() || r.conditions.len() > MAX_CONDITIONS {
            return Err(RuleError::Conditions(i));
        }
    }
    Ok(())
}

/// The target of the first rule whose conditions all hold, if any.
pub fn pick<'a>(rules: &'a [Rule], visit: &dyn Visit) -> Option<&'a str> {
    rules.iter().find(|r| r.conditions.iter().all(|c| c.holds(visit))).map(|r| r.target.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct V {
        agent: Option<Agent>,
        lang: Option<&'static str>,
        country: Option<&'static str>,
        query: Option<&'static str>,
        now: i64,
        asked_agent: std::cell::Cell<u32>,
    }

    impl Visit for V {
        fn agent(&self) -> Option<&Agent> {
            self.asked_agent.set(self.asked_agent.get() + 1);
            self.agent.as_ref()
        }
        fn accept_language(&self) -> Option<&str> {
            self.lang
        }
        fn country(&self) -> Option<&str> {
            self.country
        }
        fn query(&self) -> Option<&str> {
            self.query
        }
        fn now(&self) -> Ts {
            Ts(self.now)
        }
    }

    fn cond(kind: &str, value: &str) -> Result<Condition, String> {
        Condition::try_from(RawCondition { kind: kind.into(), value: value.into() })
    }

    fn rule(conds: &[(&str, &str)], target: &str) -> Rule {
        Rule { conditions: conds.iter().map(|(k, v)| cond(k, v).unwrap()).collect(), target: target.into() }
    }

    fn iphone() -> Agent {
        Agent { browser: "Safari".into(), os: "iOS".into(), device: Device::Mobile }
    }

    #[test]
    fn the_first_rule_whose_conditions_all_hold_wins() {
        let rules =
            vec![rule(&[("device", "ios"), ("country", "de")], "https://a.example/"), rule(&[("device", "ios")], "https://b.example/")];
        let de = V { agent: Some(iphone()), country: Some("DE"), ..Default::default() };
        assert_eq!(pick(&rules, &de), Some("https://a.example/"));
        let nl = V { agent: Some(iphone()), country: Some("nl"), ..Default::default() };
        assert_eq!(pick(&rules, &nl), Some("https://b.example/"));
        let desktop =
            V { agent: Some(Agent { browser: "Firefox".into(), os: "Linux".into(), device: Device::Desktop }), ..Default::default() };
        assert_eq!(pick(&rules, &desktop), None);
        assert_eq!(pick(&rules, &V::default()), None, "no agent: no device matches");
    }

    #[test]
    fn languages_match_by_tag_prefix_and_weight() {
        let l = |h: &'static str, want: &str| cond("language", want).unwrap().holds(&V { lang: Some(h), ..Default::default() });
        assert!(l("de-DE,de;q=0.9", "de"));
        assert!(l("en-US, DE-at;q=0.5", "de-AT"));
        assert!(!l("de-DE", "de-AT"));
        assert!(!l("deu", "de"), "a longer tag is another language");
        assert!(!l("de;q=0", "de"), "weight 0 refuses it");
        assert!(!l("fr", "de"));
    }

    #[test]
    fn query_time_os_and_browser_conditions() {
        let q = |query: &'static str, c: &str| cond("query", c).unwrap().holds(&V { query: Some(query), ..Default::default() });
        assert!(q("a=1&utm_source=mail", "utm_source=mail"));
        assert!(!q("utm_source=mailx", "utm_source=mail"));
        assert!(q("debug&x=1", "debug") && q("debug=yes", "debug"));
        let t = cond("time", "1970-01-01T00:00:01Z/").unwrap();
        assert!(!t.holds(&V { now: 999, ..Default::default() }) && t.holds(&V { now: 1000, ..Default::default() }));
        let phone = V { agent: Some(iphone()), ..Default::default() };
        assert!(cond("os", "ios").unwrap().holds(&phone) && cond("browser", "SAFARI").unwrap().holds(&phone));
        assert!(!cond("device", "android").unwrap().holds(&phone));
    }

    #[test]
    fn the_agent_is_classified_only_when_a_condition_asks() {
        let rules = vec![rule(&[("country", "de"), ("device", "ios")], "https://a.example/")];
        let v = V { country: Some("FR"), ..Default::default() };
        assert_eq!(pick(&rules, &v), None);
        assert_eq!(v.asked_agent.get(), 0, "the country failed first");
    }

    #[test]
    fn bad_conditions_are_refused_with_a_reason_and_good_ones_round_trip() {
        for (k, v) in [
            ("device", "fridge"),
            ("country", "DEU"),
            ("language", "de_DE"),
            ("query", "a=1&b=2"),
            ("query", "=x"),
            ("time", "2027-01-01T00:00:00Z"),
            ("time", "/"),
            ("time", "2027-01-02T00:00:00Z/2027-01-01T00:00:00Z"),
            ("os", "<script>"),
            ("colour", "red"),
            ("os", ""),
        ] {
            assert!(cond(k, v).is_err(), "{k}={v} was accepted");
        }
        assert!(cond("os", &"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
        let json = r#"[{"conditions":[{"type":"device","value":"ios"},{"type":"time","value":"/2027-01-01T00:00:00Z"},{"type":"query","value":"a=b"}],"target":"https://x.example/"}]"#;
        let rules: Vec<Rule> = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&rules).unwrap(), json);
        let e = serde_json::from_str::<Vec<Rule>>(r#"[{"conditions":[{"type":"device","value":"tv"}],"target":"x"}]"#).unwrap_err();
        assert!(e.to_string().contains("device must be one of"), "{e}");
        assert_eq!(check(&[Rule { conditions: vec![], target: "x".into() }]), Err(RuleError::Conditions(0)));
    }
}
