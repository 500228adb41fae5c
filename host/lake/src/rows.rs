//! Rows for each table and their conversion to Arrow record batches.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use sha2::{Digest, Sha256};

use crate::error::LakeError;
use crate::schema::{self, Table};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of a timestamp: the partition value of bronze and audit rows.
pub fn date_of(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "1970-01-01".into())
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` of a timestamp.
pub fn rfc3339(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The value at `path` (object keys, or array indexes written as numbers): a JSON
/// pointer without its escaping, for the fixed paths below (no allocation).
fn at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for step in path {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(*step)?,
            serde_json::Value::Array(a) => a.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A raw inbound unit, as received: one bronze row.
#[derive(Debug, Clone, PartialEq)]
pub struct BronzeRow {
    /// Unique per receipt: hash of (content, source, receipt time, sequence).
    pub record_id: String,
    pub received_at: Micros,
    pub source: String,
    pub content_hash: String,
    pub raw: Vec<u8>,
    /// Table-specific columns.
    pub detail: BronzeDetail,
    /// Orders units received in the same microsecond (the log's sequence number,
    /// a message's place in its file or a bulk line number); not a column.
    pub seq: u64,
    /// The processing facts the operations KPIs are computed from (docs/tables.md):
    /// the adapter (`name@version`) that mapped or rejected the unit, when the
    /// sender was answered, and when its silver and quarantine rows were in the lake.
    pub processed: Processed,
}

/// See [`BronzeRow::processed`]; empty where unknown (bulk lines, one-shot ingests,
/// a replayed unit's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    pub adapter: Option<String>,
    pub answered_at: Option<Micros>,
    pub landed_at: Option<Micros>,
    /// Resources the unit mapped to (before silver's newer-wins rule).
    pub records: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BronzeDetail {
    Hl7 { control_id: Option<String>, sender: Option<String>, message_type: Option<String> },
    Ndjson { export_id: Option<String>, file: String, line: i64, resource_type: Option<String> },
    Event { event_id: Option<String> },
}

impl BronzeRow {
    /// A row for `raw` received now from `source`; `seq` distinguishes units received
    /// in the same microsecond (e.g. lines of one file).
    pub fn new(raw: Vec<u8>, source: &str, received_at: Micros, seq: u64, detail: BronzeDetail) -> Self {
        let content_hash = sha256_hex(&raw);
        let record_id = sha256_hex(format!("{content_hash}|{source}|{received_at}|{seq}").as_bytes())[..32].to_string();
        BronzeRow { record_id, received_at, source: source.to_string(), content_hash, raw, detail, seq, processed: Processed::default() }
    }

    /// A row whose record id depends only on its content, source and `identity`
    /// (e.g. export, file and line), not on when it was read: reading the same line
    /// again gives the same id, so lineage that points at it stays true.
    pub fn keyed(raw: Vec<u8>, source: &str, received_at: Micros, identity: &str, seq: u64, detail: BronzeDetail) -> Self {
        let content_hash = sha256_hex(&raw);
        let record_id = sha256_hex(format!("{content_hash}|{source}|{identity}").as_bytes())[..32].to_string();
        BronzeRow { record_id, received_at, source: source.to_string(), content_hash, raw, detail, seq, processed: Processed::default() }
    }

    /// When this unit arrived, for ordering the versions it produces.
    pub fn receipt(&self) -> Receipt {
        Receipt { at: self.received_at, seq: self.seq as i64 }
    }

    pub fn table(&self) -> Table {
        match self.detail {
            BronzeDetail::Hl7 { .. } => Table::BronzeHl7,
            BronzeDetail::Ndjson { .. } => Table::BronzeNdjson,
            BronzeDetail::Event { .. } => Table::BronzeEvents,
        }
    }

    /// `bronze/hl7_messages/<record_id>`: what silver and quarantine rows point at.
    pub fn lineage(&self) -> String {
        format!("{}/{}", self.table().path(), self.record_id)
    }
}

pub(crate) fn strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

pub(crate) fn times(v: impl Iterator<Item = Option<Micros>>) -> ArrayRef {
    Arc::new(v.collect::<TimestampMicrosecondArray>().with_timezone("UTC"))
}

pub(crate) fn batch(table: &str, schema: deltalake::arrow::datatypes::SchemaRef, cols: Vec<ArrayRef>) -> Result<RecordBatch, LakeError> {
    RecordBatch::try_new(schema, cols).map_err(|e| LakeError::delta(table, e))
}

/// Bronze rows of one table as a record batch.
pub fn bronze_batch(table: Table, rows: &[BronzeRow]) -> Result<RecordBatch, LakeError> {
    let mut cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.record_id.as_str()))),
        Arc::new(rows.iter().map(|r| Some(date_of(r.received_at))).collect::<StringArray>()),
        times(rows.iter().map(|r| Some(r.received_at))),
        strings(rows.iter().map(|r| Some(r.source.as_str()))),
        strings(rows.iter().map(|r| Some(r.content_hash.as_str()))),
        Arc::new(rows.iter().map(|r| Some(r.raw.as_slice())).collect::<BinaryArray>()),
    ];
    match table {
        Table::BronzeHl7 => {
            let pick = |f: fn(&BronzeDetail) -> Option<&str>| strings(rows.iter().map(|r| f(&r.detail)));
            cols.push(pick(|d| match d {
                BronzeDetail::Hl7 { control_id, .. } => control_id.as_deref(),
                _ => None,
            }));
            cols.push(pick(|d| match d {
                BronzeDetail::Hl7 { sender, .. } => sender.as_deref(),
                _ => None,
            }));
            cols.push(pick(|d| match d {
                BronzeDetail::Hl7 { message_type, .. } => message_type.as_deref(),
                _ => None,
            }));
        }
        Table::BronzeNdjson => {
            fn nd(r: &BronzeRow) -> (Option<&str>, &str, i64, Option<&str>) {
                match &r.detail {
                    BronzeDetail::Ndjson { export_id, file, line, resource_type } => (export_id.as_deref(), file.as_str(), *line, resource_type.as_deref()),
                    _ => (None, "", 0, None),
                }
            }
            cols.push(strings(rows.iter().map(|r| nd(r).0)));
            cols.push(strings(rows.iter().map(|r| Some(nd(r).1))));
            cols.push(Arc::new(rows.iter().map(|r| Some(nd(r).2)).collect::<Int64Array>()));
            cols.push(strings(rows.iter().map(|r| nd(r).3)));
        }
        Table::BronzeEvents => cols.push(strings(rows.iter().map(|r| match &r.detail {
            BronzeDetail::Event { event_id } => event_id.as_deref(),
            _ => None,
        }))),
        _ => return Err(LakeError::Invalid(format!("{} is not a bronze table", table.path()))),
    }
    cols.push(strings(rows.iter().map(|r| r.processed.adapter.as_deref())));
    cols.push(times(rows.iter().map(|r| r.processed.answered_at)));
    cols.push(times(rows.iter().map(|r| r.processed.landed_at)));
    cols.push(Arc::new(rows.iter().map(|r| r.processed.records).collect::<Int64Array>()));
    batch(table.path(), table.schema(), cols)
}

/// A canonical FHIR resource ready for silver, with the columns users filter on.
/// When the unit a silver version came from arrived: the tie-break between two
/// versions of one resource with the same source time (MSH-7 has second or minute
/// precision, so an A04 and an A08 sent in the same second tie). Versions are
/// ordered by (`source_ts`, `received_at`, `receipt_seq`): the later arrival wins a
/// tie, and a replay of the same unit (same receipt) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Receipt {
    pub at: Micros,
    pub seq: i64,
}

impl Receipt {
    pub fn at(at: Micros) -> Receipt {
        Receipt { at, seq: 0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SilverRow {
    pub resource_type: String,
    pub id: String,
    pub patient_ref: Option<String>,
    pub encounter_ref: Option<String>,
    pub effective_at: Option<Micros>,
    pub code_system: Option<String>,
    pub code: Option<String>,
    pub status: Option<String>,
    pub source_system: Option<String>,
    /// `name@version` of the adapter that produced it.
    pub adapter: String,
    /// The source's own time for this version of the resource (meta.lastUpdated);
    /// newer wins in MERGE.
    pub source_ts: Micros,
    pub deleted: bool,
    /// The bronze record it came from.
    pub lineage: String,
    pub ingested_at: Micros,
    pub resource: String,
    /// When its unit arrived (columns `received_at`, `receipt_seq`).
    pub receipt: Receipt,
}

impl SilverRow {
    /// The order of versions of one resource: newer wins in the MERGE.
    pub fn version_key(&self) -> (Micros, Receipt) {
        (self.source_ts, self.receipt)
    }

    /// A tombstone: `<type>/<id>` was deleted at the source by `source_ts` (it
    /// replaces an older stored version in the MERGE). `resource` keeps only the
    /// type and id.
    pub fn tombstone(resource_type: &str, id: &str, adapter: &str, source_ts: Micros, lineage: &str, receipt: Receipt) -> SilverRow {
        SilverRow {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            patient_ref: None,
            encounter_ref: None,
            effective_at: None,
            code_system: None,
            code: None,
            status: None,
            source_system: None,
            adapter: adapter.to_string(),
            source_ts,
            deleted: true,
            lineage: lineage.to_string(),
            ingested_at: now_micros(),
            resource: serde_json::json!({"resourceType": resource_type, "id": id}).to_string(),
            receipt,
        }
    }

    /// Extract the typed columns from a resource's JSON. The receipt time stands in
    /// for the source time when the resource has no usable meta.lastUpdated, or one
    /// more than [`FUTURE_TOLERANCE_MICROS`] ahead of now.
    pub fn from_json(json: &str, adapter: &str, lineage: &str, receipt: Receipt) -> Result<SilverRow, LakeError> {
        Self::from_members(&column_members(json)?, json, adapter, lineage, receipt)
    }

    /// [`SilverRow::from_json`] given the resource's members (at least its
    /// [`COLUMN_MEMBERS`]) apart from its text.
    fn from_members(v: &serde_json::Value, json: &str, adapter: &str, lineage: &str, receipt: Receipt) -> Result<SilverRow, LakeError> {
        let fallback_ts = receipt.at;
        let s = |p: &[&str]| at(v, p).and_then(|x| x.as_str()).map(str::to_owned);
        let resource_type = s(&["resourceType"]).ok_or_else(|| LakeError::Invalid("adapter output has no resourceType".into()))?;
        if !schema::valid_resource_type(&resource_type) {
            return Err(LakeError::Invalid("adapter output has an invalid resourceType".into()));
        }
        let id = s(&["id"]).filter(|i| !i.is_empty() && i.len() <= 64).ok_or_else(|| LakeError::Invalid(format!("{resource_type} has no valid id")))?;
        let first = |ps: &[&[&str]]| ps.iter().find_map(|p| s(p));
        let patient_ref = if resource_type == "Patient" {
            Some(format!("Patient/{id}"))
        } else {
            first(&[&["subject", "reference"], &["patient", "reference"], &["for", "reference"], &["beneficiary", "reference"]])
        };
        let encounter_ref =
            if resource_type == "Encounter" { Some(format!("Encounter/{id}")) } else { first(&[&["encounter", "reference"], &["context", "reference"]]) };
        let code_paths: [&[&str]; 5] = [
            &["code", "coding", "0"],
            &["vaccineCode", "coding", "0"],
            &["medicationCodeableConcept", "coding", "0"],
            &["type", "0", "coding", "0"],
            &["class"],
        ];
        let coding = code_paths.iter().find_map(|p| at(v, p).filter(|c| c.get("code").is_some()));
        let effective = first(&[
            &["effectiveDateTime"],
            &["effectivePeriod", "start"],
            &["issued"],
            &["period", "start"],
            &["onsetDateTime"],
            &["recordedDate"],
            &["performedDateTime"],
            &["performedPeriod", "start"],
            &["occurrenceDateTime"],
            &["authoredOn"],
            &["birthDate"],
        ]);
        let mut source_ts = s(&["meta", "lastUpdated"]).and_then(|t| parse_fhir_time(&t)).unwrap_or(fallback_ts);
        // A version stamped more than a day ahead (MSH-7 in 2099, lastUpdated
        // 9999-12-31) would win against every later update for ever: it is taken
        // as of its receipt instead, and said so.
        if source_ts > fallback_ts.max(now_micros()).saturating_add(FUTURE_TOLERANCE_MICROS) {
            tracing::warn!(%lineage, "{resource_type} stamped more than a day in the future: ordered by its receipt time instead");
            source_ts = fallback_ts;
        }
        Ok(SilverRow {
            patient_ref,
            encounter_ref,
            effective_at: effective.and_then(|t| parse_fhir_time(&t)),
            code_system: coding.and_then(|c| c.get("system")).and_then(|x| x.as_str()).map(str::to_owned),
            code: coding.and_then(|c| c.get("code")).and_then(|x| x.as_str()).map(str::to_owned),
            status: s(&["status"]).or_else(|| s(&["clinicalStatus", "coding", "0", "code"])),
            source_system: s(&["meta", "source"]),
            adapter: adapter.to_string(),
            source_ts,
            deleted: false,
            lineage: lineage.to_string(),
            ingested_at: now_micros(),
            // (the adapter's text as it is: checked to be JSON above, not re-serialised)
            resource: json.to_string(),
            resource_type,
            id,
            receipt,
        })
    }
}

/// The top-level members of a resource that silver's columns are taken from (the
/// first step of every path [`SilverRow::from_json`] reads).
const COLUMN_MEMBERS: [&str; 27] = [
    "resourceType",
    "id",
    "meta",
    "status",
    "clinicalStatus",
    "subject",
    "patient",
    "for",
    "beneficiary",
    "encounter",
    "context",
    "code",
    "vaccineCode",
    "medicationCodeableConcept",
    "type",
    "class",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "period",
    "onsetDateTime",
    "recordedDate",
    "performedDateTime",
    "performedPeriod",
    "occurrenceDateTime",
    "authoredOn",
    "birthDate",
];

/// A resource's JSON checked whole, as an object holding only its
/// [`COLUMN_MEMBERS`] (the last of a repeated name, as a full parse keeps): the
/// rest (a Patient's names and addresses, an Observation's components) is
/// checked as a full parse checks it (escapes, numbers in range, nesting depth)
/// but not built: a full parse into a `serde_json::Value` was 9% of an
/// NDJSON ingest's CPU (docs/tables.md). JSON that is not an object gives an
/// empty one.
fn column_members(json: &str) -> Result<serde_json::Value, LakeError> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;

    /// A value read as a full parse reads it, and dropped. (serde's `IgnoredAny`
    /// only checks the grammar: it lets lone surrogates, numbers out of range and
    /// any depth of nesting through, which a full parse refuses.)
    struct Skip;
    impl<'de> serde::Deserialize<'de> for Skip {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Skip)
        }
    }
    impl<'de> Visitor<'de> for Skip {
        type Value = Skip;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_unit<E>(self) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
            while seq.next_element::<Skip>()?.is_some() {}
            Ok(Skip)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
            while map.next_entry::<Skip, Skip>()?.is_some() {}
            Ok(Skip)
        }
    }

    /// A member name, borrowed from the text unless it has escapes.
    struct Name<'a>(Cow<'a, str>);
    impl<'de> serde::Deserialize<'de> for Name<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Name<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Borrowed(s)))
                }
                fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Owned(s.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }

    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = serde_json::Map::new();
            while let Some(Name(name)) = map.next_key::<Name>()? {
                if COLUMN_MEMBERS.contains(&name.as_ref()) {
                    kept.insert(name.into_owned(), map.next_value()?);
                } else {
                    map.next_value::<Skip>()?;
                }
            }
            Ok(kept)
        }
    }

    let mut d = serde_json::Deserializer::from_str(json);
    let members = match d.deserialize_any(Members).and_then(|m| d.end().map(|()| m)) {
        Ok(m) => m,
        // (valid JSON, but not an object: it has no resourceType)
        Err(e) if e.is_data() && serde_json::from_str::<Skip>(json).is_ok() => serde_json::Map::new(),
        Err(e) => return Err(LakeError::Invalid(format!("adapter output is not JSON: {e}"))),
    };
    Ok(serde_json::Value::Object(members))
}

/// How far ahead of now (or of its receipt) a version's source time may be.
pub const FUTURE_TOLERANCE_MICROS: Micros = 24 * 3600 * 1_000_000;

/// FHIR date / dateTime / instant to microseconds UTC. Partial dates take the start
/// of the period (`2024` -> 2024-01-01T00:00:00Z); a time without an offset is read
/// as UTC (FHIR requires one whenever a time is present).
pub fn parse_fhir_time(t: &str) -> Option<Micros> {
    use chrono::{DateTime, NaiveDate};
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_micros());
    }
    if let Ok(n) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(n.and_utc().timestamp_micros());
    }
    let date = match t.len() {
        4 => NaiveDate::from_ymd_opt(t.parse().ok()?, 1, 1),
        7 => NaiveDate::from_ymd_opt(t.get(..4)?.parse().ok()?, t.get(5..7)?.parse().ok()?, 1),
        10 => NaiveDate::parse_from_str(t, "%Y-%m-%d").ok(),
        _ => None,
    }?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Silver rows as a record batch.
pub fn silver_batch<R: std::borrow::Borrow<SilverRow>>(table: &str, rows: &[R]) -> Result<RecordBatch, LakeError> {
    let rows: Vec<&SilverRow> = rows.iter().map(|r| r.borrow()).collect();
    let cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.resource_type.as_str()))),
        strings(rows.iter().map(|r| Some(r.id.as_str()))),
        strings(rows.iter().map(|r| r.patient_ref.as_deref())),
        strings(rows.iter().map(|r| r.encounter_ref.as_deref())),
        times(rows.iter().map(|r| r.effective_at)),
        strings(rows.iter().map(|r| r.code_system.as_deref())),
        strings(rows.iter().map(|r| r.code.as_deref())),
        strings(rows.iter().map(|r| r.status.as_deref())),
        strings(rows.iter().map(|r| r.source_system.as_deref())),
        strings(rows.iter().map(|r| Some(r.adapter.as_str()))),
        times(rows.iter().map(|r| Some(r.source_ts))),
        Arc::new(rows.iter().map(|r| Some(r.deleted)).collect::<BooleanArray>()),
        strings(rows.iter().map(|r| Some(r.lineage.as_str()))),
        times(rows.iter().map(|r| Some(r.ingested_at))),
        strings(rows.iter().map(|r| Some(r.resource.as_str()))),
        times(rows.iter().map(|r| Some(r.receipt.at))),
        Arc::new(rows.iter().map(|r| Some(r.receipt.seq)).collect::<Int64Array>()),
    ];
    batch(table, schema::silver_schema(), cols)
}

/// A rejected input.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    pub id: String,
    pub quarantined_at: Micros,
    /// `hl7`, `fhir`, `event`.
    pub input_kind: String,
    pub source: String,
    pub adapter: String,
    /// `invalid-input`, `unsupported`, `transient`, `trap`, `limit`, `invalid-output`.
    pub error_kind: String,
    pub error_message: String,
    pub location: Option<String>,
    pub lineage: Option<String>,
    pub raw: Vec<u8>,
    pub reprocessed_at: Option<Micros>,
    pub reprocess_outcome: Option<String>,
}

pub fn quarantine_batch(rows: &[QuarantineRow]) -> Result<RecordBatch, LakeError> {
    let t = Table::Quarantine;
    let cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.id.as_str()))),
        times(rows.iter().map(|r| Some(r.quarantined_at))),
        strings(rows.iter().map(|r| Some(r.input_kind.as_str()))),
        strings(rows.iter().map(|r| Some(r.source.as_str()))),
        strings(rows.iter().map(|r| Some(r.adapter.as_str()))),
        strings(rows.iter().map(|r| Some(r.error_kind.as_str()))),
        strings(rows.iter().map(|r| Some(r.error_message.as_str()))),
        strings(rows.iter().map(|r| r.location.as_deref())),
        strings(rows.iter().map(|r| r.lineage.as_deref())),
        Arc::new(rows.iter().map(|r| Some(r.raw.as_slice())).collect::<BinaryArray>()),
        times(rows.iter().map(|r| r.reprocessed_at)),
        strings(rows.iter().map(|r| r.reprocess_outcome.as_deref())),
    ];
    batch(t.path(), t.schema(), cols)
}

/// What a shadow candidate would have changed for one unit, compared with the
/// active version's output (resources matched by type and id).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowDiffRow {
    pub at: Micros,
    pub adapter: String,
    pub active_version: String,
    pub candidate_version: String,
    /// The unit's bronze record id.
    pub record_id: String,
    /// `ADT^A01`, or the unit's kind (`fhir`, `event`) when it has no HL7 type.
    pub message_type: Option<String>,
    pub active_resources: i64,
    pub candidate_resources: i64,
    /// Resources only the candidate produces.
    pub added: i64,
    /// Resources only the active version produces.
    pub removed: i64,
    /// Same type and id, different content.
    pub changed: i64,
    pub unchanged: i64,
    /// The active version's error kind, when it refused the unit.
    pub active_error: Option<String>,
    /// The candidate's error (kind: message), when it refused the unit.
    pub candidate_error: Option<String>,
}

pub fn shadow_diff_batch(rows: &[ShadowDiffRow]) -> Result<RecordBatch, LakeError> {
    let t = Table::ShadowDiffs;
    let ints = |f: fn(&ShadowDiffRow) -> i64| Arc::new(rows.iter().map(|r| Some(f(r))).collect::<Int64Array>()) as ArrayRef;
    let cols: Vec<ArrayRef> = vec![
        times(rows.iter().map(|r| Some(r.at))),
        Arc::new(rows.iter().map(|r| Some(date_of(r.at))).collect::<StringArray>()),
        strings(rows.iter().map(|r| Some(r.adapter.as_str()))),
        strings(rows.iter().map(|r| Some(r.active_version.as_str()))),
        strings(rows.iter().map(|r| Some(r.candidate_version.as_str()))),
        strings(rows.iter().map(|r| Some(r.record_id.as_str()))),
        strings(rows.iter().map(|r| r.message_type.as_deref())),
        ints(|r| r.active_resources),
        ints(|r| r.candidate_resources),
        ints(|r| r.added),
        ints(|r| r.removed),
        ints(|r| r.changed),
        ints(|r| r.unchanged),
        strings(rows.iter().map(|r| r.active_error.as_deref())),
        strings(rows.iter().map(|r| r.candidate_error.as_deref())),
    ];
    batch(t.path(), t.schema(), cols)
}

/// One state of a workflow run (`ops/workflow_runs`, append-only): a run's current
/// state is its row with the latest `recorded_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRunRow {
    pub run_id: String,
    pub recorded_at: Micros,
    pub workflow: String,
    /// `pending`, `retrying`, `succeeded`, `failed` (dead letter) or `cancelled`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// What triggered it: `ADT^A03`, ...
    pub trigger: String,
    /// The trigger unit's bronze source and record id.
    pub source: String,
    pub lineage: String,
    /// When the trigger unit arrived (the SLA clock starts here).
    pub received_at: Micros,
    pub patient_ref: Option<String>,
    pub encounter_ref: Option<String>,
    pub adapter: String,
    pub action: String,
    /// The action's input (JSON: references, no PHI).
    pub input: String,
    /// No attempt after this (the trigger's arrival plus the workflow's deadline;
    /// a manual retry sets it again).
    pub deadline_at: Micros,
    pub next_attempt_at: Option<Micros>,
    pub completed_at: Option<Micros>,
    pub error: Option<String>,
    /// The action's result (JSON: what it created in the EHR).
    pub response: Option<String>,
}

