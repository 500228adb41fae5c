//! The live path: inbound unit -> write-ahead log (durable) -> adapter (the ACK is
//! decided here) -> Delta (bronze, silver, quarantine) -> log checkpoint.
//!
//! Three stages, each a task, connected in order, so that units from one
//! connection keep their order all the way to the lake:
//!
//! 1. **log**: takes submitted units in arrival order, appends them in groups (one
//!    write and one fsync per group) and passes them on with their sequence numbers.
//!    A unit that cannot be made durable is answered `Failed` (HL7 AR).
//! 2. **map**: maps groups through their adapters; answers each submitter with
//!    `Accepted` or `Rejected` (AA / AE): the unit is durable either way.
//! 3. **commit**: writes silver and quarantine rows (and the workflow runs the
//!    units triggered, see [`crate::triggers`]), then bronze, each row stamped with
//!    when the others landed (`landed_at`, for the operations KPIs), then
//!    checkpoints the log up to the last unit written. Failed writes are retried (the units stay in
//!    the log); nothing is dropped.
//!
//! Back-pressure: at most `max_pending` units may be between submission and
//! checkpoint. Past that, `submit` waits, so an MLLP connection stops reading its
//! socket (TCP back-pressure) instead of failing messages. On start, what the log
//! holds past its checkpoint is mapped and committed again; silver's MERGE makes
//! that an exactly-once effect.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ehrgate_lake::{BronzeRow, Lake, QuarantineRow, ShadowDiffRow, WorkflowRunRow, now_micros};
use ehrgate_runtime::{CandidateMode, Routed};
use ehrgate_wal::{GroupCommit, Record};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::inbound::Inbound;
use crate::landed::LandedHook;
use crate::pipeline::{Mapped, Pipeline};
use crate::resolve::Resolve;
use crate::triggers::TriggerHook;

/// What became of a submitted unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durable and mapped (HL7 AA / CA).
    Accepted,
    /// Durable, but the adapter rejected it (or no adapter is routed): it is in
    /// quarantine. `kind` is the quarantine error kind (`invalid-input`, `unrouted`...).
    Rejected { kind: String, message: String, location: Option<String> },
    /// Not durable: the log could not store it (HL7 AR). The sender should resend.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Units allowed between submission and checkpoint before `submit` waits.
    pub max_pending: usize,
    /// Units mapped per group.
    pub map_group: usize,
    /// Units written to the lake per commit, at most.
    pub commit_group: usize,
    /// Fault injection for tests: wait this long before every lake write.
    pub slow_commit: Option<Duration>,
    /// Fault injection for tests: wait this long after a lake write, before its
    /// checkpoint (a kill then leaves units in the lake that the log replays).
    pub slow_checkpoint: Option<Duration>,
    /// Groups mapped at once.
    pub map_parallel: usize,
    /// Where lake commits run (default: the caller's runtime).
    pub lake_runtime: Option<tokio::runtime::Handle>,
    /// Workflows: the runs units trigger are recorded with them.
    pub triggers: Option<TriggerHook>,
    /// Landed events (e.g. to a Kafka topic): published after each lake commit,
    /// before its checkpoint (see [`crate::landed`]).
    pub landed: Option<LandedHook>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_pending: 100_000,
            map_group: 256,
            commit_group: 50_000,
            slow_commit: None,
            slow_checkpoint: None,
            map_parallel: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            lake_runtime: None,
            triggers: None,
            landed: None,
        }
    }
}

/// Counters, readable while the gateway runs.
#[derive(Debug, Default)]
pub struct FlowStats {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub committed: AtomicU64,
    pub replayed: AtomicU64,
    /// Times a submitter had to wait for room (back-pressure engaged).
    pub waits: AtomicU64,
    pub commit_errors: AtomicU64,
    /// Units read back from the log at start and not yet committed.
    pub replay_pending: AtomicU64,
    /// The last lake write failed (cleared by the next that succeeds).
    pub lake_failing: std::sync::atomic::AtomicBool,
    /// Landed events published, and failed attempts to publish a group.
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
}

