//! # ehrgate-ingest
//!
//! How inbound data becomes lake rows: every unit lands in bronze exactly as received
//! (committed before anything else happens to it), then the adapter maps it; mapped
//! resources are merged into silver with lineage to their bronze record, and
//! rejected units go to quarantine with the reason. Today: files (HL7v2 single
//! messages and batches, FHIR NDJSON). The live listeners build on the same
//! [`Pipeline`].

mod audit;
mod pipeline;
mod units;

pub use audit::LakeAudit;
pub use pipeline::{IngestError, Pipeline, Report, ReprocessReport};
pub use units::{Unit, UnitKind, read_file};
