//! Golden files: ER7 fixtures through `map-hl7`, batch files through `handle-event`
//! (`cloverleaf-file`), and the shared samples of the standard message types.
//! Regenerate with `EHRGATE_UPDATE_GOLDEN=1`.

mod common;

use common::{dir, host, shared_standard_samples};
use ehrgate_adapter_cloverleaf::Cloverleaf;
use ehrgate_sdk::golden::check_golden_with;
use ehrgate_sdk::testing::{self, with_host};
use ehrgate_sdk::{Adapter, AdapterError};

#[test]
fn golden_messages_and_files() {
    with_host(host(&[]), || {
        testing::check_golden::<Cloverleaf>(&testing::files_in(dir("fixtures"), &["hl7"]), &dir("golden"));
        check_golden_with(&testing::files_in(dir("fixtures"), &["dat"]), &dir("golden"), |_, b| Cloverleaf::handle_event("cloverleaf-file", b));
    });
}

#[test]
fn golden_shared_standard_samples() {
    testing::check_golden::<Cloverleaf>(&shared_standard_samples(), &dir("golden-shared"));
}

#[test]
fn len10_file_maps_like_its_messages_and_style_is_configurable() {
    let file = std::fs::read(dir("fixtures/cloverleaf_len10_admit_and_result.dat")).unwrap();
    let (out, _) = with_host(host(&[]), || Cloverleaf::handle_event("cloverleaf-file", &file).unwrap());
    let one = |f: &str| {
        let raw = std::fs::read_to_string(dir("fixtures").join(f)).unwrap();
        with_host(host(&[]), || Cloverleaf::map_hl7(&ehrgate_sdk::Hl7Input::new(raw)).unwrap()).0.resources
    };
    let mut expected = one("cloverleaf_adt_a01_admit.hl7");
    expected.extend(one("cloverleaf_oru_r01_potassium.hl7"));
    assert_eq!(out.resources, expected);
    // Forcing another style on a len10 file fails clearly.
    let (r, _) = with_host(host(&[("file.style", "len6")]), || Cloverleaf::handle_event("cloverleaf-file", &file));
    assert!(matches!(r, Err(AdapterError::InvalidInput { .. })), "{r:?}");
    let (r, _) = with_host(host(&[("file.style", "bogus")]), || Cloverleaf::handle_event("cloverleaf-file", &file));
    assert!(matches!(r, Err(AdapterError::Unsupported(_))), "{r:?}");
}