impl FlowStats {
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "received {} accepted {} quarantined {} failed {} committed {} replayed {} backpressure-waits {} commit-errors {}",
            g(&self.received),
            g(&self.accepted),
            g(&self.rejected),
            g(&self.failed),
            g(&self.committed),
            g(&self.replayed),
            g(&self.waits),
            g(&self.commit_errors)
        ) + &match g(&self.published) + g(&self.publish_errors) {
            0 => String::new(),
            _ => format!(" published {} publish-errors {}", g(&self.published), g(&self.publish_errors)),
        }
    }
}

/// See [`Flow::room`].
#[derive(Clone)]
pub struct Room(Arc<Semaphore>);

impl Room {
    /// No unit can be submitted now: every listener waits.
    pub fn full(&self) -> bool {
        self.0.available_permits() == 0
    }
}

struct Job {
    inbound: Inbound,
    reply: Option<oneshot::Sender<Outcome>>,
    /// Its share of the back-pressure budget (replayed units have none), held until
    /// the unit's checkpoint is written; released by drop on every other path.
    permit: Option<OwnedSemaphorePermit>,
    /// Read back from the log at start: it may be in bronze already.
    replayed: bool,
}

struct Durable {
    seq: u64,
    job: Job,
}

struct ToCommit {
    last_seq: u64,
    permits: Vec<OwnedSemaphorePermit>,
    units: usize,
    bronze: Vec<BronzeRow>,
    /// Bronze rows of replayed units: appended unless bronze holds them already.
    bronze_replayed: Vec<BronzeRow>,
    mapped: Mapped,
    shadow: Vec<ShadowDiffRow>,
    /// Workflow runs the accepted units triggered.
    runs: Vec<WorkflowRunRow>,
}

/// The entry point for listeners. Cheap to clone.
#[derive(Clone)]
pub struct Flow {
    tx: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
    stats: Arc<FlowStats>,
}

/// The stages' tasks: await them after dropping every [`Flow`] handle to let the
/// last units reach the lake.
pub struct FlowTasks(Vec<JoinHandle<()>>);

impl FlowTasks {
    pub async fn finish(self) {
        for t in self.0 {
            if let Err(e) = t.await {
                tracing::error!("flow stage failed: {e}");
            }
        }
    }
}

impl Flow {
    /// Start the stages. `replay` (from [`ehrgate_wal::Log::open`]) is mapped and
    /// committed first; `adapters` says which adapter serves a route's name when a
    /// group is mapped (so a hot swap takes effect at the next group).
    ///
    /// Refuses to start when a log record cannot be decoded (written by an
    /// incompatible version, say): those are acknowledged units, and going on would
    /// delete them at the next checkpoint.
    pub fn start(lake: Arc<Lake>, wal: GroupCommit, replay: Vec<Record>, adapters: Arc<dyn Resolve>, cfg: FlowConfig) -> Result<(Flow, FlowTasks), String> {
        let stats = Arc::new(FlowStats::default());
        let room = Arc::new(Semaphore::new(cfg.max_pending.max(1)));
        let (tx, rx) = mpsc::channel::<Job>(cfg.map_group.max(1) * 4);
        let (durable_tx, durable_rx) = mpsc::unbounded_channel::<Durable>();
        let (commit_tx, commit_rx) = mpsc::unbounded_channel::<ToCommit>();

        let undecodable: Vec<u64> = replay.iter().filter(|r| Inbound::decode(&r.payload).is_none()).map(|r| r.seq).collect();
        if !undecodable.is_empty() {
            return Err(format!(
                "{} write-ahead log records (sequence numbers {:?}...) cannot be decoded: written by an incompatible version? \
                 Start the version that wrote them to drain the log, or move the log directory aside.",
                undecodable.len(),
                &undecodable[..undecodable.len().min(5)]
            ));
        }
        stats.replay_pending.store(replay.len() as u64, Ordering::Relaxed);
        for r in replay {
            let inbound = Inbound::decode(&r.payload).expect("checked above");
            stats.replayed.fetch_add(1, Ordering::Relaxed);
            let _ = durable_tx.send(Durable { seq: r.seq, job: Job { inbound, reply: None, permit: None, replayed: true } });
        }
        let tasks = vec![
            tokio::spawn(log_stage(rx, wal.clone(), durable_tx, stats.clone(), cfg.map_group)),
            tokio::spawn(map_stage(durable_rx, commit_tx, lake.clone(), adapters, stats.clone(), cfg.map_group, cfg.map_parallel, cfg.triggers.clone())),
            match &cfg.lake_runtime {
                // Delta commits (Parquet encoding, MERGE) are CPU-heavy: on their own
                // threads they do not hold up the threads that read sockets and ACK.
                Some(rt) => rt.spawn(commit_stage(commit_rx, lake, wal, stats.clone(), cfg.clone())),
                None => tokio::spawn(commit_stage(commit_rx, lake, wal, stats.clone(), cfg.clone())),
            },
        ];
        Ok((Flow { tx, room, stats }, FlowTasks(tasks)))
    }

