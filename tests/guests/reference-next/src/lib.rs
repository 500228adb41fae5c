//! `reference` 0.9.0: the SDK's standard mapping, as the built-in reference adapter,
//! with another version number, so that tests can install, activate and roll back
//! a second version of a served adapter and see which one mapped each unit
//! (silver rows carry `adapter@version`).

use ehrgate_sdk::{Adapter, AdapterInfo};

pub struct ReferenceNext;

impl Adapter for ReferenceNext {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "reference".into(),
            vendor: "HL7 standard".into(),
            version: "0.9.0".into(),
            hl7_message_types: ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            ..Default::default()
        }
    }
}

ehrgate_sdk::export_adapter!(ReferenceNext);
