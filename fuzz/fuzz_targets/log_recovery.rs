//! The embedded log's partition file: recovery of arbitrary bytes (a torn or corrupt
//! file) never panics, and what it keeps reads back; the batch decoder never panics.
#![no_main]
use kurz_storage::log::embedded::fuzzing;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("a temp dir")).path()
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::decode_batch_body(data);
    // Whatever recovery keeps must be readable: an error after a successful recovery
    // is a bug (a read of a file recovery accepted).
    if let Err(e) = fuzzing::recover_and_read(dir(), data) {
        assert!(!e.to_string().contains("no batch at byte"), "recovery kept a file that does not read back: {e}");
    }
});
