//! Golden files: every sample of a message type the standard mapping claims (ADT,
//! ORU, ORM, OML^O21, SIU, MDM, DFT, VXU) in ../shared/data/hl7 mapped natively by the
//! reference adapter must equal `tests/golden/<file>.ndjson` (or `.error`).
//! Regenerate after an intended change with `EHRGATE_UPDATE_GOLDEN=1` and review the diff.

use std::path::PathBuf;

use ehrgate_adapter_reference::Reference;
use ehrgate_sdk::testing;

fn inputs() -> Vec<PathBuf> {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let mut v = testing::standard_samples(&shared, &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    // And the malformed headers and a batch: errors and batches have goldens too.
    v.extend(testing::files_in(&shared.join("data/hl7"), &["hl7"]).into_iter().filter(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        n.starts_with("malformed_msh") || n.starts_with("batch_bhs_two")
    }));
    v.sort();
    v
}

#[test]
fn golden() {
    let inputs = inputs();
    assert!(inputs.len() >= 40, "expected the shared ADT/ORU samples, found {}", inputs.len());
    testing::check_golden::<Reference>(&inputs, &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
}
