//! A link's options in `POST /urls` and `PUT /urls/{id}` ([`kurz_schemas::options`]):
//! each checked on its own here (400 naming it), the window as a whole against the
//! link's current options by the decider.

use super::bad;
use kurz_schemas::options::OptionError;
use kurz_schemas::rules::{Condition, Rule, RuleError, MAX_CONDITIONS, MAX_RULES};
use kurz_schemas::{LinkOptions, OptionsPatch, RedirectType, TargetUrl, Ts};
use kurz_web::{ApiError, JsonObject};
use serde_json::Value;

/// Checks a redirect target as `original_url` is checked (form, then policy), naming
/// the field it came from.
pub(crate) type Targets<'a> = &'a dyn Fn(&str, &str) -> Result<TargetUrl, ApiError>;

/// The options of a new link: absent ones are defaults.
pub(crate) fn of_new(body: &JsonObject, targets: Targets<'_>) -> Result<LinkOptions, ApiError> {
    patch(body, targets)?.applied_to(&LinkOptions::default()).map_err(bad)
}

/// The option changes of an update: an absent field stays as it is, `null` sets it back
/// to its default.
pub(crate) fn patch(body: &JsonObject, targets: Targets<'_>) -> Result<OptionsPatch, ApiError> {
    let rules = if body.has("rules") { Some(rules(body, targets)?) } else { None };
    Ok(OptionsPatch {
        valid_since: named(body, "valid_since", time)?,
        valid_until: named(body, "valid_until", time)?,
        redirect_type: named(body, "redirect_type", redirect_type)?,
        forward_query: named(body, "forward_query", |b, f| b.opt_bool(f))?,
        forward_path: named(body, "forward_path", |b, f| b.opt_bool(f))?,
        crawlable: named(body, "crawlable", |b, f| b.opt_bool(f))?,
        max_visits: named(body, "max_visits", max_visits)?,
        rules,
        // Set by the route once hashed and sealed (`password` below).
        password: None,
    })
}

/// `rules`: at most [`MAX_RULES`] of `{conditions: [{type, value}], target}`, each
/// condition and target checked, each refusal naming where it is (`rules[1].target`).
pub(crate) fn rules(body: &JsonObject, targets: Targets<'_>) -> Result<Option<Vec<Rule>>, ApiError> {
    let Some(raw) = body.opt_array("rules").map_err(|_| bad("rules must be an array of {conditions, target}"))? else { return Ok(None) };
    if raw.len() > MAX_RULES {
        return Err(bad(RuleError::TooManyRules));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let r = r.as_object().ok_or_else(|| bad(format!("rules[{i}] must be an object with conditions and target")))?;
        let conditions =
            r.get("conditions").and_then(Value::as_array).ok_or_else(|| bad(format!("rules[{i}].conditions must be an array")))?;
        if conditions.is_empty() || conditions.len() > MAX_CONDITIONS {
            return Err(bad(RuleError::Conditions(i)));
        }
        let mut parsed = Vec::with_capacity(conditions.len());
        for (j, c) in conditions.iter().enumerate() {
            let text = |k: &str| c.get(k).and_then(Value::as_str);
            let (Some(kind), Some(value)) = (text("type"), text("value")) else {
                return Err(bad(format!("rules[{i}].conditions[{j}] must be {{\"type\": …, \"value\": \"…\"}} with string values")));
            };
            let why = |why| bad(RuleError::Condition { rule: i, condition: j, why });
            parsed.push(Condition::parse(kind, value).map_err(why)?);
        }
        let field = format!("rules[{i}].target");
        let raw_target = r.get("target").and_then(Value::as_str).ok_or_else(|| bad(format!("{field} is required and must be a string")))?;
        let target = targets(&field, raw_target)?;
        out.push(Rule { conditions: parsed, target: target.as_str().to_string() });
    }
    Ok(Some(out))
}

