//! Connection settings, as they appear in `ehrgate.toml`:
//!
//! ```toml
//! [[connections]]
//! name = "epic"
//! base_url = "https://fhir.example.org/api/FHIR/R4"
//! auth = { kind = "smart_backend", client_id = "abc", private_key = "file:/etc/ehrgate/epic.pem",
//!          alg = "RS384", kid = "key-1", scopes = ["system/*.read"] }
//! rate = { per_second = 10, burst = 20 }
//! max_concurrency = 8
//! retry = { max_attempts = 4, base_ms = 200, cap_ms = 10000 }
//! breaker = { failure_threshold = 5, open_ms = 30000 }
//! timeout_ms = 30000
//! ```

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// One named upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The name adapters pass to `http.send`.
    pub name: String,
    /// FHIR base URL; request paths are appended to it.
    pub base_url: String,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rate: RateConfig,
    /// Requests in flight at once on this connection.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Per attempt, including reading the body.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Let the connection's host names resolve to loopback, link-local or cloud
    /// metadata addresses (refused by default: see `egress`). Addresses written in
    /// base_url / token_url are allowed without it.
    #[serde(default)]
    pub allow_internal: bool,
}

fn default_concurrency() -> u32 {
    8
}
fn default_timeout() -> u64 {
    30_000
}

impl ConnectionConfig {
    /// A connection with defaults and no auth.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ConnectionConfig {
            name: name.into(),
            base_url: base_url.into(),
            auth: AuthConfig::None,
            rate: RateConfig::default(),
            max_concurrency: default_concurrency(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            timeout_ms: default_timeout(),
            allow_internal: false,
        }
    }
}

/// How the gateway authenticates to the upstream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    /// SMART Backend Services: `private_key_jwt` client assertion.
    SmartBackend {
        client_id: String,
        /// PEM private key (PKCS#8; PKCS#1 also accepted for RSA) by reference.
        private_key: SecretRef,
        alg: SigningAlg,
        /// Key id, as in the JWKS registered with the EHR.
        kid: String,
        /// Discovered from `{base_url}/.well-known/smart-configuration` when absent.
        #[serde(default)]
        token_url: Option<String>,
        /// Scopes this connection allows; a token asks for the intersection with what
        /// the caller declares.
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// OAuth2 client_credentials with `client_secret_basic`.
    ClientCredentials {
        client_id: String,
        client_secret: SecretRef,
        token_url: String,
        #[serde(default)]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    RS384,
    ES384,
}

/// Token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig { per_second: 20, burst: 20 }
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in
/// `[0, min(cap_ms, base_ms * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 4, base_ms: 200, cap_ms: 10_000 }
    }
}

/// Opens after `failure_threshold` consecutive failures; after `open_ms` one probe
/// is let through (half-open) and its outcome closes or re-opens the circuit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, open_ms: 30_000 }
    }
}
