//! The per-call store data and the contract's imports as seen from the host.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::ehrgate::adapter::{config, http, log, state, types};
use crate::limits::MemoryLimiter;
use crate::loaded::Shared;
use crate::services::AuditEvent;
use crate::stdio::Captured;

/// Everything one call's store holds. Dropped with the store when the call ends.
pub(crate) struct CallState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub shared: Arc<Shared>,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for CallState {}

const MAX_STATE_KEY: usize = 256;
const MAX_STATE_VALUE: usize = 64 << 10;

use crate::services::now_ms;

impl http::Host for CallState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let shared = self.shared.clone();
        let path_only = req.path.split(['?', '#']).next().unwrap_or("").to_string();
        let audit = |outcome: String| {
            shared.services.audit.record(AuditEvent {
                at_ms: now_ms(),
                actor: format!("adapter:{}", shared.label),
                action: "http.send".into(),
                connection: req.connection.clone(),
                method: req.method.clone(),
                path: path_only.clone(),
                outcome,
            })
        };
        if let Err(why) = crate::grants::validate_request(&req.method, &req.path, &req.headers) {
            audit(format!("invalid: {why}"));
            return Err(http::HttpError::Invalid(why));
        }
        if let Err(why) = shared.settings.grants.check(&req.connection, &req.method, &req.path) {
            // The path can carry identifiers: it is in the audit table, not the log.
            tracing::warn!(adapter = %shared.label, connection = %req.connection, method = %req.method, "adapter request denied by its grants");
            audit(format!("denied: {why}"));
            return Err(http::HttpError::Denied(why));
        }
        audit("allowed".into());
        shared.services.outbound.send(&shared.name, req).await
    }
}

impl state::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.shared.services.state.get(&self.shared.name, &key))
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if key.len() > MAX_STATE_KEY {
            return Ok(Err(format!("state key longer than {MAX_STATE_KEY} bytes")));
        }
        if value.len() > MAX_STATE_VALUE {
            return Ok(Err(format!("state value longer than {MAX_STATE_VALUE} bytes")));
        }
        Ok(self.shared.services.state.set(&self.shared.name, &key, &value))
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.shared.services.state.delete(&self.shared.name, &key);
        Ok(())
    }
}

impl config::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.shared.settings.config.get(&key).cloned())
    }
}

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let adapter = self.shared.label.as_str();
        let message: String = message.chars().take(2000).collect();
        match level {
            log::Level::Trace => tracing::trace!(target: "ehrgate::adapter", adapter, "{message}"),
            log::Level::Debug => tracing::debug!(target: "ehrgate::adapter", adapter, "{message}"),
            log::Level::Info => tracing::info!(target: "ehrgate::adapter", adapter, "{message}"),
            log::Level::Warn => tracing::warn!(target: "ehrgate::adapter", adapter, "{message}"),
            log::Level::Error => tracing::error!(target: "ehrgate::adapter", adapter, "{message}"),
        }
        Ok(())
    }
    fn counter_add(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        self.shared.counters.add(&name, delta);
        Ok(())
    }
}