impl WorkflowRunRow {
    /// Whether no more attempts will be made.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

pub fn workflow_run_batch(rows: &[WorkflowRunRow]) -> Result<RecordBatch, LakeError> {
    let t = Table::WorkflowRuns;
    let cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.run_id.as_str()))),
        times(rows.iter().map(|r| Some(r.recorded_at))),
        Arc::new(rows.iter().map(|r| Some(date_of(r.recorded_at))).collect::<StringArray>()),
        strings(rows.iter().map(|r| Some(r.workflow.as_str()))),
        strings(rows.iter().map(|r| Some(r.status.as_str()))),
        Arc::new(rows.iter().map(|r| Some(r.attempts)).collect::<Int64Array>()),
        strings(rows.iter().map(|r| Some(r.trigger.as_str()))),
        strings(rows.iter().map(|r| Some(r.source.as_str()))),
        strings(rows.iter().map(|r| Some(r.lineage.as_str()))),
        times(rows.iter().map(|r| Some(r.received_at))),
        strings(rows.iter().map(|r| r.patient_ref.as_deref())),
        strings(rows.iter().map(|r| r.encounter_ref.as_deref())),
        strings(rows.iter().map(|r| Some(r.adapter.as_str()))),
        strings(rows.iter().map(|r| Some(r.action.as_str()))),
        strings(rows.iter().map(|r| Some(r.input.as_str()))),
        times(rows.iter().map(|r| Some(r.deadline_at))),
        times(rows.iter().map(|r| r.next_attempt_at)),
        times(rows.iter().map(|r| r.completed_at)),
        strings(rows.iter().map(|r| r.error.as_deref())),
        strings(rows.iter().map(|r| r.response.as_deref())),
    ];
    batch(t.path(), t.schema(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_times() {
        assert_eq!(parse_fhir_time("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_fhir_time("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(parse_fhir_time("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_fhir_time("1970-02"), Some(31 * 86_400_000_000));
        assert_eq!(parse_fhir_time("1970"), Some(0));
        assert_eq!(parse_fhir_time("garbage"), None);
    }

    #[test]
    fn silver_columns_from_an_observation() {
        let json = r#"{"resourceType":"Observation","id":"o1","status":"final",
            "subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
            "code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},
            "effectiveDateTime":"2024-01-02T03:04:05Z",
            "meta":{"lastUpdated":"2024-01-03T00:00:00Z","source":"urn:ehrgate:LAB"}}"#;
        let r = SilverRow::from_json(json, "reference@0.1.0", "bronze/hl7_messages/x", Receipt::at(7)).unwrap();
        assert_eq!((r.resource_type.as_str(), r.id.as_str()), ("Observation", "o1"));
        assert_eq!(r.patient_ref.as_deref(), Some("Patient/p1"));
        assert_eq!(r.encounter_ref.as_deref(), Some("Encounter/e1"));
        assert_eq!(r.code_system.as_deref(), Some("http://loinc.org"));
        assert_eq!(r.code.as_deref(), Some("1234-5"));
        assert_eq!(r.status.as_deref(), Some("final"));
        assert_eq!(r.source_ts, parse_fhir_time("2024-01-03T00:00:00Z").unwrap());
        assert_eq!(r.effective_at, parse_fhir_time("2024-01-02T03:04:05Z"));
        assert!(SilverRow::from_json(r#"{"id":"x"}"#, "a", "l", Receipt::at(0)).is_err());
        // Stamped far in the future: ordered by its receipt time.
        let now = now_micros();
        let far = SilverRow::from_json(r#"{"resourceType":"Patient","id":"p","meta":{"lastUpdated":"9999-12-31T00:00:00Z"}}"#, "a", "l", Receipt::at(now)).unwrap();
        assert_eq!(far.source_ts, now);
        let soon = SilverRow::from_json(r#"{"resourceType":"Patient","id":"p","meta":{"lastUpdated":"2020-01-01T00:00:00Z"}}"#, "a", "l", Receipt::at(now)).unwrap();
        assert_eq!(soon.source_ts, parse_fhir_time("2020-01-01T00:00:00Z").unwrap());
        assert!(SilverRow::from_json(r#"{"resourceType":"../x","id":"x"}"#, "a", "l", Receipt::at(0)).is_err());
    }

    /// The columns from the members silver reads are those from the whole resource
    /// parsed, for every FHIR resource in the shared samples (Bulk Data NDJSON of
    /// every type, and the HL7v2-to-FHIR bundles' entries) and for odd JSON.
    #[test]
    fn column_members_give_the_columns_a_full_parse_gives() {
        let full = |json: &str| -> Result<SilverRow, String> {
            let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
            SilverRow::from_members(&v, json, "a@1", "l", Receipt::at(5)).map_err(|e| e.to_string())
        };
        let same = |json: &str| {
            let (mut a, mut b) = (SilverRow::from_json(json, "a@1", "l", Receipt::at(5)).map_err(|e| e.to_string()), full(json));
            for r in [&mut a, &mut b].into_iter().flatten() {
                r.ingested_at = 0;
            }
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(x, y, "{json}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{json}: {a:?} against a full parse's {b:?}"),
            }
            a
        };
        let data = ehrgate_testkit::shared_dir().join("data/fhir");
        let mut resources = vec![];
        for dir in ["bulk_export_group_BMCHealthNet", "hl7v2_to_fhir_expected"] {
            for e in std::fs::read_dir(data.join(dir)).unwrap() {
                let path = e.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                if path.extension().is_some_and(|e| e == "ndjson") {
                    resources.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
                } else if path.extension().is_some_and(|e| e == "json") && !path.ends_with("manifest.json") {
                    let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
                    resources.extend(bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"].to_string()));
                }
            }
        }
        assert!(resources.len() > 1000, "{} sample resources", resources.len());
        let mut types = std::collections::BTreeSet::new();
        for json in &resources {
            // (some of the expected bundles' resources have no id: both refuse them)
            if let Ok(r) = same(json) {
                types.insert(r.resource_type);
            }
        }
        assert!(types.len() >= 15, "{types:?}");
        // A repeated member: the last one, as a full parse keeps. An escaped name.
        // Not strings where strings are read. Not an object; not JSON; trailing text.
        let r = same(r#"{"resourceType":"Patient","id":"a","id":"b","st\u0061tus":"x","meta":{"lastUpdated":7}}"#).unwrap();
        assert_eq!((r.id.as_str(), r.status.as_deref(), r.source_ts), ("b", Some("x"), 5));
        assert!(same(r#"[{"resourceType":"Patient","id":"a"}]"#).unwrap_err().contains("no resourceType"));
        assert!(same(r#""Patient""#).unwrap_err().contains("no resourceType"));
        assert!(same(r#"{"resourceType":"Patient","id":"a","name":[{"family":"x"]}"#).unwrap_err().contains("not JSON"));
        assert!(same(r#"{"resourceType":"Patient","id":"a"} {}"#).unwrap_err().contains("not JSON"));
        assert!(same(r#"{"resourceType":"Patient","id":"a","x":"\q"}"#).unwrap_err().contains("not JSON"));
        // What a full parse refuses in a member silver does not read: a lone
        // surrogate, a number out of range, nesting deeper than 128.
        assert!(same(r#"{"resourceType":"Patient","id":"a","text":{"div":"\ud800"}}"#).unwrap_err().contains("not JSON"));
        assert!(same(r#"{"resourceType":"Observation","id":"a","valueQuantity":{"value":1e999}}"#).unwrap_err().contains("not JSON"));
        let nested = |depth: usize| format!(r#"{{"resourceType":"Patient","id":"a","extension":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert!(same(&nested(130)).unwrap_err().contains("not JSON"));
        assert!(same(&nested(100)).is_ok());
        assert!(same("[1e999]").unwrap_err().contains("not JSON"));
    }
}
