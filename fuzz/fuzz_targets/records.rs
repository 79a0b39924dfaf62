//! Every record decoder that reads log bytes: commands, events, clicks, control
//! records, plain and with sealed personal data opened. None may panic; what decodes
//! must encode and decode to the same value.
#![no_main]
use kurz_schemas::personal::SubjectKey;
use kurz_schemas::{Click, Command, ControlEvent, Event};
use libfuzzer_sys::fuzz_target;

/// Every subject has a key, but one whose name says it was erased.
fn keys(subject: &str) -> Option<SubjectKey> {
    Some(if subject.starts_with('x') { SubjectKey::Erased } else { SubjectKey::Live([7; 32]) })
}

fn nonce() -> [u8; 12] {
    [1; 12]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Command::decode(data) {
        let again = Command::decode(&c.encode()).expect("an encoded command decodes");
        assert_eq!(again.encode(), c.encode());
    }
    if let Ok(e) = Event::decode(data) {
        let again = Event::decode(&e.encode()).expect("an encoded event decodes");
        assert_eq!(again.encode(), e.encode());
    }
    let _ = Event::sealed_subjects(data);
    let _ = Command::sealed_subjects(data);
    if let Ok(e) = Event::decode_opened(data, &keys) {
        if let Ok(sealed) = e.encode_sealed(&keys, &mut nonce) {
            let again = Event::decode_opened(&sealed, &keys).expect("a sealed event opens");
            // Under live keys the round trip keeps everything; under an erased one the
            // user comes back erased, its personal fields dropped.
            if e.subjects().iter().all(|s| !s.starts_with('x')) {
                assert_eq!(again, e);
            } else {
                assert!(again
                    .users()
                    .iter()
                    .filter(|u| u.subject.as_deref().is_some_and(|s| s.starts_with('x')))
                    .all(|u| u.erased && u.email.is_empty()));
            }
        }
    }
    if let Ok(c) = Command::decode_opened(data, &keys) {
        if let Ok(sealed) = c.encode_sealed(&keys, &mut nonce) {
            let again = Command::decode_opened(&sealed, &keys).expect("a sealed command opens");
            assert_eq!(again, c);
        }
    }
    let _ = Click::decode(data);
    // Either kind of clicks-topic record re-encodes to what decodes to itself.
    if let Ok(r) = kurz_schemas::ClickRecord::decode(data) {
        assert_eq!(kurz_schemas::ClickRecord::decode(&r.encode()).expect("a re-encoded record decodes"), r);
    }
    let _ = ControlEvent::decode(data);
});
