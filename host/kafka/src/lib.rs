//! # ehrgate-kafka
//!
//! The message-bus edge, for deployments that already run Kafka (the bus Databricks
//! Structured Streaming reads natively). Optional: nothing here runs unless
//! `[kafka]` is configured (docs/serve.md, "Kafka").
//!
//! - [`source`]: units from topics into the flow. A record's offset is stored for
//!   the group's commit only once its unit is durable in the write-ahead log, and
//!   only in order: what the group has committed is in the log (at least once; a
//!   restart redelivers the rest, and silver's MERGE on natural keys makes the
//!   redelivery an exactly-once effect).
//! - [`sink`]: landed events (`ehrgate_ingest::landed`) to a topic, each keyed by
//!   its unit's bronze record id, published before the log's checkpoint (at least
//!   once; a consumer keys on the record id).
//!
//! Client: rdkafka (librdkafka, built from its bundled source). Tests run against
//! librdkafka's mock cluster, a Kafka-protocol broker on loopback sockets, with an
//! independent Python client (kafka-python) on the other side.

pub mod client;
pub mod sink;
pub mod source;

pub use client::{ClientSettings, KafkaError};
pub use sink::LandedTopic;
pub use source::{SourceKind, SourceSettings};
