//! Test support: the example site configuration in tests/fixtures/config.json.

#![allow(dead_code)]

use std::path::PathBuf;

use ehrgate_sdk::testing::TestHost;

pub fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(sub)
}

pub fn host(extra: &[(&str, &str)]) -> TestHost {
    TestHost::with_config_file(&dir("fixtures/config.json"), extra)
}

/// The shared HL7v2 samples of the standard message types (for engine adapters, which
/// forward whatever the upstream system sends).
pub fn shared_standard_samples() -> Vec<PathBuf> {
    {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        ehrgate_sdk::testing::standard_samples(&root.join("../shared"), &root)
    }
}
