//! Fault injection, by request header (`X-Sandbox-Fault`) or by rules configured up
//! front or through the admin API. The grammar is in the crate README.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The request header that asks for a fault.
pub const FAULT_HEADER: &str = "x-sandbox-fault";

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and an OperationOutcome), optionally with Retry-After.
    Status { code: u16, retry_after: Option<RetryAfter> },
    /// Answer normally, after this long.
    Slow(Duration),
    /// Send the status line and headers, then break the connection mid-body.
    Reset,
    /// NDJSON downloads: cut the last line in half (and drop the final newline).
    TruncateNdjson,
    /// NDJSON downloads: add a line that is not JSON.
    InvalidNdjson,
    /// The bearer token on this request is expired from now on (so it gets a 401).
    ExpireToken,
}

/// `Retry-After` as delta-seconds or as an HTTP-date that many seconds ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(u64),
    DateIn(u64),
}

impl RetryAfter {
    /// The header value. A date is rounded up to the next whole second, so waiting
    /// until it never waits less than the seconds asked for.
    pub fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::DateIn(s) => {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                let whole = now.as_secs() + 1 + s;
                httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(whole))
            }
        }
    }
}

/// A parsed fault spec: the fault plus how many times it applies (`None`: always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub fault: Fault,
    pub times: Option<u64>,
    /// Rules only: applies to every Nth matching request (`every=20`: 5%), the
    /// Nth first.
    pub every: Option<u64>,
}

impl std::str::FromStr for FaultSpec {
    type Err = String;

    /// `kind[=value][;param=value]*`, e.g. `429;retry-after=2;times=1`, `slow=1500`,
    /// `503;retry-after-date=3`, `reset`, `truncate-ndjson`, `invalid-ndjson`, `expire-token`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(';').map(str::trim);
        let head = parts.next().unwrap_or("");
        let (kind, value) = head.split_once('=').map(|(k, v)| (k.trim(), Some(v.trim()))).unwrap_or((head, None));
        let mut times = None;
        let mut every = None;
        let mut retry_after = None;
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("fault parameter `{p}` is not key=value"))?;
            let n: u64 = v.trim().parse().map_err(|_| format!("fault parameter `{k}` needs a whole number"))?;
            match k.trim() {
                "times" => times = Some(n),
                "every" if n > 0 => every = Some(n),
                "every" => return Err("fault parameter `every` needs a number above 0".to_string()),
                "retry-after" => retry_after = Some(RetryAfter::Seconds(n)),
                "retry-after-date" => retry_after = Some(RetryAfter::DateIn(n)),
                other => return Err(format!("unknown fault parameter `{other}` (times, every, retry-after, retry-after-date)")),
            }
        }
        let fault = match kind {
            "slow" | "timeout" => {
                let ms = value.unwrap_or(if kind == "timeout" { "3600000" } else { "1000" });
                Fault::Slow(Duration::from_millis(ms.parse().map_err(|_| "slow=<milliseconds>".to_string())?))
            }
            "reset" => Fault::Reset,
            "truncate-ndjson" => Fault::TruncateNdjson,
            "invalid-ndjson" => Fault::InvalidNdjson,
            "expire-token" => Fault::ExpireToken,
            code => match code.parse::<u16>() {
                Ok(code) if (400..600).contains(&code) => Fault::Status { code, retry_after },
                _ => {
                    return Err(format!(
                        "unknown fault `{kind}` (a 4xx/5xx status, slow=MS, timeout, reset, truncate-ndjson, invalid-ndjson, expire-token)"
                    ));
                }
            },
        };
        Ok(FaultSpec { fault, times, every })
    }
}

/// A configured fault: applies to requests whose method and path match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FaultRule {
    /// Only this method (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Only paths starting with this (relative to the FHIR base; any when absent).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The fault, in the header grammar (`times=N` limits how often it applies).
    pub fault: String,
}

/// Rules with their remaining counts.
#[derive(Debug, Default)]
pub struct FaultBook {
    /// (rule, its spec, uses left, matching requests seen)
    rules: Vec<(FaultRule, FaultSpec, Option<u64>, u64)>,
    /// How often each header spec has been applied (for `times=N` in headers).
    header_uses: std::collections::HashMap<String, u64>,
}

