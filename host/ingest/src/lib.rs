//! # ehrgate-ingest
//!
//! How inbound data becomes lake rows: every unit lands in bronze exactly as received,
//! then the adapter maps it; mapped resources are merged into silver with lineage to
//! their bronze record, and rejected units go to quarantine with the reason.
//!
//! - [`Pipeline`]: files and reprocessing (bronze committed first, then mapping).
//! - [`flow`]: the live path for listeners: write-ahead log (durable before any
//!   acknowledgement) -> adapter -> lake -> checkpoint, with back-pressure and replay.
//! - [`mllp`]: HL7v2 listeners (MLLP, custom framing, MLLP2 commit ACKs, batches).
//! - [`drops`]: watched directories (batch files, NDJSON), each file exactly once.
//! - [`webhook`]: `POST /v1/events/{source}` with HMAC-SHA256 signatures.
//! - [`landed`]: events for downstream consumers once units are in the lake.
//! - [`bulk`]: FHIR Bulk Data `$export` (kick-off, poll, parallel streamed
//!   downloads), incremental and resumable.

mod audit;
pub mod bulk;
pub mod drops;
pub mod flow;
mod inbound;
pub mod landed;
pub mod mllp;
mod pipeline;
pub mod candidate;
mod resolve;
pub mod route;
pub mod triggers;
mod units;
pub mod webhook;

pub use audit::LakeAudit;
pub use flow::{Flow, FlowConfig, FlowStats, FlowTasks, Outcome};
pub use triggers::{TriggerHook, Triggers};
pub use inbound::{Inbound, InboundKind};
pub use landed::{LandedEvent, LandedHook, LandedSink};
pub use resolve::{PipelineSource, Resolve};
pub use pipeline::{IngestError, Mapped, Pipeline, Report, ReprocessReport, event_source};
pub use units::{Unit, UnitKind, event_unit, hl7_unit, read_file};
