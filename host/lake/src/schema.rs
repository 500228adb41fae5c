//! Table schemas, defined once. `docs/tables.md` documents them; a test checks the
//! two agree.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Timestamps are microseconds, UTC.
pub fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn f(name: &str, ty: DataType, nullable: bool) -> Field {
    Field::new(name, ty, nullable)
}

/// The tables under the lake root, with their kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    BronzeHl7,
    BronzeNdjson,
    BronzeEvents,
    Quarantine,
    Audit,
    ShadowDiffs,
    WorkflowRuns,
    KpiMinute,
}

impl Table {
    pub const ALL: [Table; 8] =
        [Table::BronzeHl7, Table::BronzeNdjson, Table::BronzeEvents, Table::Quarantine, Table::Audit, Table::ShadowDiffs, Table::WorkflowRuns, Table::KpiMinute];

    /// Path under the root.
    pub fn path(self) -> &'static str {
        match self {
            Table::BronzeHl7 => "bronze/hl7_messages",
            Table::BronzeNdjson => "bronze/fhir_ndjson",
            Table::BronzeEvents => "bronze/events",
            Table::Quarantine => "quarantine/records",
            Table::Audit => "audit/access_log",
            Table::ShadowDiffs => "ops/shadow_diffs",
            Table::WorkflowRuns => "ops/workflow_runs",
            Table::KpiMinute => "gold/kpi_minute",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::BronzeHl7 => bronze(&[
                f("control_id", DataType::Utf8, true),
                f("sender", DataType::Utf8, true),
                f("message_type", DataType::Utf8, true),
            ]),
            Table::BronzeNdjson => bronze(&[
                f("export_id", DataType::Utf8, true),
                f("file", DataType::Utf8, false),
                f("line", DataType::Int64, false),
                f("resource_type", DataType::Utf8, true),
            ]),
            Table::BronzeEvents => bronze(&[f("event_id", DataType::Utf8, true)]),
            Table::Quarantine => Arc::new(Schema::new(vec![
                f("id", DataType::Utf8, false),
                f("quarantined_at", ts(), false),
                f("input_kind", DataType::Utf8, false),
                f("source", DataType::Utf8, false),
                f("adapter", DataType::Utf8, false),
                f("error_kind", DataType::Utf8, false),
                f("error_message", DataType::Utf8, false),
                f("location", DataType::Utf8, true),
                f("lineage", DataType::Utf8, true),
                f("raw", DataType::Binary, false),
                f("reprocessed_at", ts(), true),
                f("reprocess_outcome", DataType::Utf8, true),
            ])),
            Table::Audit => Arc::new(Schema::new(vec![
                f("at", ts(), false),
                f("ingest_date", DataType::Utf8, false),
                f("actor", DataType::Utf8, false),
                f("action", DataType::Utf8, false),
                f("connection", DataType::Utf8, true),
                f("method", DataType::Utf8, true),
                f("path", DataType::Utf8, true),
                f("outcome", DataType::Utf8, false),
                // The hash chain and what the access was for (`audit.rs`); nullable
                // only because a table from before the chain gets them added.
                f("seq", DataType::Int64, true),
                f("purpose", DataType::Utf8, true),
                f("detail", DataType::Utf8, true),
                f("prev_hash", DataType::Utf8, true),
                f("hash", DataType::Utf8, true),
            ])),
            Table::ShadowDiffs => Arc::new(Schema::new(vec![
                f("at", ts(), false),
                f("ingest_date", DataType::Utf8, false),
                f("adapter", DataType::Utf8, false),
                f("active_version", DataType::Utf8, false),
                f("candidate_version", DataType::Utf8, false),
                f("record_id", DataType::Utf8, false),
                f("message_type", DataType::Utf8, true),
                f("active_resources", DataType::Int64, false),
                f("candidate_resources", DataType::Int64, false),
                f("added", DataType::Int64, false),
                f("removed", DataType::Int64, false),
                f("changed", DataType::Int64, false),
                f("unchanged", DataType::Int64, false),
                f("active_error", DataType::Utf8, true),
                f("candidate_error", DataType::Utf8, true),
            ])),
            Table::WorkflowRuns => Arc::new(Schema::new(vec![
                f("run_id", DataType::Utf8, false),
                f("recorded_at", ts(), false),
                f("ingest_date", DataType::Utf8, false),
                f("workflow", DataType::Utf8, false),
                f("status", DataType::Utf8, false),
                f("attempts", DataType::Int64, false),
                f("trigger", DataType::Utf8, false),
                f("source", DataType::Utf8, false),
                f("lineage", DataType::Utf8, false),
                f("received_at", ts(), false),
                f("patient_ref", DataType::Utf8, true),
                f("encounter_ref", DataType::Utf8, true),
                f("adapter", DataType::Utf8, false),
                f("action", DataType::Utf8, false),
                f("input", DataType::Utf8, false),
                f("deadline_at", ts(), false),
                f("next_attempt_at", ts(), true),
                f("completed_at", ts(), true),
                f("error", DataType::Utf8, true),
                f("response", DataType::Utf8, true),
            ])),
            Table::KpiMinute => Arc::new(Schema::new(vec![
                f("minute", ts(), false),
                f("source", DataType::Utf8, false),
                f("adapter", DataType::Utf8, false),
                f("received", DataType::Int64, false),
                f("accepted", DataType::Int64, false),
                f("quarantined", DataType::Int64, false),
                f("error_rate", DataType::Float64, false),
                f("records", DataType::Int64, false),
                f("ack_p50_ms", DataType::Float64, true),
                f("ack_p95_ms", DataType::Float64, true),
                f("sla_units", DataType::Int64, false),
                f("sla_met", DataType::Int64, false),
                f("sla_share", DataType::Float64, true),
                f("sla_minutes", DataType::Int64, false),
                f("refreshed_at", ts(), false),
            ])),
        }
    }

    /// Partition columns.
    pub fn partitions(self) -> &'static [&'static str] {
        match self {
            Table::BronzeHl7 | Table::BronzeNdjson | Table::BronzeEvents | Table::Audit | Table::ShadowDiffs | Table::WorkflowRuns => &["ingest_date"],
            Table::Quarantine | Table::KpiMinute => &[],
        }
    }

    /// The name in SQL (`bronze_hl7_messages`).
    pub fn sql_name(self) -> String {
        self.path().replace('/', "_")
    }
}

