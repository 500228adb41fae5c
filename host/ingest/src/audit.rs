//! Runtime audit events into `audit/access_log`.

use std::sync::Arc;

use ehrgate_lake::{AuditRow, Lake};
use ehrgate_runtime::{AuditEvent, AuditSink};
use tokio::sync::mpsc;

/// An [`AuditSink`] that writes to the lake in the background (bounded; if the lake
/// falls far behind, events are logged instead of blocking the adapter call).
/// Dropping every clone of the sink (with the runtime that holds it) closes the
/// queue; await the task returned by [`LakeAudit::new`] to be sure every event
/// was written.
pub struct LakeAudit {
    tx: mpsc::Sender<AuditEvent>,
}

impl LakeAudit {
    pub fn new(lake: Arc<Lake>) -> (LakeAudit, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(10_000);
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut events = vec![first];
                while let Ok(e) = rx.try_recv() {
                    events.push(e);
                }
                let rows = events
                    .into_iter()
                    .map(|e| AuditRow {
                        at: e.at_ms as i64 * 1000,
                        actor: e.actor,
                        action: e.action,
                        connection: Some(e.connection),
                        method: Some(e.method),
                        path: Some(e.path),
                        outcome: e.outcome,
                        ..Default::default()
                    })
                    .collect();
                if let Err(e) = lake.audit(rows).await {
                    tracing::error!("audit rows could not be written: {e}");
                }
            }
        });
        (LakeAudit { tx }, task)
    }
}

impl AuditSink for LakeAudit {
    fn record(&self, event: AuditEvent) {
        if let Err(e) = self.tx.try_send(event) {
            ehrgate_runtime::TracingAudit.record(match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            });
        }
    }
}
