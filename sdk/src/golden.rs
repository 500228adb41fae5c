//! Golden files for inputs [`testing::map_file`](crate::testing::map_file) does not read
//! itself (engine XML, length-prefixed batch files, event bodies): the test supplies
//! the mapping, the format is the same (`<golden_dir>/<input name>.ndjson`, one
//! resource per line, keys sorted; `.error` for a failure). `EHRGATE_UPDATE_GOLDEN=1`
//! writes them.

use std::path::{Path, PathBuf};

use crate::adapter::{AdapterError, Output};

/// Compare `map(input bytes)` with the golden file of every input; panics listing
/// every mismatch.
pub fn check_golden_with(inputs: &[PathBuf], golden_dir: &Path, mut map: impl FnMut(&Path, &[u8]) -> Result<Output, AdapterError>) {
    assert!(!inputs.is_empty(), "no fixture inputs given");
    let update = std::env::var("EHRGATE_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(golden_dir).expect("create golden folder");
    }
    let mut problems = Vec::new();
    for input in inputs {
        let name = input.file_name().expect("file name").to_string_lossy().to_string();
        let bytes = std::fs::read(input).unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
        let (golden, actual) = match map(input, &bytes) {
            Ok(o) => (golden_dir.join(format!("{name}.ndjson")), o.resources.iter().map(|r| format!("{}\n", canonical(r))).collect::<String>()),
            Err(e) => (golden_dir.join(format!("{name}.error")), format!("{e}\n")),
        };
        if update {
            std::fs::write(&golden, &actual).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Err(_) => problems.push(format!("{name}: no golden file {} (run with EHRGATE_UPDATE_GOLDEN=1)", golden.display())),
            Ok(expected) if expected != actual => {
                let line = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).map_or(0, |i| i + 1);
                problems.push(format!("{name}: differs from {} (first differing line {line})", golden.display()));
            }
            Ok(_) => {}
        }
    }
    assert!(problems.is_empty(), "golden mismatches:\n{}", problems.join("\n"));
}

/// JSON text with keys sorted (as serde_json's ordered map writes it).
pub fn canonical(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json).map(|v| v.to_string()).unwrap_or_else(|_| json.to_string())
}
