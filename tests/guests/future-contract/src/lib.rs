//! A component built against `ehrgate:adapter@0.9.0`, a contract version the host does
//! not support: loading it must fail with both versions named.

wit_bindgen::generate!({ path: "wit", world: "ehrgate:adapter/adapter@0.9.0" });

use exports::ehrgate::adapter::guest::Guest;
use ehrgate::adapter::types::{AdapterError, AdapterInfo, Hl7Message, Output};

struct Future;

impl Guest for Future {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "future".into(),
            vendor: "test".into(),
            version: "9.0.0".into(),
            contract_version: "0.9.0".into(),
            hl7_message_types: vec![],
            fhir_resource_types: vec![],
            event_sources: vec![],
            actions: vec![],
            connections: vec![],
        }
    }
    fn map_hl7(_msg: Hl7Message) -> Result<Output, AdapterError> {
        Err(AdapterError::Unsupported("nothing".into()))
    }
    fn map_hl7_batch(msgs: Vec<Hl7Message>) -> Vec<Result<Output, AdapterError>> {
        msgs.into_iter().map(Self::map_hl7).collect()
    }
    fn map_fhir(_batch: Vec<String>) -> Result<Output, AdapterError> {
        Err(AdapterError::Unsupported("nothing".into()))
    }
    fn handle_event(_source: String, _body: Vec<u8>) -> Result<Output, AdapterError> {
        Err(AdapterError::Unsupported("nothing".into()))
    }
    fn run_action(_name: String, _input: String) -> Result<String, AdapterError> {
        Err(AdapterError::Unsupported("nothing".into()))
    }
}

export!(Future);
