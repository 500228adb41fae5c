//! What is retried, and when.

use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::config::RetryConfig;

/// Longest pause a Retry-After may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// A Retry-After further away than this is not a plan but a server's mistake (an
/// epoch timestamp sent as delta-seconds, say): it is ignored, and the caller
/// backs off as usual.
pub const ABSURD_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Methods that can be repeated without changing the result.
pub fn idempotent_method(method: &str) -> bool {
    matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
}

/// Statuses worth another attempt: 408, 429 and 5xx other than 501/505.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status) && status != 501 && status != 505
}

/// Statuses that count against the circuit breaker (the upstream is failing, not
/// refusing): 408 and 5xx.
pub fn failure_status(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP-date, relative to `now`; capped at
/// [`MAX_RETRY_AFTER`]. Beyond [`ABSURD_RETRY_AFTER`] it is the server's error:
/// logged and ignored (`None`), so the caller's normal backoff applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let d = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(v.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    if d > ABSURD_RETRY_AFTER {
        tracing::warn!("ignoring an absurd Retry-After of {} s from the server (more than a day); backing off as usual", d.as_secs());
        return None;
    }
    Some(d.min(MAX_RETRY_AFTER))
}

/// Full jitter: a random wait in `[0, min(cap, base * 2^(attempt-1))]`.
pub fn backoff(cfg: &RetryConfig, attempt: u32) -> Duration {
    let exp = cfg.base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let ceiling = exp.min(cfg.cap_ms);
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(42)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::ZERO), "a past date means now");
        assert_eq!(parse_retry_after("7200", now), Some(MAX_RETRY_AFTER), "long, but plausible: capped");
        assert_eq!(parse_retry_after("999999", now), None, "over a day: the server's error, ignored");
        assert_eq!(parse_retry_after("1733300000", now), None, "an epoch timestamp sent as delta-seconds");
        assert_eq!(parse_retry_after("99999999999999999999999", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let cfg = RetryConfig { max_attempts: 10, base_ms: 100, cap_ms: 1000 };
        for attempt in 1..12 {
            let ceiling = (100u64 << (attempt - 1)).min(1000);
            for _ in 0..50 {
                assert!(backoff(&cfg, attempt).as_millis() as u64 <= ceiling);
            }
        }
        let distinct: std::collections::HashSet<u128> = (0..50).map(|_| backoff(&cfg, 5).as_millis()).collect();
        assert!(distinct.len() > 5, "full jitter spreads the waits");
    }

    #[test]
    fn classification() {
        assert!(idempotent_method("get") && idempotent_method("PUT") && !idempotent_method("POST") && !idempotent_method("PATCH"));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
