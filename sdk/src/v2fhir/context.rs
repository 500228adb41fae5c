//! The per-message mapping context.

use std::borrow::Cow;

use super::Mapper;
use crate::adapter::{Hl7Input, Output};
use crate::fhir::datetime::{Hl7DateTime, normalize_offset};
use crate::fhir::{Meta, Reference, Resource, prefixed_uri, uri_escape};
use crate::hl7::Message;
use crate::ids;
use serde_json::Value;

/// The order an OBX belongs to: the system and key its ids are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub system: String,
    pub key: String,
}

/// What one message's mapping shares: the message, where it came from, what has been
/// built so far.
pub struct Context<'m, 'a> {
    /// The mapper in use (for its code / identifier system choices).
    pub mapper: &'m (dyn Mapper + 'm),
    pub message: &'m Message<'a>,
    pub input: &'m Hl7Input,
    /// [`Mapper::source_system`] of this message.
    pub source_system: String,
    /// The `meta` every resource gets (`source`, `lastUpdated`).
    pub meta: Meta,
    /// The id of the Patient mapped from this message's (current) PID.
    pub patient_id: Option<String>,
    /// The id of the Encounter mapped from PV1.
    pub encounter_id: Option<String>,
    /// The current order (OBR) in an ORU.
    pub order: Option<Order>,
    /// Resources built so far, in order.
    pub resources: Vec<Resource>,
    pub warnings: Vec<String>,
    default_offset: Option<String>,
    /// [`source_urn`](Self::source_urn) as made for `source_system` (the field is
    /// public: it is checked before the cached URN is used).
    urn: (String, String),
}

impl<'m, 'a> Context<'m, 'a> {
    pub fn new<M: Mapper>(mapper: &'m M, message: &'m Message<'a>, input: &'m Hl7Input) -> Self {
        let source_system = mapper.source_system(message);
        let mut ctx = Context {
            mapper,
            message,
            input,
            meta: Meta::default(),
            patient_id: None,
            encounter_id: None,
            order: None,
            resources: Vec::new(),
            warnings: Vec::new(),
            default_offset: mapper
                .default_utc_offset()
                .and_then(|o| normalize_offset(&o)),
            urn: (source_system.clone(), make_urn(&source_system)),
            source_system,
        };
        let mut source = ctx.source_urn();
        let control_id = message.control_id().trim();
        if !control_id.is_empty() {
            source.push('#');
            source.push_str(&uri_escape(control_id));
        }
        ctx.meta.source = Some(source);
        ctx.meta.last_updated = ctx.source_timestamp();
        ctx
    }

    /// `urn:ehrgate:<source system>`: the system natural keys without an assigning
    /// authority are scoped by.
    pub fn source_urn(&self) -> String {
        self.source_urn_ref().into_owned()
    }

