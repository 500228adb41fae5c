//! Which adapter serves a name, at the moment a unit is mapped. The gateway's
//! [`Registry`] answers with the active version (hot swaps take effect at the next
//! lookup); a fixed map serves one-shot commands and tests.

use std::collections::HashMap;
use std::sync::Arc;

use ehrgate_lake::Lake;
use ehrgate_runtime::{Adapter, Registry, Routed};

use crate::landed::LandedHook;
use crate::pipeline::Pipeline;
use crate::triggers::TriggerHook;

/// Adapters by the reference a route gives: `name` or `name@version`.
pub trait Resolve: Send + Sync {
    fn resolve(&self, reference: &str) -> Option<Adapter>;

    /// The active version and any candidate (canary / shadow) beside it.
    fn route(&self, reference: &str) -> Option<Routed> {
        self.resolve(reference).map(|active| Routed { active, candidate: None })
    }
}

impl Resolve for Registry {
    fn resolve(&self, reference: &str) -> Option<Adapter> {
        self.get(reference)
    }

    fn route(&self, reference: &str) -> Option<Routed> {
        Registry::route(self, reference)
    }
}

impl Resolve for HashMap<String, Adapter> {
    fn resolve(&self, reference: &str) -> Option<Adapter> {
        self.get(reference).cloned()
    }
}

/// A pipeline through one adapter name: fixed, or following the active version.
#[derive(Clone)]
pub enum PipelineSource {
    Fixed(Arc<Pipeline>),
    /// `triggers`: workflow triggers for the units it ingests, `landed`: where
    /// their landed events go (file drops in serve).
    Live { lake: Arc<Lake>, adapters: Arc<dyn Resolve>, name: String, triggers: Option<TriggerHook>, landed: Option<LandedHook> },
}

impl PipelineSource {
    /// The pipeline to use now; `None` while the adapter is disabled or unknown.
    pub fn current(&self) -> Option<Arc<Pipeline>> {
        match self {
            PipelineSource::Fixed(p) => Some(p.clone()),
            PipelineSource::Live { lake, adapters, name, triggers, landed } => {
                adapters.resolve(name).map(|a| Arc::new(Pipeline::new(lake.clone(), a).with_triggers(triggers.clone()).with_landed(landed.clone())))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            PipelineSource::Fixed(p) => p.adapter().info().name.clone(),
            PipelineSource::Live { name, .. } => name.clone(),
        }
    }
}