impl FaultBook {
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        let spec: FaultSpec = rule.fault.parse()?;
        let left = spec.times;
        self.rules.push((rule, spec, left, 0));
        Ok(())
    }

    pub fn clear(&mut self) {
        self.rules.clear();
        self.header_uses.clear();
    }

    /// The fault for this request, if any: the header first, then the first matching rule
    /// that has uses left.
    pub fn pick(&mut self, header: Option<&str>, method: &str, path: &str) -> Result<Option<Fault>, String> {
        if let Some(h) = header {
            let spec: FaultSpec = h.parse()?;
            let used = self.header_uses.entry(h.to_string()).or_default();
            if spec.times.is_none_or(|t| *used < t) {
                *used += 1;
                return Ok(Some(spec.fault));
            }
            return Ok(None);
        }
        for (rule, spec, left, seen) in &mut self.rules {
            let method_ok = rule.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method));
            let path_ok = rule.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
            if method_ok && path_ok && left.is_none_or(|n| n > 0) {
                *seen += 1;
                if spec.every.is_some_and(|e| *seen % e != 0) {
                    continue;
                }
                if let Some(n) = left {
                    *n -= 1;
                }
                return Ok(Some(spec.fault.clone()));
            }
        }
        Ok(None)
    }
}

/// Applies an NDJSON fault to a file body.
pub fn mangle_ndjson(fault: Option<&Fault>, body: String) -> String {
    match fault {
        Some(Fault::TruncateNdjson) => {
            let trimmed = body.trim_end_matches('\n');
            let last_start = trimmed.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let keep = last_start + (trimmed.len() - last_start) / 2;
            let mut cut = keep;
            while !trimmed.is_char_boundary(cut) {
                cut -= 1;
            }
            trimmed[..cut].to_string()
        }
        Some(Fault::InvalidNdjson) => {
            let mut lines: Vec<&str> = body.lines().collect();
            let at = lines.len() / 2;
            lines.insert(at, "{\"resourceType\": \"Observation\", \"id\": oops this is not json");
            let mut out = lines.join("\n");
            out.push('\n');
            out
        }
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let s: FaultSpec = "429;retry-after=2;times=1".parse().unwrap();
        assert_eq!(s, FaultSpec { fault: Fault::Status { code: 429, retry_after: Some(RetryAfter::Seconds(2)) }, times: Some(1), every: None });
        assert_eq!("503;every=20".parse::<FaultSpec>().unwrap().every, Some(20));
        assert!("503;every=0".parse::<FaultSpec>().is_err());
        assert_eq!("slow=250".parse::<FaultSpec>().unwrap().fault, Fault::Slow(Duration::from_millis(250)));
        assert_eq!(
            "503;retry-after-date=3".parse::<FaultSpec>().unwrap().fault,
            Fault::Status { code: 503, retry_after: Some(RetryAfter::DateIn(3)) }
        );
        assert!("teapot".parse::<FaultSpec>().is_err());
        assert!("200".parse::<FaultSpec>().is_err());
        assert!("500;bogus=1".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn header_times_and_rules() {
        let mut b = FaultBook::default();
        assert!(b.pick(Some("500;times=2"), "GET", "/x").unwrap().is_some());
        assert!(b.pick(Some("500;times=2"), "GET", "/x").unwrap().is_some());
        assert!(b.pick(Some("500;times=2"), "GET", "/x").unwrap().is_none());
        b.add(FaultRule { method: Some("GET".into()), path_prefix: Some("/Patient".into()), fault: "503;times=1".into() }).unwrap();
        assert!(b.pick(None, "POST", "/Patient/1").unwrap().is_none());
        assert!(b.pick(None, "GET", "/Observation").unwrap().is_none());
        assert!(b.pick(None, "GET", "/Patient/1").unwrap().is_some());
        assert!(b.pick(None, "GET", "/Patient/1").unwrap().is_none());
        // every=4: the 4th, 8th... matching request.
        b.clear();
        b.add(FaultRule { method: Some("POST".into()), path_prefix: Some("/Task".into()), fault: "503;every=4".into() }).unwrap();
        let hits: Vec<bool> = (0..8).map(|_| b.pick(None, "POST", "/Task").unwrap().is_some()).collect();
        assert_eq!(hits, [false, false, false, true, false, false, false, true]);
    }

    #[test]
    fn ndjson_mangling() {
        let body = "{\"a\":1}\n{\"b\":2}\n".to_string();
        let t = mangle_ndjson(Some(&Fault::TruncateNdjson), body.clone());
        assert!(t.starts_with("{\"a\":1}\n") && !t.ends_with('\n') && serde_json::from_str::<serde_json::Value>(t.lines().last().unwrap()).is_err());
        let i = mangle_ndjson(Some(&Fault::InvalidNdjson), body);
        assert_eq!(i.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err()).count(), 1);
    }
}
