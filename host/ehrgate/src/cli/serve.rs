//! `ehrgate serve`: the gateway. Listeners (MLLP, file drops, webhooks, Kafka
//! sources) feed the flow: write-ahead log -> adapter -> lake (-> landed events).
//! Ctrl-C or SIGTERM stops it cleanly: listeners stop reading, what was received
//! is committed, the log checkpointed.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ehrgate_ingest::drops::{DropConfig, DropWatcher};
use ehrgate_ingest::mllp::{self, AckMode, MllpConfig, frame::Framing};
use ehrgate_ingest::route::Router;
use ehrgate_ingest::webhook::{self, WebhookConfig, WebhookSource};
use ehrgate_admin::AdminConfig;
use ehrgate_ingest::{Flow, FlowConfig, LakeAudit, PipelineSource};
use ehrgate_runtime::Registry;
use ehrgate_lake::Lake;
use ehrgate_wal::{GroupCommit, Log, LogConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AckKind, Config, FramingKind, MllpEntry};
use crate::adapters;

/// Say something a supervising process (or a test) waits for, on stdout, at once.
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    s.parse().with_context(|| format!("{what}: `{s}` is not host:port (e.g. 127.0.0.1:2575)"))
}

fn mllp_config(e: &MllpEntry, i: usize) -> anyhow::Result<MllpConfig> {
    let bind = addr(&e.bind, "listeners.mllp bind")?;
    let name = e.name.clone().unwrap_or_else(|| format!("mllp-{}", if bind.port() == 0 { i as u16 } else { bind.port() }));
    let mut c = MllpConfig::new(&name, bind, "reference");
    c.router = Router { rules: e.routes.clone(), default: e.adapter.clone() };
    if e.adapter.is_none() && e.routes.is_empty() {
        c.router.default = Some("reference".into());
    }
    c.framing = match e.framing {
        FramingKind::Mllp => Framing::mllp(),
        FramingKind::Custom => {
            let (s, t) = (e.start_hex.as_deref(), e.end_hex.as_deref());
            let (Some(s), Some(t)) = (s, t) else { anyhow::bail!("listener {name}: custom framing needs start_hex and end_hex") };
            Framing::custom(s, t).map_err(|m| anyhow::anyhow!("listener {name}: {m}"))?
        }
    };
    c.ack = match e.ack {
        AckKind::Hl7 => AckMode::Hl7,
        AckKind::Commit => AckMode::Commit,
    };
    if let Some(v) = e.max_message_bytes {
        c.max_message_bytes = v;
    }
    if let Some(v) = e.max_connections {
        c.max_connections = v;
    }
    if let Some(v) = e.idle_timeout_s {
        c.idle_timeout = Duration::from_secs(v);
    }
    if let Some(v) = e.max_connections_per_peer {
        c.max_connections_per_peer = v;
    }
    if let Some(v) = e.frame_timeout_s {
        c.frame_timeout = Duration::from_secs(v.max(1));
    }
    if let Some(v) = e.max_in_flight {
        c.max_in_flight = v;
    }
    c.honour_msh15 = e.honour_msh15;
    if let Some(t) = &e.tls {
        c.tls = Some(mllp::tls::server_config(&t.cert, &t.key).map_err(|m| anyhow::anyhow!("listener {name}: {m}"))?);
    }
    Ok(c)
}

/// The lake's own threads. A tokio runtime must not be dropped inside another
/// one's thread (it panics), so this shuts it down in the background when it
/// goes, on every path, an early error return included.
struct LakeThreads(Option<tokio::runtime::Runtime>);

impl LakeThreads {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("running").handle().clone()
    }
}

