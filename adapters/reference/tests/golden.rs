//! Golden files: every ADT/ORU sample in ../shared/data/hl7 mapped natively by the
//! reference adapter must equal `tests/golden/<file>.ndjson` (or `.error`).
//! Regenerate after an intended change with `EHRGATE_UPDATE_GOLDEN=1` and review the diff.

use std::path::PathBuf;

use ehrgate_adapter_reference::Reference;
use ehrgate_sdk::testing;

fn inputs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/hl7");
    assert!(dir.is_dir(), "shared samples not found at {}", dir.display());
    testing::files_in(&dir, &["hl7"])
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            ["adt_a0", "adt_a1", "adt_a40", "oru_r01", "malformed_msh", "batch_bhs_two"].iter().any(|s| n.starts_with(s))
        })
        .collect()
}

#[test]
fn golden() {
    let inputs = inputs();
    assert!(inputs.len() >= 25, "expected the shared ADT/ORU samples, found {}", inputs.len());
    testing::check_golden::<Reference>(&inputs, &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
}
