//! The reference adapter, embedded at build time (see build.rs), and loading of
//! adapters named on the command line.

use std::path::Path;

use anyhow::Context;
use ehrgate_runtime::{Adapter, AdapterSettings, Runtime};

/// The reference adapter component, compiled for wasm32-wasip2.
pub const REFERENCE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reference.wasm"));

/// Load `reference` (built in) or a component file.
pub async fn load(runtime: &Runtime, component: &str, settings: AdapterSettings) -> anyhow::Result<Adapter> {
    if component == "reference" {
        return Ok(runtime.load("reference (built in)", REFERENCE_WASM, settings).await?);
    }
    let path = Path::new(component);
    if !path.exists() {
        anyhow::bail!("adapter component `{component}` does not exist (give a .wasm file, or `reference` for the built-in adapter)");
    }
    Ok(runtime.load_file(path, settings).await.with_context(|| format!("loading adapter {component}"))?)
}
