//! The wasmtime engine shared by all adapters: pooling allocator, epoch ticker,
//! the linker with the contract's imports and an empty WASI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Adapter as AdapterWorld;
use crate::contract::{self, ContractVersion};
use crate::error::LoadError;
use crate::imports::CallState;
use crate::loaded::{Adapter, AdapterSettings};
use crate::services::{AuditSink, MemoryState, NoOutbound, Outbound, StateStore, TracingAudit};

/// How the runtime is set up.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once (the pool size); calls beyond it wait.
    pub max_instances: u32,
    /// The largest memory any adapter may be granted (per-adapter limits are lower).
    pub max_memory_bytes: usize,
    /// Epoch tick: how often guest code yields to the async runtime (and so how
    /// promptly a wall-time limit cuts a busy guest off).
    pub epoch_tick: Duration,
    pub outbound: Arc<dyn Outbound>,
    pub state: Arc<dyn StateStore>,
    pub audit: Arc<dyn AuditSink>,
    /// Where compiled adapters are kept, so that a component compiled once (by
    /// any process) is not compiled again: wasmtime's cache, keyed by a SHA-256 of
    /// the component and of the compiler and its settings. None: every load
    /// compiles. See [`compile_cache_dir`] for what makes a directory usable.
    pub compile_cache: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(5),
            outbound: Arc::new(NoOutbound),
            state: Arc::new(MemoryState::default()),
            audit: Arc::new(TracingAudit),
            compile_cache: None,
        }
    }
}

/// Whether `dir` may hold compiled adapters: what is loaded from there runs as
/// native code, outside the sandbox, so no one but this user (and root) may change
/// it, or any directory above it. Created (mode 0700) if missing. Returns its real
/// path (links resolved: the directory checked is the one used), or why not.
pub fn compile_cache_dir(dir: &Path) -> Result<PathBuf, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let real = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
        if meta.uid() != me {
            return Err(format!("{} belongs to user {}, not to this process's user {me}", real.display(), meta.uid()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!("{} is writable by others (mode {:o})", real.display(), meta.permissions().mode() & 0o777));
        }
        // Above it: root's or this user's, and writable by no one else unless
        // sticky (as /tmp is: there others cannot move what they do not own).
        for above in real.ancestors().skip(1) {
            let m = std::fs::metadata(above).map_err(|e| format!("{}: {e}", above.display()))?;
            let mode = m.permissions().mode();
            if m.uid() != 0 && m.uid() != me {
                return Err(format!("{} (above {}) belongs to user {}", above.display(), real.display(), m.uid()));
            }
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(format!("{} (above {}) is writable by others (mode {:o})", above.display(), real.display(), mode & 0o7777));
            }
        }
        Ok(real)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))
    }
}

/// The host services every adapter's imports delegate to.
pub(crate) struct Services {
    pub outbound: Arc<dyn Outbound>,
    pub state: Arc<dyn StateStore>,
    pub audit: Arc<dyn AuditSink>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    pub linker: Linker<CallState>,
    pub services: Arc<Services>,
    pub slots: Arc<tokio::sync::Semaphore>,
    pub cache: Option<Cache>,
}

/// The sandbox. Cheap to clone; safe to use from many tokio tasks at once.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, wasmtime::Error> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(cfg.max_instances)
            .total_core_instances(cfg.max_instances * 4)
            .total_memories(cfg.max_instances * 2)
            .total_tables(cfg.max_instances * 4)
            .total_stacks(cfg.max_instances)
            .max_memory_size(cfg.max_memory_bytes)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instance_size(1 << 20)
            .max_component_instance_size(1 << 20);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // Reserve 4 GiB of address space per memory (not memory: the limiter and
            // the pool's max_memory_size bound what is usable) so that compiled code
            // needs no explicit bounds checks; measured ~11% faster mapping.
            .memory_reservation(1 << 32)
            .max_wasm_stack(1 << 20);
        if std::env::var("EHRGATE_WASM_PERFMAP").is_ok_and(|v| v == "1") {
            // `perf record` then names the adapters' compiled functions
            // (/tmp/perf-<pid>.map): for profiling an adapter, not for production.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut cache = None;
        if let Some(dir) = &cfg.compile_cache {
            let made = compile_cache_dir(dir).and_then(|real| {
                let mut c = CacheConfig::new();
                c.with_directory(real);
                Cache::new(c).map_err(|e| format!("{e:#}"))
            });
            match made {
                Ok(c) => {
                    config.cache(Some(c.clone()));
                    cache = Some(c);
                }
                Err(why) => tracing::warn!("compiled adapters are not cached: {why}"),
            }
        }
        let engine = Engine::new(&config)?;

        let mut linker: Linker<CallState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        AdapterWorld::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(&mut linker, |s| s)?;

        spawn_epoch_ticker(&engine, cfg.epoch_tick);

        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                services: Arc::new(Services { outbound: cfg.outbound, state: cfg.state, audit: cfg.audit }),
                slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_instances as usize)),
                cache,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Components found compiled in the compile cache, and compiled (then kept
    /// there), since this runtime started; None without a cache.
    pub fn compile_cache_counts(&self) -> Option<(usize, usize)> {
        self.inner.cache.as_ref().map(|c| (c.cache_hits(), c.cache_misses()))
    }

    /// Load an adapter component from a file. See [`Runtime::load`].
    pub async fn load_file(&self, path: &std::path::Path, settings: AdapterSettings) -> Result<Adapter, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        self.load(&path.display().to_string(), &bytes, settings).await
    }

    /// Compile (off the async threads), check the contract version, link, and call
    /// `describe` once in a fresh instance. `what` names the component in errors.
    pub async fn load(&self, what: &str, bytes: &[u8], settings: AdapterSettings) -> Result<Adapter, LoadError> {
        let engine = self.inner.engine.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .map_err(|e| LoadError::Compile { what: what.into(), message: e.to_string() })?
            .map_err(|e| LoadError::Compile { what: what.into(), message: format!("{e:#}") })?;

        let version = contract::exported_version(&self.inner.engine, &component)
            .map_err(|message| LoadError::NotAnAdapter { what: what.into(), message })?;
        let supported: ContractVersion = version.supported().ok_or_else(|| LoadError::UnsupportedContract {
            what: what.into(),
            found: version.to_string(),
            supported: ContractVersion::supported_list(),
        })?;

        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link { what: what.into(), message: format!("{e:#}") })?;
        Adapter::new(self.clone(), what, pre, supported, settings).await
    }
}

/// Advance the engine's epoch every `tick` until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("ehrgate-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            }
        })
        .expect("spawn epoch ticker thread");
}
