//! The demo's workflow part: discharges over MLLP trigger the Epic adapter's
//! `discharge-checklist` action, which creates the follow-up Tasks in the built-in
//! sandbox EHR, exactly once each, through a 503 on the first POST; then the
//! workflow's KPIs (docs/workflows.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate_connect::{AuthConfig, ConnectionConfig, Connections, SecretRef};
use ehrgate_ingest::mllp::{self, MllpConfig};
use ehrgate_ingest::{Flow, FlowConfig, TriggerHook, Triggers};
use ehrgate_lake::{Lake, now_micros};
use ehrgate_runtime::{Adapter, AdapterSettings, Grant, Grants, Runtime, RuntimeConfig};
use ehrgate_sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FaultRule, SandboxOptions};
use ehrgate_wal::{GroupCommit, Log, LogConfig};
use ehrgate_workflows::{ActionRunner, Engine, EngineOptions, WorkflowSpec, kpi};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::Config;

const DISCHARGES: usize = 25;

/// The `i`th discharge of this demo run (`run` keeps runs of earlier demos apart).
fn a03(run: u64, i: usize) -> Vec<u8> {
    let msg = format!(
        "MSH|^~\\&|EPIC|DEMO|EHRGATE|DEMO|20240101120000+0000||ADT^A03|DEMO-A03-{run}-{i}|P|2.5.1\rEVN|A03|20240101120000+0000\r\
         PID|1||DEMO-MRN-{run}-{i}^^^DEMO^MR||Demo^Patient{i}||19700101|F\r\
         PV1|1|I|W^1^1||||||||||||||||DEMO-VISIT-{run}-{i}^^^DEMO^VN|||||||||||||||||||||||||20240101080000+0000|20240101120000+0000\r"
    );
    let mut wire = vec![0x0b];
    wire.extend_from_slice(msg.as_bytes());
    wire.extend_from_slice(&[0x1c, 0x0d]);
    wire
}

