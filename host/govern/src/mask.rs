//! Masking operations on values: keyed pseudonyms, per-patient date shifts,
//! generalisation (year, 3-digit ZIP), redaction; and their application to a FHIR
//! resource's JSON by element path.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The secret behind pseudonyms and date shifts. The same key gives the same
/// pseudonyms in every run, so masked tables still join.
#[derive(Clone)]
pub struct MaskKey {
    key: Vec<u8>,
    /// Date shifts are within ± this many days.
    shift_days: i64,
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

impl MaskKey {
    pub fn new(key: &[u8], shift_days: i64) -> MaskKey {
        MaskKey { key: key.to_vec(), shift_days: shift_days.max(1) }
    }

    fn mac(&self, domain: &str, value: &str) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(domain.as_bytes());
        m.update(b"\0");
        m.update(value.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// `ps_` and 24 hex digits of HMAC-SHA256(key, value).
    pub fn pseudonym(&self, value: &str) -> String {
        format!("ps_{}", hex::encode(&self.mac("id", value)[..12]))
    }

    /// A reference `Type/id` (or `Type/id/_history/v`, or a bare id) with its id
    /// pseudonymised; the type stays so that it still reads as a reference.
    pub fn pseudonym_ref(&self, reference: &str) -> String {
        match reference.split_once('/') {
            Some((ty, rest)) if ty.starts_with(|c: char| c.is_ascii_uppercase()) => {
                let id = rest.split('/').next().unwrap_or(rest);
                format!("{ty}/{}", self.pseudonym(id))
            }
            _ => self.pseudonym(reference),
        }
    }

    /// The shift, in days, of every date of patient `patient` (stable per key).
    pub fn shift_days(&self, patient: &str) -> i64 {
        let m = self.mac("shift", patient);
        let n = u64::from_be_bytes(m[..8].try_into().expect("8 bytes")) % (2 * self.shift_days as u64 + 1);
        n as i64 - self.shift_days
    }
}

/// What happens to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Left as it is.
    Keep,
    /// Removed (JSON) or null (column).
    Redact,
    /// Keyed pseudonym (ids and references keep their type).
    Pseudonym,
    /// A date or time reduced to its year.
    Year,
    /// Dates moved by the patient's shift (days), time of day kept.
    Shift,
    /// A birth date reduced to its year; ages over 89 grouped (`<=YYYY`).
    BirthYear,
    /// US ZIP to its first three digits; `000` for the three-digit areas of 20,000
    /// people or fewer (HHS Safe Harbor guidance, 2010 census).
    Zip3,
    /// An address kept only to state and country, its postal code as `zip3`.
    Address,
}

/// Three-digit ZIP areas with 20,000 or fewer people (HHS de-identification guidance).
const SMALL_ZIP3: [&str; 17] = ["036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893"];

pub fn zip3(zip: &str) -> String {
    let digits: String = zip.chars().filter(|c| c.is_ascii_digit()).take(3).collect();
    if digits.len() < 3 || SMALL_ZIP3.contains(&digits.as_str()) { "000".into() } else { digits }
}

/// `YYYY-MM...` strings (FHIR date, dateTime, instant) of at least year and month.
pub fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    b.len() >= 7 && digits(0..4) && b[4] == b'-' && digits(5..7) && (b.len() == 7 || (b[7] == b'-' && digits(8..10) && (b.len() == 10 || b[10] == b'T')))
}

/// The year of a date string.
pub fn year_of(s: &str) -> String {
    s.chars().take(4).collect()
}

/// Birth date to year; a person 90 or older shows as `<=YYYY` (this year - 90).
pub fn birth_year(s: &str, this_year: i64) -> String {
    let y: i64 = year_of(s).parse().unwrap_or(0);
    if this_year - y > 89 { format!("<={}", this_year - 90) } else { y.to_string() }
}

