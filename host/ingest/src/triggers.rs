//! What the flow asks of workflows (`ehrgate-workflows` answers): which runs a
//! mapped unit triggers, which of them are new, and that they are recorded.
//!
//! A run is decided in the map stage and written to `ops/workflow_runs` by the
//! commit stage with its unit's rows, before the write-ahead log's checkpoint lets
//! the unit go: a crash at any instant after the ACK either replays the unit (and
//! so triggers the run again) or finds the run recorded.

use std::sync::Arc;

use ehrgate_lake::{SilverRow, WorkflowRunRow};

use crate::units::Unit;

pub trait Triggers: Send + Sync {
    /// The runs an accepted unit triggers; `resources` are what it mapped to.
    fn triggered(&self, unit: &Unit, resources: &[&SilverRow]) -> Vec<WorkflowRunRow>;
    /// Of runs about to be recorded, those not recorded before (a resent or replayed
    /// trigger is the same run); marks them as recorded.
    fn unseen(&self, runs: Vec<WorkflowRunRow>) -> Vec<WorkflowRunRow>;
    /// The runs are in the lake: start them.
    fn recorded(&self, runs: Vec<WorkflowRunRow>);
}

/// A [`Triggers`] in [`crate::FlowConfig`].
#[derive(Clone)]
pub struct TriggerHook(pub Arc<dyn Triggers>);

impl std::fmt::Debug for TriggerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TriggerHook")
    }
}
