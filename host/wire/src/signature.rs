//! Webhook request signatures: `X-Ehrgate-Signature: sha256=<hex>` is the
//! HMAC-SHA256, under the source's secret, of `<X-Ehrgate-Timestamp>.<body>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature a sender puts in `X-Ehrgate-Signature` (for senders and tests).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Check a request's signature and timestamp headers (as sent, or `None` when
/// missing) against `secret`; a timestamp further than `window_secs` from
/// `now_secs` is refused. Returns the decoded signature bytes: the canonical form
/// to recognise a replay by (the header's hex may change case).
pub fn verify(secret: &[u8], timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now_secs: i64, window_secs: u64) -> Result<Vec<u8>, &'static str> {
    let ts = timestamp.ok_or("missing X-Ehrgate-Timestamp")?;
    let ts: i64 = ts.trim().parse().map_err(|_| "X-Ehrgate-Timestamp is not unix seconds")?;
    let sig = signature.ok_or("missing X-Ehrgate-Signature")?;
    let sig = sig.trim().strip_prefix("sha256=").ok_or("X-Ehrgate-Signature must be sha256=<hex>")?;
    let sig = hex::decode(sig).map_err(|_| "X-Ehrgate-Signature is not hex")?;
    // Constant-time comparison.
    mac(secret, ts, body).verify_slice(&sig).map_err(|_| "signature does not match")?;
    // abs_diff cannot overflow, whatever timestamp a sender claims.
    if now_secs.abs_diff(ts) > window_secs {
        return Err("timestamp outside the replay window");
    }
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_verify_and_anything_else_is_refused_with_a_reason() {
        let (secret, body, now) = (b"s3cret".as_slice(), br#"{"a":1}"#.as_slice(), 1_700_000_000);
        let sig = sign(secret, now, body);
        let ts = now.to_string();
        let good = verify(secret, Some(&ts), Some(&sig), body, now, 300).unwrap();
        assert_eq!(good.len(), 32);
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
        assert_eq!(verify(secret, Some(&ts), Some(&upper), body, now, 300).unwrap(), good);
        assert_eq!(verify(b"other", Some(&ts), Some(&sig), body, now, 300), Err("signature does not match"));
        assert_eq!(verify(secret, Some(&ts), Some(&sig), b"{}", now, 300), Err("signature does not match"));
        assert_eq!(verify(secret, None, Some(&sig), body, now, 300), Err("missing X-Ehrgate-Timestamp"));
        assert_eq!(verify(secret, Some(&ts), None, body, now, 300), Err("missing X-Ehrgate-Signature"));
        assert_eq!(verify(secret, Some("soon"), Some(&sig), body, now, 300), Err("X-Ehrgate-Timestamp is not unix seconds"));
        assert_eq!(verify(secret, Some(&ts), Some("md5=00"), body, now, 300), Err("X-Ehrgate-Signature must be sha256=<hex>"));
        assert_eq!(verify(secret, Some(&ts), Some("sha256=zz"), body, now, 300), Err("X-Ehrgate-Signature is not hex"));
        assert_eq!(verify(secret, Some(&ts), Some(&sig), body, now + 301, 300), Err("timestamp outside the replay window"));
        // Extreme timestamps are refused, not a panic.
        let min = i64::MIN.to_string();
        let s = sign(secret, i64::MIN, body);
        assert_eq!(verify(secret, Some(&min), Some(&s), body, now, 300), Err("timestamp outside the replay window"));
    }
}
