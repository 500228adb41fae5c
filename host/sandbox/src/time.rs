//! Instants as FHIR `instant` text (RFC 3339, UTC, milliseconds) and back, without a
//! date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Days since 1970-01-01 -> (year, month, day) (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-01-01T00:00:00.000Z`.
pub fn format_instant(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s % 3600 / 60, s % 60, ms % 1000)
}

/// `YYYY-MM-DD` of an instant.
pub fn format_date(ms: u64) -> String {
    format_instant(ms)[..10].to_string()
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)` into milliseconds.
pub fn parse_instant(text: &str) -> Option<u64> {
    let t = text.trim();
    let num = |s: &str| s.parse::<i64>().ok();
    if t.len() < 10 || t.as_bytes()[4] != b'-' || t.as_bytes()[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&t[0..4])?, num(&t[5..7])? as u32, num(&t[8..10])? as u32);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let mut ms: i64 = days * 86_400_000;
    let rest = &t[10..];
    if rest.is_empty() {
        return u64::try_from(ms).ok();
    }
    let rest = rest.strip_prefix('T')?;
    if rest.len() < 8 {
        return None;
    }
    let (h, mi, s) = (num(&rest[0..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    ms += (h * 3600 + mi * 60 + s) * 1000;
    let mut rest = &rest[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut f = digits.clone();
        f.truncate(3);
        while f.len() < 3 {
            f.push('0');
        }
        ms += num(&f)?;
        rest = &frac[digits.len()..];
    }
    match rest {
        "Z" | "+00:00" | "-00:00" => {}
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let off = (num(&tz[1..3])? * 60 + num(&tz[4..6])?) * 60_000;
            ms += if tz.starts_with('+') { -off } else { off };
        }
        _ => return None,
    }
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        let t = parse_instant("2024-02-29T13:45:10.250Z").unwrap();
        assert_eq!(format_instant(t), "2024-02-29T13:45:10.250Z");
        assert_eq!(parse_instant("2024-02-29T15:45:10.250+02:00"), Some(t));
        assert_eq!(parse_instant("2024-03-01"), Some(parse_instant("2024-03-01T00:00:00Z").unwrap()));
        assert_eq!(parse_instant("yesterday"), None);
    }
}
