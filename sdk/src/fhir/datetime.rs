//! HL7v2 date/times (DTM/TS/DT) to FHIR `date`, `dateTime` and `instant`.
//!
//! HL7: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`. FHIR `dateTime` keeps the precision
//! down to the day as it is; a time needs seconds and a UTC offset, so `HH` and `HHMM`
//! are padded with zeros, and a time without an offset is written with the caller's
//! default offset, or, without one, cut back to the date (a wrong offset would be worse
//! than a lost time of day). Invalid input gives `None`.
//!
//! ```
//! use ehrgate_sdk::fhir::datetime::*;
//! assert_eq!(to_fhir_datetime("20190423150137+0215", None).as_deref(), Some("2019-04-23T15:01:37+02:15"));
//! assert_eq!(to_fhir_datetime("200202150930", Some("-05:00")).as_deref(), Some("2002-02-15T09:30:00-05:00"));
//! assert_eq!(to_fhir_datetime("200202150930", None).as_deref(), Some("2002-02-15"));
//! assert_eq!(to_fhir_date("19620315").as_deref(), Some("1962-03-15"));
//! assert_eq!(to_fhir_date("196203520"), None);
//! ```

/// A parsed HL7 DTM. Fields past the precision given are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7DateTime {
    pub year: u16,
    pub month: Option<u8>,
    pub day: Option<u8>,
    pub hour: Option<u8>,
    pub minute: Option<u8>,
    pub second: Option<u8>,
    /// Fractional-second digits, as given (`"4"` for `.4`).
    pub fraction: Option<String>,
    /// UTC offset in minutes (`+0215` -> 135), if given.
    pub offset_minutes: Option<i16>,
}

