//! A loaded adapter: compiled once, instantiated fresh for every call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::types::{AdapterError, AdapterInfo, Hl7Message, Output};
use crate::bindings::{Adapter as AdapterWorld, AdapterPre};
use crate::contract::ContractVersion;
use crate::engine::{Runtime, Services};
use crate::error::{CallError, Limit, LoadError};
use crate::grants::Grants;
use crate::imports::CallState;
use crate::limits::{Limits, MemoryLimitHit, MemoryLimiter};
use crate::stdio::Captured;

/// What the operator configured for one adapter.
#[derive(Debug, Clone, Default)]
pub struct AdapterSettings {
    /// The name the operator configured this adapter under. When set, the
    /// component's own `describe().name` must match it: state, audit and logs are
    /// keyed by this name, so a component cannot pass itself off as another adapter.
    pub name: Option<String>,
    pub grants: Grants,
    pub config: HashMap<String, String>,
    pub limits: Limits,
}

/// Named counters an adapter increments through `log.counter-add`.
#[derive(Default)]
pub(crate) struct Counters(Mutex<HashMap<String, u64>>);

const MAX_COUNTERS: usize = 256;

impl Counters {
    pub fn add(&self, name: &str, delta: u64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = m.get_mut(name) {
            *v = v.saturating_add(delta);
        } else if m.len() < MAX_COUNTERS && name.len() <= 64 {
            m.insert(name.to_string(), delta);
        }
    }
}

/// Shared by every call of one adapter.
pub(crate) struct Shared {
    pub name: String,
    /// `name@version`, for logs, errors and audit.
    pub label: String,
    pub settings: AdapterSettings,
    pub services: Arc<Services>,
    pub counters: Counters,
}

/// A loaded adapter. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct Adapter {
    runtime: Runtime,
    pre: AdapterPre<CallState>,
    shared: Arc<Shared>,
    info: Arc<AdapterInfo>,
    contract: ContractVersion,
}

/// An input / output size budget check.
fn output_size(o: &Output) -> usize {
    o.resources.iter().map(|r| r.len()).sum::<usize>() + o.warnings.iter().map(|w| w.len()).sum::<usize>()
}

