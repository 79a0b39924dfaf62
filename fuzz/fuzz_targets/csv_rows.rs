//! Bulk-load CSV input: the check and the row reader never panic, and an input that
//! passes the check always reads whole.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = kurz_command_api::routes::bulk::fuzz_rows(data) {
        assert!(!e.starts_with("a checked input failed"), "{e}");
    }
});
