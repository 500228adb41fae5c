//! End-to-end: the operations plane of `ehrgate serve` (docs/operations.md): the
//! admin server's health checks and `/metrics` (read by the Prometheus client's own
//! parser), the KPI table (read by an independent Delta reader) and the console
//! (opened in headless Chromium).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::gateway::*;


/// The python stream client with up to `window` messages ahead of their ACKs.
fn stream_window(port: u16, start: u64, count: u64, window: u32) -> (i32, Vec<String>) {
    stream_as(port, "STRM", start, count, window)
}

/// The same with the messages' control id / patient prefix.
fn stream_as(port: u16, prefix: &str, start: u64, count: u64, window: u32) -> (i32, Vec<String>) {
    let mut child = Command::new("python3")
        .arg(peer_script())
        .args(["--port", &port.to_string(), "stream", "--prefix", prefix, "--start", &start.to_string(), "--count", &count.to_string()])
        .args(["--window", &window.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap()).lines().map(|l| l.unwrap()).collect();
    (child.wait().unwrap().code().unwrap_or(-1), lines)
}

const ADMIN_TOKEN: &str = "ops-test-admin-token-0123456789";
const VIEWER_TOKEN: &str = "ops-test-viewer-token-9876543210";

fn admin_config(dir: &Path, extra: &str) {
    config(dir, &format!("\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"env:EHRGATE_ADMIN_TOKEN\"\n{extra}"));
}

/// `/metrics` read by the Prometheus client's own OpenMetrics parser: sample name
/// with its labels (`name{a="x",b="y"}`, labels sorted) -> value.
fn scrape(port: u16) -> serde_json::Map<String, serde_json::Value> {
    let (status, body) = admin_get(port, "/metrics", None);
    assert_eq!(status, 200, "no token needed: {body}");
    // (Python fetches the exposition itself: urllib undoes any chunking)
    let script = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
def key(s):
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
    return s.name + ("{" + labels + "}" if labels else "")
print(json.dumps({key(s): s.value for f in text_string_to_metric_families(text) for s in f.samples}))
"#;
    let out = Command::new("python3").args(["-c", script, &port.to_string()]).output().unwrap();
    assert!(out.status.success(), "the Prometheus parser refused /metrics: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_agree_with_the_lake_per_listener_and_table_and_health_needs_no_token() {
    let dir = workdir("metrics");
    admin_config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let mllp = gw.port("mllp listener adt");
    let admin = gw.port("admin on");
    assert_eq!(admin_get(admin, "/healthz", None).0, 200);
    assert_eq!(admin_get(admin, "/readyz", None).0, 200);
    assert_eq!(admin_get(admin, "/v1/adapters", None).0, 401, "the API needs the token");
    assert_eq!(admin_get(admin, "/v1/adapters", Some(ADMIN_TOKEN)).0, 200);

    // The shared corpus, by a peer no code here wrote.
    let files = ehrgate_testkit::hl7_samples();
    let out = Command::new("python3").arg(peer_script()).args(["--port", &mllp.to_string(), "corpus"]).args(&files).output().unwrap();
    assert!(out.status.success(), "peer failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    let mut codes: std::collections::BTreeMap<String, u64> = Default::default();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for a in v["acks"].as_array().unwrap() {
            *codes.entry(a[0].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let sent: u64 = codes.values().sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = scrape(admin);
        if m["ehrgate_units_committed_total"].as_f64() == Some(sent as f64) {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "not all committed within 60 s: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    gw.stop();
    let n = |k: &str| m.get(k).and_then(|v| v.as_f64()).unwrap_or_else(|| panic!("no sample {k} in {m:?}")) as u64;
    let bronze = count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages");
    assert_eq!(bronze, sent);
    assert_eq!(n("ehrgate_units_received_total"), bronze);
    assert_eq!(n("ehrgate_listener_units_received_total{listener=\"adt\"}"), bronze, "per listener");
    assert_eq!(n("ehrgate_units_rejected_total"), count(&dir.0, "SELECT count(DISTINCT id) AS n FROM quarantine_records"), "every quarantined unit (unsupported types too)");
    // Each answer code as the peer saw it; AE is exactly the invalid input in quarantine.
    for (code, k) in &codes {
        assert_eq!(n(&format!("ehrgate_listener_answers_total{{code=\"{code}\",listener=\"adt\"}}")), *k, "{code}");
    }
    let invalid = count(&dir.0, "SELECT count(*) AS n FROM quarantine_records WHERE error_kind = 'invalid-input'");
    assert!(invalid > 0);
    assert_eq!(codes.get("AE").copied().unwrap_or(0), invalid, "AE count = quarantined invalid rows");
    // The ACK latency histogram holds every answer; its buckets are cumulative.
    assert_eq!(n("ehrgate_listener_answer_latency_seconds_count{listener=\"adt\"}"), sent);
    assert_eq!(n("ehrgate_listener_answer_latency_seconds_bucket{le=\"+Inf\",listener=\"adt\"}"), sent);
    assert!(n("ehrgate_listener_answer_latency_seconds_bucket{le=\"0.001\",listener=\"adt\"}") <= n("ehrgate_listener_answer_latency_seconds_bucket{le=\"0.1\",listener=\"adt\"}"));
    // Per table: the rows committed are the rows in the table.
    assert_eq!(n("ehrgate_lake_rows_total{table=\"bronze/hl7_messages\"}"), bronze);
    assert_eq!(n("ehrgate_lake_rows_total{table=\"quarantine/records\"}"), count(&dir.0, "SELECT count(*) AS n FROM quarantine_records"));
    let commits = n("ehrgate_lake_commits_total{table=\"bronze/hl7_messages\"}");
    assert!(commits >= 1 && commits <= sent, "{commits}");
    assert_eq!(n("ehrgate_lake_commit_duration_seconds_count{table=\"bronze/hl7_messages\"}"), commits);
    assert!(n("ehrgate_lake_rows_total{table=\"silver/patient\"}") >= count(&dir.0, "SELECT count(*) AS n FROM silver_patient"));
    assert_eq!(n("ehrgate_units_pending"), 0);
    assert_eq!(n("ehrgate_ready"), 1);
}

#[test]
fn readyz_is_503_while_the_log_is_replayed_and_200_after() {
    const N: u64 = 10_000;
    let dir = workdir("readyz");
    admin_config(&dir.0, "");
    let env = [("EHRGATE_ADMIN_TOKEN", ADMIN_TOKEN)];
    // Every unit reaches the lake, but no checkpoint is written: a restart replays
    // all of them.
    let mut gw = Gateway::start(&dir.0, &[env[0], ("EHRGATE_FAULT_SLOW_CHECKPOINT_MS", "600000")]);
    let mllp = gw.port("mllp listener adt");
    let (code, lines) = stream_window(mllp, 0, N, 32);
    assert_eq!(code, 0, "{:?}", lines.last());
    gw.kill9();
    // Slow lake writes keep the replay going long enough to look at it.
    let mut gw = Gateway::start(&dir.0, &[env[0], ("EHRGATE_FAULT_SLOW_COMMIT_MS", "1500")]);
    let admin = gw.port("admin on");
    let (status, body) = admin_get(admin, "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("replaying"), "{body}");
    assert_eq!(admin_get(admin, "/healthz", None).0, 200, "up, though not ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while admin_get(admin, "/readyz", None).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "not ready 180 s after the start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = scrape(admin);
    assert_eq!(m["ehrgate_units_replayed_total"].as_f64(), Some(N as f64));
    assert_eq!(m["ehrgate_replay_pending"].as_f64(), Some(0.0));
    gw.stop();
}

/// POST `path` with a JSON `body` on the admin server: (status, body).
fn admin_post(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn committed(admin: u16, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scrape(admin)["ehrgate_units_committed_total"].as_f64() != Some(n as f64) {
        assert!(std::time::Instant::now() < deadline, "not all {n} units committed within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The KPI table is what an independent reader computes from bronze and the
/// quarantine; the console, opened in headless Chromium, asks for a token, then
/// charts it and lists the listeners, adapters and quarantine; its reprocess action
/// is refused with the viewer token and moves a quarantined unit into silver with
/// the admin token.
#[test]
fn kpis_agree_with_an_independent_reader_and_the_console_shows_them_and_reprocesses() {
    let dir = workdir("console");
    admin_config(&dir.0, "viewer_token = \"env:EHRGATE_VIEWER_TOKEN\"\n\n[kpi]\nrefresh_every_s = 0\nsla_minutes = 5\n");
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_ADMIN_TOKEN", ADMIN_TOKEN), ("EHRGATE_VIEWER_TOKEN", VIEWER_TOKEN)]);
    let mllp = gw.port("mllp listener adt");
    let admin = gw.port("admin on");

    let files = ehrgate_testkit::hl7_samples();
    let out = Command::new("python3").arg(peer_script()).args(["--port", &mllp.to_string(), "corpus"]).args(&files).output().unwrap();
    assert!(out.status.success(), "peer failed: {}", text(&out.stderr));
    let corpus: usize = text(&out.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["acks"].as_array().unwrap().len()).sum();
    let (code, _) = stream_window(mllp, 0, 40, 8);
    assert_eq!(code, 0);

    // An operator disables the adapter: what arrives meanwhile is quarantined
    // (unrouted), kept for reprocessing.
    let (status, listing) = admin_get(admin, "/v1/adapters", Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let version = listing["adapters"].as_array().unwrap().iter().find(|a| a["name"] == "reference").unwrap()["active"].as_str().unwrap().to_string();
    assert_eq!(admin_post(admin, "/v1/adapters/reference/disable", Some(ADMIN_TOKEN), "").0, 200);
    let (code, lines) = stream_as(mllp, "LATE", 0, 1, 1);
    assert_eq!(code, 0);
    assert!(lines[0].ends_with("AE"), "{lines:?}");
    assert_eq!(admin_post(admin, "/v1/adapters/reference/activate", Some(ADMIN_TOKEN), &format!("{{\"version\": \"{version}\"}}")).0, 200);
    let sent = corpus as u64 + 41;
    committed(admin, sent);

    // `ehrgate kpi` refreshes gold/kpi_minute from bronze and prints it.
    let out = ehrgate(&dir.0, &["kpi", "--since", "1h", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = k["rows"].as_array().unwrap();
    let received: i64 = rows.iter().map(|r| r["received"].as_i64().unwrap()).sum();
    assert_eq!(received as u64, sent);
    let quarantined: i64 = rows.iter().map(|r| r["quarantined"].as_i64().unwrap()).sum();
    assert_eq!(quarantined as u64, count(&dir.0, "SELECT count(DISTINCT id) AS n FROM quarantine_records"));
    // Every accepted unit landed within the SLA here (a local disk, no faults).
    let (units, met): (i64, i64) = rows.iter().fold((0, 0), |(u, m), r| (u + r["sla_units"].as_i64().unwrap(), m + r["sla_met"].as_i64().unwrap()));
    assert_eq!((units, met), (received - quarantined, received - quarantined), "{rows:?}");
    assert!(rows.iter().any(|r| r["adapter"].as_str().unwrap().starts_with("reference@")), "{rows:?}");
    assert!(rows.iter().all(|r| r["ack_p50_ms"].as_f64().is_some_and(|v| v > 0.0)), "{rows:?}");
    // An independent reader (delta-rs's Python package and polars) agrees.
    let check = Command::new("python3").arg(ehrgate_testkit::repo_root().join("tests/kpi_check.py")).arg(dir.0.join("ehrgate-data")).arg("5").output().unwrap();
    assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
    let totals: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(totals["received"].as_u64(), Some(sent));
    assert_eq!(totals["sla_met"].as_i64(), Some(met));

    // The console's data needs a token (viewer or admin); its action the admin token.
    let id = sql(&dir.0, "SELECT id FROM quarantine_records WHERE error_kind = 'unrouted'")[0]["id"].as_str().unwrap().to_string();
    for path in ["/v1/console/overview", "/v1/console/kpi?since=60", "/v1/console/quarantine"] {
        assert_eq!(admin_get(admin, path, None).0, 401, "{path}");
        assert_eq!(admin_get(admin, path, Some("not-the-token-0123456789")).0, 401, "{path}");
        assert_eq!(admin_get(admin, path, Some(VIEWER_TOKEN)).0, 200, "{path}");
    }
    let (_, q) = admin_get(admin, "/v1/console/quarantine", Some(VIEWER_TOKEN));
    assert!(q.contains(&id) && !q.contains("\"raw\""), "the reasons, never the bytes: {q}");
    assert_eq!(admin_get(admin, "/console", None).0, 200, "the page itself is open");
    assert_eq!(admin_post(admin, &format!("/v1/quarantine/{id}/reprocess"), None, "").0, 401);
    assert_eq!(admin_post(admin, &format!("/v1/quarantine/{id}/reprocess"), Some(VIEWER_TOKEN), "").0, 403, "the viewer token is read-only");
    let patients = count(&dir.0, "SELECT count(*) AS n FROM silver_patient");

    // The console in a real browser.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let out = Command::new("python3")
        .arg(ehrgate_testkit::repo_root().join("tests/console_check.py"))
        .args(["--url", &format!("http://127.0.0.1:{admin}"), "--screenshot"])
        .arg(&shot)
        .args(["--token", VIEWER_TOKEN, "--admin-token", ADMIN_TOKEN, "--reprocess-id", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "console check failed: {}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("console screenshot: {}", shot.display());
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chart = &seen["charts"]["throughput"];
    assert!(chart["points"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(chart["series_sum"].as_f64(), Some(sent as f64), "the chart holds every unit received: {seen}");
    assert!(seen["charts"]["ack_latency"]["series_sum"].as_f64().unwrap() > 0.0, "{seen}");
    assert_eq!(seen["tables"]["listeners"].as_u64(), Some(1), "{seen}");
    assert!(seen["tables"]["adapters"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["tables"]["quarantine"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["without_token"].as_str().unwrap().to_lowercase().contains("token"), "without a token the page asks for one: {seen}");
    let r = &seen["reprocess"];
    let refused = r["viewer"].as_str().unwrap().to_lowercase();
    assert!(refused.contains("403") || refused.contains("read-only"), "{seen}");
    assert!(r["admin"].as_str().unwrap().contains("mapped by reference@"), "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a screenshot was written");

    // Reprocessed: the unit's patient is in silver, the row is marked, the action audited.
    gw.stop();
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM silver_patient"), patients + 1);
    assert_eq!(count(&dir.0, &format!("SELECT count(*) AS n FROM quarantine_records WHERE id = '{id}' AND reprocessed_at IS NOT NULL")), 1);
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM audit_access_log WHERE action = 'quarantine.reprocess' AND outcome = 'allowed: mapped'"), 1);
    assert!(count(&dir.0, "SELECT count(*) AS n FROM audit_access_log WHERE action = 'admin.call' AND outcome LIKE 'denied: 403%'") >= 1, "the viewer's refused action is audited");
}

/// With OTEL_EXPORTER_OTLP_ENDPOINT set, the data path's spans reach an
/// OpenTelemetry collector over OTLP/HTTP (decoded with the project's own
/// protobuf definitions); with EHRGATE_LOG_FORMAT=json every log line is JSON.
#[test]
fn spans_reach_an_otlp_collector_and_logs_can_be_json() {
    /// Killed however the test ends (a collector left behind would hold the test's output open).
    struct Collector(std::process::Child);
    impl Drop for Collector {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut collector = Collector(Command::new("python3").arg(ehrgate_testkit::repo_root().join("tests/otlp_collector.py")).stdout(Stdio::piped()).spawn().unwrap());
    let mut spans = BufReader::new(collector.0.stdout.take().unwrap()).lines();
    let port: u16 = spans.next().unwrap().unwrap().strip_prefix("listening ").unwrap().parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in spans.map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });

    let dir = workdir("otlp");
    config(&dir.0, "");
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("EHRGATE_LOG_FORMAT", "json"), ("EHRGATE_LOG", "warn,ehrgate_lake=debug")];
    let mut gw = Gateway::start(&dir.0, &env);
    let mllp = gw.port("mllp listener adt");
    let (code, _) = stream_as(mllp, "TRC", 0, 5, 1);
    assert_eq!(code, 0);
    let (_, printed) = gw.stop_with_output();
    // (the gateway's own announcements on stdout stay plain text: supervisors wait for them)
    let logs: Vec<&String> = printed.iter().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "the lake's debug lines: {printed:?}");
    for l in &logs {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object() && v["timestamp"].is_string(), "{l}");
    }

    // The spans were flushed at the stop.
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let wanted = ["mllp.unit", "wal.append", "map", "lake.commit", "lake.write", "wal.checkpoint"];
    while !wanted.iter().all(|w| seen.iter().any(|s| s["name"] == *w)) || seen.iter().filter(|s| s["name"] == "mllp.unit").count() < 5 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => seen.push(s),
            Err(_) => panic!("spans missing after 30 s; got {:?}", seen.iter().map(|s| s["name"].clone()).collect::<Vec<_>>()),
        }
    }
    drop(collector);
    assert!(seen.iter().all(|s| s["service"] == "ehrgate"), "{seen:?}");
    let units: Vec<&serde_json::Value> = seen.iter().filter(|s| s["name"] == "mllp.unit").collect();
    let mut ids: Vec<&str> = units.iter().map(|s| s["attributes"]["control_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["TRC0", "TRC1", "TRC2", "TRC3", "TRC4"]);
    assert!(units.iter().all(|s| s["attributes"]["answer"] == "AA" && s["attributes"]["listener"] == "adt"), "{units:?}");
    let writes: Vec<&str> = seen.iter().filter(|s| s["name"] == "lake.write").map(|s| s["attributes"]["table"].as_str().unwrap()).collect();
    assert!(writes.contains(&"bronze/hl7_messages") && writes.contains(&"silver/patient"), "{writes:?}");
    // A table's write is a child of the flow's commit.
    let commits: Vec<&str> = seen.iter().filter(|s| s["name"] == "lake.commit").map(|s| s["span_id"].as_str().unwrap()).collect();
    assert!(seen.iter().any(|s| s["name"] == "lake.write" && commits.contains(&s["parent"].as_str().unwrap())), "{seen:?}");
}
