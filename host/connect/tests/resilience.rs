//! Pacing, retries and the circuit breaker against the sandbox EHR, with counts of
//! what the upstream actually saw.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ehrgate_connect::*;
use ehrgate_runtime::{HttpError, HttpRequest};
use ehrgate_sandbox::FaultRule;

fn rule(method: &str, path: &str, fault: &str) -> FaultRule {
    FaultRule { method: Some(method.into()), path_prefix: Some(path.into()), fault: fault.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_waited_out_and_pauses_the_whole_connection() {
    let sb = sandbox_no_auth().await;
    let conn = Connection::new(&plain("ehr", &sb.base_url())).unwrap();
    let conn = std::sync::Arc::new(conn);
    let started = Instant::now();
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(with_fault(get("/Patient/patient-0000"), "429;retry-after=2;times=1"), &[]).await })
    };
    // Wait (on the condition, not a clock) until the 429 has paused the connection.
    while conn.paused_for().is_none() {
        assert!(!first.is_finished(), "the first call finished without pausing the connection");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pause_left = conn.paused_for().unwrap_or_default();
    // Another request on the same connection, to another resource, waits too.
    let other_started = Instant::now();
    let other = conn.send(get("/Patient/patient-0001"), &[]).await.unwrap();
    let other_waited = other_started.elapsed();
    let resp = first.await.unwrap().unwrap();
    let total = started.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(other.status, 200);
    assert!(total >= Duration::from_secs(2), "the 429's Retry-After of 2 s was not waited out: {total:?}");
    assert!(other_waited + Duration::from_millis(50) >= pause_left, "other request waited {other_waited:?} of a {pause_left:?} pause");
    let stats = sb.stats();
    assert_eq!(stats.count("GET", "/Patient/patient-0000"), 2, "one 429, one retry");
    assert_eq!(stats.count("GET", "/Patient/patient-0001"), 1);
    assert_eq!(conn.stats().retries, 1);
    println!("429 Retry-After 2: waited {total:?}; other request waited {other_waited:?}; upstream saw 2 + 1 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_is_waited_out() {
    let sb = sandbox_no_auth().await;
    let conn = Connection::new(&plain("ehr", &sb.base_url())).unwrap();
    let started = Instant::now();
    let resp = conn.send(with_fault(get("/Patient/patient-0000"), "503;retry-after-date=2;times=1"), &[]).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status, 200);
    assert!(waited >= Duration::from_secs(2), "HTTP-date Retry-After not honoured: {waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 2);
    println!("503 Retry-After (HTTP-date, 2 s ahead): waited {waited:?}; upstream saw 2 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_rate_is_smoothed_to_it() {
    let sb = sandbox_no_auth().await;
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.rate = RateConfig { per_second: 10, burst: 2 };
    cfg.max_concurrency = 32;
    let conn = std::sync::Arc::new(Connection::new(&cfg).unwrap());
    let started = Instant::now();
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let c = conn.clone();
            tokio::spawn(async move { c.send(get("/Patient/patient-0000"), &[]).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().status, 200);
    }
    let elapsed = started.elapsed();
    // 2 at once, then 10 more at 10/s: at least ~1 s.
    assert!(elapsed >= Duration::from_millis(950), "12 requests at 10/s burst 2 took only {elapsed:?}");
    let log: Vec<u64> = sb.stats().log.iter().map(|r| r.at_ms).collect();
    assert_eq!(log.len(), 12);
    // Upstream view: no 300 ms window holds more than burst + 3 (+1 for timer slack).
    let worst = log.iter().map(|t| log.iter().filter(|u| **u >= *t && **u < t + 300).count()).max().unwrap();
    assert!(worst <= 6, "upstream saw {worst} requests within 300 ms: {log:?}");
    println!("burst of 12 at rate 10/s burst 2: {elapsed:?}; busiest 300 ms window at the upstream: {worst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_storm_opens_the_breaker_which_fails_fast_then_recovers_through_half_open() {
    let sb = sandbox_no_auth().await;
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.retry = RetryConfig { max_attempts: 1, base_ms: 1, cap_ms: 1 };
    cfg.breaker = BreakerConfig { failure_threshold: 3, open_ms: 400 };
    let conn = Connection::new(&cfg).unwrap();
    // Four 500s: three open the circuit, the fourth fails the first probe.
    sb.add_fault(rule("GET", "/Patient", "500;times=4")).unwrap();
    for _ in 0..3 {
        assert_eq!(conn.send(get("/Patient/patient-0000"), &[]).await.unwrap().status, 500);
    }
    assert_eq!(conn.stats().breaker, BreakerState::Open);
    for _ in 0..5 {
        match conn.send(get("/Patient/patient-0000"), &[]).await {
            Err(HttpError::Unavailable(m)) => assert!(m.contains("circuit open"), "{m}"),
            other => panic!("expected a fast failure, got {other:?}"),
        }
    }
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 3, "open circuit: no upstream hits");
    assert_eq!(conn.stats().fast_failures, 5);
    // Half-open: one probe; it fails, the circuit opens again.
    wait_for(&conn, BreakerState::HalfOpen).await;
    assert_eq!(conn.send(get("/Patient/patient-0000"), &[]).await.unwrap().status, 500);
    assert_eq!(conn.stats().breaker, BreakerState::Open);
    assert!(conn.send(get("/Patient/patient-0000"), &[]).await.is_err());
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 4);
    // Next probe succeeds and closes it.
    wait_for(&conn, BreakerState::HalfOpen).await;
    assert_eq!(conn.send(get("/Patient/patient-0000"), &[]).await.unwrap().status, 200);
    assert_eq!(conn.stats().breaker, BreakerState::Closed);
    assert_eq!(conn.send(get("/Patient/patient-0000"), &[]).await.unwrap().status, 200);
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 6);
    println!("breaker: 3 failures opened it; 5 calls failed fast with 0 upstream hits; failed probe re-opened; good probe closed; upstream saw 6");
}

