//! # ehrgate-lake
//!
//! Delta Lake sinks on the `deltalake` crate, on a local directory (default
//! `./ehrgate-data`) or an S3-compatible bucket through one code path:
//!
//! - `bronze/hl7_messages`, `bronze/fhir_ndjson`, `bronze/events`: raw inbound units,
//!   append only, partitioned by ingest date, with content hash and provenance;
//! - `silver/<resource_type>`: canonical FHIR R4 resources, MERGE on id where a newer
//!   source timestamp wins, so replays and duplicates never duplicate rows;
//!   every row names the bronze record it came from (`lineage`);
//! - `quarantine/records`: rejected inputs with the raw bytes and the reason,
//!   reprocessable; `audit/access_log`: who accessed what.
//!
//! Writes go through one writer task per table that batches by size and age, with a
//! bounded queue for back-pressure. SQL over every table through DataFusion.
//! Schemas are documented in `docs/tables.md`.

pub mod audit;
mod dv;
mod error;
mod id_index;
mod lake;
mod mapped;
pub mod maintenance;
pub mod quarantine;
mod props;
pub mod removal;
mod rows;
mod schema;
#[cfg(test)]
mod scratch;
mod silver_dv;
mod tasks;
pub mod sql;
mod storage;
mod writer;

pub use deltalake::arrow;
pub use deltalake::datafusion;
pub use deltalake::parquet;
pub use error::LakeError;
pub use lake::{Lake, snake_to_type};
pub use audit::AuditRow;
pub use rows::{BronzeDetail, BronzeRow, Processed, Micros, QuarantineRow, Receipt, ShadowDiffRow, SilverRow, WorkflowRunRow, date_of, now_micros, rfc3339, parse_fhir_time, sha256_hex};
pub use schema::{Table, silver_path, silver_schema, valid_resource_type};
pub use storage::{SecretRef, Storage};
pub use writer::BatchConfig;
