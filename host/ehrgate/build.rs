//! Builds the built-in adapters (reference and the six vendor adapters) for
//! wasm32-wasip2 and embeds them, so that the binary works with no configuration
//! and no adapter files on disk.
//!
//! Set `EHRGATE_PREBUILT_ADAPTERS=/dir` to embed prebuilt components from a folder
//! (`ehrgate_adapter_<name>.wasm` for every built-in name).

use std::path::PathBuf;
use std::process::Command;

/// Built-in adapter names (crate `ehrgate-adapter-<name>`).
const BUILTIN: &[&str] = &["reference", "epic", "oracle-health", "meditech", "mirth", "rhapsody", "cloverleaf"];

fn file_name(name: &str) -> String {
    format!("ehrgate_adapter_{}.wasm", name.replace('-', "_"))
}

fn main() {
    println!("cargo:rerun-if-env-changed=EHRGATE_PREBUILT_ADAPTERS");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let built_dir = if let Ok(prebuilt) = std::env::var("EHRGATE_PREBUILT_ADAPTERS") {
        println!("cargo:rerun-if-changed={prebuilt}");
        PathBuf::from(prebuilt)
    } else {
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
        println!("cargo:rerun-if-changed={}", root.join("sdk/src").display());
        println!("cargo:rerun-if-changed={}", root.join("sdk/Cargo.toml").display());
        println!("cargo:rerun-if-changed={}", root.join("wit").display());
        for name in BUILTIN {
            println!("cargo:rerun-if-changed={}", root.join("adapters").join(name).join("src").display());
            println!("cargo:rerun-if-changed={}", root.join("adapters").join(name).join("Cargo.toml").display());
        }
        // A target dir of its own (the outer cargo holds the lock on the main one),
        // shared with the test kit's guest builds: <target>/ehrgate-guests. OUT_DIR is
        // <target>/<profile>/build/ehrgate-<hash>/out.
        let target = out.ancestors().nth(4).map(|t| t.join("ehrgate-guests")).unwrap_or_else(|| out.join("guest-target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root).args(["build", "--quiet", "--profile", "guest", "--target", "wasm32-wasip2"]);
        for name in BUILTIN {
            cmd.args(["-p", &format!("ehrgate-adapter-{name}")]);
        }
        cmd.arg("--target-dir").arg(&target);
        // Settings meant for the host build must not leak into the guest build.
        for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE"] {
            cmd.env_remove(var);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("CARGO_CFG_") || k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_PKG_") || k.starts_with("DEP_") {
                cmd.env_remove(k);
            }
        }
        let status = cmd.status().expect("run cargo for the built-in adapters");
        if !status.success() {
            panic!("building the built-in adapters for wasm32-wasip2 failed; is the target installed? run `rustup target add wasm32-wasip2`");
        }
        target.join("wasm32-wasip2/guest")
    };
    let mut table = String::from("/// Built-in adapter components: (name, wasm bytes).\npub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in BUILTIN {
        let src = built_dir.join(file_name(name));
        let dest = out.join(file_name(name));
        std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", dest.display().to_string()));
    }
    table.push_str("];\n");

    // The vendor adapters' own sample messages and site settings (their golden
    // fixtures), for the demo: (adapter, file name, bytes) and (adapter, JSON).
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    table.push_str("/// Vendor sample HL7v2 messages: (adapter, file, bytes).\npub const SAMPLES: &[(&str, &str, &[u8])] = &[\n");
    let mut configs = String::from("/// Vendor site settings for the samples: (adapter, JSON object).\npub const SITE_CONFIG: &[(&str, &str)] = &[\n");
    for name in BUILTIN.iter().filter(|n| **n != "reference") {
        let dir = root.join("adapters").join(name).join("tests/fixtures");
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            let path = f.canonicalize().unwrap().display().to_string();
            if file.ends_with(".hl7") {
                table.push_str(&format!("    ({name:?}, {file:?}, include_bytes!({path:?})),\n"));
            } else if file == "config.json" {
                configs.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
            }
        }
    }
    table.push_str("];\n");
    configs.push_str("];\n");
    table.push_str(&configs);
    std::fs::write(out.join("builtin.rs"), table).unwrap();
}
