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
    let runtime = Runtime::new(RuntimeConfig { audit, outbound: connections.clone(), ..Default::default() })
        .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    Ok((runtime, connections))
}

/// Load the adapter `name` as configured (`[adapters.<name>]`: component, config,
/// grants), or a built-in one by that name with no grants; its declared scopes are
/// recorded on the connections.
pub async fn load_named(runtime: &Runtime, connections: &Connections, cfg: &Config, name: &str, extra_config: HashMap<String, String>) -> anyhow::Result<Adapter> {
    let (component, mut settings) = match cfg.adapters.get(name) {
        Some(e) => (e.component.clone(), AdapterSettings { config: e.config.clone(), grants: e.grants.clone(), ..Default::default() }),
        None => (name.to_string(), AdapterSettings::default()),
    };
    settings.config.extend(extra_config);
    let adapter = load(runtime, &component, settings).await.with_context(|| format!("adapter `{name}`"))?;
    connections.declare(&adapter.info().name, &adapter.info().connections);
    Ok(adapter)
}