pub async fn run(cfg: &Config, lake: Arc<Lake>) -> anyhow::Result<()> {
    let sandbox = ehrgate_sandbox::serve(SandboxOptions { patients: 1, ..Default::default() }).await.map_err(|e| anyhow::anyhow!("starting the sandbox EHR: {e}"))?;
    std::fs::create_dir_all(&cfg.bulk.state_dir).with_context(|| format!("creating {}", cfg.bulk.state_dir.display()))?;
    let secret_file = cfg.bulk.state_dir.join("demo-sandbox.secret");
    std::fs::write(&secret_file, DEMO_CLIENT_SECRET).context("writing the demo secret file")?;
    let mut cc = ConnectionConfig::new("ehr", sandbox.base_url());
    cc.auth = AuthConfig::ClientCredentials {
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: SecretRef::new(format!("file:{}", secret_file.display())),
        token_url: sandbox.token_url(),
        scopes: vec!["system/Task.write".into(), "system/Task.read".into(), "system/*.read".into()],
    };
    let connections = Arc::new(Connections::new(&[cc]).context("the demo connection")?);
    let runtime = Runtime::new(RuntimeConfig {
        audit: Arc::new(ehrgate_runtime::TracingAudit),
        outbound: connections.clone(),
        compile_cache: cfg.adapter_store.compile_cache(),
        ..Default::default()
    })
        .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    let grants = Grants(vec![Grant { connection: "ehr".into(), methods: vec!["GET".into(), "POST".into()], paths: vec!["/Task".into(), "/Task/*".into()] }]);
    let epic: Adapter = crate::adapters::load(&runtime, "epic", AdapterSettings { grants, ..Default::default() }).await?;
    connections.declare(&epic.info().name, &epic.info().connections);
    let adapters: HashMap<String, Adapter> = [("epic".to_string(), epic)].into();
    let adapters = Arc::new(adapters);

    let spec = WorkflowSpec {
        name: "discharge-follow-up".into(),
        on: vec!["ADT^A03".into()],
        on_resource: Vec::new(),
        when: BTreeMap::from([("PV1-2".to_string(), vec!["I".to_string()])]),
        adapter: "epic".into(),
        action: "discharge-checklist".into(),
        input: None,
        retry: ehrgate_workflows::RetrySpec { max_attempts: 10, base_ms: 200, cap_ms: 2_000 },
        deadline_s: 3600,
        sla_s: 300,
    };
    let runner: Arc<dyn ActionRunner> = adapters.clone();
    let engine = Engine::open(lake.clone(), vec![spec.clone()], runner, EngineOptions::default()).await?;
    let wal_dir = cfg.wal.dir.join("workflow-demo");
    let (log, replay) = Log::open(&wal_dir, LogConfig::default()).with_context(|| format!("opening the write-ahead log in {}", wal_dir.display()))?;
    let triggers = Some(TriggerHook(engine.clone() as Arc<dyn Triggers>));
    let (flow, tasks) = Flow::start(lake.clone(), GroupCommit::start(log, 4096), replay, adapters.clone(), FlowConfig { triggers, ..Default::default() })
        .map_err(|e| anyhow::anyhow!("write-ahead log in {}: {e}", wal_dir.display()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_task = engine.spawn(stop_rx.clone());
    let mut finished = engine.subscribe();
    let (addr, listener) = mllp::bind(MllpConfig::new("discharges", "127.0.0.1:0".parse()?, "epic"), flow.clone(), stop_rx.clone()).await?;
    drop(flow);

    // The EHR answers the first Task POST with 503: that run retries.
    sandbox
        .add_fault(FaultRule { method: Some("POST".into()), path_prefix: Some("/Task".into()), fault: "503;times=1".into() })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("Discharge workflow: {DISCHARGES} ADT^A03 over MLLP -> epic.discharge-checklist -> Tasks in the sandbox EHR at {}", sandbox.base_url());
    let started = Instant::now();
    let (run, since) = (now_micros() as u64, now_micros());
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut acks, mut buf, mut chunk) = (0, Vec::new(), vec![0u8; 4096]);
    for i in 0..DISCHARGES {
        stream.write_all(&a03(run, i)).await?;
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let reply: Vec<u8> = buf.drain(..end + 2).collect();
                acks += usize::from(String::from_utf8_lossy(&reply).contains("MSA|AA|"));
                break;
            }
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the listener closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    drop(stream);
    // Wait for every run to end (or a minute).
    let mut done = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while done < DISCHARGES {
        match tokio::time::timeout_at(deadline, finished.recv()).await {
            Ok(Ok(_)) => done += 1,
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = listener.await;
    tasks.finish().await;
    let _ = engine_task.await;
    let runs = ehrgate_workflows::store::current(&lake).await?;
    let runs: Vec<_> = runs.into_iter().filter(|r| r.workflow == spec.name && r.received_at >= since).collect();
    let task_count = sandbox.counts().get("Task").copied().unwrap_or(0);
    println!(
        "  {acks} AA; {done} runs finished in {:.2} s; the sandbox EHR holds {task_count} Tasks ({} expected: two per discharge, none twice)",
        elapsed.as_secs_f64(),
        2 * DISCHARGES
    );
    let sla = BTreeMap::from([(spec.name.clone(), spec.sla_s)]);
    for k in kpi::compute(&runs, &sla, now_micros()) {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into());
        println!(
            "  {}: runs {} succeeded {} failed {}; event to completion p50 {} p95 {} p99 {}; within the {} s SLA: {:.1}%",
            k.workflow,
            k.runs,
            k.succeeded,
            k.failed,
            ms(k.p50_ms),
            ms(k.p95_ms),
            ms(k.p99_ms),
            k.sla_s,
            k.within_sla * 100.0
        );
    }
    println!("  $ ehrgate workflow runs; ehrgate workflow kpi   (ops/workflow_runs)");
    println!();
    // 5. The agent door, against the same EHR.
    super::demo_door::run(connections.clone(), adapters["epic"].clone(), lake.clone(), "patient-0000").await?;
    let _ = sandbox.stop().await;
    Ok(())
}
