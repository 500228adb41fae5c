//! `ehrgate adapter new NAME`: a crate, outside any workspace, that builds to an
//! adapter component with one command, with a sample golden test that passes
//! from its first minute (the golden file is written here, by mapping the
//! sample through the built-in reference adapter: the new crate starts as the
//! standard mapping, unchanged).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ehrgate_runtime::{AdapterSettings, Hl7Message, TracingAudit};

use crate::adapters;
use crate::config::Config;

/// Where the SDK comes from in the new crate's Cargo.toml.
pub enum Sdk {
    Path(PathBuf),
    Git(String),
}

const SAMPLE: &str = "MSH|^~\\&|ACME|HOSP|EHRGATE|LAKE|20240102030405-0500||ADT^A01^ADT_A01|MSG00001|P|2.5.1\r\
EVN|A01|20240102030405-0500\r\
PID|1||MRN12345^^^HOSP^MR||Doe^Jane^Q||19800101|F|||1 Main St^^Springfield^IL^62701^USA\r\
PV1|1|I|W1^101^A^HOSP||||1234^Smith^John^^^Dr|||MED||||1|||1234^Smith^John^^^Dr|IN|V0001^^^HOSP^VN|||||||||||||||||||||||||20240102030000-0500\r";

/// The SDK this binary was built with, when its checkout is still there.
fn default_sdk() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
    p.join("Cargo.toml").is_file().then(|| p.canonicalize().ok()).flatten()
}

fn camel(name: &str) -> String {
    name.split(['-', '_']).filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect()
}

pub async fn new(cfg: &Config, name: &str, dir: Option<&Path>, sdk: Option<Sdk>, vendor: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 64 && name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "an adapter name is lower-case ASCII letters, digits and `-`, starting with a letter (e.g. acme-ehr)"
    );
    let root = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(name));
    anyhow::ensure!(!root.exists(), "{} exists; choose another folder (--dir)", root.display());
    let sdk = match sdk {
        Some(s) => s,
        None => Sdk::Path(default_sdk().context("this ehrgate binary's SDK checkout is gone; give --sdk PATH (the sdk/ folder of an ehrgate checkout) or --sdk-git URL")?),
    };
    let sdk_dep = match &sdk {
        Sdk::Path(p) => format!("{{ path = {:?} }}", p.display().to_string()),
        Sdk::Git(url) => format!("{{ git = {url:?} }}"),
    };
    let (krate, ty) = (name.replace('-', "_"), camel(name));

    let files: Vec<(&str, String)> = vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the component; rlib: the native golden test.
crate-type = ["cdylib", "rlib"]

[dependencies]
ehrgate-sdk = {sdk_dep}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true

# A crate of its own, not a member of any enclosing workspace.
[workspace]
"#
            ),
        ),
        (
            "src/lib.rs",
            format!(
                r#"//! The `{name}` adapter: HL7v2 and FHIR from {vendor} into canonical FHIR R4.
//!
//! It starts as the SDK's standard HL7 v2-to-FHIR mapping; override the
//! `Mapper` methods where {vendor} differs (see the SDK's `v2fhir` docs and the
//! vendor adapters in the ehrgate repository for examples).

use ehrgate_sdk::v2fhir::{{self, Mapper}};
use ehrgate_sdk::{{Adapter, AdapterError, AdapterInfo, Hl7Input, Output}};

pub struct {ty};

/// What {vendor} does differently from the standard mapping.
struct {ty}Mapping;

impl Mapper for {ty}Mapping {{}}

impl Adapter for {ty} {{
    fn describe() -> AdapterInfo {{
        AdapterInfo {{
            name: "{name}".into(),
            vendor: "{vendor}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: v2fhir::STANDARD_MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            ..Default::default()
        }}
    }}

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {{
        v2fhir::map_message(&{ty}Mapping, msg)
    }}
}}

ehrgate_sdk::export_adapter!({ty});
"#
            ),
        ),
        (
            "tests/golden.rs",
            format!(
                r#"//! Golden files: each input under tests/fixtures, mapped natively, must equal
//! tests/golden/<file>.ndjson. After an intended change of mapping, regenerate with
//! `EHRGATE_UPDATE_GOLDEN=1 cargo test` and review the diff.

#[test]
fn golden() {{
    let inputs = ehrgate_sdk::testing::files_in("tests/fixtures", &["hl7", "ndjson"]);
    ehrgate_sdk::testing::check_golden::<{krate}::{ty}>(&inputs, "tests/golden".as_ref());
}}
"#
            ),
        ),
        ("tests/fixtures/adt_a01.hl7", SAMPLE.to_string()),
        (
            "README.md",
            format!(
                r#"# {name}

An ehrgate adapter for {vendor}.

```sh
cargo test                                          # golden files, natively
cargo build --release --target wasm32-wasip2        # the component
ehrgate adapter check target/wasm32-wasip2/release/{krate}.wasm   # the conformance kit
ehrgate adapter sign target/wasm32-wasip2/release/{krate}.wasm --key publisher.key
```

See docs/adapters.md in the ehrgate repository for the whole path to a running gateway.
"#
            ),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    for (path, content) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("has a parent")).with_context(|| format!("create {}", p.parent().unwrap().display()))?;
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
    }

    // The golden file: the sample through the standard mapping (the built-in
    // reference adapter, which is what the new crate maps like until changed).
    let (runtime, _) = adapters::runtime(cfg, Arc::new(TracingAudit))?;
    let reference = runtime.load("reference (built in)", adapters::builtin("reference").expect("built in"), AdapterSettings::default()).await?;
    let out = reference.map_hl7(&Hl7Message { raw: SAMPLE.into(), source: "test".into(), received_at_ms: 0 }).await?;
    let golden: String = out
        .resources
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r).map(|v| format!("{v}\n")))
        .collect::<Result<_, _>>()
        .context("the standard mapping's output is not JSON")?;
    let g = root.join("tests/golden/adt_a01.hl7.ndjson");
    std::fs::create_dir_all(g.parent().unwrap())?;
    std::fs::write(&g, golden)?;

    println!("created {} (adapter `{name}`, SDK {})", root.display(), match &sdk {
        Sdk::Path(p) => p.display().to_string(),
        Sdk::Git(u) => u.clone(),
    });
    println!("next: cd {} && cargo test && cargo build --release --target wasm32-wasip2", root.display());
    Ok(ExitCode::SUCCESS)
}
