//! Units from Kafka topics into the flow.
//!
//! Each record is one unit: an HL7v2 message (`kind = "hl7"`) or an event body
//! (`kind = "event"`, as a webhook would carry it). It is submitted to the flow in
//! the order the consumer delivers it; a second task waits for each unit's outcome
//! in that same order and, once the unit is durable in the write-ahead log
//! (accepted, or quarantined: durable either way), stores its offset. librdkafka
//! commits stored offsets for the group every `auto.commit.interval.ms` and when
//! the source stops. So the group's committed offset never passes a unit the log
//! does not hold: a crash redelivers what was not committed (at least once), and
//! silver's MERGE makes the second delivery change nothing.
//!
//! A unit the log could not store is submitted again (with backoff) before any
//! later offset is stored; it then lands after records delivered behind it (the
//! one exception to per-partition order). When the gateway stops, the source stops
//! reading (also while it waits for room), stores what became durable, commits,
//! and leaves the group.

use std::sync::Arc;
use std::time::Duration;

use ehrgate_ingest::{Flow, Inbound, InboundKind, Outcome};
use ehrgate_lake::now_micros;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::client::{ClientSettings, KafkaError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// One HL7v2 message per record.
    Hl7,
    /// One event body per record (FHIR JSON, CDC...); the record key, when UTF-8,
    /// is its event id.
    Event,
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Bronze source `kafka:<name>`.
    pub name: String,
    pub topics: Vec<String>,
    /// The consumer group (default `ehrgate`): gateways in one group share the
    /// topics' partitions.
    pub group: String,
    pub kind: SourceKind,
    /// The adapter that maps this source's units.
    pub adapter: String,
    /// Units submitted and not yet durable, at most (the flow's own back-pressure
    /// applies as well).
    pub max_in_flight: usize,
}

impl SourceSettings {
    pub fn check(&self) -> Result<(), KafkaError> {
        let bad = |why: String| Err(KafkaError::Config(format!("source `{}`: {why}", self.name)));
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return bad("a name is letters, digits, `-`, `_` and `.`".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return bad("name at least one topic".into());
        }
        if self.group.trim().is_empty() {
            return bad("the consumer group is empty".into());
        }
        if self.adapter.trim().is_empty() {
            return bad("name the adapter that maps its units".into());
        }
        Ok(())
    }
}

/// A submitted record, waiting for its unit to be durable.
struct Pending {
    topic: String,
    partition: i32,
    offset: i64,
    inbound: Inbound,
    outcome: oneshot::Receiver<Outcome>,
}

/// Start consuming. The task ends after `stop` turns true and what became durable
/// is committed.
pub fn spawn(client: &ClientSettings, s: SourceSettings, flow: Flow, stop: watch::Receiver<bool>) -> Result<JoinHandle<()>, KafkaError> {
    client.check()?;
    s.check()?;
    let consumer: StreamConsumer = client
        .config(&format!("ehrgate-{}", s.name), &[("auto.offset.reset", "earliest"), ("auto.commit.interval.ms", "1000")])
        .set("group.id", &s.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|source| KafkaError::Client { what: format!("source `{}`", s.name), source })?;
    let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|source| KafkaError::Client { what: format!("source `{}`: subscribe to {topics:?}", s.name), source })?;
    let consumer = Arc::new(consumer);
    Ok(tokio::spawn(run(consumer, s, flow, stop)))
}

async fn run(consumer: Arc<StreamConsumer>, s: SourceSettings, flow: Flow, mut stop: watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel::<Pending>(s.max_in_flight.max(1));
    let store = tokio::spawn(store_durable(consumer.clone(), rx, flow.clone(), stop.clone(), s.name.clone()));
    let source = format!("kafka:{}", s.name);
    let mut errors = 0u32;
    loop {
        let received = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            m = consumer.recv() => m,
        };
        let m = match received {
            Ok(m) => {
                errors = 0;
                m
            }
            Err(e) => {
                // librdkafka reconnects by itself; say so once in a while, not per poll.
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!("kafka source {}: {e} (the client retries)", s.name);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let raw = m.payload().unwrap_or_default().to_vec();
        let kind = match s.kind {
            SourceKind::Hl7 => InboundKind::Hl7,
            SourceKind::Event => InboundKind::Event { event_id: m.key().and_then(|k| std::str::from_utf8(k).ok()).filter(|k| !k.is_empty()).map(str::to_owned) },
        };
        let inbound = Inbound { kind, source: source.clone(), adapter: s.adapter.clone(), received_at: now_micros(), raw };
        let (topic, partition, offset) = (m.topic().to_owned(), m.partition(), m.offset());
        drop(m);
        // Waiting for room (the lake or the landed topic is behind) or for the
        // storing task must not hold up a stop: a record given up here is not
        // stored, and the group delivers it again. (`submit` is cancel-safe.)
        let outcome = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            o = flow.submit(inbound.clone()) => o,
        };
        let sent = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = tx.send(Pending { topic, partition, offset, inbound, outcome }) => r,
        };
        if sent.is_err() {
            break;
        }
    }
    drop(tx);
    drop(flow);
    let stored = store.await.unwrap_or(0);
    // The last stored offsets, committed now rather than at the next interval.
    let c = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) | Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset))) => {}
        Ok(Err(e)) => tracing::warn!("kafka source {}: committing offsets at stop: {e} (the records after the last commit are delivered again)", s.name),
        Err(e) => tracing::warn!("kafka source {}: commit task: {e}", s.name),
    }
    tracing::info!("kafka source {}: stopped; {stored} records stored for the group's commit", s.name);
    // Leaving the group blocks: off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

/// Stores offsets in delivery order, each once its unit is durable. Returns how
/// many were stored.
// (a resubmission yields the receiver of its outcome, which the loop awaits)
#[allow(clippy::async_yields_async)]
async fn store_durable(consumer: Arc<StreamConsumer>, mut rx: mpsc::Receiver<Pending>, flow: Flow, mut stop: watch::Receiver<bool>, name: String) -> u64 {
    let mut stored = 0u64;
    while let Some(p) = rx.recv().await {
        let Pending { topic, partition, offset, inbound, mut outcome } = p;
        let mut backoff = Duration::from_millis(100);
        loop {
            match (&mut outcome).await {
                Ok(Outcome::Accepted) | Ok(Outcome::Rejected { .. }) => break,
                Ok(Outcome::Failed(why)) if !*stop.borrow() => {
                    tracing::warn!("kafka source {name}: {topic}/{partition}@{offset} was not stored ({why}); submitting it again in {backoff:?}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    outcome = tokio::select! {
                        _ = stop.wait_for(|s| *s) => return stored,
                        o = async {
                            tokio::time::sleep(wait).await;
                            flow.submit(inbound.clone()).await
                        } => o,
                    };
                }
                // Stopping, or the flow is gone: nothing after this is stored; the
                // group redelivers it.
                _ => return stored,
            }
        }
        match consumer.store_offset(&topic, partition, offset) {
            Ok(()) => stored += 1,
            // The partition went to another member of the group (a rebalance): it
            // redelivers from the last commit, which is durable here.
            Err(e) => tracing::info!("kafka source {name}: {topic}/{partition}@{offset} durable but not stored ({e}); the group delivers it again"),
        }
    }
    stored
}