    pub fn stats(&self) -> &Arc<FlowStats> {
        &self.stats
    }

    /// Whether back-pressure holds every submitter (no room left), without keeping
    /// the flow open.
    pub fn room(&self) -> Room {
        Room(self.room.clone())
    }

    /// Submit a unit. Waits while the gateway is `max_pending` units behind; then
    /// queues it (units submitted one after another keep that order) and returns
    /// a receiver for its outcome.
    pub async fn submit(&self, inbound: Inbound) -> oneshot::Receiver<Outcome> {
        let (reply, outcome) = oneshot::channel();
        // Cancel-safe: the permit is owned by the job (or dropped with this future).
        let permit = match self.room.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.stats.waits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("back-pressure: the lake is behind; waiting for room");
                self.room.clone().acquire_owned().await.ok()
            }
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.send(Job { inbound, reply: Some(reply), permit, replayed: false }).await
            && let Some(r) = e.0.reply
        {
            let _ = r.send(Outcome::Failed("the gateway is shutting down".into()));
        }
        outcome
    }
}

async fn log_stage(mut rx: mpsc::Receiver<Job>, wal: GroupCommit, out: mpsc::UnboundedSender<Durable>, stats: Arc<FlowStats>, group: usize) {
    let mut jobs = Vec::with_capacity(group);
    while rx.recv_many(&mut jobs, group).await > 0 {
        let payloads: Vec<Vec<u8>> = jobs.iter().map(|j| j.inbound.encode()).collect();
        match wal.append_all(payloads).instrument(tracing::info_span!("wal.append", units = jobs.len())).await {
            Ok(first) => {
                for (i, job) in jobs.drain(..).enumerate() {
                    if out.send(Durable { seq: first + i as u64, job }).is_err() {
                        tracing::error!("the mapping stage has stopped: units are durable but not processed; restart the gateway (the log replays them)");
                    }
                }
            }
            Err(e) => {
                // The reason (with paths) goes to the log, not to the peer.
                tracing::error!("write-ahead log append failed: {e}");
                stats.failed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for job in jobs.drain(..) {
                    if let Some(r) = job.reply {
                        let _ = r.send(Outcome::Failed("the gateway could not store the message; send it again".into()));
                    }
                }
            }
        }
    }
}

fn unrouted_row(unit: &crate::units::Unit, adapter: &str) -> QuarantineRow {
    let message = if adapter.is_empty() {
        "no adapter is routed for this message (no listener default and no matching rule)".to_string()
    } else {
        format!("adapter `{adapter}` is not configured, installed or enabled")
    };
    QuarantineRow {
        id: unit.bronze.record_id.clone(),
        quarantined_at: now_micros(),
        input_kind: unit.kind.as_str().into(),
        source: unit.bronze.source.clone(),
        adapter: adapter.to_string(),
        error_kind: "unrouted".into(),
        error_message: message,
        location: None,
        lineage: Some(unit.bronze.lineage()),
        raw: unit.bronze.raw.clone(),
        reprocessed_at: None,
        reprocess_outcome: None,
    }
}