impl Drop for LakeThreads {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The webhook listener's settings, secrets resolved (checked before anything starts).
fn webhook_config(w: &crate::config::WebhookEntry) -> anyhow::Result<WebhookConfig> {
    let mut sources = Vec::new();
    for s in &w.sources {
        let secret = s.secret.resolve().with_context(|| format!("webhook source {}", s.name))?;
        anyhow::ensure!(
            secret.len() >= 16,
            "webhook source {}: the secret is {} bytes; use at least 16 random bytes (anyone could sign with a short or empty one)",
            s.name,
            secret.len()
        );
        sources.push(WebhookSource {
            name: s.name.clone(),
            secret: secret.into_bytes(),
            adapter: s.adapter.clone(),
            window: Duration::from_secs(s.window_s.unwrap_or(300)),
            forward_headers: s.forward_headers.clone(),
        });
    }
    let d = ehrgate_httpd::HttpLimits::default();
    let limits = ehrgate_httpd::HttpLimits {
        max_connections: w.max_connections.unwrap_or(d.max_connections),
        header_timeout: w.header_timeout_s.map(|s| Duration::from_secs(s.max(1))).unwrap_or(d.header_timeout),
        request_timeout: w.request_timeout_s.map(|s| Duration::from_secs(s.max(1))).unwrap_or(d.request_timeout),
    };
    Ok(WebhookConfig { bind: addr(&w.bind, "listeners.webhooks bind")?, sources, max_body_bytes: w.max_body_bytes.unwrap_or(4 << 20), limits })
}

/// SIGTERM and Ctrl-C, listened for from the start: a stop requested the moment
/// the gateway says it is ready (or before) is a clean stop, not the default
/// action's abrupt exit.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> StopSignals {
        StopSignals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut term) = self.term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}

