//! What `ehrgate serve` reports on the admin server: `/readyz`, `/metrics` and
//! the console's data (docs/operations.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ehrgate_connect::{BreakerState, Connections};
use ehrgate_ingest::flow::{FlowStats, Room};
use ehrgate_lake::{Lake, quarantine, rfc3339};
use ehrgate_metrics::{Labeled, Value};
use ehrgate_runtime::{AuditEvent, AuditSink, Registry, now_ms};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry as Metrics;

use crate::config::Config;

/// Counters read once per scrape: (name, help, value).
fn register_counters(reg: &mut Metrics, counters: &[(&str, &str, u64)]) {
    for (name, help, v) in counters {
        reg.register(*name, *help, ConstCounter::new(*v));
    }
}

pub struct ServeOps {
    pub cfg: Arc<Config>,
    pub lake: Arc<Lake>,
    pub stats: Arc<FlowStats>,
    pub room: Room,
    pub registry: Arc<Registry>,
    pub manager: Arc<ehrgate_lifecycle::Manager>,
    pub connections: Arc<Connections>,
    pub audit: Arc<dyn AuditSink>,
    pub workflows: Option<Arc<ehrgate_workflows::Engine>>,
    pub door: Option<Arc<ehrgate_door::Door>>,
    pub landed: Option<ehrgate_ingest::LandedHook>,
}