/// `s` (a FHIR date or dateTime) moved by `days`; precision kept. A year-only,
/// unparseable or nonexistent date (2024-02-30) is left as it is, as is one that
/// would leave the years 1 to 9999.
pub fn shift_date(s: &str, days: i64) -> String {
    use chrono::Datelike;
    if !looks_like_date(s) || s.len() < 10 {
        return s.to_string();
    }
    let Ok(d) = chrono::NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d") else { return s.to_string() };
    match d.checked_add_signed(chrono::TimeDelta::days(days)) {
        Some(n) if (1..=9999).contains(&n.year()) && d.year() >= 1 => format!("{}{}", n.format("%Y-%m-%d"), &s[10..]),
        _ => s.to_string(),
    }
}

pub const DAY_MICROS: i64 = 86_400_000_000;

/// The calendar year (UTC) of Unix time `secs`.
pub fn this_year_of(secs: i64) -> i64 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.year() as i64).unwrap_or(1970)
}

/// The first instant (UTC) of the year of `micros`.
pub fn year_start_micros(micros: i64) -> i64 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_micros(micros)
        .and_then(|d| chrono::NaiveDate::from_ymd_opt(d.year(), 1, 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_micros())
        .unwrap_or(micros)
}

/// An element rule: `Type.a.b` (or `*.a.b` for every type), arrays crossed
/// transparently, and what happens to what it selects.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementRule {
    pub resource_type: Option<String>,
    pub steps: Vec<String>,
    pub op: Op,
}

impl ElementRule {
    pub fn parse(path: &str, op: Op) -> Result<ElementRule, String> {
        let mut parts = path.split('.');
        let ty = parts.next().filter(|t| !t.is_empty()).ok_or_else(|| format!("element path `{path}` must be Type.element (or *.element)"))?;
        let steps: Vec<String> = parts.map(str::to_string).collect();
        if steps.is_empty() || steps.iter().any(|s| s.is_empty()) {
            return Err(format!("element path `{path}` must be Type.element (or *.element)"));
        }
        Ok(ElementRule { resource_type: (ty != "*").then(|| ty.to_string()), steps, op })
    }
}

/// Everything needed to mask one resource.
#[derive(Debug, Clone)]
pub struct Masker {
    pub key: MaskKey,
    pub rules: Vec<ElementRule>,
    /// Resource ids and every `reference`: pseudonymised (and reference `display`
    /// text dropped) or kept.
    pub ids: Op,
    /// Every date/dateTime/instant string: kept, reduced to the year, or shifted.
    pub dates: Op,
    pub this_year: i64,
}

impl Masker {
    /// The masked form of resource JSON `text` (unparseable text is redacted whole).
    pub fn resource(&self, text: &str) -> Option<String> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        self.mask_value(&mut v);
        Some(v.to_string())
    }

    /// Mask a parsed resource in place.
    pub fn mask_value(&self, v: &mut Value) {
        // Contained resources are resources too, each masked on its own (after the
        // container, so that nothing in them is masked twice).
        let contained = v.as_object_mut().and_then(|m| m.remove("contained"));
        let ty = v.get("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
        // (a resource about no patient it names still has its dates moved, by the
        // shift of no patient, as a row without patient_ref has in SQL)
        let patient = patient_of(v, &ty);
        let shift = self.key.shift_days(patient.as_deref().unwrap_or(""));
        for r in self.rules.iter().filter(|r| r.resource_type.as_deref().is_none_or(|t| t == ty)) {
            if let Value::Object(m) = &mut *v {
                apply(m, &r.steps, r.op, &self.key, self.this_year, shift);
            }
        }
        if self.ids == Op::Pseudonym {
            if let Some(Value::String(id)) = v.get_mut("id") {
                *id = self.key.pseudonym(id);
            }
            references(v, &self.key);
        }
        if matches!(self.dates, Op::Year | Op::Shift) {
            dates(v, self.dates, shift, None);
        }
        if let (Some(mut contained), Value::Object(m)) = (contained, &mut *v) {
            if let Value::Array(items) = &mut contained {
                items.iter_mut().for_each(|c| self.mask_value(c));
            }
            m.insert("contained".into(), contained);
        }
    }
}