pub async fn serve(cfg: Config) -> anyhow::Result<ExitCode> {
    let stop_signals = StopSignals::install();
    let cfg = Arc::new(cfg);
    let cfg = &cfg;
    // The admin server's settings are checked before anything starts.
    let admin_cfg = match &cfg.admin {
        Some(a) => {
            let token = a.token.resolve().context("[admin] token")?;
            ehrgate_metrics::set_enabled(a.metrics);
            if !a.metrics {
                eprintln!("ehrgate: [admin] metrics = false: no per-unit metrics (listener counters, ACK codes, latency histograms)");
            }
            let viewer_token = match &a.viewer_token {
                Some(v) => Some(v.resolve().context("[admin] viewer_token")?),
                None => None,
            };
            let ac = AdminConfig { bind: addr(&a.bind, "admin bind")?, allow_remote: a.allow_remote, token, viewer_token, max_body_bytes: (cfg.adapter_store.max_component_mb.max(1) as usize + 1) << 20 };
            ac.check()?;
            Some(ac)
        }
        None => None,
    };
    let door_cfg = match &cfg.agent_door {
        Some(d) => {
            let l = ehrgate_door::DoorListener { bind: addr(&d.bind, "agent_door bind")?, allow_remote: d.allow_remote };
            l.check().map_err(|e| anyhow::anyhow!(e))?;
            let policy = ehrgate_govern::Policy::new(&cfg.governance).context("[governance]")?;
            let clients = ehrgate_door::Clients::new(&d.clients, Some(&policy)).map_err(|e| anyhow::anyhow!("[agent_door] {e}"))?;
            if clients.is_empty() {
                eprintln!("agent door: no [[agent_door.clients]] configured; every call will be refused");
            }
            Some((l, Arc::new(clients), d))
        }
        None => None,
    };
    let webhook_cfg = match &cfg.listeners.webhooks {
        Some(w) => Some(webhook_config(w)?),
        None => None,
    };
    // Kafka: settings checked and the password resolved before anything starts.
    let kafka = match &cfg.kafka {
        Some(k) => Some((k.client()?, k.sources()?, k.landed.as_ref().map(|l| l.topic.clone()))),
        None => None,
    };
    let kafka_sources = kafka.as_ref().map_or(0, |(_, s, _)| s.len());
    let mut mllp_entries: Vec<MllpConfig> = cfg.listeners.mllp.iter().enumerate().map(|(i, e)| mllp_config(e, i)).collect::<anyhow::Result<_>>()?;
    let nothing_configured = mllp_entries.is_empty() && cfg.listeners.drops.is_empty() && cfg.listeners.webhooks.is_none() && kafka_sources == 0;
    if nothing_configured {
        mllp_entries.push(MllpConfig::new("mllp", addr("127.0.0.1:2575", "default listener")?, "reference"));
    }
    // Every port is bound before the write-ahead log is opened and replayed: a
    // taken port stops the start with its cause, before anything has happened.
    let bind = |what: String, at: SocketAddr| async move {
        TcpListener::bind(at).await.with_context(|| format!("{what}: cannot listen on {at} (is another process using it?)"))
    };
    let mut mllp_listeners = Vec::new();
    for m in &mllp_entries {
        mllp_listeners.push(bind(format!("listener {}", m.name), m.bind).await?);
    }
    let webhook_listener = match &webhook_cfg {
        Some(w) => Some(bind("webhooks".into(), w.bind).await?),
        None => None,
    };
    let admin_listener = match &admin_cfg {
        Some(a) => Some(bind("admin server".into(), a.bind).await?),
        None => None,
    };
    let door_listener = match &door_cfg {
        Some((l, _, _)) => Some(bind("agent door".into(), l.bind).await?),
        None => None,
    };
    let lake = Arc::new(Lake::open(cfg.storage.clone(), cfg.lake.batch()).context("opening the lake")?);
    ehrgate_govern::Policy::new(&cfg.governance).context("[governance]")?;
    // The governance settings in force from now on, in the audit (docs/governance.md).
    lake.audit(vec![ehrgate_govern::evidence::policy_row(&cfg.governance, "serve")]).await.context("writing the policy row to the audit")?;
    let (audit, audit_task) = LakeAudit::new(lake.clone());
    let audit: Arc<dyn ehrgate_runtime::AuditSink> = Arc::new(audit);
    let (runtime, connections) = adapters::runtime(cfg, audit.clone())?;
    let runtime = Arc::new(runtime);

    // Every adapter something names is served from the registry: the version the
    // adapter store says is active, else the configured (or built-in) one.
    let mut names: BTreeSet<String> = cfg.adapters.keys().cloned().collect();
    for m in &mllp_entries {
        names.extend(m.router.adapters().map(str::to_owned));
    }
    names.extend(cfg.listeners.drops.iter().map(|d| d.adapter.clone()));
    if let Some(w) = &cfg.listeners.webhooks {
        names.extend(w.sources.iter().map(|s| s.adapter.clone()));
    }
    if let Some((_, _, d)) = &door_cfg {
        names.extend(d.connections.values().cloned());
    }
    if let Some((_, sources, _)) = &kafka {
        names.extend(sources.iter().map(|s| s.adapter.clone()));
    }
    for w in &cfg.workflows {
        w.check().map_err(|e| anyhow::anyhow!("[[workflows]]: {e}"))?;
        names.insert(w.adapter.clone());
    }
    let registry = Arc::new(Registry::new());
    let manager = Arc::new(adapters::manager(cfg, &runtime, registry.clone(), audit.clone())?);
    let names: Vec<String> = names.into_iter().collect();
    for (reference, label) in manager.start(&names, &adapters::store_only(cfg)).await.context("loading adapters")? {
        eprintln!("adapter {reference}: {label}");
        if let Some(a) = registry.get(&reference) {
            connections.declare(&a.info().name, &a.info().connections);
        }
    }

    let (log, replay) = Log::open(&cfg.wal.dir, LogConfig { segment_bytes: cfg.wal.segment_mb.max(1) << 20, ..Default::default() })
        .with_context(|| format!("opening the write-ahead log in {}", cfg.wal.dir.display()))?;
    if !replay.is_empty() {
        eprintln!("write-ahead log: {} units received before the last stop were not yet in the lake; replaying them", replay.len());
    }
    let wal = GroupCommit::start(log, 4096);
    let slow_commit = std::env::var("EHRGATE_FAULT_SLOW_COMMIT_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    if let Some(d) = slow_commit {
        eprintln!("fault injection: every lake commit waits {d:?} (EHRGATE_FAULT_SLOW_COMMIT_MS)");
    }
    let slow_checkpoint = std::env::var("EHRGATE_FAULT_SLOW_CHECKPOINT_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    if let Some(d) = slow_checkpoint {
        eprintln!("fault injection: every log checkpoint waits {d:?} after its lake commit (EHRGATE_FAULT_SLOW_CHECKPOINT_MS)");
    }
    // Lake commits get threads of their own (see FlowConfig::lake_runtime).
    let lake_rt = LakeThreads(Some(
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("ehrgate-lake").enable_all().build().context("starting the lake's threads")?,
    ));
    // Silver's id indexes made ready in the background, on the lake's threads
    // (where the writers this starts then commit).
    let warming = lake.clone();
    lake_rt.handle().spawn(async move { super::lake_cmds::warm_silver(&warming).await });
    // Workflows: the runs' states are read before the log replays, so a replayed
    // trigger is recognised as a run recorded already.
    let engine = if cfg.workflows.is_empty() {
        None
    } else {
        let attempt_delay = std::env::var("EHRGATE_FAULT_SLOW_ACTION_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
        if let Some(d) = attempt_delay {
            eprintln!("fault injection: every workflow attempt waits {d:?} first (EHRGATE_FAULT_SLOW_ACTION_MS)");
        }
        let opts = ehrgate_workflows::EngineOptions { attempt_delay, ..Default::default() };
        let runner: Arc<dyn ehrgate_workflows::ActionRunner> = registry.clone();
        let engine = ehrgate_workflows::Engine::open(lake.clone(), cfg.workflows.clone(), runner, opts).await.context("reading ops/workflow_runs")?;
        for w in &cfg.workflows {
            eprintln!("workflow {}: on {} -> {}.{} ({} open runs)", w.name, w.triggers(), w.adapter, w.action, engine.open_runs());
        }
        Some(engine)
    };
    let triggers = engine.clone().map(|e| ehrgate_ingest::TriggerHook(e as Arc<dyn ehrgate_ingest::Triggers>));
    let landed = match &kafka {
        Some((client, _, Some(topic))) => {
            let sink = Arc::new(ehrgate_kafka::LandedTopic::new(client, topic)?);
            let probe = sink.clone();
            match tokio::task::spawn_blocking(move || probe.check_topic(Duration::from_secs(10))).await? {
                Ok(partitions) => announce(&format!("ehrgate: landed events to kafka topic {topic} ({partitions} partitions)")),
                Err(why) => eprintln!(
                    "ehrgate: WARNING: landed events topic {topic}: {why}. Units wait in the write-ahead log until it can be written, and once [wal] max_pending of them wait, every listener waits too"
                ),
            }
            Some(ehrgate_ingest::LandedHook::new(sink))
        }
        _ => None,
    };
    let flow_cfg = FlowConfig { max_pending: cfg.wal.max_pending.max(1), slow_commit, slow_checkpoint, lake_runtime: Some(lake_rt.handle()), triggers: triggers.clone(), landed: landed.clone(), ..Default::default() };
    let (flow, flow_tasks) = Flow::start(lake.clone(), wal, replay, registry.clone(), flow_cfg).map_err(|e| anyhow::anyhow!("write-ahead log in {}: {e}", cfg.wal.dir.display()))?;
    let stats = flow.stats().clone();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(e) = &engine {
        tasks.push(e.spawn(stop_rx.clone()));
    }
    for (m, listener) in mllp_entries.into_iter().zip(mllp_listeners) {
        let (name, default) = (m.name.clone(), m.router.default.clone().unwrap_or_else(|| "(routes only)".into()));
        let tls = if m.tls.is_some() { ", TLS" } else { "" };
        let (bound, task) = mllp::start(listener, m, flow.clone(), stop_rx.clone()).with_context(|| format!("listener {name}: cannot listen"))?;
        announce(&format!("ehrgate: mllp listener {name} on {bound} (adapter {default}){tls}"));
        tasks.push(task);
    }
    for d in &cfg.listeners.drops {
        let mut dc = DropConfig::new(&d.name, d.dir.clone(), &d.adapter, &cfg.wal.dir);
        if let Some(v) = d.stable_ms {
            dc.stable = Duration::from_millis(v);
        }
        dc.done_suffix = d.done_suffix.clone();
        if let Some(v) = d.poll_ms {
            dc.poll = Duration::from_millis(v);
        }
        dc.processed_dir = d.processed_dir.clone();
        if let Some(v) = d.chunk {
            dc.chunk = v;
        }
        dc.pause_before_move = std::env::var("EHRGATE_FAULT_DROP_PAUSE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
        let source = PipelineSource::Live { lake: lake.clone(), adapters: registry.clone(), name: d.adapter.clone(), triggers: triggers.clone(), landed: landed.clone() };
        let watcher = DropWatcher::with_source(dc, source)?;
        announce(&format!("ehrgate: drop {} watching {} (adapter {})", d.name, d.dir.display(), d.adapter));
        tasks.push(watcher.spawn(stop_rx.clone()));
    }
    if let (Some(wc), Some(listener)) = (webhook_cfg, webhook_listener) {
        let (bound, task) = webhook::start(listener, wc, flow.clone(), stop_rx.clone()).context("webhooks: cannot listen")?;
        announce(&format!("ehrgate: webhooks on http://{bound}/v1/events/{{source}}"));
        tasks.push(task);
    }
    if let Some((client, sources, _)) = &kafka {
        for src in sources {
            let task = ehrgate_kafka::source::spawn(client, src.clone(), flow.clone(), stop_rx.clone())?;
            announce(&format!("ehrgate: kafka source {} reading {} as group {} (adapter {})", src.name, src.topics.join(","), src.group, src.adapter));
            tasks.push(task);
        }
    }
    let flow_room = flow.room();
    drop(flow);
    if let Some(dir) = &cfg.adapter_store.watch_dir {
        let wc = ehrgate_lifecycle::watch::WatchConfig { dir: dir.clone(), poll: Duration::from_millis(500), activate: cfg.adapter_store.activate_on_drop };
        tasks.push(ehrgate_lifecycle::watch::spawn(wc, manager.clone(), stop_rx.clone()).with_context(|| format!("adapter_store.watch_dir {}", dir.display()))?);
        announce(&format!("ehrgate: adapter packages dropped into {} are installed{}", dir.display(), if cfg.adapter_store.activate_on_drop { " and activated" } else { "" }));
    }
    let door = match (door_cfg, door_listener) {
        (Some((_, clients, d)), Some(listener)) => {
            let door = Arc::new(ehrgate_door::Door::new(connections.clone(), registry.clone(), audit.clone(), d.connections.clone(), d.max_results));
            door.check().map_err(|e| anyhow::anyhow!(e))?;
            let (bound, task) = ehrgate_door::start(listener, door.clone(), clients, d.allow_remote, stop_rx.clone()).context("agent door: cannot listen")?;
            announce(&format!("ehrgate: agent door on http://{bound} (tools at /v1/tools, MCP at /mcp)"));
            tasks.push(task);
            Some(door)
        }
        _ => None,
    };
    if let (Some(ac), Some(listener)) = (admin_cfg, admin_listener) {
        let ops = Arc::new(super::serve_ops::ServeOps {
            cfg: cfg.clone(),
            lake: lake.clone(),
            stats: stats.clone(),
            room: flow_room.clone(),
            registry: registry.clone(),
            manager: manager.clone(),
            connections: connections.clone(),
            audit: audit.clone(),
            workflows: engine.clone(),
            door: door.clone(),
            landed: landed.clone(),
        });
        let (bound, task) = ehrgate_admin::start(listener, ac, manager.clone(), audit.clone(), ops, stop_rx.clone())?;
        announce(&format!("ehrgate: admin on http://{bound}"));
        tasks.push(task);
    }
    tasks.extend(super::bulk::schedule(cfg.clone(), lake.clone(), runtime.clone(), connections.clone(), landed.clone(), stop_rx.clone()));
    if let Some(t) = retention_schedule(&cfg, lake.clone(), stop_rx.clone()) {
        tasks.push(t);
    }
    if let Some(t) = kpi_schedule(&cfg, lake.clone(), stop_rx.clone()) {
        tasks.push(t);
    }
    announce(&format!("ehrgate: ready; lake {}; write-ahead log {}", lake.storage().describe(), cfg.wal.dir.display()));

    let ticker_stats = stats.clone();
    let ticker = tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let line = ticker_stats.line();
            if line != last {
                eprintln!("ehrgate: {line}");
                last = line;
            }
        }
    });

    stop_signals.wait().await;
    eprintln!("ehrgate: stopping: listeners close, received units are committed");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    flow_tasks.finish().await;
    // The lake's writers stop once what they hold is committed; silver's store
    // their id index if it is a 32nd or more behind (the next start reads less).
    let closing = lake.clone();
    if let Err(e) = lake_rt.handle().spawn(async move { closing.close().await }).await {
        tracing::error!("closing the lake: {e}");
    }
    // (the engine holds the adapters, which hold the audit writer's sender)
    drop(triggers);
    drop(engine);
    drop(door);
    drop(lake_rt);
    ticker.abort();
    drop(manager);
    drop(registry);
    drop(audit);
    drop(runtime);
    if let Err(e) = audit_task.await {
        tracing::error!("audit writer failed: {e}");
    }
    announce(&format!("ehrgate: stopped; {}", stats.line()));
    Ok(ExitCode::SUCCESS)
}

