//! The reference adapter: the SDK's standard HL7v2 -> FHIR R4 mapping with no vendor
//! overrides. It is what `ehrgate` uses when no adapter is named, and the template a
//! vendor adapter starts from.

use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Output};

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

    /// Events carry FHIR: one resource, or a Bundle (e.g. a subscription
    /// notification) whose entries are resources. They pass through unchanged.
    fn handle_event(source: &str, body: &[u8]) -> Result<Output, AdapterError> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| AdapterError::invalid(format!("event from `{source}` is not JSON ({:?} error at line {})", e.classify(), e.line()), None))?;
        let resources: Vec<String> = match v.get("resourceType").and_then(|t| t.as_str()) {
            Some("Bundle") => v
                .get("entry")
                .and_then(|e| e.as_array())
                .map(|entries| entries.iter().filter_map(|e| e.get("resource")).map(|r| r.to_string()).collect())
                .unwrap_or_default(),
            Some(_) => vec![v.to_string()],
            None => return Err(AdapterError::invalid(format!("event from `{source}` is not a FHIR resource (no resourceType)"), None)),
        };
        ehrgate_sdk::fhir::passthrough(resources)
    }
}

ehrgate_sdk::export_adapter!(Reference);