/// Maps groups of durable units, up to `parallel` groups at once (each on its own
/// task, so they use every core); results are passed on in log order, and each
/// connection's ACKs are written in its own order whatever order groups finish in.
#[allow(clippy::too_many_arguments)]
async fn map_stage(
    mut rx: mpsc::UnboundedReceiver<Durable>,
    out: mpsc::UnboundedSender<ToCommit>,
    lake: Arc<Lake>,
    adapters: Arc<dyn Resolve>,
    stats: Arc<FlowStats>,
    group: usize,
    parallel: usize,
    triggers: Option<TriggerHook>,
) {
    use futures::StreamExt;
    let mut inflight = futures::stream::FuturesOrdered::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let done: Result<ToCommit, tokio::task::JoinError> = done;
                match done {
                    Ok(tc) => {
                        if out.send(tc).is_err() {
                            tracing::error!("the commit stage has stopped: units are durable but not written; restart the gateway (the log replays them)");
                            return;
                        }
                    }
                    Err(e) => {
                        // Its units stay in the log unchecked: a restart replays them.
                        tracing::error!("mapping a group failed ({e}); restart the gateway to replay it");
                        return;
                    }
                }
            }
            received = async {
                let mut batch = Vec::with_capacity(group);
                let n = rx.recv_many(&mut batch, group).await;
                (n, batch)
            }, if open && inflight.len() < parallel.max(1) => {
                let (n, batch) = received;
                if n == 0 {
                    open = false;
                } else {
                    // The adapters are looked up here, in log order, not in the
                    // group's task: after a swap no later group can run on the old
                    // version while an earlier one runs on the new.
                    let mut routes: HashMap<String, Routed> = HashMap::new();
                    for d in &batch {
                        let name = &d.job.inbound.adapter;
                        if !routes.contains_key(name)
                            && let Some(r) = adapters.route(name)
                        {
                            routes.insert(name.clone(), r);
                        }
                    }
                    inflight.push_back(tokio::spawn(map_group(batch, lake.clone(), routes, stats.clone(), triggers.clone())));
                }
            }
        }
    }
}

