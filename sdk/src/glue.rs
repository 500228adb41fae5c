//! Conversions between the SDK's Rust types and the generated contract bindings.
//! Used by [`export_adapter!`](crate::export_adapter); not part of the public API.

use crate::adapter::{Adapter, AdapterError, Hl7Input, Output};
use crate::bindings::ehrgate::adapter::types as wit;

pub fn describe<A: Adapter>() -> wit::AdapterInfo {
    let i = A::describe();
    wit::AdapterInfo {
        name: i.name,
        vendor: i.vendor,
        version: i.version,
        contract_version: crate::CONTRACT_VERSION.to_string(),
        hl7_message_types: i.hl7_message_types,
        fhir_resource_types: i.fhir_resource_types,
        event_sources: i.event_sources,
        actions: i.actions,
        connections: i
            .connections
            .into_iter()
            .map(|c| wit::ConnectionNeed { name: c.name, scopes: c.scopes, methods: c.methods, paths: c.paths })
            .collect(),
    }
}

fn output(o: Output) -> wit::Output {
    wit::Output { resources: o.resources, warnings: o.warnings }
}

fn error(e: AdapterError) -> wit::AdapterError {
    match e {
        AdapterError::InvalidInput { message, location } => {
            wit::AdapterError::InvalidInput(wit::InputError { message, location })
        }
        AdapterError::Unsupported(m) => wit::AdapterError::Unsupported(m),
        AdapterError::Transient(m) => wit::AdapterError::Transient(m),
    }
}

fn input(m: wit::Hl7Message) -> Hl7Input {
    Hl7Input { raw: m.raw, source: m.source, received_at_ms: m.received_at_ms }
}

pub fn map_hl7<A: Adapter>(msg: wit::Hl7Message) -> Result<wit::Output, wit::AdapterError> {
    A::map_hl7(&input(msg)).map(output).map_err(error)
}

pub fn map_hl7_batch<A: Adapter>(msgs: Vec<wit::Hl7Message>) -> Vec<Result<wit::Output, wit::AdapterError>> {
    msgs.into_iter().map(|m| map_hl7::<A>(m)).collect()
}

pub fn map_fhir<A: Adapter>(batch: Vec<String>) -> Result<wit::Output, wit::AdapterError> {
    A::map_fhir(batch).map(output).map_err(error)
}

pub fn handle_event<A: Adapter>(source: String, body: Vec<u8>) -> Result<wit::Output, wit::AdapterError> {
    A::handle_event(&source, &body).map(output).map_err(error)
}

pub fn run_action<A: Adapter>(name: String, input: String) -> Result<String, wit::AdapterError> {
    A::run_action(&name, &input).map_err(error)
}
