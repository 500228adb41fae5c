//! Shared test support: each adapter's example site configuration and fixtures.

#![allow(dead_code)]

use std::path::PathBuf;

use ehrgate_sdk::testing::TestHost;

pub fn adapter_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

pub fn fixture(adapter: &str, file: &str) -> Vec<u8> {
    std::fs::read(adapter_dir(adapter).join("tests/fixtures").join(file)).unwrap_or_else(|e| panic!("{adapter}/{file}: {e}"))
}

/// A host configured like `adapters/<adapter>/tests/fixtures/config.json`, plus `extra`.
pub fn host(adapter: &str, extra: &[(&str, &str)]) -> TestHost {
    let cfg: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture(adapter, "config.json")).expect("config.json is a JSON object");
    let mut h = TestHost::default();
    for (k, v) in cfg {
        h.config.insert(k, v.as_str().expect("string values").to_owned());
    }
    for (k, v) in extra {
        h.config.insert(k.to_string(), v.to_string());
    }
    h
}