/// The patient a resource is about: itself, or its subject/patient reference.
pub fn patient_of(v: &Value, ty: &str) -> Option<String> {
    if ty == "Patient" {
        return v.get("id").and_then(Value::as_str).map(|id| format!("Patient/{id}"));
    }
    ["subject", "patient", "for", "beneficiary"].iter().find_map(|k| v.get(*k)?.get("reference")?.as_str().filter(|r| r.starts_with("Patient/")).map(str::to_string))
}

fn apply(m: &mut Map<String, Value>, steps: &[String], op: Op, key: &MaskKey, this_year: i64, shift: i64) {
    let Some((first, rest)) = steps.split_first() else { return };
    if rest.is_empty() {
        if op == Op::Redact {
            m.remove(first);
        } else if let Some(v) = m.get_mut(first) {
            leaf(v, op, key, this_year, shift);
        }
        return;
    }
    match m.get_mut(first) {
        Some(Value::Object(child)) => apply(child, rest, op, key, this_year, shift),
        Some(Value::Array(items)) => {
            for it in items {
                if let Value::Object(child) = it {
                    apply(child, rest, op, key, this_year, shift);
                }
            }
        }
        _ => {}
    }
}

fn leaf(v: &mut Value, op: Op, key: &MaskKey, this_year: i64, shift: i64) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| leaf(i, op, key, this_year, shift)),
        Value::Object(m) if op == Op::Address => {
            m.retain(|k, _| matches!(k.as_str(), "state" | "country" | "postalCode" | "use" | "type"));
            if let Some(Value::String(z)) = m.get_mut("postalCode") {
                *z = zip3(z);
            }
        }
        Value::String(s) => {
            *s = match op {
                Op::Pseudonym => key.pseudonym(s),
                Op::Year => year_of(s),
                Op::Shift => shift_date(s, shift),
                Op::BirthYear => birth_year(s, this_year),
                Op::Zip3 => zip3(s),
                Op::Keep | Op::Redact | Op::Address => return,
            }
        }
        _ => {}
    }
}

/// Every `reference` pseudonymised; a reference's `display` (often a person's name
/// or an address) dropped; every identifier value (`identifier`,
/// `preAdmissionIdentifier`, a logical reference's) pseudonymised.
fn references(v: &mut Value, key: &MaskKey) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("reference")
                && !r.starts_with('#')
                && !r.starts_with("http")
            {
                *r = key.pseudonym_ref(r);
            }
            let reference_like = !m.contains_key("code")
                && !m.contains_key("system")
                && (m.contains_key("reference") || m.contains_key("identifier") || m.get("type").is_some_and(Value::is_string));
            if reference_like {
                m.remove("display");
            }
            for (k, child) in m.iter_mut() {
                if k == "identifier" || k.ends_with("Identifier") {
                    identifier_values(child, key);
                }
                references(child, key);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| references(i, key)),
        _ => {}
    }
}

fn identifier_values(v: &mut Value, key: &MaskKey) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| identifier_values(i, key)),
        Value::Object(m) => {
            if let Some(Value::String(id)) = m.get_mut("value") {
                *id = key.pseudonym(id);
            }
        }
        _ => {}
    }
}

/// Keys whose string values are never dates, whatever they look like.
const NOT_DATES: [&str; 7] = ["code", "system", "version", "id", "reference", "url", "unit"];