fn bronze(extra: &[Field]) -> SchemaRef {
    let mut fields = vec![
        f("record_id", DataType::Utf8, false),
        f("ingest_date", DataType::Utf8, false),
        f("received_at", ts(), false),
        f("source", DataType::Utf8, false),
        f("content_hash", DataType::Utf8, false),
        f("raw", DataType::Binary, false),
    ];
    fields.extend_from_slice(extra);
    fields.extend([f("adapter", DataType::Utf8, true), f("answered_at", ts(), true), f("landed_at", ts(), true), f("records", DataType::Int64, true)]);
    Arc::new(Schema::new(fields))
}

/// Every silver table (one per FHIR resource type) has this schema.
pub fn silver_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        f("resource_type", DataType::Utf8, false),
        f("id", DataType::Utf8, false),
        f("patient_ref", DataType::Utf8, true),
        f("encounter_ref", DataType::Utf8, true),
        f("effective_at", ts(), true),
        f("code_system", DataType::Utf8, true),
        f("code", DataType::Utf8, true),
        f("status", DataType::Utf8, true),
        f("source_system", DataType::Utf8, true),
        f("adapter", DataType::Utf8, false),
        f("source_ts", ts(), false),
        f("deleted", DataType::Boolean, false),
        f("lineage", DataType::Utf8, false),
        f("ingested_at", ts(), false),
        f("resource", DataType::Utf8, false),
        // When its unit arrived: the tie-break between versions with the same
        // source_ts (added in 0.2; null in rows written before).
        f("received_at", ts(), true),
        f("receipt_seq", DataType::Int64, true),
    ]))
}

/// Silver columns added after the first release: a table created without them gets
/// them (nullable) before its next write.
pub const SILVER_ADDED_COLUMNS: [&str; 2] = ["received_at", "receipt_seq"];

/// Bronze columns added with the operations KPIs: a table created without them
/// gets them (nullable) before its next write.
pub const BRONZE_ADDED_COLUMNS: [&str; 4] = ["adapter", "answered_at", "landed_at", "records"];

/// Audit columns added with the hash chain (an older audit table gets them, nullable;
/// its old rows stay outside the chain).
pub const AUDIT_ADDED_COLUMNS: [&str; 5] = ["seq", "purpose", "detail", "prev_hash", "hash"];

/// `DiagnosticReport` -> `silver/diagnostic_report`.
pub fn silver_path(resource_type: &str) -> String {
    let mut s = String::from("silver/");
    for (i, c) in resource_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// A resource type is a FHIR type name: ASCII letters, starting upper case.
pub fn valid_resource_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silver_paths() {
        assert_eq!(silver_path("Patient"), "silver/patient");
        assert_eq!(silver_path("DiagnosticReport"), "silver/diagnostic_report");
        assert!(valid_resource_type("MedicationRequest"));
        assert!(!valid_resource_type("../etc"));
        assert!(!valid_resource_type("patient"));
    }

    /// docs/tables.md names every column of every table.
    #[test]
    fn documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/tables.md")).expect("docs/tables.md");
        let mut missing = vec![];
        for t in Table::ALL {
            assert!(doc.contains(&format!("`{}`", t.path())), "{} not documented", t.path());
            for field in t.schema().fields() {
                if !doc.contains(&format!("`{}`", field.name())) {
                    missing.push(format!("{}.{}", t.path(), field.name()));
                }
            }
        }
        for field in silver_schema().fields() {
            if !doc.contains(&format!("`{}`", field.name())) {
                missing.push(format!("silver.{}", field.name()));
            }
        }
        assert!(missing.is_empty(), "columns missing from docs/tables.md: {missing:?}");
    }
}
