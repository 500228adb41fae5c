//! One HL7v2 message as it arrives (any bytes): decoded to text, parsed, and
//! every field, component and path read back. Nothing may panic, and what the
//! parser keeps must be a part of its input.
#![no_main]

use ehrgate_sdk::hl7::{Message, decode_bytes, escape, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = decode_bytes(data);
    // Valid UTF-8 is never rewritten (only a BOM is dropped).
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(text.as_ref(), s.strip_prefix('\u{feff}').unwrap_or(s));
    }
    let Ok(m) = Message::parse(&text) else { return };
    let d = *m.delimiters();
    // Escaping is only defined for delimiters HL7 allows: distinct, and not
    // letters or digits (with `S` as the escape character, `\S\` is ambiguous).
    let mut all = vec![d.field, d.component, d.repetition, d.escape, d.subcomponent];
    all.extend(d.truncation);
    let sane = all.iter().all(|c| !c.is_alphanumeric() && !c.is_whitespace() && *c != '\0') && {
        let mut s = all.clone();
        s.sort();
        s.dedup();
        s.len() == all.len()
    };
    for seg in m.segments() {
        assert!(text.contains(seg.raw()), "a segment is a slice of the input");
        for (i, f) in seg.fields().enumerate().take(64) {
            for r in f.repetitions().take(8) {
                for c in 1..=4 {
                    let v = r.component(c);
                    let un = unescape(v.raw(), &d);
                    // Escaping what was unescaped and unescaping again is stable.
                    if sane {
                        assert_eq!(unescape(&escape(&un, &d), &d), un);
                    }
                }
            }
            let _ = seg.get(&format!("{}-{}", seg.id(), i + 1));
        }
    }
    for path in ["MSH-9.1", "MSH-10", "PID-3(2).4.1", "OBX(2)-5", "PV1-3.1", "NTE-3"] {
        let _ = m.get(path);
    }
    let _ = (m.message_code(), m.trigger_event(), m.control_id(), m.version());
});
