//! Landed events: what the flow tells downstream consumers (a message bus, see
//! `ehrgate-kafka`) once a unit's rows are in the lake.
//!
//! The commit stage publishes a group's events after its lake writes and before the
//! write-ahead log's checkpoint lets the units go, and waits until the sink has
//! them. A crash in between replays the units and publishes their events again:
//! delivery is at least once, and a consumer keys on `record_id` (the same unit is
//! the same record id, also on a replay). A sink that keeps failing holds the
//! checkpoint back, like a failing lake write: listeners then wait (back-pressure),
//! nothing is dropped.
//!
//! An event names the unit and the resources it landed as (type and id), never
//! their content: a consumer that needs the resource reads silver, under the
//! lake's access rules (minimum necessary).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ehrgate_lake::{BronzeRow, Micros, QuarantineRow, SilverRow};
use futures::future::BoxFuture;
use serde::Serialize;
use tracing::Instrument;

/// One unit in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandedEvent {
    /// The bronze record id (the key to publish under).
    pub record_id: String,
    /// `bronze/<table>/<record_id>`, what silver rows name as their lineage.
    pub lineage: String,
    /// Where it came from: `mllp:<listener>`, `webhook:<source>`, `kafka:<source>`.
    pub source: String,
    pub received_at: Micros,
    pub landed_at: Option<Micros>,
    /// `name@version` of the adapter that mapped or rejected it.
    pub adapter: Option<String>,
    /// `mapped` (its resources are in silver) or `quarantined`.
    pub outcome: &'static str,
    /// The quarantine error kind (`invalid-input`, `unrouted`...) when quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// The silver rows it produced (before silver's newer-wins rule).
    pub resources: Vec<LandedResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandedResource {
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    pub id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl LandedEvent {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a landed event serializes")
    }
}

/// Where landed events go.
pub trait LandedSink: Send + Sync {
    /// Publish `events`, in order; `Ok` once the sink has every one of them
    /// (durably, as far as it can say). On `Err` the whole group is published again.
    fn publish<'a>(&'a self, events: &'a [LandedEvent]) -> BoxFuture<'a, Result<(), String>>;
}

/// What every publisher of a gateway (the flow, file drops, Bulk Data exports)
/// published through one sink, for `/metrics`.
#[derive(Debug, Default)]
pub struct LandedCounts {
    /// Events the sink took.
    pub published: AtomicU64,
    /// Failed attempts to publish a group.
    pub errors: AtomicU64,
}

/// A [`LandedSink`] shared by the flow ([`crate::FlowConfig`]) and the pipelines
/// of file drops and Bulk Data exports ([`crate::Pipeline::with_landed`]).
#[derive(Clone)]
pub struct LandedHook {
    sink: Arc<dyn LandedSink>,
    pub counts: Arc<LandedCounts>,
}

impl std::fmt::Debug for LandedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LandedHook")
    }
}

impl LandedHook {
    pub fn new(sink: Arc<dyn LandedSink>) -> Self {
        LandedHook { sink, counts: Arc::default() }
    }

    /// One attempt to publish `events`, counted.
    pub async fn publish(&self, events: &[LandedEvent]) -> Result<(), String> {
        let r = self.sink.publish(events).instrument(tracing::info_span!("landed.publish", events = events.len())).await;
        match &r {
            Ok(()) => self.counts.published.fetch_add(events.len() as u64, Ordering::Relaxed),
            Err(_) => self.counts.errors.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// [`LandedHook::publish`], tried `attempts` times with backoff (0.4 s, doubling
    /// up to 30 s); the last error if every attempt failed.
    pub async fn publish_retrying(&self, events: &[LandedEvent], attempts: u32) -> Result<(), String> {
        let mut failures = 0u32;
        loop {
            let Err(e) = self.publish(events).await else { return Ok(()) };
            failures += 1;
            if failures >= attempts {
                return Err(e);
            }
            let wait = retry_wait(failures);
            tracing::error!("publishing {} landed events failed, retrying in {wait:?}: {e}", events.len());
            tokio::time::sleep(wait).await;
        }
    }
}

/// The pause after `failures` failed attempts to publish.
pub(crate) fn retry_wait(failures: u32) -> Duration {
    (Duration::from_millis(200) * 2u32.saturating_pow(failures.min(8))).min(Duration::from_secs(30))
}

/// The events of a commit: one per bronze row, in order, with the silver rows and
/// quarantine row that name it.
pub fn events(bronze: &[&BronzeRow], silver: &[SilverRow], quarantined: &[QuarantineRow]) -> Vec<LandedEvent> {
    let mut by_lineage: HashMap<&str, Vec<LandedResource>> = HashMap::new();
    for r in silver {
        by_lineage.entry(r.lineage.as_str()).or_default().push(LandedResource { resource_type: r.resource_type.clone(), id: r.id.clone(), deleted: r.deleted });
    }
    let rejected: HashMap<&str, &QuarantineRow> = quarantined.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut seen = HashSet::new();
    bronze
        .iter()
        .filter(|b| seen.insert(b.record_id.as_str()))
        .map(|b| {
            let lineage = b.lineage();
            let q = rejected.get(b.record_id.as_str());
            LandedEvent {
                record_id: b.record_id.clone(),
                resources: by_lineage.remove(lineage.as_str()).unwrap_or_default(),
                lineage,
                source: b.source.clone(),
                received_at: b.received_at,
                landed_at: b.processed.landed_at,
                adapter: b.processed.adapter.clone().or_else(|| q.map(|q| q.adapter.clone()).filter(|a| !a.is_empty())),
                outcome: if q.is_some() { "quarantined" } else { "mapped" },
                error_kind: q.map(|q| q.error_kind.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrgate_lake::BronzeDetail;

    #[test]
    fn one_event_per_unit_with_its_resources_or_its_quarantine() {
        let detail = || BronzeDetail::Hl7 { control_id: None, sender: None, message_type: None };
        let a = BronzeRow::new(b"a".to_vec(), "kafka:adt", 1, 1, detail());
        let b = BronzeRow::new(b"b".to_vec(), "kafka:adt", 2, 2, detail());
        let silver = |id: &str, lineage: String| SilverRow { deleted: false, ..SilverRow::tombstone("Patient", id, "reference@1", 0, &lineage, ehrgate_lake::Receipt::at(0)) };
        let rows = vec![silver("p1", a.lineage()), silver("p2", a.lineage())];
        let q = QuarantineRow {
            id: b.record_id.clone(),
            quarantined_at: 0,
            input_kind: "hl7".into(),
            source: "kafka:adt".into(),
            adapter: "reference@1".into(),
            error_kind: "invalid-input".into(),
            error_message: "no".into(),
            location: None,
            lineage: Some(b.lineage()),
            raw: Vec::new(),
            reprocessed_at: None,
            reprocess_outcome: None,
        };
        let ev = events(&[&a, &b, &a], &rows, &[q]);
        assert_eq!(ev.len(), 2, "a unit twice (a replay) is one event");
        assert_eq!((ev[0].outcome, ev[0].resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()), ("mapped", vec!["p1", "p2"]));
        assert_eq!((ev[1].outcome, ev[1].error_kind.as_deref(), ev[1].resources.len()), ("quarantined", Some("invalid-input"), 0));
        assert_eq!(ev[1].adapter.as_deref(), Some("reference@1"));
        let json: serde_json::Value = serde_json::from_slice(&ev[0].to_json()).unwrap();
        assert_eq!(json["resources"][0], serde_json::json!({"resourceType": "Patient", "id": "p1"}));
        assert_eq!(json["source"], "kafka:adt");
    }
}