fn dates(v: &mut Value, op: Op, shift: i64, key: Option<&str>) {
    match v {
        Value::Object(m) => m.iter_mut().for_each(|(k, c)| dates(c, op, shift, Some(k))),
        Value::Array(items) => items.iter_mut().for_each(|i| dates(i, op, shift, key)),
        Value::String(s) if key.is_none_or(|k| !NOT_DATES.contains(&k)) && looks_like_date(s) => {
            *s = if op == Op::Year { year_of(s) } else { shift_date(s, shift) };
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values() {
        let k = MaskKey::new(b"k", 365);
        assert_eq!(k.pseudonym("123"), MaskKey::new(b"k", 365).pseudonym("123"), "stable");
        assert_ne!(k.pseudonym("123"), MaskKey::new(b"other", 365).pseudonym("123"), "keyed");
        assert_eq!(k.pseudonym_ref("Patient/123/_history/2"), format!("Patient/{}", k.pseudonym("123")));
        assert!(k.shift_days("Patient/1").abs() <= 365);
        assert_eq!(zip3("02139-4307"), "021");
        assert_eq!(zip3("03601"), "000");
        assert_eq!(birth_year("1931-02-03", 2026), "<=1936");
        assert_eq!(birth_year("1980-02-03", 2026), "1980");
        assert_eq!(shift_date("2024-02-28T10:00:00Z", 2), "2024-03-01T10:00:00Z");
        assert_eq!(shift_date("2024-01-01", -1), "2023-12-31");
        assert_eq!(shift_date("2024-02-30", 1), "2024-02-30", "no such day: left as it is");
        assert_eq!(this_year_of(1_796_413_115), 2026);
        assert_eq!(year_start_micros(1_700_000_000_000_000), 1_672_531_200_000_000, "2023-11-14 -> 2023-01-01");
        assert_eq!(year_start_micros(-30_172_694_400_000_000 + 5 * DAY_MICROS), -30_199_996_800_000_000, "1013-11-18 -> 1013-01-01");
        assert!(looks_like_date("2024-01") && !looks_like_date("2024") && !looks_like_date("12345-67"));
    }

    #[test]
    fn a_resource_by_rules_ids_and_dates() {
        let k = MaskKey::new(b"k", 30);
        let rules = vec![
            ElementRule::parse("Patient.name", Op::Redact).unwrap(),
            ElementRule::parse("*.address", Op::Address).unwrap(),
            ElementRule::parse("Patient.birthDate", Op::BirthYear).unwrap(),
        ];
        let m = Masker { key: k.clone(), rules, ids: Op::Pseudonym, dates: Op::Year, this_year: 2026 };
        let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}], "birthDate": "1970-05-06",
            "address": [{"line": ["1 Main St"], "city": "Boston", "state": "MA", "postalCode": "02139"}],
            "managingOrganization": {"reference": "Organization/o1", "display": "General"},
            "generalPractitioner": [{"type": "Practitioner", "identifier": {"system": "npi", "value": "4356789876"}, "display": "Pat Granite"}], "meta": {"lastUpdated": "2024-03-04T05:06:07Z"}});
        let out: Value = serde_json::from_str(&m.resource(&p.to_string()).unwrap()).unwrap();
        assert_eq!(out["id"], json!(k.pseudonym("p1")));
        assert!(out.get("name").is_none());
        assert_eq!(out["birthDate"], json!("1970"));
        assert_eq!(out["address"], json!([{"state": "MA", "postalCode": "021"}]));
        assert_eq!(out["managingOrganization"], json!({"reference": format!("Organization/{}", k.pseudonym("o1"))}));
        assert_eq!(out["meta"]["lastUpdated"], json!("2024"));
        assert_eq!(out["generalPractitioner"], json!([{"type": "Practitioner", "identifier": {"system": "npi", "value": k.pseudonym("4356789876")}}]));
        // A contained resource is masked like any other, once.
        let c = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "contained": [{"resourceType": "Patient", "id": "c1", "name": [{"family": "Doe"}], "managingOrganization": {"reference": "Organization/o1"}}]});
        let out: Value = serde_json::from_str(&m.resource(&c.to_string()).unwrap()).unwrap();
        assert_eq!(out["contained"][0], json!({"resourceType": "Patient", "id": k.pseudonym("c1"), "managingOrganization": {"reference": format!("Organization/{}", k.pseudonym("o1"))}}));
        // Shifted dates move by the patient's own shift, whichever resource holds them.
        let m = Masker { key: k.clone(), rules: vec![], ids: Op::Keep, dates: Op::Shift, this_year: 2026 };
        let o = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-06-01T00:00:00Z"});
        let out: Value = serde_json::from_str(&m.resource(&o.to_string()).unwrap()).unwrap();
        assert_eq!(out["effectiveDateTime"], json!(shift_date("2024-06-01T00:00:00Z", k.shift_days("Patient/p1"))));
    }
}
