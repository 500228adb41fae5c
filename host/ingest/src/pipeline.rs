//! bronze -> adapter -> silver / quarantine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ehrgate_lake::{BronzeRow, Lake, LakeError, QuarantineRow, Receipt, SilverRow, WorkflowRunRow, now_micros, quarantine};
use ehrgate_runtime::{Adapter, AdapterError, CallError, Hl7Message, Output};

use crate::landed::{LandedEvent, LandedHook};
use crate::triggers::{TriggerHook, runs_for};
use crate::units::{Unit, UnitKind};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The rows are in the lake; their landed events are not published.
    #[error("landed events not published: {0}")]
    Landed(String),
}

/// What an ingest did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub units: usize,
    pub resources: usize,
    pub by_type: BTreeMap<String, usize>,
    pub quarantined: usize,
    pub quarantined_by_kind: BTreeMap<String, usize>,
}

impl Report {
    pub fn add(&mut self, other: &Report) {
        self.units += other.units;
        self.resources += other.resources;
        self.quarantined += other.quarantined;
        for (k, v) in &other.by_type {
            *self.by_type.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.quarantined_by_kind {
            *self.quarantined_by_kind.entry(k.clone()).or_default() += v;
        }
    }
}

/// What mapping some units produced (not yet written).
#[derive(Debug, Default)]
pub struct Mapped {
    pub silver: Vec<SilverRow>,
    pub quarantined: Vec<QuarantineRow>,
}

impl Mapped {
    pub fn report(&self, units: usize) -> Report {
        let mut report = Report { units, resources: self.silver.len(), quarantined: self.quarantined.len(), ..Default::default() };
        for r in &self.silver {
            *report.by_type.entry(r.resource_type.clone()).or_default() += 1;
        }
        for q in &self.quarantined {
            *report.quarantined_by_kind.entry(q.error_kind.clone()).or_default() += 1;
        }
        report
    }
}

/// The webhook source name of an event's bronze source (`webhook:<name>`).
pub fn event_source(bronze_source: &str) -> &str {
    bronze_source.strip_prefix("webhook:").unwrap_or(bronze_source)
}

#[derive(Debug, Default, Clone)]
pub struct ReprocessReport {
    pub examined: usize,
    pub mapped: usize,
    pub still_failing: Vec<(String, String)>,
}

/// HL7 messages mapped per sandbox instance.
const HL7_CHUNK: usize = 64;
/// NDJSON lines per `map-fhir` batch.
const FHIR_CHUNK: usize = 1000;

pub struct Pipeline {
    lake: Arc<Lake>,
    adapter: Adapter,
    /// Workflow triggers (file drops in `serve`): the runs its units trigger are
    /// recorded with their rows, before `ingest` returns (so before a drop file
    /// is moved away as done).
    triggers: Option<TriggerHook>,
    /// Landed events (file drops and Bulk Data in `serve`): published after the
    /// lake writes, before `ingest` returns (so before a drop file is moved away as
    /// done, or an export's progress is saved).
    landed: Option<LandedHook>,
}

/// Attempts to publish one ingest's landed events before the ingest fails (and is
/// retried by its caller: a drop file stays, an export resumes).
const PUBLISH_ATTEMPTS: u32 = 5;

fn error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::Adapter { error: AdapterError::InvalidInput(_), .. } => "invalid-input",
        CallError::Adapter { error: AdapterError::Unsupported(_), .. } => "unsupported",
        CallError::Adapter { error: AdapterError::Transient(_), .. } => "transient",
        CallError::Limit { .. } => "limit",
        CallError::Trap { .. } => "trap",
        CallError::Instantiate { .. } => "transient",
    }
}

fn error_location(e: &CallError) -> Option<String> {
    match e {
        CallError::Adapter { error: AdapterError::InvalidInput(i), .. } => i.location.clone(),
        _ => None,
    }
}

impl Pipeline {
    pub fn new(lake: Arc<Lake>, adapter: Adapter) -> Self {
        Pipeline { lake, adapter, triggers: None, landed: None }
    }

