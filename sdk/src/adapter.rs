//! The adapter trait and the plain Rust types an adapter works with.
//!
//! These mirror the WIT contract (`wit/v0.1.0/adapter.wit`) but are ordinary Rust
//! types, so that an adapter's logic runs and is tested natively, without wasm.

/// One HL7v2 message as the gateway received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Input {
    /// The message text (CR, LF or CRLF terminators; a BOM may be present).
    pub raw: String,
    /// Where it came from, e.g. `mllp:2575`.
    pub source: String,
    /// When the gateway durably received it, ms since the Unix epoch.
    pub received_at_ms: u64,
}

impl Hl7Input {
    pub fn new(raw: impl Into<String>) -> Self {
        Hl7Input { raw: raw.into(), source: String::new(), received_at_ms: 0 }
    }
}

/// What a mapping produced: canonical FHIR R4 resources as JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub resources: Vec<String>,
    pub warnings: Vec<String>,
}

impl Output {
    /// Serialise and add a resource.
    pub fn push(&mut self, resource: &serde_json::Value) {
        self.resources.push(resource.to_string());
    }
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }
}

/// Why a call failed; the variant decides what the gateway does (see the WIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterError {
    /// Malformed input: quarantined, HL7 AE. `location` is an HL7 path (`PID-3`) or a
    /// JSON pointer.
    InvalidInput { message: String, location: Option<String> },
    /// Not handled by this adapter.
    Unsupported(String),
    /// Temporary upstream problem; the gateway retries.
    Transient(String),
}

impl AdapterError {
    pub fn invalid(message: impl Into<String>, location: Option<&str>) -> Self {
        AdapterError::InvalidInput { message: message.into(), location: location.map(str::to_owned) }
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        AdapterError::Unsupported(message.into())
    }
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterError::InvalidInput { message, location: Some(l) } => write!(f, "invalid input at {l}: {message}"),
            AdapterError::InvalidInput { message, location: None } => write!(f, "invalid input: {message}"),
            AdapterError::Unsupported(m) => write!(f, "unsupported: {m}"),
            AdapterError::Transient(m) => write!(f, "transient: {m}"),
        }
    }
}

impl std::error::Error for AdapterError {}

impl From<crate::hl7::ParseError> for AdapterError {
    fn from(e: crate::hl7::ParseError) -> Self {
        AdapterError::InvalidInput { message: e.message, location: e.location }
    }
}

/// A connection the adapter needs (see `connection-need` in the WIT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionNeed {
    pub name: String,
    pub scopes: Vec<String>,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
}

/// What the adapter is and handles (see `adapter-info` in the WIT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterInfo {
    pub name: String,
    pub vendor: String,
    pub version: String,
    /// Filled in by the SDK: the contract version it was built against.
    pub contract_version: String,
    pub hl7_message_types: Vec<String>,
    pub fhir_resource_types: Vec<String>,
    pub event_sources: Vec<String>,
    pub actions: Vec<String>,
    pub connections: Vec<ConnectionNeed>,
}

/// An adapter: implement this on a unit type and export it with
/// [`export_adapter!`](crate::export_adapter).
///
/// Every method but `describe` has a default: `map_hl7` runs the SDK's standard
/// HL7v2-to-FHIR mapping, `map_fhir` passes resources through after checking them,
/// the others answer `Unsupported`. A vendor adapter overrides only what differs.
pub trait Adapter {
    fn describe() -> AdapterInfo;

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
        crate::v2fhir::map_message(&crate::v2fhir::Standard, msg)
    }

    fn map_fhir(batch: Vec<String>) -> Result<Output, AdapterError> {
        crate::fhir::passthrough(batch)
    }

    fn handle_event(source: &str, _body: &[u8]) -> Result<Output, AdapterError> {
        Err(AdapterError::Unsupported(format!("no events handled (source `{source}`)")))
    }

    fn run_action(name: &str, _input: &str) -> Result<String, AdapterError> {
        Err(AdapterError::Unsupported(format!("no action named `{name}`")))
    }
}