impl Adapter {
    pub(crate) async fn new(
        runtime: Runtime,
        what: &str,
        pre: InstancePre<CallState>,
        contract: ContractVersion,
        settings: AdapterSettings,
    ) -> Result<Adapter, LoadError> {
        let pre = AdapterPre::new(pre).map_err(|e| LoadError::Link { what: what.into(), message: format!("{e:#}") })?;
        let shared = Arc::new(Shared {
            name: what.to_string(),
            label: what.to_string(),
            settings,
            services: runtime.inner.services.clone(),
            counters: Counters::default(),
        });
        let mut adapter = Adapter {
            runtime,
            pre,
            shared,
            info: Arc::new(AdapterInfo {
                name: String::new(),
                vendor: String::new(),
                version: String::new(),
                contract_version: String::new(),
                hl7_message_types: vec![],
                fhir_resource_types: vec![],
                event_sources: vec![],
                actions: vec![],
                connections: vec![],
            }),
            contract,
        };
        let info = adapter.describe().await.map_err(|e| LoadError::Describe { what: what.into(), message: e.to_string() })?;
        if info.name.is_empty() || !info.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(LoadError::Describe {
                what: what.into(),
                message: "its name must be non-empty ASCII letters, digits, `-` or `_`".into(),
            });
        }
        if let Some(configured) = &adapter.shared.settings.name {
            if configured != &info.name {
                return Err(LoadError::Describe {
                    what: what.into(),
                    message: format!("the component says it is `{}`, but it is configured as `{configured}`", info.name),
                });
            }
        }
        if info.contract_version != adapter.contract.0.to_string() {
            tracing::warn!(adapter = %info.name, declared = %info.contract_version, exported = %adapter.contract,
                "adapter's describe() names a different contract version than its exports; trusting the exports");
        }
        let label = format!("{}@{}", info.name, info.version);
        adapter.shared = Arc::new(Shared {
            name: info.name.clone(),
            label,
            settings: adapter.shared.settings.clone(),
            services: adapter.shared.services.clone(),
            counters: Counters::default(),
        });
        adapter.info = Arc::new(info);
        Ok(adapter)
    }

    /// What the adapter said about itself at load time.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The supported contract version the component was matched to (its exported
    /// interface version is compatible with it).
    pub fn contract(&self) -> &ContractVersion {
        &self.contract
    }

    pub fn settings(&self) -> &AdapterSettings {
        &self.shared.settings
    }

    /// A snapshot of the adapter's counters.
    pub fn counters(&self) -> HashMap<String, u64> {
        self.shared.counters.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn new_store(&self) -> Store<CallState> {
        let limits = self.shared.settings.limits;
        let stdout = Captured::new(limits.stdio_bytes);
        let stderr = Captured::new(limits.stdio_bytes);
        // WASI with nothing in it: no preopens, env, args or network; empty stdin.
        // (The SDK's guest allocator relies on this: wasi-libc must have no WASI
        // result to free; see sdk/src/guest_alloc.rs, "Known limit".)
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let state = CallState {
            wasi,
            table: Default::default(),
            limiter: MemoryLimiter { max_bytes: limits.memory_bytes, hit: None },
            shared: self.shared.clone(),
            stdout,
            stderr,
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Guest code yields to the async runtime at every epoch tick, so a busy guest
        // never holds a worker thread, and the wall-time limit (a timeout around the
        // whole call in `run`) can cut it off wherever it is.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// Run `f` against a fresh instance with this adapter's limits.
    async fn run<R, F, Fut>(&self, function: &'static str, f: F) -> Result<R, CallError>
    where
        F: FnOnce(AdapterWorld, Store<CallState>) -> Fut,
        Fut: Future<Output = (Store<CallState>, wasmtime::Result<R>)>,
    {
        let _slot = self.runtime.inner.slots.clone().acquire_owned().await.expect("semaphore never closed");
        let mut store = self.new_store();
        let wall = self.shared.settings.limits.wall_time;
        let call = async move {
            match self.pre.instantiate_async(&mut store).await {
                Ok(instance) => f(instance, store).await,
                Err(e) => (store, Err(e)),
            }
        };
        match tokio::time::timeout(wall, call).await {
            Ok((store, Ok(r))) => {
                store.data().stdout.flush_to_log(&self.shared.label, "stdout");
                store.data().stderr.flush_to_log(&self.shared.label, "stderr");
                Ok(r)
            }
            Ok((store, Err(e))) => {
                let err = self.classify(function, &store, e);
                store.data().stdout.flush_to_log(&self.shared.label, "stdout");
                store.data().stderr.flush_to_log(&self.shared.label, "stderr");
                Err(err)
            }
            // The future (and with it the store and instance) was dropped: the call
            // is abandoned; a host import may have been waiting.
            Err(_) => Err(CallError::Limit {
                adapter: self.shared.label.clone(),
                function,
                limit: Limit::Time,
                detail: format!("{} ms", wall.as_millis()),
            }),
        }
    }

    fn classify(&self, function: &'static str, store: &Store<CallState>, e: wasmtime::Error) -> CallError {
        let adapter = self.shared.label.clone();
        let limits = self.shared.settings.limits;
        if let Some(desired) = store.data().limiter.hit {
            // A refused grow traps with `MemoryLimitHit`.
            debug_assert!(e.downcast_ref::<MemoryLimitHit>().is_some(), "{e:#}");
            return CallError::Limit {
                adapter,
                function,
                limit: Limit::Memory,
                detail: format!("{} MiB, asked to grow to {} MiB", limits.memory_bytes >> 20, desired >> 20),
            };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return CallError::Limit { adapter, function, limit: Limit::Time, detail: format!("{} ms", limits.wall_time.as_millis()) };
        }
        if let Some(trap) = e.downcast_ref::<Trap>() {
            let mut message = trap.to_string();
            if let Some(line) = store.data().stderr.summary() {
                message = format!("{message}; adapter said: {line}");
            }
            return CallError::Trap { adapter, function, message };
        }
        let message = format!("{e:#}");
        if message.contains("concurrent") || message.contains("maximum") || message.contains("pool") {
            return CallError::Instantiate { adapter, function, message };
        }
        CallError::Trap { adapter, function, message }
    }

    fn check_output(&self, function: &'static str, size: usize) -> Result<(), CallError> {
        let max = self.shared.settings.limits.output_bytes;
        if size > max {
            return Err(CallError::Limit {
                adapter: self.shared.label.clone(),
                function,
                limit: Limit::OutputSize,
                detail: format!("{size} bytes produced, at most {max} allowed"),
            });
        }
        Ok(())
    }

    fn adapter_error(&self, function: &'static str, error: AdapterError) -> CallError {
        CallError::Adapter { adapter: self.shared.label.clone(), function, error }
    }

    /// Create a fresh instance and drop it (for benchmarks: the per-call cost of the
    /// sandbox without any guest code).
    #[doc(hidden)]
    pub async fn instantiate_only(&self) -> Result<(), CallError> {
        self.run("instantiate", |_inst, store| async move { (store, Ok(())) }).await
    }

    /// `describe()` in a fresh instance.
    pub async fn describe(&self) -> Result<AdapterInfo, CallError> {
        self.run("describe", |inst, mut store| async move {
            let r = inst.ehrgate_adapter_guest().call_describe(&mut store).await;
            (store, r)
        })
        .await
    }

    /// Map one HL7v2 message.
    pub async fn map_hl7(&self, msg: &Hl7Message) -> Result<Output, CallError> {
        let f = "map-hl7";
        let out = self
            .run(f, |inst, mut store| async move {
                let r = inst.ehrgate_adapter_guest().call_map_hl7(&mut store, msg).await;
                (store, r)
            })
            .await?
            .map_err(|e| self.adapter_error(f, e))?;
        self.check_output(f, output_size(&out))?;
        Ok(out)
    }

    /// Map many messages in one instance. The outer error fails the whole batch (a
    /// trap or a limit); inner results are per message.
    pub async fn map_hl7_batch(&self, msgs: &[Hl7Message]) -> Result<Vec<Result<Output, CallError>>, CallError> {
        let f = "map-hl7-batch";
        let results = self
            .run(f, |inst, mut store| async move {
                let r = inst.ehrgate_adapter_guest().call_map_hl7_batch(&mut store, msgs).await;
                (store, r)
            })
            .await?;
        if results.len() != msgs.len() {
            return Err(CallError::Trap {
                adapter: self.shared.label.clone(),
                function: f,
                message: format!("returned {} results for {} messages", results.len(), msgs.len()),
            });
        }
        let total: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(output_size).sum();
        self.check_output(f, total)?;
        Ok(results.into_iter().map(|r| r.map_err(|e| self.adapter_error(f, e))).collect())
    }

    /// Map a batch of vendor FHIR resources (JSON text).
    pub async fn map_fhir(&self, batch: &[String]) -> Result<Output, CallError> {
        let f = "map-fhir";
        let out = self
            .run(f, |inst, mut store| async move {
                let r = inst.ehrgate_adapter_guest().call_map_fhir(&mut store, batch).await;
                (store, r)
            })
            .await?
            .map_err(|e| self.adapter_error(f, e))?;
        self.check_output(f, output_size(&out))?;
        Ok(out)
    }

    /// Map a vendor event from a named source.
    pub async fn handle_event(&self, source: &str, body: &[u8]) -> Result<Output, CallError> {
        let f = "handle-event";
        let out = self
            .run(f, |inst, mut store| async move {
                let r = inst.ehrgate_adapter_guest().call_handle_event(&mut store, source, body).await;
                (store, r)
            })
            .await?
            .map_err(|e| self.adapter_error(f, e))?;
        self.check_output(f, output_size(&out))?;
        Ok(out)
    }

    /// Run a named action with a JSON input.
    pub async fn run_action(&self, name: &str, input: &str) -> Result<String, CallError> {
        let f = "run-action";
        let out = self
            .run(f, |inst, mut store| async move {
                let r = inst.ehrgate_adapter_guest().call_run_action(&mut store, name, input).await;
                (store, r)
            })
            .await?
            .map_err(|e| self.adapter_error(f, e))?;
        self.check_output(f, out.len())?;
        Ok(out)
    }
}
