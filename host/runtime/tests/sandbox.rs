//! The sandbox against purpose-built hostile components: each failure is typed, names
//! the adapter and the limit, fails only its own call, and the next call works.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehrgate_runtime::*;

struct RecordingAudit(Mutex<Vec<AuditEvent>>);
impl AuditSink for RecordingAudit {
    fn record(&self, e: AuditEvent) {
        self.0.lock().unwrap().push(e);
    }
}

/// An upstream that answers 200.
struct FakeUpstream;
impl Outbound for FakeUpstream {
    fn send<'a>(
        &'a self,
        _adapter: &'a str,
        req: HttpRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>> {
        let _ = req;
        Box::pin(async move { Ok(HttpResponse { status: 200, headers: vec![], body: b"{}".to_vec() }) })
    }
}

struct Fixture {
    adapter: Adapter,
    audit: Arc<RecordingAudit>,
    runtime: Runtime,
}

async fn fixture() -> Fixture {
    let audit = Arc::new(RecordingAudit(Mutex::new(vec![])));
    let runtime = Runtime::new(RuntimeConfig {
        outbound: Arc::new(FakeUpstream),
        audit: audit.clone(),
        max_instances: 16,
        ..Default::default()
    })
    .unwrap();
    let settings = AdapterSettings {
        name: None,
        grants: Grants(vec![Grant { connection: "ehr".into(), methods: vec!["GET".into()], paths: vec!["/Patient/*".into()] }]),
        config: [("mode".to_string(), "strict".to_string())].into(),
        limits: Limits {
            memory_bytes: 32 << 20,
            wall_time: Duration::from_millis(300),
            output_bytes: 8 << 20,
            stdio_bytes: 4096,
        },
    };
    let path = ehrgate_testkit::guest("ehrgate-guest-hostile");
    let adapter = runtime.load_file(&path, settings).await.expect("load hostile guest");
    Fixture { adapter, audit, runtime }
}

fn msg(text: &str) -> Hl7Message {
    Hl7Message { raw: text.into(), source: "test".into(), received_at_ms: 0 }
}