    /// [`source_urn`](Self::source_urn), borrowed when it can be.
    pub(crate) fn source_urn_ref(&self) -> Cow<'_, str> {
        if self.urn.0 == self.source_system {
            Cow::Borrowed(&self.urn.1)
        } else {
            Cow::Owned(make_urn(&self.source_system))
        }
    }

    /// The message time as an instant: MSH-7, else EVN-2, else the receive time.
    fn source_timestamp(&mut self) -> Option<String> {
        for path in ["MSH-7", "EVN-2"] {
            let Some(raw) = self.message.get(path) else {
                continue;
            };
            let Some(dt) = Hl7DateTime::parse(&raw) else {
                self.warn(format!("{path}: not a valid date/time"));
                continue;
            };
            if let Some(i) = dt.to_instant(self.default_offset.as_deref()) {
                return Some(i);
            }
            if dt.has_time() {
                self.warn(format!(
                    "{path}: no UTC offset and no default offset; read as UTC"
                ));
                return dt.to_instant(Some("Z"));
            }
        }
        if self.input.received_at_ms > 0 {
            return Some(instant_from_ms(self.input.received_at_ms));
        }
        self.warn("no message time (MSH-7) and no receive time: meta.lastUpdated left out");
        None
    }

    /// Record a warning (never quote field values: they may be PHI). Duplicates are
    /// dropped.
    pub fn warn(&mut self, warning: impl Into<String>) {
        let w = warning.into();
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// HL7 DTM at `location` (for warnings) -> FHIR `dateTime`; see
    /// [`Hl7DateTime::to_datetime`].
    pub fn datetime(&mut self, raw: Option<&str>, location: &str) -> Option<String> {
        let dt = self.parse_dtm(raw?, location)?;
        if dt.has_time()
            && dt.offset_minutes.is_none()
            && self.default_offset.is_none()
            && dt.day.is_some()
        {
            self.warn(format!(
                "{location}: time without UTC offset; kept the date only"
            ));
        }
        Some(dt.to_datetime(self.default_offset.as_deref()))
    }

    /// HL7 DTM -> FHIR `date`.
    pub fn date(&mut self, raw: Option<&str>, location: &str) -> Option<String> {
        Some(self.parse_dtm(raw?, location)?.to_date())
    }

    /// HL7 DTM -> FHIR `instant` (`None` without a full time and offset).
    pub fn instant(&mut self, raw: Option<&str>, location: &str) -> Option<String> {
        self.parse_dtm(raw?, location)?
            .to_instant(self.default_offset.as_deref())
    }

    fn parse_dtm(&mut self, raw: &str, location: &str) -> Option<Hl7DateTime> {
        if raw.trim().is_empty() || raw.trim() == "\"\"" {
            return None;
        }
        let dt = Hl7DateTime::parse(raw);
        if dt.is_none() {
            self.warn(format!("{location}: not a valid date/time; left out"));
        }
        dt
    }

    /// A deterministic id (see [`crate::ids::resource_id_parts`]).
    pub fn id(&self, resource_type: &str, system: &str, key: &[&str]) -> String {
        ids::resource_id_parts(resource_type, system, key)
    }

    /// `Patient/<id>` of the current patient.
    pub fn patient_ref(&self) -> Option<Reference> {
        self.patient_id
            .as_deref()
            .map(|id| Reference::to("Patient", id))
    }

    /// `Encounter/<id>` of the current encounter.
    pub fn encounter_ref(&self) -> Option<Reference> {
        self.encounter_id
            .as_deref()
            .map(|id| Reference::to("Encounter", id))
    }

    /// The last resource built of this type, to edit as JSON (see
    /// [`Resource::json_mut`]; match on `ctx.resources` to edit a typed one).
    pub fn last_mut(&mut self, resource_type: &str) -> Option<&mut Value> {
        self.resources
            .iter_mut()
            .rev()
            .find(|r| r.resource_type() == Some(resource_type))
            .map(Resource::json_mut)
    }

    /// The resource with this type and id, to edit as JSON.
    pub fn find_mut(&mut self, resource_type: &str, id: &str) -> Option<&mut Value> {
        self.resources
            .iter_mut()
            .find(|r| r.resource_type() == Some(resource_type) && r.id() == Some(id))
            .map(Resource::json_mut)
    }

    pub fn into_output(self) -> Output {
        Output {
            resources: self.resources.iter().map(Resource::to_json).collect(),
            warnings: self.warnings,
        }
    }
}

fn make_urn(source_system: &str) -> String {
    prefixed_uri("urn:ehrgate:", source_system)
}

/// Milliseconds since the epoch -> `YYYY-MM-DDThh:mm:ss.sssZ`.
pub(crate) fn instant_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// (year, month, day) -> days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (y, m) = if m <= 2 { (y - 1, i64::from(m) + 9) } else { (y, i64::from(m) - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + i64::from(d) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn instant_from_ms() {
        assert_eq!(super::instant_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::instant_from_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            super::instant_from_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
