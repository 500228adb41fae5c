//! The discharge-checklist action of Epic, Oracle Health and MEDITECH against a fake
//! EHR Task endpoint whose first POST fails: the gateway's retry of the action
//! creates exactly the right Tasks once, with the same idempotency key on every
//! attempt; a response lost after the EHR committed does not duplicate a Task.

use std::collections::BTreeMap;

use ehrgate_sdk::host::{self, HttpError, HttpRequest, HttpResponse, Level, NativeHost};
use ehrgate_sdk::{Adapter, AdapterError};
use serde_json::Value;

/// How the fake EHR answers the n-th POST (1-based).
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// 503, nothing stored.
    Unavailable,
    /// Stored, then the answer is lost (timeout).
    LostResponse,
}

#[derive(Default)]
struct FakeEhr {
    faults: BTreeMap<usize, Fault>,
    posts: Vec<HttpRequest>,
    /// Stored Tasks by business identifier value (what If-None-Exist searches).
    tasks: BTreeMap<String, Value>,
    config: BTreeMap<String, String>,
    state: BTreeMap<String, Vec<u8>>,
}

impl NativeHost for FakeEhr {
    fn http_send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        assert_eq!((req.method.as_str(), req.connection.as_str()), ("POST", "ehr"));
        self.posts.push(req.clone());
        let n = self.posts.len();
        let fault = self.faults.get(&n).copied();
        if fault == Some(Fault::Unavailable) {
            return Ok(HttpResponse { status: 503, ..Default::default() });
        }
        let mut task: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
        let ident = task["identifier"][0]["value"].as_str().unwrap().to_owned();
        let conditional = req.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("if-none-exist") && v.ends_with(&ident));
        let status = if let Some(existing) = self.tasks.get(&ident).filter(|_| conditional) {
            task = existing.clone();
            200
        } else {
            task["id"] = format!("task-{}", self.tasks.len() + 1).into();
            self.tasks.insert(ident, task.clone());
            201
        };
        if fault == Some(Fault::LostResponse) {
            return Err(HttpError::Timeout);
        }
        Ok(HttpResponse { status, headers: vec![], body: task.to_string().into_bytes() })
    }
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }
    fn state_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.state.insert(key.into(), value.to_vec());
        Ok(())
    }
    fn state_delete(&mut self, key: &str) {
        self.state.remove(key);
    }
    fn config_get(&mut self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
    fn log(&mut self, _: Level, message: &str) {
        assert!(!message.contains("enc-778"), "no ids of the input in logs");
    }
    fn counter_add(&mut self, _: &str, _: u64) {}
}

/// Install `ehr`, run `f`, give the EHR back.
fn with_ehr<R>(ehr: FakeEhr, f: impl FnOnce() -> R) -> (R, FakeEhr) {
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Shared(Rc<RefCell<FakeEhr>>);
    impl NativeHost for Shared {
        fn http_send(&mut self, r: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.0.borrow_mut().http_send(r)
        }
        fn state_get(&mut self, k: &str) -> Option<Vec<u8>> {
            self.0.borrow_mut().state_get(k)
        }
        fn state_set(&mut self, k: &str, v: &[u8]) -> Result<(), String> {
            self.0.borrow_mut().state_set(k, v)
        }
        fn state_delete(&mut self, k: &str) {
            self.0.borrow_mut().state_delete(k)
        }
        fn config_get(&mut self, k: &str) -> Option<String> {
            self.0.borrow_mut().config_get(k)
        }
        fn log(&mut self, l: Level, m: &str) {
            self.0.borrow_mut().log(l, m)
        }
        fn counter_add(&mut self, n: &str, d: u64) {
            self.0.borrow_mut().counter_add(n, d)
        }
    }
    let cell = Rc::new(RefCell::new(ehr));
    let prev = host::install(Some(Box::new(Shared(cell.clone()))));
    let r = f();
    host::install(prev);
    let ehr = Rc::try_unwrap(cell).ok().unwrap().into_inner();
    (r, ehr)
}

const INPUT: &str = r#"{"encounter":"Encounter/enc-778","patient":"Patient/pat-12"}"#;

fn key_of(req: &HttpRequest) -> String {
    req.idempotency_key.clone().expect("every POST has an idempotency key")
}