/// `[governance] retain_every_minutes`: the retention rules applied on a schedule,
/// the first run at start; each run's attestations are audit rows.
fn retention_schedule(cfg: &Config, lake: Arc<Lake>, mut stop: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
    let g = &cfg.governance;
    let every = Duration::from_secs(g.retain_every_minutes?.max(1) * 60);
    if g.retention.is_empty() {
        eprintln!("ehrgate: [governance] retain_every_minutes is set but there are no [[governance.retention]] rules");
        return None;
    }
    let (rules, vacuum) = (g.retention.clone(), g.retain_vacuum_minutes);
    eprintln!("ehrgate: retention every {} min ({} rules)", every.as_secs() / 60, rules.len());
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                r = ehrgate_govern::retention::retain(&lake, &rules, vacuum, "serve:retention") => match r {
                    Ok(done) => eprintln!("ehrgate: retention: {} rows deleted from {} tables", done.iter().map(|a| a.rows).sum::<u64>(), done.len()),
                    Err(e) => eprintln!("ehrgate: retention failed: {e} (next run in {} min)", every.as_secs() / 60),
                },
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }))
}

/// `[kpi] refresh_every_s`: gold/kpi_minute recomputed on a schedule (the minutes
/// that can still change; at start the last hour, so that traffic from before the
/// start is on the console at once), and once more at the stop.
fn kpi_schedule(cfg: &Config, lake: Arc<Lake>, mut stop: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
    let k = cfg.kpi.clone();
    // (the console is its reader: without an admin server, `ehrgate kpi` refreshes it)
    if k.refresh_every_s == 0 || cfg.admin.is_none() {
        return None;
    }
    let every = Duration::from_secs(k.refresh_every_s);
    Some(tokio::spawn(async move {
        let mut failing = false;
        let mut from = Some(ehrgate_lake::now_micros() - 3_600_000_000);
        let mut stopping = false;
        loop {
            match ehrgate_kpi::refresh(&lake, &k, from.take(), ehrgate_lake::now_micros()).await {
                Ok(_) if failing => {
                    eprintln!("ehrgate: kpi: refreshing gold/kpi_minute works again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    eprintln!("ehrgate: kpi: refreshing gold/kpi_minute failed: {e} (retried every {} s)", every.as_secs());
                    failing = true;
                }
                Err(_) => {}
            }
            if stopping {
                return;
            }
            stopping = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = stop.changed() => true,
            };
        }
    }))
}
