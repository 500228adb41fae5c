//! # ehrgate-door
//!
//! The agent door (DESIGN.md §9, docs/agent-door.md): one governed way in for AI
//! agents and pipelines, on a listener of its own inside `ehrgate serve`.
//!
//! - **Tools**, the same over the HTTP API (`GET /v1/tools`, `POST /v1/tools/{name}`)
//!   and over the Model Context Protocol (streamable HTTP at `/mcp`; stdio through
//!   `ehrgate door mcp`, which forwards to the HTTP API): reads through a named
//!   connection with the adapter's `map-fhir` applied (`latest_vitals`,
//!   `active_medications`, `read_resource`, `search_resources`) and writes through
//!   adapter actions only (`run_action`), never raw pass-through.
//! - **Clients** present an API key (`Authorization: Bearer`); the gateway keeps
//!   only its SHA-256. Each client has scopes: connections, resource types to read,
//!   `adapter.action`s to run, purposes it may declare. A call outside them is 403.
//! - **Purpose of use** is required on every call (`X-Ehrgate-Purpose`).
//! - **Audit**: every call, refused ones included, is one row in `audit/access_log`
//!   with the client, key id, transport and peer, the tool, what was read or written,
//!   the purpose, the answer and the upstream status.
//! - Reads go through the connection like every other request of the gateway:
//!   throttle, Retry-After, retries with backoff, breaker, token cache; the token is
//!   asked for reading just the one resource type.

pub mod clients;
pub mod config;
pub mod door;
pub mod http;
pub mod mcp;
pub mod reads;
pub mod tools;

pub use clients::{Client, Clients, new_key};
pub use config::{ClientEntry, DoorSettings};
pub use door::{Answer, Caller, Door, DoorStats};
pub use http::{DoorListener, PURPOSE_HEADER, start};