/// The longest link password taken, in bytes: argon2 hashes any length, but an
/// unbounded one is a free CPU burner.
pub(crate) const MAX_LINK_PASSWORD: usize = 256;

/// `password`: absent (no change), `null` (protection removed), or a new password of 1
/// to [`MAX_LINK_PASSWORD`] bytes, still in the clear (the route hashes and seals it).
pub(crate) fn password(body: &JsonObject) -> Result<Option<Option<String>>, ApiError> {
    if !body.has("password") {
        return Ok(None);
    }
    match body.opt_str("password").map_err(|_| wrong_password())? {
        None => Ok(Some(None)),
        Some(p) => check_password(p).map(|()| Some(Some(p.to_string()))),
    }
}

fn wrong_password() -> ApiError {
    bad(format!("password must be a string of 1 to {MAX_LINK_PASSWORD} bytes, or null to remove it"))
}

/// A new link password's length, before it is hashed.
pub(crate) fn check_password(p: &str) -> Result<(), ApiError> {
    if p.is_empty() || p.len() > MAX_LINK_PASSWORD {
        return Err(wrong_password());
    }
    Ok(())
}

type Read<T> = fn(&JsonObject, &'static str) -> Result<Option<T>, ApiError>;

fn named<T>(body: &JsonObject, field: &'static str, read: Read<T>) -> Result<Option<Option<T>>, ApiError> {
    if !body.has(field) {
        return Ok(None);
    }
    read(body, field).map(Some)
}

fn time(body: &JsonObject, field: &'static str) -> Result<Option<Ts>, ApiError> {
    let Some(raw) = body.opt_str(field).map_err(|_| bad(OptionError::Time(field)))? else { return Ok(None) };
    Ts::parse_rfc3339(raw).map(Some).ok_or_else(|| bad(OptionError::Time(field)))
}

fn max_visits(body: &JsonObject, field: &'static str) -> Result<Option<u64>, ApiError> {
    let n = body.opt_id(field).map_err(|_| bad(OptionError::MaxVisits))?;
    match n {
        Some(n) if n == 0 || n > kurz_schemas::options::MAX_VISITS => Err(bad(OptionError::MaxVisits)),
        n => Ok(n),
    }
}

fn redirect_type(body: &JsonObject, field: &'static str) -> Result<Option<RedirectType>, ApiError> {
    let status = body.opt_id(field).map_err(|_| bad(OptionError::RedirectType))?;
    status.map(RedirectType::from_status).transpose().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> JsonObject {
        JsonObject::parse(json.as_bytes()).unwrap()
    }

    /// Targets as the route checks their form; the policy refuses `evil.example`.
    fn targets(field: &str, raw: &str) -> Result<TargetUrl, ApiError> {
        let url = TargetUrl::parse(raw).map_err(|e| bad(format!("{field}: {e}")))?;
        if url.as_str().contains("evil.example") {
            return Err(bad(format!("{field}: denied")));
        }
        Ok(url)
    }

    fn of_new(b: &JsonObject) -> Result<LinkOptions, ApiError> {
        super::of_new(b, &targets)
    }

    fn patch(b: &JsonObject) -> Result<OptionsPatch, ApiError> {
        super::patch(b, &targets)
    }

    fn refused(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn each_bad_option_is_a_400_naming_it() {
        assert!(refused(of_new(&body(r#"{"valid_until": "tomorrow"}"#))).contains("valid_until"));
        assert!(refused(of_new(&body(r#"{"valid_since": 5}"#))).contains("valid_since"));
        assert!(refused(of_new(&body(r#"{"redirect_type": 303}"#))).contains("redirect_type"));
        assert!(refused(of_new(&body(r#"{"redirect_type": "x"}"#))).contains("redirect_type"));
        assert!(refused(of_new(&body(r#"{"forward_query": 1}"#))).contains("forward_query"));
        let window = r#"{"valid_since": "2027-01-02T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}"#;
        assert!(refused(of_new(&body(window))).contains("valid_since must be before valid_until"));
    }

    #[test]
    fn options_are_read_with_their_defaults_and_nulls() {
        let o = of_new(&body(r#"{"valid_until": "2027-01-01T00:00:00+01:00", "redirect_type": 301, "forward_path": true}"#)).unwrap();
        assert_eq!(o.valid_until, Some(Ts(1_798_758_000_000)));
        assert_eq!(o.redirect_type, Some(RedirectType::Moved));
        assert_eq!((o.forward_query, o.forward_path), (None, Some(true)));
        assert!(of_new(&body("{}")).unwrap().is_default());
        let p = patch(&body(r#"{"valid_until": null, "title": "t"}"#)).unwrap();
        assert_eq!(p, OptionsPatch { valid_until: Some(None), ..Default::default() });
    }

    #[test]
    fn rules_are_read_in_order_and_every_refusal_names_its_place() {
        let ok = r#"{"rules": [
            {"conditions": [{"type": "device", "value": "ios"}], "target": "HTTPS://App.Example/ios"},
            {"conditions": [{"type": "language", "value": "de"}, {"type": "query", "value": "src=mail"}], "target": "https://t.example/de"}
        ]}"#;
        let o = of_new(&body(ok)).unwrap();
        assert_eq!(o.rules.len(), 2);
        assert_eq!(o.rules[0].target, "https://app.example/ios", "targets are stored canonical");
        let refused = |json: &str| refused(of_new(&body(json)));
        assert!(refused(r#"{"rules": {}}"#).contains("rules must be an array"));
        assert!(refused(r#"{"rules": [1]}"#).contains("rules[0] must be an object"));
        assert!(refused(r#"{"rules": [{"conditions": [], "target": "https://t.example/"}]}"#).contains("rules[0]: a rule needs 1 to"));
        let bad_cond = r#"{"rules": [{"conditions": [{"type": "device", "value": "ios"}], "target": "https://t.example/"},
                                       {"conditions": [{"type": "os", "value": "ios"}, {"type": "device", "value": "toaster"}], "target": "https://t.example/"}]}"#;
        assert!(refused(bad_cond).starts_with("rules[1].conditions[1]: device must be one of"));
        assert!(refused(r#"{"rules": [{"conditions": [{"type": "os"}], "target": "https://t.example/"}]}"#)
            .contains("rules[0].conditions[0] must be"));
        assert!(refused(r#"{"rules": [{"conditions": [{"type": "os", "value": "iOS"}]}]}"#).contains("rules[0].target is required"));
        assert!(refused(r#"{"rules": [{"conditions": [{"type": "os", "value": "iOS"}], "target": "https://evil.example/"}]}"#)
            .starts_with("rules[0].target: denied"));
        let many = format!(
            r#"{{"rules": [{}]}}"#,
            [r#"{"conditions": [{"type": "os", "value": "iOS"}], "target": "https://t.example/"}"#; MAX_RULES + 1].join(",")
        );
        assert!(refused(&many).contains("at most"));
        let p = patch(&body(r#"{"rules": null}"#)).unwrap();
        assert_eq!(p.rules, Some(None), "null clears the rules");
    }

    #[test]
    fn a_password_is_a_bounded_string_or_null() {
        assert_eq!(password(&body("{}")).unwrap(), None);
        assert_eq!(password(&body(r#"{"password": null}"#)).unwrap(), Some(None));
        assert_eq!(password(&body(r#"{"password": "s3cret"}"#)).unwrap(), Some(Some("s3cret".into())));
        for bad in [r#"{"password": ""}"#.to_string(), r#"{"password": 5}"#.into(), format!(r#"{{"password": "{}"}}"#, "x".repeat(257))] {
            assert!(refused(password(&body(&bad))).contains("password must be a string of 1 to 256 bytes"), "{bad}");
        }
    }
}
