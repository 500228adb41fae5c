//! The standard HL7v2 -> FHIR R4 mapping.

use crate::adapter::{AdapterError, Hl7Input, Output};

/// A mapping: every method has the standard behaviour; vendors override what differs.
pub trait Mapper {}

/// The standard mapping, unchanged.
pub struct Standard;
impl Mapper for Standard {}

/// Map one HL7v2 message with `mapper`.
pub fn map_message(mapper: &impl Mapper, input: &Hl7Input) -> Result<Output, AdapterError> {
    let _ = (mapper, input);
    todo!()
}
pub const STANDARD_MESSAGE_TYPES: &[&str] = &[];
