//! Run an adapter natively over fixture files, without a gateway: golden files
//! (input -> expected FHIR) and a scriptable host.
//!
//! ```ignore
//! // adapters/acme/tests/golden.rs
//! #[test]
//! fn golden() {
//!     let inputs = ehrgate_sdk::testing::files_in("tests/fixtures", &["hl7", "ndjson"]);
//!     ehrgate_sdk::testing::check_golden::<acme::Acme>(&inputs, "tests/golden".as_ref());
//! }
//! ```
//!
//! Golden files are `<golden_dir>/<input file name>.ndjson`: one resource per line,
//! keys sorted, in output order; an input that fails has a golden `.error` file
//! holding the error text instead. Run with `EHRGATE_UPDATE_GOLDEN=1` to write them,
//! then review the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::adapter::{Adapter, Hl7Input, Output};
use crate::host::{self, HttpError, HttpRequest, HttpResponse, Level, NativeHost};

/// What one input file produced.
#[derive(Debug, Clone, PartialEq)]
pub enum FileResult {
    /// Resources (canonical JSON, one per entry) in output order, and warnings.
    Mapped { resources: Vec<String>, warnings: Vec<String> },
    /// The error of the first message that failed.
    Failed(String),
}

/// Files in `dir` with one of `exts`, sorted by name.
pub fn files_in(dir: impl AsRef<Path>, exts: &[&str]) -> Vec<PathBuf> {
    let dir = dir.as_ref();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read fixture folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e)))
        .collect();
    v.sort();
    v
}

fn canonical(json: &str) -> String {
    // serde_json's map is ordered by key, so a round trip sorts keys.
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) => v.to_string(),
        Err(_) => json.to_string(),
    }
}

/// Map one file natively: HL7v2 (single message or batch; any extension but
/// `.ndjson`) through `map_hl7`, NDJSON through `map_fhir`.
pub fn map_file<A: Adapter>(path: &Path) -> FileResult {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut resources = Vec::new();
    let mut warnings = Vec::new();
    let mut take = |o: Output| {
        resources.extend(o.resources.iter().map(|r| canonical(r)));
        warnings.extend(o.warnings);
    };
    if path.extension().is_some_and(|e| e == "ndjson") {
        let text = String::from_utf8_lossy(&bytes);
        let batch: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
        match A::map_fhir(batch) {
            Ok(o) => take(o),
            Err(e) => return FileResult::Failed(e.to_string()),
        }
    } else {
        let text = crate::hl7::decode_bytes(&bytes);
        let batch = match crate::hl7::parse_batch(&text) {
            Ok(b) => b,
            Err(e) => return FileResult::Failed(crate::AdapterError::from(e).to_string()),
        };
        for m in &batch.messages {
            match A::map_hl7(&Hl7Input { raw: m.raw().to_string(), source: "test".into(), received_at_ms: 0 }) {
                Ok(o) => take(o),
                Err(e) => return FileResult::Failed(e.to_string()),
            }
        }
    }
    FileResult::Mapped { resources, warnings }
}

