//! Typed errors: loading an adapter, and calling one.

use crate::bindings::types::AdapterError;

/// Which per-call limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Linear memory beyond the adapter's memory limit.
    Memory,
    /// Wall time beyond the adapter's time limit (epoch deadline or host timeout).
    Time,
    /// Output (resources + warnings, or an action's result) beyond the size limit.
    OutputSize,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Memory => "memory",
            Limit::Time => "wall-time",
            Limit::OutputSize => "output-size",
        })
    }
}

/// A call into an adapter failed. Only that call: the adapter stays loaded and the
/// next call gets a fresh instance.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The adapter ran and answered with a typed error (invalid input, unsupported,
    /// transient).
    #[error("adapter `{adapter}` {function}: {}", describe_adapter_error(.error))]
    Adapter { adapter: String, function: &'static str, error: AdapterError },
    /// A per-call limit was hit; the instance was discarded.
    #[error("adapter `{adapter}` {function}: exceeded its {limit} limit ({detail})")]
    Limit { adapter: String, function: &'static str, limit: Limit, detail: String },
    /// The adapter trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("adapter `{adapter}` {function}: trapped: {message}")]
    Trap { adapter: String, function: &'static str, message: String },
    /// A fresh instance could not be created.
    #[error("adapter `{adapter}` {function}: could not instantiate: {message}")]
    Instantiate { adapter: String, function: &'static str, message: String },
}

impl CallError {
    /// The limit hit, if this was a limit failure.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            CallError::Limit { limit, .. } => Some(*limit),
            _ => None,
        }
    }
    /// The adapter's own error, if it answered with one.
    pub fn adapter_error(&self) -> Option<&AdapterError> {
        match self {
            CallError::Adapter { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn describe_adapter_error(e: &AdapterError) -> String {
    match e {
        AdapterError::InvalidInput(i) => match &i.location {
            Some(l) => format!("invalid input at {l}: {}", i.message),
            None => format!("invalid input: {}", i.message),
        },
        AdapterError::Unsupported(m) => format!("unsupported: {m}"),
        AdapterError::Transient(m) => format!("transient: {m}"),
    }
}

/// An adapter could not be loaded. The gateway keeps whatever version it had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read adapter component {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("`{what}` is not a valid WebAssembly component: {message}")]
    Compile { what: String, message: String },
    #[error("`{what}` is not an ehrgate adapter: {message}")]
    NotAnAdapter { what: String, message: String },
    #[error(
        "`{what}` was built against contract {found}, which this gateway does not support (it supports {supported}); rebuild it with an ehrgate-sdk for a supported contract"
    )]
    UnsupportedContract { what: String, found: String, supported: String },
    #[error("`{what}` needs something this gateway does not provide: {message}")]
    Link { what: String, message: String },
    #[error("`{what}` failed its describe() check: {message}")]
    Describe { what: String, message: String },
}

/// An outbound request's failure as a sentence (the generated type's own Display
/// is its Debug form).
pub fn http_error_text(e: &crate::bindings::HttpError) -> String {
    use crate::bindings::HttpError;
    match e {
        HttpError::Denied(m) => format!("refused before sending: {m}"),
        HttpError::Unavailable(m) => format!("the server is unavailable: {m}"),
        HttpError::Timeout => "the request timed out".to_string(),
        HttpError::Invalid(m) => format!("invalid request: {m}"),
    }
}
