//! Builds the reference adapter for wasm32-wasip2 and embeds it, so that the binary
//! works with no configuration and no adapter files on disk.
//!
//! Set `EHRGATE_REFERENCE_WASM=/path/to/component.wasm` to embed a prebuilt one.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EHRGATE_REFERENCE_WASM");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let dest = out.join("reference.wasm");
    if let Ok(prebuilt) = std::env::var("EHRGATE_REFERENCE_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| panic!("copy {prebuilt}: {e}"));
        return;
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    for dir in ["sdk/src", "sdk/Cargo.toml", "adapters/reference", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // A target dir of its own (the outer cargo holds the lock on the main one),
    // shared with the test kit's guest builds: <target>/ehrgate-guests. OUT_DIR is
    // <target>/<profile>/build/ehrgate-<hash>/out.
    let target = out.ancestors().nth(4).map(|t| t.join("ehrgate-guests")).unwrap_or_else(|| out.join("guest-target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--quiet", "--profile", "guest", "--target", "wasm32-wasip2", "-p", "ehrgate-adapter-reference"])
        .arg("--target-dir")
        .arg(&target);
    // Settings meant for the host build must not leak into the guest build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE"] {
        cmd.env_remove(var);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_CFG_") || k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_PKG_") || k.starts_with("DEP_") {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().expect("run cargo for the reference adapter");
    if !status.success() {
        panic!(
            "building the reference adapter for wasm32-wasip2 failed; is the target installed? run `rustup target add wasm32-wasip2`"
        );
    }
    let built = target.join("wasm32-wasip2/guest/ehrgate_adapter_reference.wasm");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