fn g(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn ms(v: Option<f64>) -> serde_json::Value {
    v.map(|s| serde_json::json!((s * 1000.0 * 100.0).round() / 100.0)).unwrap_or(serde_json::Value::Null)
}

impl ServeOps {
    fn flow_metrics(&self, reg: &mut Metrics) {
        let s = &self.stats;
        let landed = |f: fn(&ehrgate_ingest::landed::LandedCounts) -> &AtomicU64| self.landed.as_ref().map_or(0, |h| g(f(&h.counts)));
        let counters: [(&str, &str, u64); 10] = [
            ("units_received", "Units (messages, events) received by the listeners", g(&s.received)),
            ("units_accepted", "Units mapped and acknowledged positively (MLLP AA, webhook 202)", g(&s.accepted)),
            ("units_rejected", "Units quarantined: invalid, unsupported or unrouted (MLLP AE/AR)", g(&s.rejected)),
            ("units_failed", "Units that could not be stored (MLLP AR, webhook 503): the sender resends", g(&s.failed)),
            ("units_committed", "Units written to the lake and checkpointed", g(&s.committed)),
            ("units_replayed", "Units read back from the write-ahead log at start", g(&s.replayed)),
            ("backpressure_waits", "Times a listener waited for room (the lake behind)", g(&s.waits)),
            ("lake_commit_errors", "Failed lake writes (retried; units stay in the log)", g(&s.commit_errors)),
            ("landed_events_published", "Landed events the bus acknowledged ([kafka.landed]): listeners, file drops, Bulk Data", landed(|c| &c.published)),
            ("landed_event_publish_errors", "Failed attempts to publish a group of landed events (retried; nothing is let go before)", landed(|c| &c.errors)),
        ];
        register_counters(reg, &counters);
        reg.register("units_pending", "Units received and stored in the log, not yet committed to the lake", ConstGauge::new(self.pending() as i64));
        reg.register("replay_pending", "Units of the start-up replay not yet committed", ConstGauge::new(g(&s.replay_pending) as i64));
        reg.register("ready", "1 when /readyz answers 200", ConstGauge::new(i64::from(ehrgate_admin::Ops::ready(self).is_ok())));
    }

    fn pending(&self) -> u64 {
        let s = &self.stats;
        g(&s.received).saturating_sub(g(&s.failed)).saturating_sub(g(&s.committed).saturating_sub(g(&s.replayed)))
    }

    fn listener_metrics(reg: &mut Metrics) {
        let (mut received, mut answers, mut latency) = (Labeled::counters(), Labeled::counters(), Labeled::histograms());
        for (name, l) in ehrgate_metrics::listeners() {
            received.add(&[("listener", &name)], Value::Counter(g(&l.received)));
            for (code, n) in l.answers() {
                answers.add(&[("listener", &name), ("code", code)], Value::Counter(n));
            }
            latency.add(&[("listener", &name)], l.answer_latency.clone());
        }
        reg.register("listener_units_received", "Units received, per listener", received);
        reg.register("listener_answers", "Answers given, per listener and code (AA/AE/AR, CA/CE/CR, ACK/NAK, 202/422/503; none: MSH-15 asked for none)", answers);
        reg.register("listener_answer_latency_seconds", "From a unit's last byte read to its answer written, per listener", latency);
    }

    fn table_metrics(reg: &mut Metrics) {
        let (mut commits, mut errors, mut rows, mut conflicts, mut latency) = (Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::histograms());
        let (mut loaded, mut read, mut stores) = (Labeled::counters(), Labeled::counters(), Labeled::counters());
        for (path, t) in ehrgate_metrics::tables() {
            let l = [("table", path.as_str())];
            commits.add(&l, Value::Counter(g(&t.commits)));
            errors.add(&l, Value::Counter(g(&t.commit_errors)));
            rows.add(&l, Value::Counter(g(&t.rows)));
            conflicts.add(&l, Value::Counter(g(&t.conflicts_retried)));
            latency.add(&l, t.commit_latency.clone());
            loaded.add(&l, Value::Counter(g(&t.id_index_rows_loaded)));
            read.add(&l, Value::Counter(g(&t.id_index_rows_read)));
            stores.add(&l, Value::Counter(g(&t.id_index_stores)));
        }
        reg.register("lake_commits", "Commits that landed, per table", commits);
        reg.register("lake_table_commit_errors", "Commits that failed after the writer's retries, per table", errors);
        reg.register("lake_rows", "Rows in the commits that landed, per table (a MERGE counts the rows it was given)", rows);
        reg.register("lake_conflicts_retried", "Commit attempts that lost to another writer and were retried, per table", conflicts);
        reg.register("lake_commit_duration_seconds", "Commit duration, per table (retries included)", latency);
        reg.register("lake_id_index_rows_loaded", "Silver by deletion vectors: id index rows loaded from the index stored beside the table, per table", loaded);
        reg.register("lake_id_index_rows_read", "Silver by deletion vectors: ids read from data files to build or catch up the id index, per table", read);
        reg.register("lake_id_index_stores", "Silver by deletion vectors: times the id index was stored beside the table, per table", stores);
    }

    fn connection_metrics(&self, reg: &mut Metrics) {
        let (mut requests, mut throttled, mut retries, mut transport, mut fast, mut tokens, mut breaker) =
            (Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::counters(), Labeled::gauges());
        for name in self.connections.names() {
            let Some(c) = self.connections.get(name) else { continue };
            let s = c.stats();
            for (i, n) in s.responses.iter().enumerate() {
                requests.add(&[("connection", name), ("class", &format!("{}xx", i + 1))], Value::Counter(*n));
            }
            let l = [("connection", name)];
            throttled.add(&l, Value::Counter(s.throttled));
            retries.add(&l, Value::Counter(s.retries));
            transport.add(&l, Value::Counter(s.transport_errors));
            fast.add(&l, Value::Counter(s.fast_failures));
            tokens.add(&l, Value::Counter(s.token_requests));
            breaker.add(&l, Value::Gauge(match s.breaker {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            }));
        }
        reg.register("connection_responses", "Upstream answers per connection and status class", requests);
        reg.register("connection_throttled", "Upstream 429 answers per connection", throttled);
        reg.register("connection_retries", "Attempts that were retries, per connection", retries);
        reg.register("connection_transport_errors", "Attempts with no answer (connection failure, timeout), per connection", transport);
        reg.register("connection_fast_failures", "Calls refused at once by the open circuit breaker, per connection", fast);
        reg.register("connection_token_requests", "Access tokens requested (SMART Backend Services / client credentials), per connection", tokens);
        reg.register("connection_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", breaker);
    }

    fn bulk_metrics(&self, reg: &mut Metrics) {
        let names = ["files_done", "files_total", "resources", "quarantined", "tombstones", "bytes", "in_progress"];
        let mut families: Vec<Labeled<Value>> = names.iter().map(|_| Labeled::gauges()).collect();
        for (job, state) in self.bulk_states() {
            let f = state.figures.clone().unwrap_or_default();
            let v = [f.files_done, f.files_total, f.resources, f.quarantined, f.tombstones, f.bytes, u64::from(state.current.is_some())];
            for (fam, v) in families.iter_mut().zip(v) {
                fam.add(&[("connection", &job)], Value::Gauge(v as i64));
            }
        }
        for (name, fam) in names.iter().zip(families) {
            reg.register(format!("bulk_{name}"), format!("Bulk export per connection: {} of the current (or last) export", name.replace('_', " ")), fam);
        }
    }

    fn bulk_states(&self) -> Vec<(String, ehrgate_ingest::bulk::state::ConnState)> {
        self.cfg
            .bulk
            .jobs
            .iter()
            .filter_map(|j| ehrgate_ingest::bulk::state::peek(&self.cfg.bulk.state_dir, &j.connection).ok().map(|s| (j.connection.clone(), s)))
            .collect()
    }

    fn workflow_metrics(&self, reg: &mut Metrics) {
        let Some(e) = &self.workflows else { return };
        let w = &e.stats;
        let counters: [(&str, &str, u64); 5] = [
            ("workflow_runs_triggered", "Workflow runs triggered and recorded", g(&w.triggered)),
            ("workflow_attempts", "Workflow action attempts", g(&w.attempts)),
            ("workflow_runs_succeeded", "Workflow runs that succeeded", g(&w.succeeded)),
            ("workflow_runs_failed", "Workflow runs that failed (dead letter)", g(&w.failed)),
            ("workflow_retries", "Workflow attempts that failed transiently and were scheduled again", g(&w.retries)),
        ];
        register_counters(reg, &counters);
        reg.register("workflow_runs_open", "Workflow runs pending or retrying", ConstGauge::new(e.open_runs() as i64));
        let (mut done, mut latency) = (Labeled::counters(), Labeled::histograms());
        for (name, m) in ehrgate_metrics::workflows() {
            done.add(&[("workflow", &name), ("outcome", "succeeded")], Value::Counter(g(&m.succeeded)));
            done.add(&[("workflow", &name), ("outcome", "failed")], Value::Counter(g(&m.failed)));
            latency.add(&[("workflow", &name)], m.completion_latency.clone());
        }
        reg.register("workflow_completions", "Workflow runs finished, per workflow and outcome", done);
        reg.register("workflow_completion_seconds", "From the trigger's receipt to the run's final state, per workflow", latency);
    }
}

impl ehrgate_admin::Ops for ServeOps {
    fn ready(&self) -> Result<(), String> {
        let replaying = self.stats.replay_pending.load(Ordering::Relaxed);
        if replaying > 0 {
            return Err(format!("replaying the write-ahead log ({replaying} units left)"));
        }
        if self.stats.lake_failing.load(Ordering::Relaxed) {
            return Err("the last lake write failed (retrying); units are kept in the write-ahead log".into());
        }
        if self.room.full() {
            return Err("back-pressure: the lake is behind and every listener waits".into());
        }
        Ok(())
    }

    fn workflow_run<'a>(&'a self, id: &'a str, op: &'a str) -> ehrgate_admin::JsonFuture<'a> {
        Box::pin(async move {
            let Some(engine) = &self.workflows else { return Err((404, "no workflows are configured on this gateway".to_string())) };
            let op = if op == "retry" { ehrgate_workflows::Control::Retry } else { ehrgate_workflows::Control::Cancel };
            match engine.operate(id, op).await {
                Ok(run) => Ok(serde_json::json!({"run_id": run.run_id, "workflow": run.workflow, "status": run.status, "attempts": run.attempts})),
                Err(ehrgate_workflows::Refused(status, why)) => Err((status, why)),
            }
        })
    }

    fn metrics(&self) -> String {
        let mut reg = Metrics::with_prefix("ehrgate");
        self.flow_metrics(&mut reg);
        Self::listener_metrics(&mut reg);
        Self::table_metrics(&mut reg);
        self.connection_metrics(&mut reg);
        self.bulk_metrics(&mut reg);
        self.workflow_metrics(&mut reg);
        if let Some(d) = &self.door {
            let d = &d.stats;
            let counters: [(&str, &str, u64); 3] = [
                ("door_calls", "Agent door calls, refused ones included", g(&d.calls)),
                ("door_denied", "Agent door calls refused: no or unknown key, no purpose, outside the client's scopes", g(&d.denied)),
                ("door_failed", "Agent door calls that failed otherwise (bad arguments, the EHR or the adapter failing)", g(&d.failed)),
            ];
            register_counters(&mut reg, &counters);
        }
        let mut out = String::new();
        // (writing to a String cannot fail)
        let _ = encode(&mut out, &reg);
        out
    }

    fn overview(&self) -> serde_json::Value {
        let s = &self.stats;
        let ready = ehrgate_admin::Ops::ready(self);
        let listeners: Vec<serde_json::Value> = ehrgate_metrics::listeners()
            .into_iter()
            .map(|(name, l)| {
                let info = l.info();
                let acks: serde_json::Map<String, serde_json::Value> = l.answers().into_iter().map(|(c, n)| (c.to_string(), n.into())).collect();
                let h = &l.answer_latency.0;
                serde_json::json!({
                    "name": name, "kind": info.kind, "bind": info.bind, "adapter": info.adapter,
                    "state": if self.room.full() { "waiting (back-pressure)" } else { "listening" },
                    "received": g(&l.received), "acks": acks, "ack_p50_ms": ms(h.quantile(0.5)), "ack_p99_ms": ms(h.quantile(0.99)),
                })
            })
            .collect();
        let adapters: Vec<serde_json::Value> = self
            .manager
            .list()
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name, "active": a.active, "versions": a.versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>(),
                    "state": if a.disabled { "disabled" } else if a.active.is_some() { "active" } else { "installed" },
                    "candidate": a.candidate,
                })
            })
            .collect();
        let bulk_jobs: Vec<serde_json::Value> = self
            .bulk_states()
            .into_iter()
            .map(|(connection, st)| {
                let f = st.figures.clone().unwrap_or_default();
                serde_json::json!({
                    "connection": connection, "state": if st.current.is_some() { "running" } else if st.figures.is_some() { "done" } else { "not run yet" },
                    "export_id": st.current.as_ref().map(|c| c.export_id.clone()), "files_done": f.files_done, "files_total": f.files_total,
                    "resources": f.resources, "quarantined": f.quarantined, "updated_at": f.updated_at,
                })
            })
            .collect();
        let workflows: Vec<serde_json::Value> = match &self.workflows {
            None => Vec::new(),
            Some(e) => ehrgate_metrics::workflows()
                .into_iter()
                .map(|(name, m)| {
                    let h = &m.completion_latency.0;
                    serde_json::json!({"name": name, "succeeded": g(&m.succeeded), "failed": g(&m.failed), "open": e.open_runs(), "p50_s": h.quantile(0.5), "p95_s": h.quantile(0.95)})
                })
                .collect(),
        };
        serde_json::json!({
            "generated_at": rfc3339(ehrgate_lake::now_micros()),
            "ready": ready.is_ok(),
            "not_ready_reason": ready.err(),
            "flow": {
                "received": g(&s.received), "accepted": g(&s.accepted), "rejected": g(&s.rejected), "failed": g(&s.failed),
                "committed": g(&s.committed), "pending": self.pending(), "replay_pending": g(&s.replay_pending), "backpressure_waits": g(&s.waits),
            },
            "listeners": listeners,
            "adapters": adapters,
            "bulk_jobs": bulk_jobs,
            "workflows": workflows,
        })
    }

    fn kpi<'a>(&'a self, since_minutes: u64) -> ehrgate_admin::JsonFuture<'a> {
        Box::pin(async move {
            let now = ehrgate_lake::now_micros();
            let from = now - since_minutes as i64 * 60_000_000;
            let rows = ehrgate_kpi::read(&self.lake, from - from.rem_euclid(60_000_000)).await.map_err(|e| (503, format!("reading gold/kpi_minute: {e}")))?;
            let refreshed = rows.iter().map(|r| r.refreshed_at).max();
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["minute"] = rfc3339(r.minute).into();
                    v["refreshed_at"] = rfc3339(r.refreshed_at).into();
                    v
                })
                .collect();
            Ok(serde_json::json!({"sla_minutes": self.cfg.kpi.sla_minutes, "refreshed_at": refreshed.map(rfc3339), "rows": rows}))
        })
    }

    fn quarantine<'a>(&'a self, limit: usize) -> ehrgate_admin::JsonFuture<'a> {
        Box::pin(async move {
            // Reasons and locations only: the quarantined bytes hold PHI (not read).
            let rows = quarantine::recent(&self.lake, limit).await.map_err(|e| (503, format!("reading the quarantine: {e}")))?;
            let rows: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|q| {
                    serde_json::json!({
                        "id": q.id, "quarantined_at": rfc3339(q.quarantined_at), "input_kind": q.input_kind, "source": q.source, "adapter": q.adapter,
                        "error_kind": q.error_kind, "error_message": q.error_message, "location": q.location,
                        "reprocessed_at": q.reprocessed_at.map(rfc3339), "reprocess_outcome": q.reprocess_outcome,
                    })
                })
                .collect();
            Ok(serde_json::json!({"rows": rows}))
        })
    }

    fn reprocess<'a>(&'a self, id: &'a str, who: &'a str) -> ehrgate_admin::JsonFuture<'a> {
        Box::pin(async move {
            let filter = quarantine::Filter { id: Some(id.to_string()), include_reprocessed: true, ..Default::default() };
            let rows = quarantine::list(&self.lake, &filter).await.map_err(|e| (503, format!("reading the quarantine: {e}")))?;
            let Some(q) = rows.first() else { return Err((404, format!("no quarantined unit {id}"))) };
            if q.reprocessed_at.is_some() {
                return Err((409, format!("{id} was reprocessed already ({})", q.reprocess_outcome.as_deref().unwrap_or("mapped"))));
            }
            let name = q.adapter.split('@').next().unwrap_or_default().to_string();
            let Some(adapter) = self.registry.get(&name) else {
                return Err((409, format!("adapter `{name}` is not served (not installed, or disabled): activate it first")));
            };
            let pipeline = ehrgate_ingest::Pipeline::new(self.lake.clone(), adapter);
            let r = pipeline.reprocess(&quarantine::Filter { id: Some(id.to_string()), ..Default::default() }).await;
            let (outcome, body) = match r {
                Ok(r) if r.mapped == 1 => ("allowed: mapped".to_string(), serde_json::json!({"id": id, "reprocessed": true, "outcome": format!("mapped by {}", pipeline.adapter().label())})),
                Ok(r) => {
                    let why = r.still_failing.first().map(|(_, e)| e.clone()).unwrap_or_else(|| "not mapped".into());
                    ("allowed: still failing".to_string(), serde_json::json!({"id": id, "reprocessed": false, "outcome": why}))
                }
                Err(e) => return Err((503, format!("reprocessing {id}: {e}"))),
            };
            self.audit.record(AuditEvent {
                at_ms: now_ms(),
                actor: who.to_string(),
                action: "quarantine.reprocess".into(),
                connection: "admin".into(),
                method: "POST".into(),
                path: format!("quarantine/records/{id}"),
                outcome,
            });
            Ok(body)
        })
    }
}
