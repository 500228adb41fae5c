//! The engine on a real (local) lake with a scripted action: retries with backoff,
//! the dead letter, cancel and retry by an operator, and a restart that resumes
//! from what `ops/workflow_runs` says.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehrgate_ingest::Triggers;
use ehrgate_lake::{BatchConfig, Lake, Storage, WorkflowRunRow, now_micros};
use ehrgate_workflows::engine::ActionFuture;
use ehrgate_workflows::{ActionRunner, Control, Engine, EngineOptions, Failure, Refused, RetrySpec, WorkflowSpec};
use tokio::sync::watch;

/// Answers from a script (then success); counts calls.
struct Script(Mutex<(VecDeque<Result<String, Failure>>, usize)>);

impl ActionRunner for Script {
    fn run<'a>(&'a self, _adapter: &'a str, _action: &'a str, _input: &'a str) -> ActionFuture<'a> {
        let mut s = self.0.lock().unwrap();
        s.1 += 1;
        let answer = s.0.pop_front().unwrap_or_else(|| Ok(r#"{"tasks":[]}"#.into()));
        Box::pin(async move { answer })
    }
}

fn script(answers: Vec<Result<String, Failure>>) -> Arc<Script> {
    Arc::new(Script(Mutex::new((answers.into(), 0))))
}

fn spec(name: &str, retry: RetrySpec) -> WorkflowSpec {
    WorkflowSpec {
        name: name.into(),
        on: vec!["ADT^A03".into()],
        on_resource: Vec::new(),
        when: Default::default(),
        adapter: "epic".into(),
        action: "discharge-checklist".into(),
        input: None,
        retry,
        deadline_s: 3600,
        sla_s: 300,
    }
}

fn run(workflow: &str, id: &str) -> WorkflowRunRow {
    let now = now_micros();
    WorkflowRunRow {
        run_id: id.into(),
        recorded_at: now,
        workflow: workflow.into(),
        status: "pending".into(),
        attempts: 0,
        trigger: "ADT^A03".into(),
        source: "mllp:main".into(),
        lineage: "bronze/hl7_messages/x".into(),
        received_at: now,
        patient_ref: Some("Patient/p".into()),
        encounter_ref: Some("Encounter/e".into()),
        adapter: "epic".into(),
        action: "discharge-checklist".into(),
        input: r#"{"encounter":"Encounter/e","patient":"Patient/p"}"#.into(),
        deadline_at: now + 3_600_000_000,
        next_attempt_at: None,
        completed_at: None,
        error: None,
        response: None,
    }
}

fn lake(dir: &std::path::Path) -> Arc<Lake> {
    Arc::new(Lake::open(Storage::Local { root: dir.join("lake") }, BatchConfig { max_rows: 1000, max_age: Duration::from_millis(20), queue: 16, eager: false, deletion_vectors: false }).unwrap())
}

async fn start(engine: &Arc<Engine>, runs: Vec<WorkflowRunRow>) {
    let fresh = engine.unseen(runs);
    engine.lake().workflow_runs(fresh.clone()).await.unwrap();
    engine.recorded(fresh);
}

async fn finished(rx: &mut tokio::sync::broadcast::Receiver<ehrgate_workflows::Finished>) -> WorkflowRunRow {
    tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a run finishes").unwrap().row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_dead_letters_cancel_retry_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let fast = RetrySpec { max_attempts: 3, base_ms: 10, cap_ms: 20 };
    let slow = RetrySpec { max_attempts: 10, base_ms: 600_000, cap_ms: 600_000 };
    let transient = || Err(Failure::Transient("503".into()));
    // "fast": two transient failures, then success; "dead": three transient failures.
    let runner = script(vec![transient(), transient(), Ok("{\"tasks\":[1]}".into()), transient(), transient(), transient(), transient()]);
    let engine = Engine::open(lake.clone(), vec![spec("fast", fast.clone()), spec("slow", slow.clone())], runner.clone(), EngineOptions::default()).await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = engine.spawn(stop_rx);
    let mut rx = engine.subscribe();

    start(&engine, vec![run("fast", "r1")]).await;
    let r1 = finished(&mut rx).await;
    assert_eq!((r1.status.as_str(), r1.attempts), ("succeeded", 3), "{r1:?}");
    assert_eq!(r1.response.as_deref(), Some("{\"tasks\":[1]}"));
    // A run recorded already is not started again.
    assert!(engine.unseen(vec![run("fast", "r1")]).is_empty());

    start(&engine, vec![run("fast", "r2")]).await;
    let r2 = finished(&mut rx).await;
    assert_eq!((r2.status.as_str(), r2.attempts), ("failed", 3), "dead letter after max_attempts: {r2:?}");
    assert!(r2.error.as_deref().unwrap().contains("3 attempts failed"), "{r2:?}");
    assert_eq!(engine.operate("r2", Control::Cancel).await, Err(Refused(409, "run r2 is failed already".into())));
    // The operator retries it: the script now answers with success.
    let again = engine.operate("r2", Control::Retry).await.unwrap();
    assert_eq!((again.status.as_str(), again.attempts), ("pending", 0));
    let r2 = finished(&mut rx).await;
    assert_eq!(r2.status, "succeeded");

    // "slow": the first attempt fails, the next is ten minutes away: cancel it.
    {
        let mut s = runner.0.lock().unwrap();
        s.0.push_back(transient());
    }
    start(&engine, vec![run("slow", "r3")]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(ehrgate_workflows::store::current(&lake).await.unwrap().iter().find(|r| r.run_id == "r3").map(|r| r.status.clone()).as_deref(), Some("retrying")) {
        assert!(std::time::Instant::now() < deadline, "r3 never retrying");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled = engine.operate("r3", Control::Cancel).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(engine.operate("nope", Control::Retry).await.unwrap_err().0, 404);
    assert_eq!(engine.operate("r1", Control::Retry).await.unwrap_err().0, 409, "a succeeded run is not retried");
    let _ = stop_tx.send(true);
    task.await.unwrap();

    // A restart resumes from the lake: every run's current state is its latest row.
    let calls = runner.0.lock().unwrap().1;
    let states = ehrgate_workflows::store::current(&lake).await.unwrap();
    let status: Vec<(&str, &str)> = states.iter().map(|r| (r.run_id.as_str(), r.status.as_str())).collect();
    assert_eq!(status, vec![("r1", "succeeded"), ("r2", "succeeded"), ("r3", "cancelled")]);
    let engine2 = Engine::open(lake.clone(), vec![spec("fast", fast), spec("slow", slow)], runner.clone(), EngineOptions::default()).await.unwrap();
    assert_eq!(engine2.open_runs(), 0);
    assert!(engine2.unseen(vec![run("fast", "r1"), run("slow", "r3")]).is_empty(), "known after a restart");
    assert_eq!(runner.0.lock().unwrap().1, calls, "nothing ran again");
}
