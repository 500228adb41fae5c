//! The reference adapter: the SDK's standard HL7v2 -> FHIR R4 mapping with no vendor
//! overrides. It is what `ehrgate` uses when no adapter is named, and the template a
//! vendor adapter starts from.

use ehrgate_sdk::{Adapter, AdapterInfo};

pub struct Reference;

impl Adapter for Reference {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "reference".into(),
            vendor: "HL7 standard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            ..Default::default()
        }
    }
}

ehrgate_sdk::export_adapter!(Reference);
