//! An HL7v2 file or batch (FHS/BHS ... BTS/FTS) as a drop or a batch frame
//! brings it: parsed into messages. Nothing may panic; every message found is
//! a slice of the input and parses on its own.
#![no_main]

use ehrgate_sdk::hl7::{Message, decode_bytes, parse_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = decode_bytes(data);
    let Ok(b) = parse_batch(&text) else { return };
    for m in &b.messages {
        assert!(text.contains(m.raw()), "a message is a slice of the input");
        let again = Message::parse(m.raw()).expect("a message cut out of a batch parses again");
        assert_eq!(again.control_id(), m.control_id());
    }
});
