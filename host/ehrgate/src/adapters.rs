//! Adapters: the built-in components (embedded at build time, see build.rs), loading
//! by name or file, and the runtime with the configured connections as its outbound.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ehrgate_connect::Connections;
use ehrgate_runtime::{Adapter, AdapterSettings, AuditSink, Runtime, RuntimeConfig};

use crate::config::Config;

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// A built-in adapter's component by name (`reference`, `epic`, ...).
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Load a built-in adapter by name, or a component file.
pub async fn load(runtime: &Runtime, component: &str, settings: AdapterSettings) -> anyhow::Result<Adapter> {
    if let Some(bytes) = builtin(component) {
        return Ok(runtime.load(&format!("{component} (built in)"), bytes, settings).await?);
    }
    let path = Path::new(component);
    if !path.exists() {
        let names: Vec<&str> = builtin_names().collect();
        anyhow::bail!("adapter component `{component}` does not exist (give a .wasm file, or a built-in adapter: {})", names.join(", "));
    }
    Ok(runtime.load_file(path, settings).await.with_context(|| format!("loading adapter {component}"))?)
}

/// The runtime, its outbound being the configured connections.
pub fn runtime(cfg: &Config, audit: Arc<dyn AuditSink>) -> anyhow::Result<(Runtime, Arc<Connections>)> {
    let connections = Arc::new(Connections::new(&cfg.connections).context("connections")?);
    let runtime = Runtime::new(RuntimeConfig { audit, outbound: connections.clone(), compile_cache: cfg.adapter_store.compile_cache(), ..Default::default() })
        .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    Ok((runtime, connections))
}

/// Load the adapter `name` as configured (`[adapters.<name>]`: component, config,
/// grants), or a built-in one by that name with no grants; its declared scopes are
/// recorded on the connections.
pub async fn load_named(runtime: &Runtime, connections: &Connections, cfg: &Config, name: &str, extra_config: HashMap<String, String>) -> anyhow::Result<Adapter> {
    let (component, mut settings) = match cfg.adapters.get(name) {
        Some(e) => {
            let Some(component) = e.component.clone() else {
                anyhow::bail!("adapter `{name}` has no component in the configuration: its versions come from the adapter store, which `ehrgate serve` serves; give a component (a .wasm file) to use it here")
            };
            (component, settings_of(e))
        }
        None => (name.to_string(), AdapterSettings::default()),
    };
    settings.config.extend(extra_config);
    let adapter = load(runtime, &component, settings).await.with_context(|| format!("adapter `{name}`"))?;
    connections.declare(&adapter.info().name, &adapter.info().connections);
    Ok(adapter)
}

fn settings_of(e: &crate::config::AdapterEntry) -> AdapterSettings {
    AdapterSettings { config: e.config.clone(), grants: e.grants.clone(), ..Default::default() }
}

/// The adapter lifecycle manager for `ehrgate serve`: the store, the trust store,
/// and every name's configured (or built-in) version as its baseline.
pub fn manager(cfg: &Config, runtime: &Runtime, registry: Arc<ehrgate_runtime::Registry>, audit: Arc<dyn AuditSink>) -> anyhow::Result<ehrgate_lifecycle::Manager> {
    use ehrgate_lifecycle::{Baseline, ManagerConfig};
    let mut baselines: HashMap<String, Baseline> = builtin_names()
        .map(|n| (n.to_string(), Baseline { origin: "built-in".into(), bytes: Arc::from(builtin(n).expect("listed")) }))
        .collect();
    let mut settings = HashMap::new();
    for (name, e) in &cfg.adapters {
        settings.insert(name.clone(), settings_of(e));
        match &e.component {
            None => {
                baselines.remove(name);
            }
            Some(c) => {
                let b = match builtin(c) {
                    Some(bytes) => Baseline { origin: "built-in".into(), bytes: Arc::from(bytes) },
                    None => {
                        let bytes = std::fs::read(c).with_context(|| format!("adapter `{name}`: cannot read component {c}"))?;
                        Baseline { origin: c.clone(), bytes: Arc::from(bytes) }
                    }
                };
                baselines.insert(name.clone(), b);
            }
        }
    }
    let store = &cfg.adapter_store;
    let mc = ManagerConfig {
        store_dir: store.dir(&cfg.storage),
        trust: store.trust()?,
        max_component_bytes: store.max_component_mb.max(1) << 20,
        baselines,
        settings,
    };
    Ok(ehrgate_lifecycle::Manager::new(runtime.clone(), registry, audit, mc)?)
}

/// Adapter names configured with no component (store-only): a route may name
/// them before any version is installed.
pub fn store_only(cfg: &Config) -> Vec<String> {
    cfg.adapters.iter().filter(|(_, e)| e.component.is_none()).map(|(n, _)| n.clone()).collect()
}
