//! The gateway's services, as seen from an adapter.
//!
//! Inside a component these call the contract's imports; in a native build (unit
//! tests, the [`testing`](crate::testing) harness) they call the [`NativeHost`] installed
//! for the current thread, so adapter logic runs unchanged in both.

/// An outbound request to a named EHR connection (see `http.request` in the WIT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub connection: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Denied(String),
    Unavailable(String),
    Timeout,
    Invalid(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "denied: {m}"),
            HttpError::Unavailable(m) => write!(f, "unavailable: {m}"),
            HttpError::Timeout => write!(f, "timeout"),
            HttpError::Invalid(m) => write!(f, "invalid request: {m}"),
        }
    }
}
impl std::error::Error for HttpError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The host services, implemented natively by test doubles.
pub trait NativeHost {
    fn http_send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError>;
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn state_set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn state_delete(&mut self, key: &str);
    fn config_get(&mut self, key: &str) -> Option<String>;
    fn log(&mut self, level: Level, message: &str);
    fn counter_add(&mut self, name: &str, delta: u64);
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::bindings::ehrgate::adapter::{config, http, log as wlog, state};

    pub fn http_send(req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let r = http::Request {
            connection: req.connection,
            method: req.method,
            path: req.path,
            headers: req.headers,
            body: req.body,
            idempotency_key: req.idempotency_key,
        };
        match http::send(&r) {
            Ok(resp) => Ok(HttpResponse { status: resp.status, headers: resp.headers, body: resp.body }),
            Err(http::HttpError::Denied(m)) => Err(HttpError::Denied(m)),
            Err(http::HttpError::Unavailable(m)) => Err(HttpError::Unavailable(m)),
            Err(http::HttpError::Timeout) => Err(HttpError::Timeout),
            Err(http::HttpError::Invalid(m)) => Err(HttpError::Invalid(m)),
        }
    }
    pub fn state_get(key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }
    pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        state::set(key, value)
    }
    pub fn state_delete(key: &str) {
        state::delete(key)
    }
    pub fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }
    pub fn log(level: Level, message: &str) {
        let l = match level {
            Level::Trace => wlog::Level::Trace,
            Level::Debug => wlog::Level::Debug,
            Level::Info => wlog::Level::Info,
            Level::Warn => wlog::Level::Warn,
            Level::Error => wlog::Level::Error,
        };
        wlog::log(l, message)
    }
    pub fn counter_add(name: &str, delta: u64) {
        wlog::counter_add(name, delta)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static HOST: RefCell<Option<Box<dyn NativeHost>>> = const { RefCell::new(None) };
    }

    /// Install `host` for the current thread, returning the previous one.
    pub fn install(host: Option<Box<dyn NativeHost>>) -> Option<Box<dyn NativeHost>> {
        HOST.with(|h| std::mem::replace(&mut *h.borrow_mut(), host))
    }

    fn with<R>(f: impl FnOnce(&mut dyn NativeHost) -> R, absent: impl FnOnce() -> R) -> R {
        HOST.with(|h| match h.borrow_mut().as_mut() {
            Some(host) => f(host.as_mut()),
            None => absent(),
        })
    }

    pub fn http_send(req: HttpRequest) -> Result<HttpResponse, HttpError> {
        with(
            |h| h.http_send(req),
            || Err(HttpError::Unavailable("no host installed (native build without a test host)".into())),
        )
    }
    pub fn state_get(key: &str) -> Option<Vec<u8>> {
        with(|h| h.state_get(key), || None)
    }
    pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        with(|h| h.state_set(key, value), || Err("no host installed".into()))
    }
    pub fn state_delete(key: &str) {
        with(|h| h.state_delete(key), || ())
    }
    pub fn config_get(key: &str) -> Option<String> {
        with(|h| h.config_get(key), || None)
    }
    pub fn log(level: Level, message: &str) {
        with(|h| h.log(level, message), || ())
    }
    pub fn counter_add(name: &str, delta: u64) {
        with(|h| h.counter_add(name, delta), || ())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use imp::install;

/// Send a request to a named connection; the host adds auth, throttling and retries.
pub fn http_send(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    imp::http_send(req)
}
/// Read adapter state.
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    imp::state_get(key)
}
/// Write adapter state.
pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
    imp::state_set(key, value)
}
/// Remove adapter state.
pub fn state_delete(key: &str) {
    imp::state_delete(key)
}
/// A configuration value set by the operator for this adapter.
pub fn config_get(key: &str) -> Option<String> {
    imp::config_get(key)
}
/// Emit a log line (no PHI).
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}
/// Add to a named counter.
pub fn counter_add(name: &str, delta: u64) {
    imp::counter_add(name, delta)
}
