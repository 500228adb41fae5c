//! The runs: recorded, executed, retried, finished.
//!
//! The engine knows every run's current state (loaded from `ops/workflow_runs` at
//! start, before the flow replays the write-ahead log, so a replayed trigger is
//! recognised). The flow's commit stage records new runs (`pending`) with their
//! unit and hands them over ([`Triggers::recorded`]); the engine then runs each
//! through its adapter's action, one attempt at a time:
//! - success: `succeeded`, with the action's result;
//! - a transient failure (the adapter's `transient` error: 5xx, 429, timeouts, a
//!   down EHR; or the adapter not loaded for the moment): `retrying`, with the next
//!   attempt after an exponential backoff with jitter, unless the attempts or the
//!   deadline are used up: then `failed` (dead letter);
//! - a permanent failure (invalid input, unsupported, a trap or a limit): `failed`.
//!
//! Every state is appended to the lake before the engine acts on it, so a restart
//! resumes from what the lake says: a run killed mid-attempt is attempted again,
//! which the action's idempotency keys make harmless (no second Task).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehrgate_ingest::{Triggers, Unit};
use ehrgate_lake::{Lake, LakeError, Micros, SilverRow, WorkflowRunRow, now_micros};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::spec::WorkflowSpec;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt later.
    Transient(String),
    /// Not: the run is a dead letter.
    Permanent(String),
}

pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Result<String, Failure>> + Send + 'a>>;

/// Runs an adapter's action (the registry of loaded adapters does, in `serve`).
pub trait ActionRunner: Send + Sync {
    fn run<'a>(&'a self, adapter: &'a str, action: &'a str, input: &'a str) -> ActionFuture<'a>;
}

/// Run `action` on a loaded adapter: its `transient` error is worth a retry,
/// anything else is not.
pub async fn run_on(adapter: &ehrgate_runtime::Adapter, action: &str, input: &str) -> Result<String, Failure> {
    use ehrgate_runtime::{AdapterError, CallError};
    match adapter.run_action(action, input).await {
        Ok(out) => Ok(out),
        Err(CallError::Adapter { error: AdapterError::Transient(why), .. }) => Err(Failure::Transient(why)),
        Err(e) => Err(Failure::Permanent(e.to_string())),
    }
}

impl ActionRunner for ehrgate_runtime::Registry {
    fn run<'a>(&'a self, adapter: &'a str, action: &'a str, input: &'a str) -> ActionFuture<'a> {
        Box::pin(async move {
            // Not loaded (being swapped, disabled for now): later.
            let Some(a) = self.get(adapter) else { return Err(Failure::Transient(format!("adapter `{adapter}` is not loaded"))) };
            run_on(&a, action, input).await
        })
    }
}

/// Adapters by name (the demo's flow routes through such a map too).
impl ActionRunner for HashMap<String, ehrgate_runtime::Adapter> {
    fn run<'a>(&'a self, adapter: &'a str, action: &'a str, input: &'a str) -> ActionFuture<'a> {
        Box::pin(async move {
            let Some(a) = self.get(adapter) else { return Err(Failure::Permanent(format!("no adapter `{adapter}`"))) };
            run_on(a, action, input).await
        })
    }
}

/// Counters, readable while the gateway runs (metrics).
#[derive(Debug, Default)]
pub struct EngineStats {
    pub triggered: AtomicU64,
    pub attempts: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
}

/// A run that reached a final state (for tests and the demo).
#[derive(Debug, Clone)]
pub struct Finished {
    pub row: WorkflowRunRow,
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Attempts running at once, at most.
    pub parallel: usize,
    /// Fault injection for tests: wait this long before every attempt (a kill then
    /// lands between a run's recording and its action).
    pub attempt_delay: Option<Duration>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { parallel: 64, attempt_delay: None }
    }
}

/// What an operator may do to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A failed or cancelled run starts again: attempts from zero, a new deadline.
    Retry,
    /// A run not yet final stops: no more attempts.
    Cancel,
}

/// Why a [`Control`] was refused: an HTTP status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub u16, pub String);

enum Cmd {
    /// Recorded runs to start.
    Start(Vec<WorkflowRunRow>),
    /// An attempt ended: the state it recorded.
    Done(WorkflowRunRow),
    /// An operator's retry or cancel.
    Control(String, Control, tokio::sync::oneshot::Sender<Result<WorkflowRunRow, Refused>>),
}

pub struct Engine {
    specs: Vec<WorkflowSpec>,
    lake: Arc<Lake>,
    runner: Arc<dyn ActionRunner>,
    /// Every run's current state.
    runs: Mutex<HashMap<String, WorkflowRunRow>>,
    tx: mpsc::UnboundedSender<Cmd>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>,
    finished: tokio::sync::broadcast::Sender<Finished>,
    pub stats: EngineStats,
    opts: EngineOptions,
}

