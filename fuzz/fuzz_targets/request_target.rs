//! The edge's classification of a request target: never panics, and the redirect fast
//! path only takes paths the lookup would accept as codes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = kurz_query_edge::routes::fuzz_classify(s);
});