async fn assert_next_call_works(a: &Adapter) {
    let out = a.map_hl7(&msg("hello")).await.expect("a normal call right after works");
    assert_eq!(out.resources, vec![r#"{"resourceType":"Basic","id":"ok-1"}"#.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_wall_time_limit() {
    let f = fixture().await;
    let err = f.adapter.map_hl7(&msg("loop")).await.unwrap_err();
    assert_eq!(err.limit(), Some(Limit::Time), "{err}");
    let text = err.to_string();
    assert!(text.contains("hostile@0.1.0") && text.contains("wall-time"), "{text}");
    assert_next_call_works(&f.adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_memory_limit() {
    let f = fixture().await;
    let err = f.adapter.map_hl7(&msg("bomb")).await.unwrap_err();
    assert_eq!(err.limit(), Some(Limit::Memory), "{err}");
    assert!(err.to_string().contains("hostile@0.1.0") && err.to_string().contains("memory"), "{err}");
    assert_next_call_works(&f.adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_hits_output_limit() {
    let mut f = fixture().await;
    // Give it memory enough to build the output, so the output limit is what stops it.
    let mut settings = f.adapter.settings().clone();
    settings.limits.memory_bytes = 128 << 20;
    f.adapter = f.runtime.load_file(&ehrgate_testkit::guest("ehrgate-guest-hostile"), settings).await.unwrap();
    let err = f.adapter.map_hl7(&msg("huge")).await.unwrap_err();
    assert_eq!(err.limit(), Some(Limit::OutputSize), "{err}");
    assert!(err.to_string().contains("hostile@0.1.0"), "{err}");
    assert_next_call_works(&f.adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_trap_with_the_panic_message() {
    let f = fixture().await;
    let err = f.adapter.map_hl7(&msg("panic")).await.unwrap_err();
    match &err {
        CallError::Trap { adapter, message, .. } => {
            assert_eq!(adapter, "hostile@0.1.0");
            assert!(message.contains("panics on purpose"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert_next_call_works(&f.adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_connection_is_denied_and_audited() {
    let f = fixture().await;
    let err = f.adapter.map_hl7(&msg("http-ungranted")).await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::Transient(m)) => assert!(m.contains("denied") && m.contains("billing"), "{m}"),
        other => panic!("expected the adapter to report the denial, got {other:?}"),
    }
    let events = f.audit.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "adapter:hostile@0.1.0");
    assert_eq!(events[0].connection, "billing");
    assert!(events[0].outcome.starts_with("denied"), "{:?}", events[0]);
    assert_next_call_works(&f.adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_grant_does_not_cover_operations_and_headers_cannot_steer() {
    let f = fixture().await;
    let err = f.adapter.map_hl7(&msg("http-operation")).await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::Transient(m)) => assert!(m.contains("denied") && m.contains("$export"), "{m}"),
        other => panic!("expected a denial, got {other:?}"),
    }
    let err = f.adapter.map_hl7(&msg("http-header")).await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::Transient(m)) => assert!(m.contains("invalid request") && m.contains("X-HTTP-Method-Override"), "{m}"),
        other => panic!("expected an invalid request, got {other:?}"),
    }
    let outcomes: Vec<String> = f.audit.0.lock().unwrap().iter().map(|e| e.outcome.clone()).collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes[0].starts_with("denied") && outcomes[1].starts_with("invalid"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_cannot_pass_itself_off_as_another_adapter() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let settings = AdapterSettings { name: Some("epic".into()), ..Default::default() };
    let err = runtime.load_file(&ehrgate_testkit::guest("ehrgate-guest-hostile"), settings).await.err().expect("refused");
    assert!(err.to_string().contains("says it is `hostile`, but it is configured as `epic`"), "{err}");
    let ok = AdapterSettings { name: Some("hostile".into()), ..Default::default() };
    assert!(runtime.load_file(&ehrgate_testkit::guest("ehrgate-guest-hostile"), ok).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_request_reaches_outbound_and_is_audited() {
    let f = fixture().await;
    let out = f.adapter.map_hl7(&msg("http-granted")).await.unwrap();
    assert_eq!(out.warnings, vec!["status 200".to_string()]);
    let events = f.audit.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].connection.as_str(), events[0].outcome.as_str()), ("ehr", "allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_upstream_is_cut_by_the_wall_time_limit() {
    let settings = AdapterSettings {
        grants: Grants(vec![Grant { connection: "ehr".into(), methods: vec!["GET".into()], paths: vec!["/Patient/*".into()] }]),
        limits: Limits { wall_time: Duration::from_millis(200), ..Default::default() },
        ..Default::default()
    };
    struct Stuck;
    impl Outbound for Stuck {
        fn send<'a>(
            &'a self,
            _adapter: &'a str,
            _req: HttpRequest,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>> {
            Box::pin(std::future::pending())
        }
    }
    let runtime = Runtime::new(RuntimeConfig { outbound: Arc::new(Stuck), ..Default::default() }).unwrap();
    let a = runtime.load_file(&ehrgate_testkit::guest("ehrgate-guest-hostile"), settings).await.unwrap();
    let err = a.map_hl7(&msg("http-granted")).await.unwrap_err();
    assert_eq!(err.limit(), Some(Limit::Time), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_is_empty_no_env_files_network_or_stdin() {
    let f = fixture().await;
    // A real listener the guest would reach if it had any network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "the listener is reachable from the host");
    let out = f.adapter.map_hl7(&msg(&format!("escape:{port}"))).await.unwrap();
    assert_eq!(
        out.warnings,
        vec![
            "env vars: 0",
            "args: 0",
            "read_dir /: false",
            "read_dir .: false",
            "tcp connect: false",
            "stdin bytes: 0"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_gets_a_fresh_instance_but_state_persists_through_the_host() {
    let f = fixture().await;
    let first = f.adapter.map_hl7(&msg("state")).await.unwrap();
    let second = f.adapter.map_hl7(&msg("state")).await.unwrap();
    assert_eq!(first.warnings, vec!["state calls: 1", "instance calls: 1", "config mode: strict"]);
    assert_eq!(second.warnings, vec!["state calls: 2", "instance calls: 1", "config mode: strict"]);
    assert_eq!(f.adapter.counters().get("state-calls"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_runs_in_one_instance_and_reports_per_message() {
    let f = fixture().await;
    let results = f.adapter.map_hl7_batch(&[msg("a"), msg("b"), msg("http-ungranted")]).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].as_ref().unwrap().resources[0].contains("ok-1"));
    // Same instance for the whole batch: its second call sees the first.
    assert!(results[1].as_ref().unwrap().resources[0].contains("ok-2"));
    assert!(results[2].is_err());
    // A trap inside a batch fails the batch, and the next batch works.
    let err = f.adapter.map_hl7_batch(&[msg("a"), msg("panic")]).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(f.adapter.map_hl7_batch(&[msg("a")]).await.unwrap()[0].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_from_many_tasks() {
    let f = fixture().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let a = f.adapter.clone();
        tasks.push(tokio::spawn(async move {
            let text = if i % 8 == 0 { "panic" } else { "hello" };
            (i, a.map_hl7(&msg(text)).await)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 8 == 0 {
            assert!(matches!(r, Err(CallError::Trap { .. })));
        } else {
            assert_eq!(r.unwrap().resources.len(), 1);
            ok += 1;
        }
    }
    assert_eq!(ok, 56);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_contract_version_is_refused_naming_both() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let path = ehrgate_testkit::guest("ehrgate-guest-future-contract");
    let err = runtime.load_file(&path, AdapterSettings::default()).await.err().expect("must be refused");
    assert!(matches!(err, LoadError::UnsupportedContract { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ehrgate:adapter@0.9.0") && text.contains("ehrgate:adapter@0.1.0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_not_a_component() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let err = runtime.load("garbage.wasm", b"\0asm not really", AdapterSettings::default()).await.err().unwrap();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    // A core module, not a component:
    let err = runtime.load("core.wasm", b"\0asm\x01\0\0\0", AdapterSettings::default()).await.err().unwrap();
    assert!(err.to_string().contains("core.wasm"), "{err}");
}

/// A component compiled by one runtime is loaded compiled by the next one that
/// shares its cache directory (as the next process would), and runs; a directory
/// others may write is not used (what is loaded from it runs outside the sandbox).
#[tokio::test]
async fn a_compiled_adapter_is_taken_from_the_compile_cache_by_the_next_runtime() {
    let dir = std::env::temp_dir().join(format!("ehrgate-compile-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("compiled");
    let path = ehrgate_testkit::guest("ehrgate-guest-hostile");
    let cached = |c: &std::path::Path| RuntimeConfig { compile_cache: Some(c.to_path_buf()), ..Default::default() };
    let first = Runtime::new(cached(&cache)).unwrap();
    first.load_file(&path, AdapterSettings::default()).await.expect("compiled");
    assert_eq!(first.compile_cache_counts(), Some((0, 1)), "compiled once and kept");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700, "the cache is the user's own");

    let second = Runtime::new(cached(&cache)).unwrap();
    let adapter = second.load_file(&path, AdapterSettings::default()).await.expect("loaded from the cache");
    assert_eq!(second.compile_cache_counts(), Some((1, 0)), "taken from the cache, not compiled");
    assert!(adapter.describe().await.is_ok(), "the cached component runs");

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let why = compile_cache_dir(&cache).expect_err("a directory anyone may write");
    assert!(why.contains("writable by others"), "{why}");
    let third = Runtime::new(cached(&cache)).unwrap();
    assert_eq!(third.compile_cache_counts(), None, "not used");
    third.load_file(&path, AdapterSettings::default()).await.expect("compiled without the cache");

    // ... nor one below a directory anyone may write (not sticky), though it is
    // the user's own, nor one reached through a link to such a place
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let why = compile_cache_dir(&open.join("compiled")).expect_err("below a directory anyone may write");
    assert!(why.contains("above") && why.contains("writable by others"), "{why}");
    std::os::unix::fs::symlink(open.join("compiled"), dir.join("link")).unwrap();
    let why = compile_cache_dir(&dir.join("link")).expect_err("a link to such a place");
    assert!(why.contains("above"), "{why}");
    // (a sticky one, as /tmp is, is fine: the temporary directory above all of these)
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(compile_cache_dir(&dir.join("link")).unwrap(), open.join("compiled").canonicalize().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
