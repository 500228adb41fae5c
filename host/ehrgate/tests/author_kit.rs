//! docs/adapters.md, run: every `sh` block of the guide, in order, in one bash
//! script, with the `ehrgate` binary under test first on the PATH. A new adapter
//! crate is created, tested, built for wasm32-wasip2, checked, signed, installed
//! into a running gateway, sent a message over MLLP, replaced by a second version
//! through the watched directory (shadow, canary, activate) and rolled back.

use std::path::PathBuf;
use std::process::Command;

fn guide_script() -> String {
    let doc = std::fs::read_to_string(ehrgate_testkit::repo_root().join("docs/adapters.md")).unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut in_sh = false;
    for line in doc.lines() {
        if in_sh {
            if line.trim_start().starts_with("```") {
                in_sh = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim() == "```sh" {
            in_sh = true;
        }
    }
    script
}

#[test]
fn the_adapter_guide_runs_from_new_to_a_hot_loaded_signed_adapter() {
    let script = guide_script();
    assert!(script.contains("ehrgate adapter new") && script.contains("ehrgate adapter install"), "the guide's steps were found");
    let dir = std::env::temp_dir().join(format!("ehrgate-author-kit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ehrgate"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("timeout")
        .args(["900", "bash", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        // The new crate's build gets a target directory of its own (kept between
        // runs; the outer cargo may hold the main one).
        .env("CARGO_TARGET_DIR", ehrgate_testkit::target_dir().join("ehrgate-author-kit"))
        .env_remove("EHRGATE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    assert!(out.status.success(), "the guide failed ({}):\n{stdout}\n{stderr}\ngateway.log:\n{log}", out.status);
    assert!(stdout.contains("5 checks passed, 0 failed (acme-ehr@0.1.0)"), "adapter check passed:\n{stdout}");
    assert!(stdout.contains("MSA|AA|ACME0001") && stdout.contains("MSA|AA|ACME0002"), "both messages acknowledged AA:\n{stdout}");
    assert!(stdout.contains("acme-ehr@0.1.0") && stdout.contains("acme-ehr@0.2.0"), "silver shows the version that mapped each:\n{stdout}");
    assert!(std::fs::read_dir(dir.join("adapter-drop/installed")).unwrap().count() == 1, "the dropped package was installed");
    let _ = std::fs::remove_dir_all(&dir);
}
