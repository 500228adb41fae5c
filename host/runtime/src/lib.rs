//! # ehrgate-runtime
//!
//! The adapter sandbox. An adapter is a WebAssembly component built against the
//! `ehrgate:adapter` contract (see `wit/`). This crate
//!
//! - compiles a component once, off the hot path, and checks its contract version
//!   before anything runs ([`Runtime::load`]);
//! - keeps an `InstancePre` and gives every call (or batch) a fresh instance from a
//!   pooling allocator, so no patient's data outlives the call that handled it;
//! - enforces per-call limits — memory, wall time (epoch deadline), output size — and
//!   turns a trap, a timeout or a limit hit into a typed [`CallError`] naming the
//!   adapter and the limit, failing that call only;
//! - links WASI with an empty context (no files, environment, arguments or network;
//!   empty stdin; stdout/stderr captured into the adapter's log);
//! - implements the contract's imports: `http` (checked against the adapter's
//!   [`Grants`], audited, then handed to an [`Outbound`]), `state`, `config`, `log`.

mod bindings;
mod contract;
mod engine;
mod error;
mod grants;
mod imports;
mod limits;
mod loaded;
mod registry;
mod services;
mod stdio;

pub use bindings::types::{AdapterError, AdapterInfo, ConnectionNeed, Hl7Message, InputError, Output};
pub use bindings::{HttpError, HttpRequest, HttpResponse};
pub use contract::{ContractVersion, SUPPORTED_CONTRACTS};
pub use engine::{Runtime, RuntimeConfig, compile_cache_dir};
pub use error::{CallError, Limit, LoadError, http_error_text};
pub use grants::{Grant, Grants};
pub use limits::Limits;
pub use loaded::{Adapter, AdapterSettings};
pub use registry::{Candidate, CandidateMode, Registry, Routed, SlotState, split_pin, stable_hash};
pub use services::{now_ms, AuditEvent, AuditSink, MemoryState, NoOutbound, Outbound, StateStore, TracingAudit};