fn first_post_fails_then_retry_creates_each_task_once<A: Adapter>(vendor: &str) {
    let ehr = FakeEhr { faults: BTreeMap::from([(1, Fault::Unavailable)]), ..Default::default() };
    // Attempt 1: the first POST gets a 503; the action asks to be retried.
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    assert!(matches!(r, Err(AdapterError::Transient(_))), "{vendor}: {r:?}");
    assert!(ehr.tasks.is_empty());
    // The gateway retries the action: both Tasks are created.
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    let result: Value = serde_json::from_str(&r.unwrap_or_else(|e| panic!("{vendor}: {e}"))).unwrap();
    assert_eq!(result["tasks"].as_array().unwrap().iter().map(|t| t["outcome"].as_str().unwrap()).collect::<Vec<_>>(), ["created", "created"]);
    // A third run (a duplicate trigger) sends nothing.
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    let again: Value = serde_json::from_str(&r.unwrap()).unwrap();
    assert!(again["tasks"].as_array().unwrap().iter().all(|t| t["outcome"] == "already-done"), "{vendor}: {again}");

    assert_eq!(ehr.posts.len(), 3, "{vendor}: the failed POST, then one per Task");
    assert_eq!(key_of(&ehr.posts[0]), key_of(&ehr.posts[1]), "{vendor}: the retried POST has the failed one's key");
    assert_ne!(key_of(&ehr.posts[1]), key_of(&ehr.posts[2]));
    assert_eq!(ehr.posts[0].body, ehr.posts[1].body, "{vendor}: a retry sends the same body");
    assert_eq!(ehr.tasks.len(), 2, "{vendor}: exactly two Tasks");
    let mut codes: Vec<&str> = ehr.tasks.values().map(|t| t["code"]["coding"][0]["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["home-health-referral", "medication-reconciliation"]);
    for t in ehr.tasks.values() {
        assert_eq!(t["encounter"]["reference"], "Encounter/enc-778");
        assert_eq!(t["for"]["reference"], "Patient/pat-12");
        assert_eq!((t["status"].as_str(), t["intent"].as_str()), (Some("requested"), Some("order")));
        assert_eq!(t["meta"]["source"], format!("urn:ehrgate:adapter:{vendor}"));
    }
    // A different encounter gets different keys and new Tasks.
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", r#"{"encounter":"enc-779","patient":"pat-12"}"#));
    r.unwrap();
    assert_eq!(ehr.tasks.len(), 4);
}

fn lost_response_does_not_duplicate<A: Adapter>(vendor: &str) {
    let ehr = FakeEhr { faults: BTreeMap::from([(1, Fault::LostResponse)]), ..Default::default() };
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    assert!(matches!(r, Err(AdapterError::Transient(_))), "{vendor}: {r:?}");
    assert_eq!(ehr.tasks.len(), 1, "the EHR committed before the answer was lost");
    let (r, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    let result: Value = serde_json::from_str(&r.unwrap()).unwrap();
    assert_eq!(result["tasks"][0]["outcome"], "existing", "{vendor}: the conditional create found it");
    assert_eq!(ehr.tasks.len(), 2, "{vendor}: no duplicate Task");
    assert_eq!(key_of(&ehr.posts[0]), key_of(&ehr.posts[1]));
}

fn task_path_is_configurable<A: Adapter>() {
    let mut ehr = FakeEhr::default();
    ehr.config.insert("discharge.task-path".into(), "/fhir/Task".into());
    let (_, ehr) = with_ehr(ehr, || A::run_action("discharge-checklist", INPUT));
    assert!(ehr.posts.iter().all(|p| p.path == "/fhir/Task"));
    let (r, _) = with_ehr(FakeEhr::default(), || A::run_action("discharge-checklist", "{\"patient\":\"p\"}"));
    assert!(matches!(r, Err(AdapterError::InvalidInput { .. })));
}

#[test]
fn epic() {
    use ehrgate_adapter_epic::Epic;
    first_post_fails_then_retry_creates_each_task_once::<Epic>("epic");
    lost_response_does_not_duplicate::<Epic>("epic");
    task_path_is_configurable::<Epic>();
}

#[test]
fn oracle_health() {
    use ehrgate_adapter_oracle_health::OracleHealth;
    first_post_fails_then_retry_creates_each_task_once::<OracleHealth>("oracle-health");
    lost_response_does_not_duplicate::<OracleHealth>("oracle-health");
    task_path_is_configurable::<OracleHealth>();
}

#[test]
fn meditech() {
    use ehrgate_adapter_meditech::Meditech;
    first_post_fails_then_retry_creates_each_task_once::<Meditech>("meditech");
    lost_response_does_not_duplicate::<Meditech>("meditech");
    task_path_is_configurable::<Meditech>();
}

#[test]
fn engines_have_no_discharge_action() {
    let (r, _) = with_ehr(FakeEhr::default(), || ehrgate_adapter_mirth::Mirth::run_action("discharge-checklist", INPUT));
    assert!(matches!(r, Err(AdapterError::Unsupported(_))));
}