async fn wait_for(conn: &Connection, state: BreakerState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.stats().breaker != state {
        assert!(Instant::now() < deadline, "breaker never reached {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_an_idempotency_key_is_not_retried_and_one_with_a_key_is() {
    let sb = sandbox_no_auth().await;
    let conn = Connection::new(&plain("ehr", &sb.base_url())).unwrap();
    let task = br#"{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/patient-0000"}}"#.to_vec();
    let post = |key: Option<&str>| HttpRequest {
        connection: "ehr".into(),
        method: "POST".into(),
        path: "/Task".into(),
        headers: vec![("content-type".into(), "application/fhir+json".into())],
        body: Some(task.clone()),
        idempotency_key: key.map(str::to_string),
    };
    sb.add_fault(rule("POST", "/Task", "503;times=2")).unwrap();
    let r = conn.send(post(None), &[]).await.unwrap();
    assert_eq!(r.status, 503, "a POST without a key gets the upstream's answer, not a retry");
    assert_eq!(sb.stats().count("POST", "/Task"), 1);
    // A transport failure is not retried either.
    let reset = conn.send(with_fault(post(None), "reset"), &[]).await;
    assert!(matches!(&reset, Err(HttpError::Unavailable(m)) if m.contains("not retried")), "{reset:?}");
    assert_eq!(sb.stats().count("POST", "/Task"), 2);
    // With a key: retried past the 503, and the upstream creates one Task for it.
    let r = conn.send(post(Some("discharge-42")), &[]).await.unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(sb.stats().count("POST", "/Task"), 4, "one 503 then the create");
    let again = conn.send(post(Some("discharge-42")), &[]).await.unwrap();
    assert_eq!(again.status, 201);
    let id = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap()["id"].clone();
    assert_eq!(id(&r.body), id(&again.body), "the same key returns the same Task");
    let search = conn.send(get("/Task?patient=patient-0000"), &[]).await.unwrap();
    let bundle: serde_json::Value = serde_json::from_slice(&search.body).unwrap();
    // The reset POST reached the handler once (its body was cut after the create).
    assert_eq!(bundle["total"], 2, "no key: one Task; the keyed one once despite two sends");
    println!("POST without key: 1 upstream hit on 503, 1 on reset; with key: 2 hits (503, 201), replay returned the same Task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_after_the_configured_attempts() {
    let sb = sandbox_no_auth().await;
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.timeout_ms = 200;
    cfg.retry = RetryConfig { max_attempts: 2, base_ms: 1, cap_ms: 5 };
    let conn = Connection::new(&cfg).unwrap();
    let r = conn.send(with_fault(get("/Patient/patient-0000"), "slow=2000"), &[]).await;
    assert!(matches!(r, Err(HttpError::Timeout)), "{r:?}");
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 2);
    // A reset mid-body on a GET is retried.
    let r = conn.send(with_fault(get("/Patient/patient-0001"), "reset;times=1"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0001"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_are_not_retried() {
    let sb = sandbox_no_auth().await;
    let conn = Connection::new(&plain("ehr", &sb.base_url())).unwrap();
    assert_eq!(conn.send(get("/Patient/nobody"), &[]).await.unwrap().status, 404);
    assert_eq!(conn.send(with_fault(get("/Patient/patient-0000"), "422"), &[]).await.unwrap().status, 422);
    assert_eq!(conn.send(with_fault(get("/Patient/patient-0001"), "408;times=1"), &[]).await.unwrap().status, 200);
    let s = sb.stats();
    assert_eq!((s.count("GET", "/Patient/nobody"), s.count("GET", "/Patient/patient-0000"), s.count("GET", "/Patient/patient-0001")), (1, 1, 2));
}