    pub fn with_triggers(mut self, triggers: Option<TriggerHook>) -> Self {
        self.triggers = triggers;
        self
    }

    pub fn with_landed(mut self, landed: Option<LandedHook>) -> Self {
        self.landed = landed;
        self
    }

    /// The landed events of units about to be committed (`None` without a sink):
    /// every unit given, also those bronze held already (a retried ingest
    /// publishes again: at least once).
    pub fn landed_events<'a>(&self, bronze: impl Iterator<Item = &'a BronzeRow>, silver: &[SilverRow], quarantined: &[QuarantineRow]) -> Option<Vec<LandedEvent>> {
        self.landed.as_ref()?;
        let bronze: Vec<&BronzeRow> = bronze.collect();
        Some(crate::landed::events(&bronze, silver, quarantined))
    }

    /// Publish `events` once their rows are in the lake: they landed now, through
    /// this pipeline's adapter.
    pub async fn publish_landed(&self, events: Option<Vec<LandedEvent>>) -> Result<(), IngestError> {
        let (Some(hook), Some(mut events)) = (&self.landed, events) else { return Ok(()) };
        if events.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        for e in &mut events {
            e.landed_at = e.landed_at.or(Some(now));
            e.adapter = e.adapter.take().or_else(|| Some(self.adapter.label().to_string()));
        }
        hook.publish_retrying(&events, PUBLISH_ATTEMPTS).await.map_err(IngestError::Landed)
    }

    /// The runs `units` trigger that are not recorded yet.
    fn new_runs(&self, units: &[Unit], mapped: &Mapped) -> Vec<WorkflowRunRow> {
        match &self.triggers {
            Some(TriggerHook(t)) => {
                let runs = runs_for(t.as_ref(), units, mapped);
                if runs.is_empty() { runs } else { t.unseen(runs) }
            }
            None => Vec::new(),
        }
    }

    /// Runs written (`written` is Ok) start; runs not written are forgotten, so a
    /// retry of the same units records them.
    fn settle(&self, runs: Vec<WorkflowRunRow>, written: Result<(), LakeError>) -> Result<(), LakeError> {
        if let Some(TriggerHook(t)) = &self.triggers
            && !runs.is_empty()
        {
            match &written {
                Ok(()) => t.recorded(runs),
                Err(_) => t.not_recorded(&runs),
            }
        }
        written
    }

    async fn record_runs(&self, runs: &[WorkflowRunRow]) -> Result<(), LakeError> {
        if runs.is_empty() { Ok(()) } else { self.lake.workflow_runs(runs.to_vec()).await }
    }

    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    pub fn quarantine_row(&self, unit: &Unit, kind: &str, message: String, location: Option<String>) -> QuarantineRow {
        QuarantineRow {
            id: unit.bronze.record_id.clone(),
            quarantined_at: now_micros(),
            input_kind: unit.kind.as_str().into(),
            source: unit.bronze.source.clone(),
            adapter: self.adapter.label().to_string(),
            error_kind: kind.into(),
            error_message: message,
            location,
            lineage: Some(unit.bronze.lineage()),
            raw: unit.bronze.raw.clone(),
            reprocessed_at: None,
            reprocess_outcome: None,
        }
    }

    /// Land `units` in bronze (committed first), map them, and commit the results.
    pub async fn ingest(&self, units: Vec<Unit>) -> Result<Report, IngestError> {
        if units.is_empty() {
            return Ok(Report::default());
        }
        self.lake.append_bronze(units.iter().map(|u| u.bronze.clone()).collect()).await?;
        let mapped = self.map_units(&units).await;
        let report = mapped.report(units.len());
        let runs = self.new_runs(&units, &mapped);
        let events = self.landed_events(units.iter().map(|u| &u.bronze), &mapped.silver, &mapped.quarantined);
        let (a, b, c) = tokio::join!(self.lake.upsert_silver(mapped.silver), self.lake.quarantine(mapped.quarantined), self.record_runs(&runs));
        self.settle(runs, c)?;
        a?;
        b?;
        self.publish_landed(events).await?;
        Ok(report)
    }

    /// [`Pipeline::ingest`] for units that may have been committed before (a drop
    /// file read again after a crash or a change): those bronze and quarantine
    /// already hold are not appended again; silver's MERGE ignores a version it
    /// has. Costs one look-up per table per call.
    pub async fn ingest_once(&self, units: Vec<Unit>) -> Result<Report, IngestError> {
        if units.is_empty() {
            return Ok(Report::default());
        }
        let skipped = self.lake.append_bronze_once(Vec::new(), units.iter().map(|u| u.bronze.clone()).collect()).await?;
        if skipped > 0 {
            tracing::info!("{skipped} of {} units were in bronze already (read again)", units.len());
        }
        let mapped = self.map_units(&units).await;
        let report = mapped.report(units.len());
        let runs = self.new_runs(&units, &mapped);
        let events = self.landed_events(units.iter().map(|u| &u.bronze), &mapped.silver, &mapped.quarantined);
        let (a, b, c) = tokio::join!(self.lake.upsert_silver(mapped.silver), self.lake.quarantine_once(Vec::new(), mapped.quarantined), self.record_runs(&runs));
        self.settle(runs, c)?;
        a?;
        b?;
        self.publish_landed(events).await?;
        Ok(report)
    }

    /// Map `units` (nothing is written): silver rows for what mapped, one quarantine
    /// row per unit that did not (its id is the unit's bronze record id).
    pub async fn map_units(&self, units: &[Unit]) -> Mapped {
        let mut silver = Vec::new();
        let mut quarantined = Vec::new();
        let (hl7, rest): (Vec<&Unit>, Vec<&Unit>) = units.iter().partition(|u| u.kind == UnitKind::Hl7);
        let (fhir, events): (Vec<&Unit>, Vec<&Unit>) = rest.into_iter().partition(|u| u.kind == UnitKind::Fhir);
        for chunk in hl7.chunks(HL7_CHUNK) {
            let (ok, bad): (Vec<&Unit>, Vec<&Unit>) = chunk.iter().partition(|u| u.parse_error.is_none());
            for u in bad {
                let (message, location) = u.parse_error.clone().expect("partitioned on it");
                quarantined.push(self.quarantine_row(u, &crate::units::error_kind(u), message, location));
            }
            for (u, result) in ok.iter().zip(self.map_hl7_chunk(&ok).await) {
                self.collect(&[u], result, &mut silver, &mut quarantined);
            }
        }
        for chunk in fhir.chunks(FHIR_CHUNK) {
            let batch: Vec<String> = chunk.iter().map(|u| u.text.clone()).collect();
            match self.adapter.map_fhir(&batch).await {
                // One resource per line: each resource's lineage is its line.
                Ok(out) if out.resources.len() == chunk.len() => self.collect(chunk, Ok(out), &mut silver, &mut quarantined),
                // A failed batch, or output that does not line up with the input:
                // map line by line, so every resource and every failure is tied to
                // the exact line it came from.
                _ => {
                    for u in chunk {
                        let r = self.adapter.map_fhir(std::slice::from_ref(&u.text)).await;
                        self.collect(&[u], r, &mut silver, &mut quarantined);
                    }
                }
            }
        }
        for u in events {
            let r = self.adapter.handle_event(event_source(&u.bronze.source), &u.bronze.raw).await;
            self.collect(&[u], r, &mut silver, &mut quarantined);
        }
        Mapped { silver, quarantined }
    }

    /// Map HL7 messages in one instance; if the batch as a whole fails (a trap or a
    /// limit), map them one by one so only the culprit fails.
    async fn map_hl7_chunk(&self, units: &[&Unit]) -> Vec<Result<Output, CallError>> {
        let msgs: Vec<Hl7Message> = units
            .iter()
            .map(|u| Hl7Message { raw: u.text.clone(), source: u.bronze.source.clone(), received_at_ms: (u.bronze.received_at / 1000) as u64 })
            .collect();
        match self.adapter.map_hl7_batch(&msgs).await {
            Ok(results) => results,
            Err(_) => {
                let mut out = Vec::with_capacity(msgs.len());
                for m in &msgs {
                    out.push(self.adapter.map_hl7(m).await);
                }
                out
            }
        }
    }

    /// Turn one mapping result for `units` into silver or quarantine rows.
    fn collect(&self, units: &[&Unit], result: Result<Output, CallError>, silver: &mut Vec<SilverRow>, quarantined: &mut Vec<QuarantineRow>) {
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                for u in units {
                    quarantined.push(self.quarantine_row(u, error_kind(&e), e.to_string(), error_location(&e)));
                }
                return;
            }
        };
        for w in &out.warnings {
            tracing::debug!(adapter = %self.adapter.label(), "mapping warning: {w}");
        }
        // Lineage: a single unit, or a batch whose output lines up one to one with
        // its input (the caller guarantees one of the two).
        debug_assert!(units.len() == 1 || out.resources.len() == units.len());
        let mut rejected: HashMap<usize, Vec<String>> = HashMap::new();
        for (i, json) in out.resources.iter().enumerate() {
            let u = if units.len() == 1 { 0 } else { i };
            let unit = units[u];
            match SilverRow::from_json(json, self.adapter.label(), &unit.bronze.lineage(), unit.bronze.receipt()) {
                Ok(row) => silver.push(row),
                Err(e) => rejected.entry(u).or_default().push(e.to_string()),
            }
        }
        // One quarantine row per unit, however many of its resources were rejected
        // (its valid resources still land; reprocessing re-maps the whole unit).
        let mut rejected: Vec<(usize, Vec<String>)> = rejected.into_iter().collect();
        rejected.sort_by_key(|(u, _)| *u);
        for (u, errors) in rejected {
            let message = format!("adapter output rejected ({} of its resources): {}", errors.len(), errors.join("; "));
            quarantined.push(self.quarantine_row(units[u], "invalid-output", message, None));
        }
    }

    /// Re-run the current adapter over quarantined inputs; rows that now map are
    /// merged into silver and marked reprocessed.
    pub async fn reprocess(&self, filter: &quarantine::Filter) -> Result<ReprocessReport, IngestError> {
        let rows = quarantine::list(&self.lake, filter).await?;
        let mut report = ReprocessReport { examined: rows.len(), ..Default::default() };
        let mut silver = Vec::new();
        let mut marked = Vec::new();
        for q in rows {
            let text = String::from_utf8_lossy(&q.raw).into_owned();
            let lineage = q.lineage.clone().unwrap_or_else(|| format!("quarantine/records/{}", q.id));
            let result = match q.input_kind.as_str() {
                "fhir" => self.adapter.map_fhir(&[text]).await,
                "event" => self.adapter.handle_event(event_source(&q.source), &q.raw).await,
                _ => {
                    let decoded = ehrgate_sdk::hl7::decode_bytes(&q.raw).into_owned();
                    self.adapter.map_hl7(&Hl7Message { raw: decoded, source: q.source.clone(), received_at_ms: (q.quarantined_at / 1000) as u64 }).await
                }
            };
            match result {
                Ok(out) => {
                    let mut rows = Vec::new();
                    let mut bad = None;
                    for json in &out.resources {
                        match SilverRow::from_json(json, self.adapter.label(), &lineage, Receipt::at(q.quarantined_at)) {
                            Ok(r) => rows.push(r),
                            Err(e) => bad = Some(e.to_string()),
                        }
                    }
                    match bad {
                        None => {
                            silver.extend(rows);
                            marked.push((q.id.clone(), format!("mapped by {}", self.adapter.label())));
                            report.mapped += 1;
                        }
                        Some(e) => report.still_failing.push((q.id.clone(), e)),
                    }
                }
                Err(e) => report.still_failing.push((q.id.clone(), e.to_string())),
            }
        }
        self.lake.upsert_silver(silver).await?;
        // Silver first: a row is marked reprocessed only once its resources are in.
        quarantine::mark_reprocessed(&self.lake, &marked, &report.still_failing).await?;
        Ok(report)
    }
}
