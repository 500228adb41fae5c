//! Webhook signature checking with attacker-chosen headers and body. Nothing may
//! panic (overflowing timestamps included), and a request is accepted only with
//! the signature `sign` gives for its timestamp and body.
#![no_main]

use ehrgate_wire::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret";
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    // timestamp \n signature \n body
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let ts = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let sig = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let body = parts.next().unwrap_or_default();
    if let Ok(decoded) = verify(SECRET, ts, sig, body, NOW, 300) {
        let ts: i64 = ts.unwrap().trim().parse().unwrap();
        assert!(NOW.abs_diff(ts) <= 300);
        let expected = sign(SECRET, ts, body);
        assert_eq!(format!("sha256={}", hex_lower(&decoded)), expected);
    }
});

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