impl Engine {
    /// The engine for `specs`, with the runs' states read from the lake. Start it
    /// with [`Engine::spawn`].
    pub async fn open(lake: Arc<Lake>, specs: Vec<WorkflowSpec>, runner: Arc<dyn ActionRunner>, opts: EngineOptions) -> Result<Arc<Engine>, LakeError> {
        let runs: HashMap<String, WorkflowRunRow> = crate::store::current(&lake).await?.into_iter().map(|r| (r.run_id.clone(), r)).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let (finished, _) = tokio::sync::broadcast::channel(1024);
        Ok(Arc::new(Engine {
            specs,
            lake,
            runner,
            runs: Mutex::new(runs),
            tx,
            rx: Mutex::new(Some(rx)),
            finished,
            stats: EngineStats::default(),
            opts,
        }))
    }

    pub fn specs(&self) -> &[WorkflowSpec] {
        &self.specs
    }

    /// Runs reaching a final state from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// The lake the runs are recorded in.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// Runs not yet final.
    pub fn open_runs(&self) -> usize {
        self.lock().values().filter(|r| !r.is_final()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkflowRunRow>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start executing: the runs the lake holds unfinished first, then those the
    /// flow records. Stops when `stop` turns true (attempts under way finish).
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let engine = self.clone();
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take().expect("spawned once");
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(engine.opts.parallel.max(1)));
            // (due, run id): the next attempts, earliest first.
            let mut due: BinaryHeap<Reverse<(Micros, String)>> = BinaryHeap::new();
            let mut inflight: HashSet<String> = HashSet::new();
            for r in engine.lock().values().filter(|r| !r.is_final()) {
                due.push(Reverse((r.next_attempt_at.unwrap_or(0), r.run_id.clone())));
            }
            let mut attempts = Vec::new();
            loop {
                let now = now_micros();
                while let Some(Reverse((at, _))) = due.peek()
                    && *at <= now
                {
                    let Reverse((_, id)) = due.pop().expect("peeked");
                    if inflight.contains(&id) {
                        continue;
                    }
                    let Some(run) = engine.lock().get(&id).cloned() else { continue };
                    if run.is_final() {
                        continue;
                    }
                    inflight.insert(id);
                    let (engine, slots) = (engine.clone(), slots.clone());
                    attempts.push(tokio::spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        engine.attempt(run).await;
                    }));
                }
                attempts.retain(|t: &JoinHandle<()>| !t.is_finished());
                let wait = due.peek().map(|Reverse((at, _))| Duration::from_micros((*at - now).max(0) as u64)).unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Start(runs)) => {
                            for r in runs {
                                due.push(Reverse((0, r.run_id.clone())));
                                engine.lock().insert(r.run_id.clone(), r);
                            }
                        }
                        Some(Cmd::Done(row)) => {
                            inflight.remove(&row.run_id);
                            if !row.is_final() {
                                due.push(Reverse((row.next_attempt_at.unwrap_or(0), row.run_id.clone())));
                            }
                            engine.lock().insert(row.run_id.clone(), row);
                        }
                        Some(Cmd::Control(id, op, reply)) => {
                            let result = if inflight.contains(&id) {
                                Err(Refused(409, "an attempt is under way; try again in a moment".into()))
                            } else {
                                engine.control(&id, op).await
                            };
                            if let Ok(row) = &result
                                && !row.is_final()
                            {
                                due.push(Reverse((0, row.run_id.clone())));
                            }
                            let _ = reply.send(result);
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => if *stop.borrow() { break },
                }
            }
            for t in attempts {
                let _ = t.await;
            }
        })
    }

    /// Retry or cancel run `id` (between its attempts): its new state, recorded.
    pub async fn operate(&self, id: &str, op: Control) -> Result<WorkflowRunRow, Refused> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Cmd::Control(id.to_string(), op, tx)).map_err(|_| Refused(503, "the workflow engine has stopped".into()))?;
        rx.await.map_err(|_| Refused(503, "the workflow engine has stopped".into()))?
    }

    /// The new state of run `id` after `op` (called by the loop, no attempt under way).
    async fn control(&self, id: &str, op: Control) -> Result<WorkflowRunRow, Refused> {
        let Some(run) = self.lock().get(id).cloned() else { return Err(Refused(404, format!("no workflow run {id}"))) };
        let now = now_micros();
        let mut next = run.clone();
        next.recorded_at = now.max(run.recorded_at + 1);
        match op {
            Control::Cancel if run.is_final() => return Err(Refused(409, format!("run {id} is {} already", run.status))),
            Control::Cancel => {
                next.status = "cancelled".into();
                next.completed_at = Some(now);
                next.next_attempt_at = None;
            }
            Control::Retry if !matches!(run.status.as_str(), "failed" | "cancelled") => {
                return Err(Refused(409, format!("run {id} is {}: only a failed or cancelled run is retried", run.status)));
            }
            Control::Retry => {
                let deadline_s = self.specs.iter().find(|s| s.name == run.workflow).map(|s| s.deadline_s).unwrap_or(24 * 3600);
                next.status = "pending".into();
                next.attempts = 0;
                next.completed_at = None;
                next.next_attempt_at = None;
                next.error = None;
                next.response = None;
                next.deadline_at = now.saturating_add((deadline_s as i64).saturating_mul(1_000_000));
            }
        }
        self.lake.workflow_runs(vec![next.clone()]).await.map_err(|e| Refused(503, format!("recording the run failed: {e}")))?;
        self.lock().insert(id.to_string(), next.clone());
        tracing::info!(run = %id, "workflow run {}", if op == Control::Retry { "retried" } else { "cancelled" });
        Ok(next)
    }

    /// One attempt of `run`; records the state it ends in, then reports it.
    async fn attempt(&self, run: WorkflowRunRow) {
        let Some(spec) = self.specs.iter().find(|s| s.name == run.workflow).cloned() else {
            // Configured once, removed since: leave it as it is, say so.
            tracing::warn!(run = %run.run_id, workflow = %run.workflow, "a run of a workflow no longer configured: left pending");
            return;
        };
        if let Some(d) = self.opts.attempt_delay {
            tokio::time::sleep(d).await;
        }
        let mut next = run.clone();
        next.attempts += 1;
        next.next_attempt_at = None;
        let t0 = std::time::Instant::now();
        let outcome = if now_micros() > run.deadline_at {
            Err(Failure::Permanent(format!("the deadline ({} s) passed", spec.deadline_s)))
        } else {
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            self.runner.run(&run.adapter, &run.action, &run.input).await
        };
        let now = now_micros();
        next.recorded_at = now.max(run.recorded_at + 1);
        match outcome {
            Ok(out) => {
                next.status = "succeeded".into();
                next.completed_at = Some(now);
                next.error = None;
                next.response = Some(out);
            }
            Err(Failure::Transient(why)) if (next.attempts as u64) < u64::from(spec.retry.max_attempts) => {
                let wait = spec.retry.backoff_ms(next.attempts as u32, rand::random::<f64>()) as i64 * 1000;
                next.status = "retrying".into();
                next.next_attempt_at = Some(now + wait);
                next.error = Some(why);
            }
            Err(Failure::Transient(why)) => {
                next.status = "failed".into();
                next.completed_at = Some(now);
                next.error = Some(format!("{} attempts failed; the last: {why}", next.attempts));
            }
            Err(Failure::Permanent(why)) => {
                next.status = "failed".into();
                next.completed_at = Some(now);
                next.error = Some(why);
            }
        }
        let action_time = t0.elapsed();
        // The state is in the lake before anything acts on it.
        let mut wait = Duration::from_millis(200);
        while let Err(e) = self.lake.workflow_runs(vec![next.clone()]).await {
            tracing::error!(run = %next.run_id, "recording a workflow run failed, retrying: {e}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        tracing::debug!(run = %next.run_id, status = %next.status, ?action_time, record_time = ?(t0.elapsed() - action_time), "workflow attempt");
        match next.status.as_str() {
            "succeeded" => self.stats.succeeded.fetch_add(1, Ordering::Relaxed),
            "failed" => self.stats.failed.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.retries.fetch_add(1, Ordering::Relaxed),
        };
        if let ("succeeded" | "failed", Some(done)) = (next.status.as_str(), next.completed_at) {
            let m = ehrgate_metrics::workflow(&next.workflow);
            let n = if next.status == "succeeded" { &m.succeeded } else { &m.failed };
            n.fetch_add(1, Ordering::Relaxed);
            m.completion_latency.0.observe(Duration::from_micros(done.saturating_sub(next.received_at).max(0) as u64));
        }
        if next.status == "failed" {
            tracing::warn!(run = %next.run_id, workflow = %next.workflow, attempts = next.attempts, "workflow run failed (dead letter): {}", next.error.as_deref().unwrap_or(""));
        }
        // Done goes into the loop's queue before anyone hears the run finished, so a
        // control sent after hearing it queues behind Done and finds no attempt under way.
        let _ = self.tx.send(Cmd::Done(next.clone()));
        if next.is_final() {
            let _ = self.finished.send(Finished { row: next });
        }
    }
}

impl Triggers for Engine {
    fn triggered(&self, unit: &Unit, resources: &[&SilverRow]) -> Vec<WorkflowRunRow> {
        crate::trigger::evaluate(&self.specs, unit, resources)
    }

    fn unseen(&self, runs: Vec<WorkflowRunRow>) -> Vec<WorkflowRunRow> {
        let mut known = self.lock();
        let mut out = Vec::new();
        for r in runs {
            if !known.contains_key(&r.run_id) {
                known.insert(r.run_id.clone(), r.clone());
                out.push(r);
            }
        }
        out
    }

    fn not_recorded(&self, runs: &[WorkflowRunRow]) {
        let mut known = self.lock();
        for r in runs {
            // (only if it is still the row that was about to be recorded)
            if known.get(&r.run_id).is_some_and(|k| k.status == r.status && k.attempts == r.attempts) {
                known.remove(&r.run_id);
            }
        }
    }

    fn recorded(&self, runs: Vec<WorkflowRunRow>) {
        self.stats.triggered.fetch_add(runs.len() as u64, Ordering::Relaxed);
        let _ = self.tx.send(Cmd::Start(runs));
    }
}
