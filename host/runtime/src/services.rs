//! What the host plugs into the sandbox: outbound EHR access, adapter state, audit.
//! The runtime checks grants and records audit events; the real outbound client
//! (auth, throttling, retries, breakers) lives in the `connect` crate and implements
//! [`Outbound`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::bindings::{HttpError, HttpRequest, HttpResponse};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends an adapter's (already granted) request to the named connection.
pub trait Outbound: Send + Sync {
    fn send<'a>(&'a self, adapter: &'a str, req: HttpRequest) -> BoxFuture<'a, Result<HttpResponse, HttpError>>;
}

/// The outbound used when no connections are configured: everything is unavailable.
pub struct NoOutbound;

impl Outbound for NoOutbound {
    fn send<'a>(&'a self, _adapter: &'a str, req: HttpRequest) -> BoxFuture<'a, Result<HttpResponse, HttpError>> {
        Box::pin(async move { Err(HttpError::Unavailable(format!("connection `{}` is not configured", req.connection))) })
    }
}

/// Small key-value state per adapter (by adapter name).
pub trait StateStore: Send + Sync {
    fn get(&self, adapter: &str, key: &str) -> Option<Vec<u8>>;
    fn set(&self, adapter: &str, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&self, adapter: &str, key: &str);
}

/// In-memory state (single process, not durable): the default until the lake provides
/// a durable store.
#[derive(Default)]
pub struct MemoryState {
    map: Mutex<HashMap<(String, String), Vec<u8>>>,
}

impl StateStore for MemoryState {
    fn get(&self, adapter: &str, key: &str) -> Option<Vec<u8>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&(adapter.to_string(), key.to_string())).cloned()
    }
    fn set(&self, adapter: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert((adapter.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }
    fn delete(&self, adapter: &str, key: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&(adapter.to_string(), key.to_string()));
    }
}

/// Milliseconds since the Unix epoch, the clock of [`AuditEvent::at_ms`].
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One audited access (by an adapter, an admin, an agent door client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at_ms: u64,
    /// `adapter:<name>@<version>`.
    pub actor: String,
    /// e.g. `http.send`.
    pub action: String,
    pub connection: String,
    pub method: String,
    /// The path without its query string (queries can carry identifiers).
    pub path: String,
    /// `allowed`, `denied: <reason>`, `invalid: <reason>`.
    pub outcome: String,
}

pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent);
}

/// Audit into the log (the default until the lake's audit table is wired in).
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, e: AuditEvent) {
        tracing::info!(target: "ehrgate::audit", actor = %e.actor, action = %e.action, connection = %e.connection,
            method = %e.method, path = %e.path, outcome = %e.outcome, "adapter access");
    }
}
