//! Limits of every free-text field a request can set. Each is checked where the field
//! enters (the HTTP routes and the bulk loads) and answered with a 400 naming it, so
//! that no request can make a command, event or outcome that a projector, a replay or
//! an outside consumer cannot read (serde_json stops at 128 nesting levels; a `Decided`
//! event wraps a request's `details` in four more).

use crate::values::ValueError;
use serde_json::{Map, Value};

/// A link's title, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// A user's username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// An event's `event_type`, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 64;
/// An event's `details` object, serialized, in bytes.
pub const MAX_DETAILS_BYTES: usize = 16 << 10;
/// Nesting levels inside `details` (the object itself is level 1).
pub const MAX_DETAILS_DEPTH: usize = 8;
/// Rows of one bulk load.
pub const MAX_BULK_ROWS: usize = 250_000;
/// One field of a bulk CSV row, in bytes (a target URL is at most 8,192).
pub const MAX_CSV_FIELD_BYTES: usize = 32 << 10;

/// A one-line text field: at most `max` characters, no control characters.
pub fn text(field: &'static str, s: &str, max: usize) -> Result<(), ValueError> {
    if s.chars().count() > max {
        return Err(ValueError::TooLong { field, max, unit: "characters" });
    }
    if s.chars().any(char::is_control) {
        return Err(ValueError::ControlCharacters { field });
    }
    Ok(())
}

/// Nesting depth of a JSON value: 0 for a scalar, 1 for a flat object or array.
/// Iterative, so a hostile value cannot overflow the stack here either.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => {
                deepest = deepest.max(d);
                continue;
            }
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// An event's `details`: at most [`MAX_DETAILS_DEPTH`] levels and
/// [`MAX_DETAILS_BYTES`] serialized.
pub fn details(m: &Map<String, Value>) -> Result<(), ValueError> {
    let v = Value::Object(m.clone());
    if depth(&v) > MAX_DETAILS_DEPTH {
        return Err(ValueError::TooDeep { field: "details", max: MAX_DETAILS_DEPTH });
    }
    if serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_DETAILS_BYTES {
        return Err(ValueError::TooLong { field: "details", max: MAX_DETAILS_BYTES, unit: "bytes" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Map<String, Value> {
        let mut v = json!(1);
        for _ in 0..levels - 1 {
            v = json!({ "a": v });
        }
        Map::from_iter([("a".to_string(), v)])
    }

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": 2}]})), 3);
        assert_eq!(depth(&Value::Object(nested(5))), 5);
    }

    #[test]
    fn details_are_bounded_in_depth_and_size() {
        assert!(details(&nested(MAX_DETAILS_DEPTH)).is_ok());
        assert_eq!(details(&nested(MAX_DETAILS_DEPTH + 1)), Err(ValueError::TooDeep { field: "details", max: MAX_DETAILS_DEPTH }));
        assert!(details(&nested(124)).unwrap_err().to_string().contains("details"));
        let big = Map::from_iter([("x".to_string(), json!("a".repeat(MAX_DETAILS_BYTES)))]);
        assert!(matches!(details(&big), Err(ValueError::TooLong { field: "details", .. })));
    }

    #[test]
    fn text_fields() {
        assert!(text("title", &"é".repeat(MAX_TITLE_CHARS), MAX_TITLE_CHARS).is_ok(), "characters, not bytes");
        assert!(text("title", &"a".repeat(MAX_TITLE_CHARS + 1), MAX_TITLE_CHARS).unwrap_err().to_string().starts_with("title"));
        assert_eq!(text("username", "a\u{0}b", 10), Err(ValueError::ControlCharacters { field: "username" }));
    }
}