/// Map every input and compare with its golden file; panics listing every mismatch.
/// With `EHRGATE_UPDATE_GOLDEN=1` the golden files are (re)written instead.
pub fn check_golden<A: Adapter>(inputs: &[PathBuf], golden_dir: &Path) {
    assert!(!inputs.is_empty(), "no fixture inputs given");
    let update = std::env::var("EHRGATE_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(golden_dir).expect("create golden folder");
    }
    let mut problems = Vec::new();
    for input in inputs {
        let name = input.file_name().expect("file name").to_string_lossy().to_string();
        let (golden, actual) = match map_file::<A>(input) {
            FileResult::Mapped { resources, .. } => {
                (golden_dir.join(format!("{name}.ndjson")), resources.iter().map(|r| format!("{r}\n")).collect::<String>())
            }
            FileResult::Failed(e) => (golden_dir.join(format!("{name}.error")), format!("{e}\n")),
        };
        if update {
            std::fs::write(&golden, &actual).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Err(_) => problems.push(format!("{name}: no golden file {} (run with EHRGATE_UPDATE_GOLDEN=1)", golden.display())),
            Ok(expected) if expected != actual => {
                let (line, (e, a)) = expected
                    .lines()
                    .zip(actual.lines())
                    .enumerate()
                    .find(|(_, (e, a))| e != a)
                    .map(|(i, p)| (i + 1, p))
                    .unwrap_or((expected.lines().count().min(actual.lines().count()) + 1, ("<end>", "<end>")));
                problems.push(format!(
                    "{name}: differs from {} at line {line}\n    expected: {}\n    actual:   {}",
                    golden.display(),
                    e.chars().take(300).collect::<String>(),
                    a.chars().take(300).collect::<String>()
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(problems.is_empty(), "golden mismatches:\n{}", problems.join("\n"));
}

impl TestHost {
    /// A host whose configuration is the JSON object of strings in `config_json` (the
    /// site settings an adapter keeps beside its fixtures), then `extra` on top.
    pub fn with_config_file(config_json: &Path, extra: &[(&str, &str)]) -> TestHost {
        let text = std::fs::read_to_string(config_json).unwrap_or_else(|e| panic!("read {}: {e}", config_json.display()));
        let cfg: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not a JSON object: {e}", config_json.display()));
        let mut h = TestHost::default();
        for (k, v) in cfg {
            let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            h.config.insert(k, v);
        }
        for (k, v) in extra {
            h.config.insert(k.to_string(), v.to_string());
        }
        h
    }
}

/// The shared HL7v2 samples (`<shared>/data/hl7`) of the standard message types:
/// what an interface engine forwards from upstream systems.
pub fn shared_standard_samples(shared: &Path) -> Vec<PathBuf> {
    let d = shared.join("data/hl7");
    assert!(d.is_dir(), "shared samples not found at {}", d.display());
    standard(files_in(&d, &["hl7"]))
}

/// The file name prefixes of the samples of [`crate::v2fhir::STANDARD_MESSAGE_TYPES`].
const STANDARD_SAMPLE_PREFIXES: &[&str] =
    &["adt_", "oru_r01", "vxu_v04", "rde_o11", "orm_o01", "oml_o21", "siu_s1", "mdm_t0", "dft_p03", "ras_o17"];

fn standard(files: Vec<PathBuf>) -> Vec<PathBuf> {
    files
        .into_iter()
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            STANDARD_SAMPLE_PREFIXES.iter().any(|s| n.starts_with(s))
        })
        .collect()
}

/// The constructed samples (`<repo>/tests/data/hl7`, see its SOURCES.md) of the
/// standard message types no public sample was found for.
pub fn constructed_samples(repo: &Path) -> Vec<PathBuf> {
    let d = repo.join("tests/data/hl7");
    assert!(d.is_dir(), "constructed samples not found at {}", d.display());
    files_in(&d, &["hl7"])
}

/// The public samples gathered for the newer message types
/// (`<repo>/tests/data/hl7/public`, see its SOURCES.md), of the standard types.
pub fn public_samples(repo: &Path) -> Vec<PathBuf> {
    let d = repo.join("tests/data/hl7/public");
    assert!(d.is_dir(), "public samples not found at {}", d.display());
    standard(files_in(&d, &["hl7"]))
}

/// Every sample of the standard message types: the shared public ones, the public
/// ones gathered here and the constructed ones.
pub fn standard_samples(shared: &Path, repo: &Path) -> Vec<PathBuf> {
    let mut v = shared_standard_samples(shared);
    v.extend(public_samples(repo));
    v.extend(constructed_samples(repo));
    v
}

/// A scriptable host for native tests: configuration, state, canned HTTP answers;
/// records requests, logs and counters.
#[derive(Default)]
pub struct TestHost {
    pub config: HashMap<String, String>,
    pub state: HashMap<String, Vec<u8>>,
    /// Answers by `"METHOD /path"`; a request with no answer gets `Unavailable`.
    pub responses: HashMap<String, Result<HttpResponse, HttpError>>,
    pub requests: Vec<HttpRequest>,
    pub logs: Vec<(Level, String)>,
    pub counters: HashMap<String, u64>,
}

impl NativeHost for TestHost {
    fn http_send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let key = format!("{} {}", req.method, req.path);
        self.requests.push(req);
        self.responses.get(&key).cloned().unwrap_or_else(|| Err(HttpError::Unavailable(format!("no answer scripted for {key}"))))
    }
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }
    fn state_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.state.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn state_delete(&mut self, key: &str) {
        self.state.remove(key);
    }
    fn config_get(&mut self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn counter_add(&mut self, name: &str, delta: u64) {
        *self.counters.entry(name.to_string()).or_default() += delta;
    }
}

/// Run `f` with `test_host` installed for this thread; returns `f`'s result and the
/// host (with what it recorded).
pub fn with_host<R>(test_host: TestHost, f: impl FnOnce() -> R) -> (R, TestHost) {
    struct Slot(std::rc::Rc<std::cell::RefCell<Option<TestHost>>>);
    impl NativeHost for Slot {
        fn http_send(&mut self, r: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.0.borrow_mut().as_mut().expect("host").http_send(r)
        }
        fn state_get(&mut self, k: &str) -> Option<Vec<u8>> {
            self.0.borrow_mut().as_mut().expect("host").state_get(k)
        }
        fn state_set(&mut self, k: &str, v: &[u8]) -> Result<(), String> {
            self.0.borrow_mut().as_mut().expect("host").state_set(k, v)
        }
        fn state_delete(&mut self, k: &str) {
            self.0.borrow_mut().as_mut().expect("host").state_delete(k)
        }
        fn config_get(&mut self, k: &str) -> Option<String> {
            self.0.borrow_mut().as_mut().expect("host").config_get(k)
        }
        fn log(&mut self, l: Level, m: &str) {
            self.0.borrow_mut().as_mut().expect("host").log(l, m)
        }
        fn counter_add(&mut self, n: &str, d: u64) {
            self.0.borrow_mut().as_mut().expect("host").counter_add(n, d)
        }
    }
    let cell = std::rc::Rc::new(std::cell::RefCell::new(Some(test_host)));
    let previous = host::install(Some(Box::new(Slot(cell.clone()))));
    let r = f();
    host::install(previous);
    let h = cell.borrow_mut().take().expect("host");
    (r, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_host_records_and_answers() {
        let mut th = TestHost::default();
        th.config.insert("tenant".into(), "t1".into());
        th.responses.insert("GET /Patient/1".into(), Ok(HttpResponse { status: 200, ..Default::default() }));
        let ((cfg, ok, missing), th) = with_host(th, || {
            host::log(Level::Info, "hi");
            host::counter_add("n", 2);
            host::state_set("k", b"v").unwrap();
            let ok = host::http_send(HttpRequest { method: "GET".into(), path: "/Patient/1".into(), ..Default::default() });
            let missing = host::http_send(HttpRequest { method: "GET".into(), path: "/Nope".into(), ..Default::default() });
            (host::config_get("tenant"), ok, missing)
        });
        assert_eq!(cfg.as_deref(), Some("t1"));
        assert_eq!(ok.unwrap().status, 200);
        assert!(matches!(missing, Err(HttpError::Unavailable(_))));
        assert_eq!(th.requests.len(), 2);
        assert_eq!(th.logs, vec![(Level::Info, "hi".to_string())]);
        assert_eq!(th.counters.get("n"), Some(&2));
        assert_eq!(th.state.get("k").map(Vec::as_slice), Some(&b"v"[..]));
        // Outside `with_host` nothing is installed.
        assert!(host::config_get("tenant").is_none());
    }
}
