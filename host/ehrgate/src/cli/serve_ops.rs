//! What `ehrgate serve` reports on the admin server's `/readyz` and `/metrics`
//! (docs/serve.md, "Health and metrics").

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ehrgate_ingest::flow::{FlowStats, Room};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Counters read once per scrape: (name, help, value).
fn register_counters(reg: &mut Registry, counters: &[(&str, &str, u64)]) {
    for (name, help, v) in counters {
        reg.register(*name, *help, ConstCounter::new(*v));
    }
}

pub struct ServeOps {
    pub stats: Arc<FlowStats>,
    pub room: Room,
    pub workflows: Option<Arc<ehrgate_workflows::Engine>>,
    pub door: Option<Arc<ehrgate_door::Door>>,
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

    fn workflow_run<'a>(&'a self, id: &'a str, op: &'a str) -> ehrgate_admin::RunOpFuture<'a> {
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
        let s = &self.stats;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut reg = Registry::with_prefix("ehrgate");
        let counters: [(&str, &str, u64); 8] = [
            ("units_received", "Units (messages, events) received by the listeners", g(&s.received)),
            ("units_accepted", "Units mapped and acknowledged positively (MLLP AA, webhook 202)", g(&s.accepted)),
            ("units_rejected", "Units quarantined: invalid, unsupported or unrouted (MLLP AE/AR)", g(&s.rejected)),
            ("units_failed", "Units that could not be stored (MLLP AR, webhook 503): the sender resends", g(&s.failed)),
            ("units_committed", "Units written to the lake and checkpointed", g(&s.committed)),
            ("units_replayed", "Units read back from the write-ahead log at start", g(&s.replayed)),
            ("backpressure_waits", "Times a listener waited for room (the lake behind)", g(&s.waits)),
            ("lake_commit_errors", "Failed lake writes (retried; units stay in the log)", g(&s.commit_errors)),
        ];
        register_counters(&mut reg, &counters);
        let pending = g(&s.received).saturating_sub(g(&s.failed)).saturating_sub(g(&s.committed).saturating_sub(g(&s.replayed)));
        reg.register("units_pending", "Units received and stored in the log, not yet committed to the lake", ConstGauge::new(pending as i64));
        reg.register("replay_pending", "Units of the start-up replay not yet committed", ConstGauge::new(g(&s.replay_pending) as i64));
        reg.register("ready", "1 when /readyz answers 200", ConstGauge::new(i64::from(ehrgate_admin::Ops::ready(self).is_ok())));
        if let Some(e) = &self.workflows {
            let w = &e.stats;
            let counters: [(&str, &str, u64); 5] = [
                ("workflow_runs_triggered", "Workflow runs triggered and recorded", g(&w.triggered)),
                ("workflow_attempts", "Workflow action attempts", g(&w.attempts)),
                ("workflow_runs_succeeded", "Workflow runs that succeeded", g(&w.succeeded)),
                ("workflow_runs_failed", "Workflow runs that failed (dead letter)", g(&w.failed)),
                ("workflow_retries", "Workflow attempts that failed transiently and were scheduled again", g(&w.retries)),
            ];
            register_counters(&mut reg, &counters);
            reg.register("workflow_runs_open", "Workflow runs pending or retrying", ConstGauge::new(e.open_runs() as i64));
        }
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
}
