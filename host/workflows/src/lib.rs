//! # ehrgate-workflows
//!
//! `[[workflows]]` in `ehrgate serve`: a clinical event (an HL7 message type, with
//! optional conditions on its fields) triggers an adapter action (e.g.
//! `discharge-checklist`) toward the EHR.
//!
//! - [`spec`]: the configuration.
//! - [`trigger`]: which runs a mapped unit triggers (decided in the flow's map
//!   stage; pure).
//! - [`engine`]: the runs: recorded with their unit (so the write-ahead log covers
//!   them), executed through the adapter with retries and backoff, each state
//!   appended to `ops/workflow_runs`; a run that exhausts its attempts or its
//!   deadline, or meets a permanent error, is a dead letter (`failed`).
//! - [`store`]: the runs' states read back from the lake.
//! - [`kpi`]: runs, success and error rates, latency percentiles, SLA share.
//!
//! docs/workflows.md has the guarantees and the rules.

pub mod engine;
pub mod kpi;
pub mod spec;
pub mod store;
pub mod trigger;

pub use engine::{ActionRunner, Control, Engine, EngineOptions, Failure, Finished, Refused};
pub use spec::{ResourceTrigger, RetrySpec, WorkflowSpec};
