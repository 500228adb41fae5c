//! What the flow asks of workflows (`ehrgate-workflows` answers): which runs a
//! mapped unit triggers, which of them are new, and that they are recorded.
//!
//! A run is decided in the map stage and written to `ops/workflow_runs` by the
//! commit stage with its unit's rows, before the write-ahead log's checkpoint lets
//! the unit go: a crash at any instant after the ACK either replays the unit (and
//! so triggers the run again) or finds the run recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ehrgate_lake::{SilverRow, WorkflowRunRow};

use crate::pipeline::Mapped;
use crate::units::Unit;

pub trait Triggers: Send + Sync {
    /// The runs an accepted unit triggers; `resources` are what it mapped to.
    fn triggered(&self, unit: &Unit, resources: &[&SilverRow]) -> Vec<WorkflowRunRow>;
    /// Of runs about to be recorded, those not recorded before (a resent or replayed
    /// trigger is the same run); marks them as recorded.
    fn unseen(&self, runs: Vec<WorkflowRunRow>) -> Vec<WorkflowRunRow>;
    /// The runs are in the lake: start them.
    fn recorded(&self, runs: Vec<WorkflowRunRow>);
    /// Writing runs that [`unseen`](Self::unseen) returned failed: forget them, so
    /// that the retried write records them.
    fn not_recorded(&self, runs: &[WorkflowRunRow]) {
        let _ = runs;
    }
}

/// A [`Triggers`] in [`crate::FlowConfig`].
#[derive(Clone)]
pub struct TriggerHook(pub Arc<dyn Triggers>);

impl std::fmt::Debug for TriggerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TriggerHook")
    }
}

/// The runs the accepted ones of `units` trigger (a unit with a quarantine row was
/// not accepted), in the order of `units`; `mapped` is what they mapped to.
pub fn runs_for(t: &dyn Triggers, units: &[Unit], mapped: &Mapped) -> Vec<WorkflowRunRow> {
    let rejected: HashSet<&str> = mapped.quarantined.iter().map(|q| q.id.as_str()).collect();
    let mut by_unit: HashMap<&str, Vec<&SilverRow>> = HashMap::new();
    for r in &mapped.silver {
        by_unit.entry(r.lineage.as_str()).or_default().push(r);
    }
    let mut runs = Vec::new();
    for u in units.iter().filter(|u| !rejected.contains(u.bronze.record_id.as_str())) {
        let resources = by_unit.get(u.bronze.lineage().as_str()).map(Vec::as_slice).unwrap_or_default();
        runs.extend(t.triggered(u, resources));
    }
    runs
}
