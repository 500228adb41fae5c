//! The sandbox's options and shared state.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::bulk::Job;
use crate::data::Store;
use crate::faults::{FaultBook, FaultRule};
use crate::time::now_ms;

/// Which EHR the sandbox imitates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Flavor {
    /// Every feature at the root.
    #[default]
    Generic,
    /// Epic-like: only Group-level `$export` (system and Patient export are refused).
    Epic,
    /// Oracle Health-like: everything (FHIR, token, smart-configuration) under `/<tenant>`.
    Oracle { tenant: String },
}

/// A client the token endpoint knows.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientRegistration {
    pub client_id: String,
    /// A JWKS (`{"keys": [...]}`) for `private_key_jwt` (SMART Backend Services).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A secret for `client_secret_basic` (OAuth2 client_credentials).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes this client may get (the grant is the intersection with the request);
    /// absent: whatever it asks for.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("client_id", &self.client_id)
            .field("jwks", &self.jwks.as_ref().map(|_| "<jwks>"))
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The client `SandboxOptions::default()` registers for demos: `client_secret_basic`
/// with a well-known, sandbox-only secret.
pub const DEMO_CLIENT_ID: &str = "ehrgate-demo";
pub const DEMO_CLIENT_SECRET: &str = "sandbox-demo-secret";

/// How the sandbox behaves. Every field has a default that works on one machine.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Synthetic patients at start.
    pub patients: usize,
    /// Seed for the synthetic data (same seed, same data).
    pub seed: u64,
    pub flavor: Flavor,
    /// FHIR and bulk requests need a bearer token from the token endpoint.
    pub require_auth: bool,
    /// Lifetime of issued tokens.
    pub token_ttl_secs: u64,
    /// Status polls answered 202 before an export is complete.
    pub export_polls: u32,
    /// `Retry-After` on a 202 status poll.
    pub export_retry_after_secs: u64,
    /// Lines per NDJSON file before a type is split into several files.
    pub ndjson_lines_per_file: usize,
    /// Every export gets an error file holding one OperationOutcome for this many
    /// failed resources, with this number as the error entry's `count` (as SMART's
    /// reference server does; the file has one line).
    pub error_count: Option<u64>,
    pub clients: Vec<ClientRegistration>,
    /// Faults from the start (see README).
    pub faults: Vec<FaultRule>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            port: 0,
            patients: 10,
            seed: 1,
            flavor: Flavor::Generic,
            require_auth: true,
            token_ttl_secs: 300,
            export_polls: 2,
            export_retry_after_secs: 1,
            ndjson_lines_per_file: 1000,
            error_count: None,
            clients: vec![ClientRegistration {
                client_id: DEMO_CLIENT_ID.into(),
                jwks: None,
                client_secret: Some(DEMO_CLIENT_SECRET.into()),
                scopes: None,
            }],
            faults: vec![],
        }
    }
}

/// One request as the sandbox saw it (before faults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// Milliseconds since the sandbox started.
    pub at_ms: u64,
    pub method: String,
    /// Path relative to the FHIR base, without the query.
    pub path: String,
}

/// Counters for tests and the admin API.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub faults_applied: u64,
    /// Requests refused with 403 because the token's scopes do not cover them.
    pub scope_refusals: u64,
    pub by_route: BTreeMap<String, u64>,
    pub log: Vec<RequestLog>,
}

impl Stats {
    /// Requests seen for `METHOD /path` (path relative to the FHIR base, no query).
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.by_route.get(&format!("{method} {path}")).copied().unwrap_or(0)
    }
}

pub(crate) struct IssuedToken {
    pub client_id: String,
    /// Granted scopes (space separated), enforced per resource type (`scopes`).
    pub scope: String,
    pub expires_at_ms: u64,
}

pub(crate) struct App {
    pub opts: SandboxOptions,
    pub addr: SocketAddr,
    pub started: Instant,
    pub store: Mutex<Store>,
    pub clients: Mutex<HashMap<String, ClientRegistration>>,
    pub tokens: Mutex<HashMap<String, IssuedToken>>,
    /// Assertion `jti`s seen, with their expiry, to refuse replays.
    pub jtis: Mutex<HashMap<String, u64>>,
    pub jobs: Mutex<HashMap<String, Job>>,
    pub faults: Mutex<FaultBook>,
    pub stats: Mutex<Stats>,
    /// Idempotency-Key -> created `Task` id.
    pub idempotency: Mutex<HashMap<String, String>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub fn new(opts: SandboxOptions, addr: SocketAddr) -> Result<App, SandboxError> {
        let mut faults = FaultBook::default();
        for r in &opts.faults {
            faults.add(r.clone()).map_err(SandboxError::Options)?;
        }
        if let Flavor::Oracle { tenant } = &opts.flavor
            && (tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(SandboxError::Options(format!("tenant `{tenant}` must be letters, digits and `-`")));
        }
        let app = App {
            store: Mutex::new(Store::generate(opts.patients, opts.seed)),
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            jtis: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            faults: Mutex::new(faults),
            stats: Mutex::new(Stats::default()),
            idempotency: Mutex::new(HashMap::new()),
            started: Instant::now(),
            addr,
            opts,
        };
        for c in app.opts.clients.clone() {
            app.register_client(c).map_err(SandboxError::Options)?;
        }
        Ok(app)
    }

    /// `/<tenant>` for the Oracle flavour, else empty.
    pub fn prefix(&self) -> String {
        match &self.opts.flavor {
            Flavor::Oracle { tenant } => format!("/{tenant}"),
            _ => String::new(),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.prefix())
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn register_client(&self, c: ClientRegistration) -> Result<(), String> {
        if c.client_id.is_empty() {
            return Err("client_id is empty".into());
        }
        if let Some(jwks) = &c.jwks {
            serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.clone()).map_err(|e| format!("client `{}`: invalid JWKS: {e}", c.client_id))?;
        }
        if c.jwks.is_none() && c.client_secret.is_none() {
            return Err(format!("client `{}` needs a jwks or a client_secret", c.client_id));
        }
        lock(&self.clients).insert(c.client_id.clone(), c);
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub fn record_request(&self, method: &str, path: &str) {
        let mut s = lock(&self.stats);
        s.requests += 1;
        *s.by_route.entry(format!("{method} {path}")).or_default() += 1;
        let at_ms = self.started.elapsed().as_millis() as u64;
        s.log.push(RequestLog { at_ms, method: method.to_string(), path: path.to_string() });
        if s.log.len() > 10_000 {
            s.log.drain(..5_000);
        }
    }

    pub fn add_patients(&self, n: usize) -> Vec<String> {
        lock(&self.store).add_patients(n, now_ms())
    }

    pub fn delete(&self, ty: &str, id: &str) -> bool {
        lock(&self.store).delete(ty, id, now_ms())
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.store).counts()
    }

    pub fn expire_exports(&self) {
        crate::bulk::expire_all(&mut lock(&self.jobs));
    }

    pub fn expire_all_tokens(&self) {
        for t in lock(&self.tokens).values_mut() {
            t.expires_at_ms = 0;
        }
    }
}
