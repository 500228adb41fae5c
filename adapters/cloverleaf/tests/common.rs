//! Test support: the example site configuration in tests/fixtures/config.json.

#![allow(dead_code)]

use std::path::PathBuf;

use ehrgate_sdk::testing::TestHost;

pub fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(sub)
}

pub fn host(extra: &[(&str, &str)]) -> TestHost {
    let cfg: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir("fixtures/config.json")).unwrap()).unwrap();
    let mut h = TestHost::default();
    for (k, v) in cfg {
        h.config.insert(k, v.as_str().unwrap().to_owned());
    }
    for (k, v) in extra {
        h.config.insert(k.to_string(), v.to_string());
    }
    h
}

/// The shared HL7v2 samples of the standard message types (for engine adapters, which
/// forward whatever the upstream system sends).
pub fn shared_standard_samples() -> Vec<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/hl7");
    assert!(d.is_dir(), "shared samples not found at {}", d.display());
    ehrgate_sdk::testing::files_in(&d, &["hl7"])
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            ["adt_a0", "adt_a1", "adt_a40", "oru_r01", "vxu_v04", "rde_o11"].iter().any(|s| n.starts_with(s))
        })
        .collect()
}
