//! Native map-hl7 time per message for each vendor adapter (a measurement, not a test):
//! `cargo run --release -p ehrgate-adapter-conformance --example map_timing`.

use std::path::PathBuf;
use std::time::Instant;

use ehrgate_sdk::testing::{TestHost, with_host};
use ehrgate_sdk::{Adapter, Hl7Input};

fn dir(a: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(a).join("tests/fixtures")
}

fn host(a: &str) -> TestHost {
    let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&std::fs::read(dir(a).join("config.json")).unwrap()).unwrap();
    let mut h = TestHost::default();
    for (k, v) in cfg {
        h.config.insert(k, v.as_str().unwrap().to_owned());
    }
    h
}

fn time<A: Adapter>(adapter: &str, files: &[&str]) {
    let msgs: Vec<Hl7Input> = files.iter().map(|f| Hl7Input::new(std::fs::read_to_string(dir(adapter).join(f)).unwrap())).collect();
    let n = 20_000;
    let ((), _) = with_host(host(adapter), || {
        for m in &msgs {
            A::map_hl7(m).unwrap();
        }
        let start = Instant::now();
        for i in 0..n {
            std::hint::black_box(A::map_hl7(&msgs[i % msgs.len()]).unwrap());
        }
        let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        let bytes: usize = msgs.iter().map(|m| m.raw.len()).sum::<usize>() / msgs.len();
        println!("{adapter:<14} {per:>7.2} µs/message  (ADT^A01 + ORU^R01 fixtures, ~{bytes} bytes each)");
    });
}

fn main() {
    time::<ehrgate_adapter_epic::Epic>("epic", &["epic_adt_a01_admit.hl7", "epic_oru_r01_potassium.hl7"]);
    time::<ehrgate_adapter_oracle_health::OracleHealth>("oracle-health", &["oracle_adt_a01_admit.hl7", "oracle_oru_r01_potassium_code_value.hl7"]);
    time::<ehrgate_adapter_meditech::Meditech>("meditech", &["meditech_adt_a01_admit.hl7", "meditech_oru_r01_potassium.hl7"]);
    time::<ehrgate_adapter_mirth::Mirth>("mirth", &["mirth_adt_a01_admit.hl7", "mirth_oru_r01_potassium_xml.xml"]);
    time::<ehrgate_adapter_rhapsody::Rhapsody>("rhapsody", &["rhapsody_adt_a08_update.hl7", "rhapsody_adt_a03_discharge.hl7"]);
    time::<ehrgate_adapter_cloverleaf::Cloverleaf>("cloverleaf", &["cloverleaf_adt_a01_admit.hl7", "cloverleaf_oru_r01_potassium.hl7"]);
}
