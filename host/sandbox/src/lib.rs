//! # ehrgate-sandbox
//!
//! A synthetic, fault-injecting EHR on 127.0.0.1 for demos and tests: FHIR R4 REST
//! (read, search by patient, create Task), a SMART Backend Services token endpoint
//! (clients registered by JWKS, or by secret for `client_secret_basic`), FHIR Bulk
//! `$export` (system, Group, Patient; GET or POST, with `deleted` files for `_since`
//! exports, and expiry), deterministic synthetic patients, deletions, fault
//! injection by header or rule, and vendor flavours. See README.md for the details.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ehrgate_sandbox::SandboxError> {
//! let sandbox = ehrgate_sandbox::serve(ehrgate_sandbox::SandboxOptions::default()).await?;
//! println!("FHIR base: {}", sandbox.base_url());
//! # Ok(()) }
//! ```

mod admin;
mod app;
mod auth;
mod bulk;
mod data;
mod faults;
mod fhir;
mod http;
pub mod scopes;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;

pub use app::{ClientRegistration, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Flavor, RequestLog, SandboxOptions, Stats};
pub use faults::{FAULT_HEADER, Fault, FaultRule, FaultSpec, RetryAfter};

use app::App;

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}: {source} (pick another --port, or 0 for any free port)")]
    Bind { port: u16, source: std::io::Error },
    #[error("invalid sandbox option: {0}")]
    Options(String),
    #[error("the sandbox server failed: {0}")]
    Serve(std::io::Error),
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts the sandbox on 127.0.0.1:`opts.port` (0: any free port) and returns at once.
pub async fn serve(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await.map_err(|source| SandboxError::Bind { port: opts.port, source })?;
    let addr = listener.local_addr().map_err(SandboxError::Serve)?;
    let app = Arc::new(App::new(opts, addr)?);
    let router = http::router(app.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
    });
    tracing::info!(%addr, "sandbox EHR listening");
    Ok(Sandbox { addr, app, stop: Some(stop), task: Some(task) })
}

/// The CLI entry: starts the sandbox, prints how to reach it, serves until Ctrl-C.
pub async fn run(opts: SandboxOptions) -> Result<(), SandboxError> {
    let sandbox = serve(opts).await?;
    println!("sandbox EHR: FHIR base {}", sandbox.base_url());
    println!("  token endpoint     {}", sandbox.token_url());
    println!("  patients           {} (seed {})", sandbox.app.opts.patients, sandbox.app.opts.seed);
    for c in &sandbox.app.opts.clients {
        if c.client_secret.is_some() {
            println!("  client             {} (client_secret_basic; secret in SandboxOptions / README)", c.client_id);
        }
    }
    println!("  admin              http://{}/_sandbox/stats (faults, clients, patients: see README)", sandbox.addr);
    println!("press Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    sandbox.stop().await
}

impl Sandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The FHIR base URL, e.g. `http://127.0.0.1:8090` (with `/<tenant>` for the Oracle flavour).
    pub fn base_url(&self) -> String {
        self.app.base_url()
    }
    pub fn token_url(&self) -> String {
        self.app.token_url()
    }
    /// What the sandbox has seen so far.
    pub fn stats(&self) -> Stats {
        self.app.stats()
    }
    /// Forgets the counters and the request log.
    pub fn reset_stats(&self) {
        self.app.reset_stats()
    }
    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), SandboxError> {
        self.app.faults.lock().unwrap_or_else(|p| p.into_inner()).add(rule).map_err(SandboxError::Options)
    }
    pub fn clear_faults(&self) {
        self.app.faults.lock().unwrap_or_else(|p| p.into_inner()).clear()
    }
    /// Registers (or replaces) a client.
    pub fn register_client(&self, client: ClientRegistration) -> Result<(), SandboxError> {
        self.app.register_client(client).map_err(SandboxError::Options)
    }
    /// Adds `n` patients with their records, newer than everything so far (for
    /// incremental `_since` exports). Returns their ids.
    pub fn add_patients(&self, n: usize) -> Vec<String> {
        self.app.add_patients(n)
    }
    /// Deletes `ty/id` (e.g. `"Observation"`, `"obs-0001-0-0"`), stamped *now* (strictly
    /// newer than anything before). Its read answers 410 from then on, and an export
    /// with `_since` before the deletion lists it under `deleted`. Deleting a Patient
    /// refreshes `Group/all`; its other resources stay. False when there is no such resource.
    pub fn delete(&self, ty: &str, id: &str) -> bool {
        self.app.delete(ty, id)
    }
    /// Resources per type as stored now (every served type, incl. Group; 0 when none).
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.app.counts()
    }
    /// Expires every export that exists now: its status URL answers 404 and its file
    /// URLs 410 Gone. Exports kicked off afterwards work normally.
    pub fn expire_exports(&self) {
        self.app.expire_exports()
    }
    /// Expires every token issued so far (the next request with one gets a 401).
    pub fn expire_tokens(&self) {
        self.app.expire_all_tokens()
    }
    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> Result<(), SandboxError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            match t.await {
                Ok(r) => r.map_err(SandboxError::Serve)?,
                Err(e) => return Err(SandboxError::Serve(std::io::Error::other(e.to_string()))),
            }
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
