//! Every record decoder that reads log bytes: commands, events, clicks, control
//! records. None may panic; what decodes must encode and decode to the same value.
#![no_main]
use kurz_schemas::{Click, Command, ControlEvent, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Command::decode(data) {
        let again = Command::decode(&c.encode()).expect("an encoded command decodes");
        assert_eq!(again.encode(), c.encode());
    }
    if let Ok(e) = Event::decode(data) {
        let again = Event::decode(&e.encode()).expect("an encoded event decodes");
        assert_eq!(again.encode(), e.encode());
    }
    let _ = Click::decode(data);
    let _ = ControlEvent::decode(data);
});