/// Map one group and answer its submitters.
#[tracing::instrument(name = "map", level = "info", skip_all, fields(units = batch.len()))]
async fn map_group(mut batch: Vec<Durable>, lake: Arc<Lake>, routes: HashMap<String, Routed>, stats: Arc<FlowStats>, triggers: Option<TriggerHook>) -> ToCommit {
    let last_seq = batch.last().map(|d| d.seq).unwrap_or(0);
    let units: Vec<crate::units::Unit> = batch.iter().map(|d| d.job.inbound.unit(d.seq)).collect();
    let mut mapped = Mapped::default();
    // Group by adapter, keeping the units' order within each adapter.
    let mut by_adapter: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, d) in batch.iter().enumerate() {
        let a = d.job.inbound.adapter.as_str();
        match by_adapter.iter_mut().find(|(name, _)| *name == a) {
            Some((_, idx)) => idx.push(i),
            None => by_adapter.push((a, vec![i])),
        }
    }
    let mut shadow = Vec::new();
    // Which adapter (name@version) mapped each unit: recorded on its bronze row.
    let mut mapped_by: Vec<Option<String>> = vec![None; units.len()];
    for (adapter, idx) in &by_adapter {
        let Some(route) = routes.get(*adapter) else {
            mapped.quarantined.extend(idx.iter().map(|&i| unrouted_row(&units[i], adapter)));
            continue;
        };
        let active = Pipeline::new(lake.clone(), route.active.clone());
        let pick = |idx: &[usize]| -> Vec<crate::units::Unit> { idx.iter().map(|&i| units[i].clone()).collect() };
        for &i in idx {
            mapped_by[i] = Some(route.active.label().to_string());
        }
        let m = match &route.candidate {
            None => active.map_units(&pick(idx)).await,
            Some(c) if matches!(c.mode, CandidateMode::Canary { .. }) => {
                let (to_candidate, to_active): (Vec<usize>, Vec<usize>) = idx.iter().partition(|&&i| c.takes(crate::candidate::unit_key(&units[i])));
                for &i in &to_candidate {
                    mapped_by[i] = Some(c.adapter.label().to_string());
                }
                let mut m = active.map_units(&pick(&to_active)).await;
                let mc = Pipeline::new(lake.clone(), c.adapter.clone()).map_units(&pick(&to_candidate)).await;
                m.silver.extend(mc.silver);
                m.quarantined.extend(mc.quarantined);
                m
            }
            Some(c) => {
                // Shadow: both map every unit; only the active version's output
                // is kept, the candidate's is compared with it.
                let group = pick(idx);
                let candidate = Pipeline::new(lake.clone(), c.adapter.clone());
                let (m, mc) = tokio::join!(active.map_units(&group), candidate.map_units(&group));
                let (a, ca) = (route.active.info(), c.adapter.info());
                shadow.extend(crate::candidate::shadow_diffs(&group, adapter, &a.version, &ca.version, &m, &mc));
                m
            }
        };
        mapped.silver.extend(m.silver);
        mapped.quarantined.extend(m.quarantined);
    }
    // A unit that does not even parse is invalid input whatever its route.
    for q in mapped.quarantined.iter_mut() {
        if q.error_kind == "unrouted"
            && let Some(u) = units.iter().find(|u| u.bronze.record_id == q.id)
            && let Some((message, location)) = &u.parse_error
        {
            q.error_kind = crate::units::error_kind(u);
            q.error_message = message.clone();
            q.location = location.clone();
        }
    }
    // Answer the submitters: a unit with a quarantine row was rejected.
    let rejected: HashMap<&str, &QuarantineRow> = mapped.quarantined.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut permits = Vec::with_capacity(batch.len());
    let mut answered = vec![None; units.len()];
    for (i, (d, u)) in batch.iter_mut().zip(&units).enumerate() {
        permits.extend(d.job.permit.take());
        let outcome = match rejected.get(u.bronze.record_id.as_str()) {
            None => Outcome::Accepted,
            Some(q) => Outcome::Rejected { kind: q.error_kind.clone(), message: q.error_message.clone(), location: q.location.clone() },
        };
        match outcome {
            Outcome::Accepted => stats.accepted.fetch_add(1, Ordering::Relaxed),
            _ => stats.rejected.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(r) = d.job.reply.take() {
            answered[i] = Some(now_micros());
            let _ = r.send(outcome);
        }
    }
    // The workflow runs the accepted units trigger, decided here, in log order.
    let runs = match &triggers {
        Some(TriggerHook(t)) => crate::triggers::runs_for(t.as_ref(), &units, &mapped),
        None => Vec::new(),
    };
    let n = units.len();
    let mut records: HashMap<&str, i64> = HashMap::new();
    for r in &mapped.silver {
        if let Some(id) = r.lineage.rsplit('/').next() {
            *records.entry(id).or_default() += 1;
        }
    }
    let (mut bronze, mut bronze_replayed) = (Vec::new(), Vec::new());
    for (i, (d, u)) in batch.iter().zip(units).enumerate() {
        let mut b = u.bronze;
        b.processed.adapter = rejected.get(b.record_id.as_str()).map(|q| q.adapter.clone()).filter(|a| !a.is_empty()).or(mapped_by[i].take());
        b.processed.answered_at = answered[i];
        b.processed.records = Some(records.get(b.record_id.as_str()).copied().unwrap_or(0));
        if d.job.replayed { bronze_replayed.push(b) } else { bronze.push(b) }
    }
    ToCommit { last_seq, permits, units: n, bronze, bronze_replayed, mapped, shadow, runs }
}

