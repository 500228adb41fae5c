//! FHIR R4 builders.

use crate::adapter::{AdapterError, Output};

/// Default `map-fhir`: check each line is a JSON object with `resourceType` and `id`,
/// pass it through unchanged.
pub fn passthrough(batch: Vec<String>) -> Result<Output, AdapterError> {
    let _ = batch;
    todo!()
}
