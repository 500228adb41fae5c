//! # ehrgate-connect
//!
//! Outbound EHR access. A [`Connections`] holds the named upstreams from
//! configuration and implements the runtime's [`Outbound`]: the runtime has already
//! checked the adapter's grants and audited the attempt; here each request gets
//!
//! - a token (SMART Backend Services `private_key_jwt`, RS384/ES384 with `kid`; or
//!   OAuth2 client_credentials with `client_secret_basic`), cached and refreshed
//!   before expiry, for the intersection of the adapter's declared scopes and the
//!   connection's; a 401 refreshes it once and retries once;
//! - pacing: a token bucket (rate + burst), a cap on requests in flight, and a pause
//!   of the whole connection on 429/503 with `Retry-After` (seconds or HTTP-date);
//! - retries with capped exponential backoff and full jitter, for idempotent methods
//!   or requests with an idempotency key (sent as `Idempotency-Key`), on transport
//!   errors, timeouts, 408, 429 and 5xx;
//! - a circuit breaker that fails fast with `unavailable` while the upstream is down
//!   and lets one probe through to close again.
//!
//! Secrets are references (`env:NAME`, `file:/path`) and never appear in logs or
//! `Debug` output.

mod auth;
mod breaker;
mod config;
mod connection;
pub mod egress;
mod retry;
mod scopes;
mod secret;
mod throttle;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use ehrgate_runtime::{ConnectionNeed, HttpError, HttpRequest, HttpResponse, Outbound};

pub use breaker::BreakerState;
pub use config::{AuthConfig, BreakerConfig, ConnectionConfig, RateConfig, RetryConfig, SigningAlg};
pub use connection::{Connection, ConnectionStats, Download, IDEMPOTENCY_HEADER};
pub use retry::parse_retry_after;
pub use scopes::intersect as intersect_scopes;
pub use secret::{Secret, SecretRef};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors building connections from configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection config: {0}")]
    Config(String),
    #[error("secret: {0}")]
    Secret(String),
}

/// All configured connections, and the scopes each adapter declared for each.
#[derive(Debug, Default)]
pub struct Connections {
    by_name: HashMap<String, Arc<Connection>>,
    /// (adapter, connection) -> declared scopes.
    declared: RwLock<HashMap<(String, String), Vec<String>>>,
}

impl Connections {
    /// Builds every connection (reading their secrets once, now).
    pub fn new(configs: &[ConnectionConfig]) -> Result<Connections, ConnectError> {
        let mut by_name = HashMap::new();
        for c in configs {
            let conn = Connection::new(c)?;
            if by_name.insert(c.name.clone(), Arc::new(conn)).is_some() {
                return Err(ConnectError::Config(format!("connection `{}` is configured twice", c.name)));
            }
        }
        Ok(Connections { by_name, declared: RwLock::new(HashMap::new()) })
    }

    /// A connection by name, for host-side callers (the bulk orchestrator).
    pub fn get(&self, name: &str) -> Option<Arc<Connection>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Records the scopes `adapter` declares on each connection (from its `describe`).
    /// An adapter's token asks only for the intersection with the connection's scopes;
    /// an adapter that declared none gets `denied` on a connection with auth.
    pub fn declare(&self, adapter: &str, needs: &[ConnectionNeed]) {
        let mut d = self.declared.write().unwrap_or_else(|p| p.into_inner());
        d.retain(|(a, _), _| a != adapter);
        for n in needs {
            d.insert((adapter.to_string(), n.name.clone()), n.scopes.clone());
        }
    }

    /// Like [`declare`](Self::declare), for one connection.
    pub fn declare_scopes(&self, adapter: &str, connection: &str, scopes: Vec<String>) {
        self.declared.write().unwrap_or_else(|p| p.into_inner()).insert((adapter.to_string(), connection.to_string()), scopes);
    }

    fn declared_scopes(&self, adapter: &str, connection: &str) -> Vec<String> {
        self.declared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(adapter.to_string(), connection.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

impl Outbound for Connections {
    fn send<'a>(&'a self, adapter: &'a str, req: HttpRequest) -> BoxFuture<'a, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let Some(conn) = self.by_name.get(&req.connection) else {
                return Err(HttpError::Unavailable(format!("connection `{}` is not configured", req.connection)));
            };
            let scopes = self.declared_scopes(adapter, &req.connection);
            conn.send(req, &scopes).await
        })
    }
}