impl Hl7DateTime {
    /// Parse `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]` (also `+ZZ`); surrounding spaces
    /// are ignored. `None` if anything is out of place or out of range.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (main, offset) = match s.find(['+', '-']) {
            Some(i) => (&s[..i], Some(parse_offset(&s[i..])?)),
            None => (s, None),
        };
        let (digits, fraction) = match main.split_once('.') {
            Some((d, f)) => {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (d, Some(f.to_owned()))
            }
            None => (main, None),
        };
        let n = digits.len();
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(n, 4 | 6 | 8 | 10 | 12 | 14) {
            return None;
        }
        if fraction.is_some() && n != 14 {
            return None;
        }
        let num = |a: usize, b: usize| -> Option<u8> {
            if n >= b {
                digits[a..b].parse().ok()
            } else {
                None
            }
        };
        let year: u16 = digits[..4].parse().ok()?;
        let dt = Hl7DateTime {
            year,
            month: num(4, 6),
            day: num(6, 8),
            hour: num(8, 10),
            minute: num(10, 12),
            second: num(12, 14),
            fraction,
            offset_minutes: offset,
        };
        dt.valid().then_some(dt)
    }

    fn valid(&self) -> bool {
        if self.year == 0 {
            return false;
        }
        if let Some(m) = self.month
            && !(1..=12).contains(&m)
        {
            return false;
        }
        if let (Some(m), Some(d)) = (self.month, self.day)
            && (d == 0 || d > days_in_month(self.year, m))
        {
            return false;
        }
        self.hour.is_none_or(|h| h < 24)
            && self.minute.is_none_or(|m| m < 60)
            && self.second.is_none_or(|s| s < 60)
    }

    /// Whether a time of day is given.
    pub fn has_time(&self) -> bool {
        self.hour.is_some()
    }

    /// FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD` (any time is dropped).
    pub fn to_date(&self) -> String {
        let mut s = String::with_capacity(10);
        self.push_date(&mut s);
        s
    }

    /// FHIR `dateTime`. A time without its own offset uses `default_offset`
    /// (`Z`, `+02:00` or `+0200`), or is dropped (date only) when that is `None`.
    pub fn to_datetime(&self, default_offset: Option<&str>) -> String {
        let mut s = String::with_capacity(32);
        self.push_date(&mut s);
        if self.day.is_some() {
            self.push_time(&mut s, default_offset);
        }
        s
    }

    /// FHIR `instant` (full seconds and an offset): `None` without a time of day, or
    /// without any offset.
    pub fn to_instant(&self, default_offset: Option<&str>) -> Option<String> {
        self.day?;
        let mut s = String::with_capacity(32);
        self.push_date(&mut s);
        self.push_time(&mut s, default_offset).then_some(s)
    }

    fn push_date(&self, s: &mut String) {
        push_digits(s, self.year.into(), 4);
        if let Some(m) = self.month {
            s.push('-');
            push_digits(s, m.into(), 2);
            if let Some(d) = self.day {
                s.push('-');
                push_digits(s, d.into(), 2);
            }
        }
    }

    /// `Thh:mm:ss[.f]` and the offset onto `s`; `false`, writing nothing, without a
    /// time of day or a usable offset.
    fn push_time(&self, s: &mut String, default_offset: Option<&str>) -> bool {
        let Some(h) = self.hour else { return false };
        let mut default = None;
        match self.offset_minutes {
            Some(m) if m.unsigned_abs() > 14 * 60 => return false,
            Some(_) => {}
            None => match default_offset.and_then(normalize_offset) {
                Some(o) => default = Some(o),
                None => return false,
            },
        }
        s.push('T');
        push_digits(s, h.into(), 2);
        s.push(':');
        push_digits(s, self.minute.unwrap_or(0).into(), 2);
        s.push(':');
        push_digits(s, self.second.unwrap_or(0).into(), 2);
        if let Some(f) = &self.fraction {
            s.push('.');
            s.push_str(f);
        }
        match (self.offset_minutes, default) {
            (Some(m), _) => push_offset(s, m),
            (None, Some(o)) => s.push_str(&o),
            (None, None) => unreachable!("checked above"),
        }
        true
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_digits(s: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let (mut n, mut i) = (n, buf.len());
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    s.extend(buf[i..].iter().map(|&b| char::from(b)));
}

/// `+hh:mm` / `-hh:mm` (`minutes` within ±14 hours).
fn push_offset(s: &mut String, minutes: i16) {
    let a = minutes.unsigned_abs();
    s.push(if minutes < 0 { '-' } else { '+' });
    push_digits(s, (a / 60).into(), 2);
    s.push(':');
    push_digits(s, (a % 60).into(), 2);
}

/// HL7 DTM -> FHIR `date` (precision up to the day kept, time dropped).
pub fn to_fhir_date(s: &str) -> Option<String> {
    Hl7DateTime::parse(s).map(|d| d.to_date())
}

/// HL7 DTM -> FHIR `dateTime`; see [`Hl7DateTime::to_datetime`].
pub fn to_fhir_datetime(s: &str, default_offset: Option<&str>) -> Option<String> {
    Hl7DateTime::parse(s).map(|d| d.to_datetime(default_offset))
}

/// HL7 DTM -> FHIR `instant`; see [`Hl7DateTime::to_instant`].
pub fn to_fhir_instant(s: &str, default_offset: Option<&str>) -> Option<String> {
    Hl7DateTime::parse(s)?.to_instant(default_offset)
}

/// An HL7 time (TM: `HH[MM[SS[.S+]]]`, offset ignored) -> FHIR `time` (`hh:mm:ss`).
pub fn to_fhir_time(s: &str) -> Option<String> {
    let s = s.trim();
    let main = s.split(['+', '-']).next()?;
    let (digits, fraction) = main
        .split_once('.')
        .map_or((main, None), |(d, f)| (d, Some(f)));
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    let part =
        |a: usize| -> Option<u8> { digits.get(a..a + 2).map_or(Some(0), |p| p.parse().ok()) };
    let (h, m, sec) = (part(0)?, part(2)?, part(4)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let mut t = format!("{h:02}:{m:02}:{sec:02}");
    if let Some(f) = fraction {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) || digits.len() != 6 {
            return None;
        }
        t.push('.');
        t.push_str(f);
    }
    Some(t)
}

/// `Z`, `+hh:mm`, `+hhmm` or `+hh` -> the FHIR form (`Z` or `+hh:mm`); `None` if invalid.
pub fn normalize_offset(s: &str) -> Option<String> {
    let s = s.trim();
    if s == "Z" {
        return Some("Z".to_owned());
    }
    format_offset(parse_offset(&s.replace(':', ""))?)
}

fn parse_offset(s: &str) -> Option<i16> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1i16, &s[1..]),
        b'-' => (-1i16, &s[1..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i16, i16) = match rest.len() {
        2 => (rest.parse().ok()?, 0),
        4 => (rest[..2].parse().ok()?, rest[2..].parse().ok()?),
        _ => return None,
    };
    if m > 59 || h * 60 + m > 14 * 60 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

fn format_offset(minutes: i16) -> Option<String> {
    if minutes.unsigned_abs() > 14 * 60 {
        return None;
    }
    let mut s = String::with_capacity(6);
    push_offset(&mut s, minutes);
    Some(s)
}

fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_is_kept() {
        assert_eq!(to_fhir_datetime("2019", None).unwrap(), "2019");
        assert_eq!(to_fhir_datetime("201904", None).unwrap(), "2019-04");
        assert_eq!(to_fhir_datetime("20190423", None).unwrap(), "2019-04-23");
        assert_eq!(
            to_fhir_datetime("2019042315+0100", None).unwrap(),
            "2019-04-23T15:00:00+01:00"
        );
        assert_eq!(
            to_fhir_datetime("201904231501-0500", None).unwrap(),
            "2019-04-23T15:01:00-05:00"
        );
        assert_eq!(
            to_fhir_datetime("20210817151943.4+0200", None).unwrap(),
            "2021-08-17T15:19:43.4+02:00"
        );
        assert_eq!(
            to_fhir_datetime("20110531140551-0500", None).unwrap(),
            "2011-05-31T14:05:51-05:00"
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(
            to_fhir_datetime("20190423150137+0215", None).unwrap(),
            "2019-04-23T15:01:37+02:15"
        );
        assert_eq!(
            to_fhir_datetime("20190423150137", Some("Z")).unwrap(),
            "2019-04-23T15:01:37Z"
        );
        assert_eq!(
            to_fhir_datetime("20190423150137", Some("+0530")).unwrap(),
            "2019-04-23T15:01:37+05:30"
        );
        assert_eq!(
            to_fhir_datetime("20190423150137", Some("-03:00")).unwrap(),
            "2019-04-23T15:01:37-03:00"
        );
        // Time without any offset: date only.
        assert_eq!(
            to_fhir_datetime("20190423150137", None).unwrap(),
            "2019-04-23"
        );
        // An offset given on a date-only value is harmless.
        assert_eq!(
            to_fhir_datetime("20190423+0100", None).unwrap(),
            "2019-04-23"
        );
        assert_eq!(normalize_offset("+02").unwrap(), "+02:00");
        assert_eq!(normalize_offset("+1500"), None);
    }

    #[test]
    fn invalid_is_none() {
        for s in [
            "",
            "196203520",
            "2019-04-23",
            "20191301",
            "20190230",
            "20190229",
            "00000101",
            "2019042325",
            "201904231260",
            "20190423150137+25",
            "20190423150137+02:15",
            "2019x",
            "20190423.5",
            "201904231501.5",
            "20190423150137.",
            "20190423150137+0260",
        ] {
            assert_eq!(to_fhir_datetime(s, Some("Z")), None, "{s}");
        }
        assert_eq!(to_fhir_date("20200229").unwrap(), "2020-02-29");
        assert_eq!(to_fhir_date("19000229"), None);
        assert_eq!(to_fhir_date(" 20200229 ").unwrap(), "2020-02-29");
    }

    #[test]
    fn instants() {
        assert_eq!(
            to_fhir_instant("20190423150137+0215", None).unwrap(),
            "2019-04-23T15:01:37+02:15"
        );
        assert_eq!(
            to_fhir_instant("201904231501", Some("Z")).unwrap(),
            "2019-04-23T15:01:00Z"
        );
        assert_eq!(to_fhir_instant("201904231501", None), None);
        assert_eq!(to_fhir_instant("20190423", Some("Z")), None);
    }

    #[test]
    fn dates_drop_time() {
        assert_eq!(to_fhir_date("198808181126+0215").unwrap(), "1988-08-18");
    }

    #[test]
    fn times() {
        assert_eq!(to_fhir_time("0930").unwrap(), "09:30:00");
        assert_eq!(to_fhir_time("093015.25").unwrap(), "09:30:15.25");
        assert_eq!(to_fhir_time("2460"), None);
        assert_eq!(to_fhir_time("9"), None);
    }
}