async fn commit_stage(mut rx: mpsc::UnboundedReceiver<ToCommit>, lake: Arc<Lake>, wal: GroupCommit, stats: Arc<FlowStats>, cfg: FlowConfig) {
    let mut groups = Vec::new();
    loop {
        // Everything waiting, up to a commit's worth of units.
        if rx.recv_many(&mut groups, 1).await == 0 {
            return;
        }
        let mut units = groups.iter().map(|g: &ToCommit| g.units).sum::<usize>();
        while units < cfg.commit_group {
            match rx.try_recv() {
                Ok(g) => {
                    units += g.units;
                    groups.push(g);
                }
                Err(_) => break,
            }
        }
        let last_seq = groups.iter().map(|g| g.last_seq).max().unwrap_or(0);
        let mut permits = Vec::with_capacity(units);
        let mut bronze = Vec::with_capacity(units);
        let mut bronze_replayed = Vec::new();
        let mut silver = Vec::new();
        let mut quarantined = Vec::new();
        let mut shadow = Vec::new();
        let mut runs = Vec::new();
        for g in groups.drain(..) {
            runs.extend(g.runs);
            permits.extend(g.permits);
            bronze.extend(g.bronze);
            bronze_replayed.extend(g.bronze_replayed);
            silver.extend(g.mapped.silver);
            quarantined.extend(g.mapped.quarantined);
            shadow.extend(g.shadow);
        }
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        // Retry only the writes that failed: bronze is append-only.
        let (mut b_done, mut s_done, mut q_done) = (bronze.is_empty() && bronze_replayed.is_empty(), silver.is_empty(), quarantined.is_empty());
        let mut d_done = shadow.is_empty();
        // Runs recorded before (a resent or replayed trigger) are not recorded again.
        let runs = match &cfg.triggers {
            Some(TriggerHook(t)) if !runs.is_empty() => t.unseen(runs),
            _ => Vec::new(),
        };
        let mut w_done = runs.is_empty();
        // Bronze was attempted (and may have landed though the attempt failed).
        let mut b_tried = false;
        loop {
            if let Some(d) = cfg.slow_commit {
                tokio::time::sleep(d).await;
            }
            // After a failed attempt a write may have landed all the same (a
            // timeout after the commit): from then on every row is checked.
            let retry = failures > 0;
            // Silver, quarantine and the rest first; bronze last, stamped with
            // when they landed (the KPIs' commit time, docs/operations.md). So a
            // failing shadow-diff or workflow-run write holds bronze back too (the
            // units wait in the log; nothing is lost).
            let span = tracing::info_span!("lake.commit", units, silver = silver.len(), quarantined = quarantined.len(), attempt = failures + 1);
            let (b, c, d, w) = async { tokio::join!(
                async { if s_done { Ok(()) } else { lake.upsert_silver(silver.clone()).await } },
                async {
                    if q_done {
                        Ok(())
                    } else if retry {
                        lake.quarantine_once(Vec::new(), quarantined.clone()).await.map(|_| ())
                    } else if bronze_replayed.is_empty() {
                        lake.quarantine(quarantined.clone()).await
                    } else {
                        let replayed: HashSet<&str> = bronze_replayed.iter().map(|b| b.record_id.as_str()).collect();
                        let (maybe, fresh): (Vec<QuarantineRow>, Vec<QuarantineRow>) = quarantined.iter().cloned().partition(|q| replayed.contains(q.id.as_str()));
                        lake.quarantine_once(fresh, maybe).await.map(|_| ())
                    }
                },
                async { if d_done { Ok(()) } else { lake.shadow_diffs(shadow.clone()).await } },
                async { if w_done { Ok(()) } else { lake.workflow_runs(runs.clone()).await } },
            ) }
            .instrument(span.clone())
            .await;
            let rest = match (&b, &c, &d, &w) {
                (Ok(()), Ok(()), Ok(()), Ok(())) => Ok(()),
                _ => Err(()),
            };
            let retry_bronze = b_tried;
            let a = if b_done || rest.is_err() {
                Ok(())
            } else {
                b_tried = true;
                async {
                    let landed = Some(now_micros());
                    for r in bronze.iter_mut().chain(bronze_replayed.iter_mut()) {
                        r.processed.landed_at = landed;
                    }
                    if retry_bronze {
                        let all: Vec<BronzeRow> = bronze.iter().chain(&bronze_replayed).cloned().collect();
                        lake.append_bronze_once(Vec::new(), all).await.map(|_| ())
                    } else if bronze_replayed.is_empty() {
                        lake.append_bronze(bronze.clone()).await
                    } else {
                        // A replay after a crash: the units committed before it are
                        // not appended a second time.
                        match lake.append_bronze_once(bronze.clone(), bronze_replayed.clone()).await {
                            Ok(skipped) => {
                                if skipped > 0 {
                                    tracing::warn!("replay: {skipped} of {} replayed units were in bronze already", bronze_replayed.len());
                                }
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
                .instrument(span.clone())
                .await
            };
            let a_attempted = !b_done && rest.is_ok();
            b_done |= a_attempted && a.is_ok();
            s_done |= b.is_ok();
            q_done |= c.is_ok();
            d_done |= d.is_ok();
            w_done |= w.is_ok();
            let Err(e) = a.and(b).and(c).and(d).and(w) else {
                stats.lake_failing.store(false, Ordering::Relaxed);
                let done = bronze_replayed.len() as u64;
                let _ = stats.replay_pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(done)));
                break;
            };
            stats.lake_failing.store(true, Ordering::Relaxed);
            // The units stay in the log: a restart replays them.
            stats.commit_errors.fetch_add(1, Ordering::Relaxed);
            failures += 1;
            if give_up(&rx, failures) {
                tracing::error!("stopping with {units} units not written to the lake ({e}); they stay in the write-ahead log and are replayed at the next start");
                return;
            }
            tracing::error!("writing {units} units to the lake failed, retrying in {backoff:?}: {e}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        // Landed events go out before the checkpoint: a crash in between replays
        // the units and publishes them again (at least once).
        if let Some(hook) = &cfg.landed {
            let all: Vec<&BronzeRow> = bronze.iter().chain(&bronze_replayed).collect();
            let events = crate::landed::events(&all, &silver, &quarantined);
            let mut failures = 0u32;
            while let Err(e) = hook.publish(&events).await {
                stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if give_up(&rx, failures) {
                    tracing::error!("stopping with {} landed events not published ({e}); their units stay in the write-ahead log and are published at the next start", events.len());
                    return;
                }
                let wait = crate::landed::retry_wait(failures);
                tracing::error!("publishing {} landed events failed, retrying in {wait:?}: {e}", events.len());
                tokio::time::sleep(wait).await;
            }
            stats.published.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        // The permits (back-pressure) are released only once the log knows: if
        // checkpoints keep failing, the log keeps growing, so listeners must wait.
        if let Some(d) = cfg.slow_checkpoint {
            tokio::time::sleep(d).await;
        }
        let mut failures = 0u32;
        while let Err(e) = wal.checkpoint(last_seq).instrument(tracing::info_span!("wal.checkpoint", seq = last_seq)).await {
            failures += 1;
            if give_up(&rx, failures) {
                tracing::error!("stopping without a checkpoint ({e}); the next start replays units already in the lake, harmlessly");
                return;
            }
            tracing::error!("write-ahead log checkpoint failed, retrying: {e}");
            tokio::time::sleep(Duration::from_millis(200) * failures.min(50)).await;
        }
        stats.committed.fetch_add(units as u64, Ordering::Relaxed);
        drop(permits);
        if let Some(TriggerHook(t)) = &cfg.triggers
            && !runs.is_empty()
        {
            t.recorded(runs);
        }
    }
}

/// While the gateway runs, failing writes are retried for as long as it takes
/// (listeners wait meanwhile); once it is stopping (every producer gone), a few
/// more tries, then the log keeps what was not written.
fn give_up(rx: &mpsc::UnboundedReceiver<ToCommit>, failures: u32) -> bool {
    rx.is_closed() && failures >= 5
}
