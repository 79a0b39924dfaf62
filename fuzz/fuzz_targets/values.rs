//! The validated newtypes built from request fields: `ShortCode`, `TargetUrl`,
//! `Email`. None may panic; what they accept is what they promise.
#![no_main]
use kurz_schemas::{Email, ShortCode, TargetUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(c) = ShortCode::parse(s) {
        assert!(ShortCode::parse_lenient(c.as_str()).is_ok());
        assert!(ShortCode::is_plain_code(c.as_str()), "an alias must route to the redirect: {s:?}");
    }
    if ShortCode::is_plain_code(s) {
        assert!(ShortCode::parse_lenient(s).is_ok());
    }
    if let Ok(u) = TargetUrl::parse(s) {
        // Canonical: parsing the stored form again changes nothing, and a stored
        // record always decodes.
        let again = TargetUrl::parse(u.as_str()).unwrap_or_else(|e| panic!("{s:?} → {:?} no longer parses: {e}", u.as_str()));
        assert_eq!(again.as_str(), u.as_str(), "not canonical: {s:?}");
        assert!(TargetUrl::parse_stored(u.as_str()).is_ok());
        let rest = u.as_str().split_once("://").map(|(_, r)| r).unwrap_or_else(|| panic!("no authority kept: {s:?}"));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        assert!(!authority.contains('@'), "userinfo kept: {s:?} → {:?}", u.as_str());
        assert!(u.host().is_some_and(|h| !h.is_empty()));
    }
    let _ = Email::parse(s);
});
