//! End-to-end: `ehrgate serve` with real peers. An MLLP client no code here wrote
//! (python-hl7's asyncio client, tests/peers/mllp_client.py) sends the shared corpus
//! and a 10,000-message stream through a kill -9; file drops are ingested exactly
//! once; webhooks are signed by Python's hmac; a slow lake slows the sender down.

mod common;

use std::path::{Path, PathBuf};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::gateway::*;


#[test]
fn the_shared_corpus_over_mllp_gets_one_correct_ack_per_message() {
    let dir = workdir("corpus");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    let files = ehrgate_testkit::hl7_samples();
    let out = Command::new("python3").arg(peer_script()).args(["--port", &port.to_string(), "corpus"]).args(&files).output().unwrap();
    assert!(out.status.success(), "peer failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), files.len(), "one answer per file");
    let mut total = 0;
    let mut errors = 0;
    let mut rejected = 0;
    for (file, line) in files.iter().zip(&lines) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let acks: Vec<(String, String)> = line["acks"].as_array().unwrap().iter().map(|a| (a[0].as_str().unwrap().into(), a[1].as_str().unwrap().into())).collect();
        let bytes = std::fs::read(file).unwrap();
        let decoded = ehrgate_sdk::hl7::decode_bytes(&bytes);
        match ehrgate_sdk::hl7::parse_batch(&decoded) {
            Ok(batch) => {
                assert!(!name.starts_with("malformed_"), "{name} parses, but the corpus calls it malformed");
                let ids: Vec<String> = batch.messages.iter().map(|m| m.control_id().to_string()).collect();
                let got: Vec<String> = acks.iter().map(|(_, id)| id.clone()).collect();
                assert_eq!(got, ids, "{name}: one ACK per message, MSA-2 echoing MSH-10 in order");
                for ((code, id), m) in acks.iter().zip(&batch.messages) {
                    // Enhanced mode (MSH-15 set) is answered with accept ACKs.
                    let enhanced = m.get("MSH-15").is_some_and(|v| !v.trim().is_empty());
                    // HL7 v2.5.1 2.9.2: a header without MSH-9, MSH-10 or a known MSH-12
                    // is rejected (AR / CR)...
                    let field = |f: &str| m.get(f).unwrap_or_default().trim().to_string();
                    let known = ["2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9", "2.9.1"];
                    let bad_header = field("MSH-9").is_empty() || field("MSH-10").is_empty() || !known.contains(&field("MSH-12.1").as_str());
                    // ... other valid messages are accepted: mapped, or stored for a
                    // mapping to come (unsupported types are AA with a note, never AE).
                    let expect = match (enhanced, bad_header) {
                        (true, true) => "CR",
                        (true, false) => "CA",
                        (false, true) => "AR",
                        (false, false) => "AA",
                    };
                    assert_eq!(code, expect, "{name} {id}");
                    if bad_header {
                        rejected += 1;
                    }
                }
                total += acks.len();
            }
            Err(_) => {
                assert!(name.starts_with("malformed_"), "{name} does not parse");
                assert_eq!(acks.len(), 1, "{name}: a malformed frame gets one NAK");
                assert_eq!(acks[0].0, "AE", "{name}: malformed input is AE");
                total += 1;
                errors += 1;
            }
        }
    }
    let stopped = gw.stop();
    assert_eq!(stat(&stopped, "committed") as usize, total);
    // Every message is in bronze as received; every AE is in quarantine.
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages") as usize, total);
    let quarantined = count(&dir.0, "SELECT count(*) AS n FROM quarantine_records WHERE error_kind <> 'unsupported' AND error_kind NOT LIKE 'rejected-%'") as usize;
    assert_eq!(quarantined, errors, "each AE has its quarantine row");
    let refused = count(&dir.0, "SELECT count(*) AS n FROM quarantine_records WHERE error_kind LIKE 'rejected-%'") as usize;
    assert_eq!(refused, rejected, "each AR for a bad header has its quarantine row (stored, reprocessable)");
    let malformed = files.iter().filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("malformed_")).count();
    assert_eq!(errors, malformed, "exactly the corpus's malformed files are refused");
    assert!(count(&dir.0, "SELECT count(*) AS n FROM silver_patient") > 10);
}

/// Run the python stream client (one message in flight); calls `on_line` for each
/// line it prints.
fn stream(port: u16, start: u64, count: u64, on_line: impl FnMut(&str)) -> (i32, Vec<String>) {
    stream_window(port, start, count, 1, on_line)
}

/// The same, with up to `window` messages sent ahead of their ACKs (pipelining);
/// the client checks that ACKs come back in order.
fn stream_window(port: u16, start: u64, count: u64, window: u32, mut on_line: impl FnMut(&str)) -> (i32, Vec<String>) {
    let mut child = Command::new("python3")
        .arg(peer_script())
        .args(["--port", &port.to_string(), "stream", "--start", &start.to_string(), "--count", &count.to_string()])
        .args(["--window", &window.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        on_line(&line);
        lines.push(line);
    }
    (child.wait().unwrap().code().unwrap_or(-1), lines)
}

#[test]
fn kill_9_during_a_10k_stream_loses_no_acked_message_and_resends_do_not_duplicate() {
    const N: u64 = 10_000;
    let dir = workdir("kill9");
    config(&dir.0, "");
    // Slow commits make sure some ACKed messages are only in the log at the kill.
    let gw = std::cell::RefCell::new(Some(Gateway::start(&dir.0, &[("EHRGATE_FAULT_SLOW_COMMIT_MS", "1500")])));
    let port = gw.borrow_mut().as_mut().unwrap().port("mllp listener adt");
    // Pipelined: 16 messages ahead of their ACKs, so groups form in the log.
    let (code, lines) = stream_window(port, 0, N, 16, |line| {
        if line == "acked 3000 AA" {
            gw.borrow_mut().take().unwrap().kill9();
        }
    });
    assert_eq!(code, 3, "the client saw the connection break: {:?}", lines.last());
    let acked: Vec<u64> = lines.iter().filter_map(|l| l.strip_prefix("acked ")).map(|l| l.split(' ').next().unwrap().parse().unwrap()).collect();
    assert!(acked.len() >= 3001);
    let resume: u64 = lines.last().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(resume, *acked.last().unwrap() + 1);

    let mut gw = Gateway::start(&dir.0, &[]);
    let replay = gw.wait_for("write-ahead log:", Duration::from_secs(5));
    assert!(replay.contains("replaying"), "{replay}");
    let port = gw.port("mllp listener adt");
    // The client resends from the first message it has no ACK for.
    let (code, lines) = stream(port, resume, N - resume, |_| {});
    assert_eq!(code, 0, "{:?}", lines.last());
    assert!(lines.iter().all(|l| l.ends_with(" AA")));
    let stopped = gw.stop();
    assert_eq!(stat(&stopped, "failed"), 0);

    let rows = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM silver_patient");
    assert_eq!((rows[0]["n"].as_u64().unwrap(), rows[0]["d"].as_u64().unwrap()), (N, N), "every message exactly once in silver");
    let encounters = count(&dir.0, "SELECT count(*) AS n FROM silver_encounter");
    assert_eq!(encounters, N);
    // Bronze: the replayed units that were committed before the kill are not
    // appended again (a unit sent twice by the client is two receipts, two ids).
    let b = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT record_id) AS d FROM bronze_hl7_messages");
    assert_eq!(b[0]["n"], b[0]["d"], "no record id twice in bronze after the replay");
    assert!(b[0]["d"].as_u64().unwrap() >= N);
}

#[test]
fn a_replay_of_units_already_in_the_lake_adds_no_second_bronze_or_quarantine_row() {
    let dir = workdir("replay-once");
    config(&dir.0, "");
    // Units reach the lake, then the kill comes before the log's checkpoint.
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_FAULT_SLOW_CHECKPOINT_MS", "600000")]);
    let port = gw.port("mllp listener adt");
    // First a message that is quarantined (no PID-3): it is in the first commit.
    let acks = raw_mllp(port, b"\x0bMSH|^~\\&|S|F|R|F|20240101||ADT^A08|Q1|P|2.5.1\rEVN|A08|20240101\rPID|1||||Doe^J\r\x1c\x0d", 1);
    assert!(msa(&acks[0]).starts_with("MSA|AE") || msa(&acks[0]).starts_with("MSA|AR"), "{}", acks[0]);
    let (code, lines) = stream(port, 0, 20, |_| {});
    assert_eq!(code, 0, "{lines:?}");
    // The first commit is in the lake; no checkpoint is written (nor any commit
    // after it: the commit stage waits).
    let in_lake = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir.0).args(["sql", "SELECT count(*) AS n FROM quarantine_records", "--format", "json"]).output().unwrap();
        out.status.success() && text(&out.stdout).contains(r#""n":1"#)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !in_lake() {
        assert!(std::time::Instant::now() < deadline, "the first commit did not reach the lake within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.kill9();
    let mut gw = Gateway::start(&dir.0, &[]);
    let replay = gw.wait_for("write-ahead log:", Duration::from_secs(10));
    assert!(replay.contains("21 units"), "every unit is replayed (no checkpoint): {replay}");
    let line = gw.wait_for("replayed units were in bronze already", Duration::from_secs(60));
    let skipped: u64 = line.split("replay: ").nth(1).and_then(|l| l.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(skipped >= 1, "{line}");
    gw.stop();
    let b = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT record_id) AS d FROM bronze_hl7_messages");
    assert_eq!((b[0]["n"].as_u64().unwrap(), b[0]["d"].as_u64().unwrap()), (21, 21));
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM quarantine_records"), 1);
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM silver_patient"), 20);
}

fn batch_file(prefix: &str, n: usize) -> String {
    let mut s = String::from("BHS|^~\\&|DROPPER|HOSP|EHRGATE|LAKE|20240102030405\r");
    for i in 0..n {
        s.push_str(&format!(
            "MSH|^~\\&|DROPPER|HOSP|EHRGATE|LAKE|20240102030405||ADT^A04^ADT_A01|{prefix}{i}|P|2.5.1\rEVN|A04|20240102030405\rPID|1||{prefix}-P{i}^^^HOSP^MR||Roe^Sam||19700101|M\r"
        ));
    }
    s.push_str(&format!("BTS|{n}\r"));
    s
}

fn drop_file(dir: &Path, name: &str, content: &str) {
    // Written aside and renamed: the watcher never sees a half-written file.
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn file_drops_land_exactly_once_even_dropped_twice_or_killed_halfway() {
    let dir = workdir("drops");
    let drops = dir.0.join("inbox");
    config(
        &dir.0,
        &format!("\n[[listeners.drops]]\nname = \"batches\"\ndir = \"{}\"\nstable_ms = 200\npoll_ms = 50\nchunk = 2000\n", drops.display()),
    );
    std::fs::create_dir_all(&drops).unwrap();
    let mut gw = Gateway::start(&dir.0, &[]);
    let small = batch_file("SMALL", 300);
    drop_file(&drops, "small.hl7", &small);
    gw.wait_for("small.hl7: ingested 300 units", Duration::from_secs(60));
    assert!(drops.join("processed/small.hl7").is_file());
    // The same file again, under the same name: moved aside, not ingested.
    drop_file(&drops, "small.hl7", &small);
    gw.wait_for("already ingested", Duration::from_secs(60));
    assert!(drops.join("processed/small.hl7.duplicate").is_file());

    // A big file, and a kill after its first chunk is committed.
    drop_file(&drops, "big.hl7", &batch_file("BIG", 9000));
    gw.wait_for("big.hl7: committed 2000/9000", Duration::from_secs(120));
    gw.kill9();
    assert!(drops.join("big.hl7").is_file(), "not moved before all its rows are in");
    let mut gw = Gateway::start(&dir.0, &[]);
    gw.wait_for("big.hl7: ingested 9000 units", Duration::from_secs(300));
    gw.stop();
    assert!(drops.join("processed/big.hl7").is_file());
    let rows = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM silver_patient");
    assert_eq!((rows[0]["n"].as_u64().unwrap(), rows[0]["d"].as_u64().unwrap()), (9300, 9300));
    // Bronze: the re-read after the kill produced the same record ids.
    let b = sql(&dir.0, "SELECT count(DISTINCT record_id) AS d, count(*) AS n FROM bronze_hl7_messages");
    assert_eq!(b[0]["d"].as_u64().unwrap(), 9300);
    assert_eq!(b[0]["n"].as_u64().unwrap(), 9300, "the chunk committed before the kill is not appended again");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// POST a webhook signed at unix time `ts` with Python (urllib + hmac): the status.
fn post_event(port: u16, secret: &str, ts: i64, body: &str) -> u16 {
    post_to(port, "cdc", secret, ts, body, &[])
}

/// The same, to any source, with extra request headers.
fn post_to(port: u16, source: &str, secret: &str, ts: i64, body: &str, extra: &[(&str, &str)]) -> u16 {
    let script = r#"
import hashlib, hmac, json, sys, urllib.request, urllib.error
port, source, secret, ts, body, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4], sys.argv[5].encode(), json.loads(sys.argv[6])
digest = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
sig = "sha256=" + (digest.upper() if extra.pop("__upper_hex", None) else digest)
headers = {"X-Ehrgate-Timestamp": ts, "X-Ehrgate-Signature": sig, "X-Ehrgate-Event-Id": "evt-1", "Content-Type": "application/fhir+json"}
headers.update(extra)
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events/{source}", data=body, method="POST", headers=headers)
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
"#;
    let extra: serde_json::Map<String, serde_json::Value> = extra.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
    let extra = serde_json::Value::Object(extra).to_string();
    let out = Command::new("python3").args(["-c", script, &port.to_string(), source, secret, &ts.to_string(), body, &extra]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().parse().unwrap()
}

#[test]
fn webhooks_accept_good_signatures_and_refuse_wrong_or_replayed_ones() {
    let dir = workdir("webhooks");
    config(
        &dir.0,
        "\n[listeners.webhooks]\nbind = \"127.0.0.1:0\"\n[[listeners.webhooks.sources]]\nname = \"cdc\"\nsecret = \"env:EHRGATE_TEST_WEBHOOK_SECRET\"\nwindow_s = 300\n",
    );
    const SECRET: &str = "correct horse battery staple";
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_TEST_WEBHOOK_SECRET", SECRET)]);
    let port = gw.port("ehrgate: webhooks on");
    let patient = r#"{"resourceType":"Patient","id":"cdc-1","meta":{"lastUpdated":"2024-05-01T10:00:00Z"},"name":[{"family":"Event"}]}"#;
    let now = unix_now();
    assert_eq!(post_event(port, "wrong secret of some length", now, patient), 401);
    assert_eq!(post_event(port, SECRET, now - 3600, patient), 401, "an hour-old signed request is a replay");
    assert_eq!(post_event(port, SECRET, now, patient), 202);
    assert_eq!(post_event(port, SECRET, now, patient), 409, "the same signed request again, within the window");
    assert_eq!(post_to(port, "cdc", SECRET, now, patient, &[("__upper_hex", "1")]), 409, "the same signature in upper-case hex is the same request");
    assert_eq!(post_event(port, SECRET, i64::MIN, patient), 401, "an absurd timestamp is refused, not a crash");
    assert_eq!(post_event(port, SECRET, i64::MAX, patient), 401);
    assert_eq!(post_event(port, SECRET, now, r#"{"not":"fhir"}"#), 422, "durable, but rejected by the adapter");
    let (_, printed) = gw.stop_with_output();
    assert!(printed.iter().any(|l| l.contains("webhook refused")), "refusals are logged");
    assert!(!printed.iter().any(|l| l.contains(SECRET)), "the secret never reaches the logs");
    assert!(!files_contain(&dir.0, SECRET.as_bytes()), "nor any file under the working directory");
    // Only the two signed, fresh requests were written.
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_events"), 2);
    let rows = sql(&dir.0, "SELECT id FROM silver_patient");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "cdc-1");
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM quarantine_records WHERE input_kind = 'event'"), 1);
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() { files_contain(&p, needle) } else { std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) }
    })
}

#[test]
fn a_slow_lake_slows_the_sender_down_and_nothing_is_lost_or_nacked() {
    let dir = workdir("slow");
    config(&dir.0, "\n[wal]\nmax_pending = 100\n");
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_FAULT_SLOW_COMMIT_MS", "300")]);
    let port = gw.port("mllp listener adt");
    // Pipelined, so that the sender really is held back by TCP when the gateway
    // stops reading.
    let (code, lines) = stream_window(port, 0, 1000, 32, |_| {});
    assert_eq!(code, 0, "{:?}", lines.last());
    assert_eq!(lines.iter().filter(|l| l.ends_with(" AA")).count(), 1000, "every message AA, in order, none NACKed");
    let stopped = gw.stop();
    assert!(stat(&stopped, "backpressure-waits") > 0, "the sender was made to wait: {stopped}");
    assert_eq!(stat(&stopped, "failed"), 0);
    assert_eq!(count(&dir.0, "SELECT count(DISTINCT id) AS n FROM silver_patient"), 1000);
}

#[test]
fn a_tls_listener_serves_a_tls_peer_and_refuses_plain_tcp() {
    let dir = workdir("tls");
    // A self-signed certificate for 127.0.0.1, made by openssl for this test.
    let ok = Command::new("openssl")
        .current_dir(&dir.0)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        "[[listeners.mllp]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n",
    )
    .unwrap();
    let mut gw = Gateway::start(&dir.0, &[]);
    let line = gw.wait_for("mllp listener secure", Duration::from_secs(5));
    assert!(line.contains("TLS"), "{line}");
    let port = gw.port("mllp listener secure");
    let files: Vec<PathBuf> = ehrgate_testkit::hl7_samples().into_iter().filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("adt_a0")).take(3).collect();
    let out = Command::new("python3")
        .arg(peer_script())
        .args(["--port", &port.to_string(), "--tls-ca", dir.0.join("cert.pem").to_str().unwrap(), "corpus"])
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "TLS peer failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    let acks: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(acks.len(), 3);
    for a in &acks {
        let code = a["acks"][0][0].as_str().unwrap();
        assert!(code == "AA" || code == "CA", "{a}");
    }
    // Plain MLLP to the TLS port: the handshake fails and the connection closes
    // without an ACK.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A01|PLAIN1|P|2.5\r\x1c\r").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(!String::from_utf8_lossy(&reply).contains("MSA"), "no HL7 answer over plain TCP");
    let stopped = gw.stop();
    assert_eq!(stat(&stopped, "received"), 3);
}

#[test]
fn a_mirth_http_sender_keeps_its_channel_metadata_as_provenance() {
    let dir = workdir("mirth-http");
    config(
        &dir.0,
        "\n[adapters.mirth]\ncomponent = \"mirth\"\n[listeners.webhooks]\nbind = \"127.0.0.1:0\"\n[[listeners.webhooks.sources]]\nname = \"mirth-http\"\nsecret = \"env:EHRGATE_TEST_WEBHOOK_SECRET\"\nadapter = \"mirth\"\nforward_headers = [\"X-Mirth-*\"]\n",
    );
    const SECRET: &str = "mirth channel shared secret";
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_TEST_WEBHOOK_SECRET", SECRET)]);
    let port = gw.port("ehrgate: webhooks on");
    let hl7 = std::fs::read_to_string(ehrgate_testkit::repo_root().join("adapters/mirth/tests/fixtures/mirth_adt_a01_admit.hl7")).unwrap();
    let headers = [("X-Mirth-Channel-Id", "5f1c0a55-chan"), ("X-Mirth-Channel-Name", "ADT to Lake"), ("X-Mirth-Message-Id", "42"), ("Authorization", "Basic c2VjcmV0")];
    assert_eq!(post_to(port, "mirth-http", SECRET, unix_now(), &hl7, &headers), 202);
    gw.stop();
    let rows = sql(&dir.0, "SELECT resource FROM silver_patient");
    assert_eq!(rows.len(), 1);
    let json = rows[0]["resource"].as_str().unwrap();
    assert!(json.contains("5f1c0a55-chan") && json.contains("ADT to Lake"), "channel metadata kept: {json}");
    let bronze = sql(&dir.0, "SELECT count(*) AS n FROM bronze_events");
    assert_eq!(bronze[0]["n"], 1);
    // Only the forwarded headers travel: no credentials in the lake.
    assert!(!files_contain(&dir.0, b"c2VjcmV0"), "the Authorization header is not stored");
}

/// `ehrgate serve` that must fail to start: (exit code, stderr).
fn serve_fails(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ehrgate"));
    cmd.current_dir(dir).args(["serve", "--config", "ehrgate.toml"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), text(&out.stderr))
}

#[test]
fn startup_errors_name_their_cause_and_exit_2_before_anything_starts() {
    // A taken port.
    let dir = workdir("startup-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(dir.0.join("ehrgate.toml"), format!("[[listeners.mllp]]\nname = \"adt\"\nbind = \"127.0.0.1:{port}\"\n")).unwrap();
    let (code, err) = serve_fails(&dir.0, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("listener adt: cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Cannot drop a runtime"), "{err}");
    assert!(!dir.0.join("ehrgate-wal").exists(), "the write-ahead log was not even opened");

    // An unset env: secret and an inline one.
    let dir = workdir("startup-secret");
    let hook = "[listeners.webhooks]\nbind = \"127.0.0.1:0\"\n[[listeners.webhooks.sources]]\nname = \"cdc\"\n";
    std::fs::write(dir.0.join("ehrgate.toml"), format!("{hook}secret = \"env:EHRGATE_TEST_UNSET_SECRET\"\n")).unwrap();
    let (code, err) = serve_fails(&dir.0, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("webhook source cdc") && err.contains("EHRGATE_TEST_UNSET_SECRET is not set"), "{err}");
    std::fs::write(dir.0.join("ehrgate.toml"), format!("{hook}secret = \"inline-secret-value-0123456789\"\n")).unwrap();
    let (code, err) = serve_fails(&dir.0, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("never written inline") && !err.contains("inline-secret-value"), "the cause, never the value: {err}");
    assert!(!err.contains("panicked"), "{err}");
    drop(taken);
}

/// Raw bytes to an MLLP listener; every framed reply until the gateway closes
/// the connection (or `replies` arrived).
fn raw_mllp(port: u16, wire: &[u8], replies: usize) -> Vec<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(wire).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let mut out = Vec::new();
    while out.len() < replies {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        while let (Some(a), Some(b)) = (got.iter().position(|&c| c == 0x0b), got.windows(2).position(|w| w == [0x1c, 0x0d])) {
            out.push(text(&got[a + 1..b]));
            got.drain(..b + 2);
        }
    }
    out
}

fn msa(ack: &str) -> String {
    ack.split('\r').find(|s| s.starts_with("MSA|")).unwrap_or_default().to_string()
}

#[test]
fn a_partial_frame_then_a_new_start_block_is_not_merged_and_an_oversized_frame_gets_a_nak() {
    let dir = workdir("framing");
    config(&dir.0, "max_message_bytes = 2000\n");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    let msg = |id: &str, pad: usize| format!("MSH|^~\\&|S|F|R|F|20240101||ADT^A01|{id}|P|2.5.1\rPID|1||{id}-P^^^H^MR||Doe^{}\r", "J".repeat(pad));
    // A sender that gave up half way through a frame and started again.
    let mut wire = vec![0x0b];
    wire.extend(msg("HALF1", 0).as_bytes()[..30].iter());
    wire.push(0x0b);
    wire.extend(msg("WHOLE1", 0).as_bytes());
    wire.extend([0x1c, 0x0d]);
    let acks = raw_mllp(port, &wire, 1);
    assert_eq!(acks.len(), 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|WHOLE1"), "one ACK, for the whole message: {}", acks[0]);
    // A frame over max_message_bytes: a NAK naming it, then the connection closes.
    let mut wire = vec![0x0b];
    wire.extend(msg("HUGE1", 5000).as_bytes());
    wire.extend([0x1c, 0x0d]);
    let acks = raw_mllp(port, &wire, 2);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(msa(&acks[0]).starts_with("MSA|AR|HUGE1|"), "AR, matched to the message: {}", acks[0]);
    gw.stop();
    let rows = sql(&dir.0, "SELECT control_id FROM bronze_hl7_messages");
    assert_eq!(rows, vec![serde_json::json!({"control_id": "WHOLE1"})], "the abandoned and the refused frames are not stored; the whole one is, alone");
}

#[test]
fn invalid_headers_get_the_acks_hl7_chapter_2_asks_for() {
    let dir = workdir("headers");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    let frame = |m: &str| [&[0x0bu8][..], m.as_bytes(), &[0x1c, 0x0d]].concat();
    let one = |m: &str| {
        let acks = raw_mllp(port, &frame(m), 1);
        assert_eq!(acks.len(), 1, "{m:?}: {acks:?}");
        acks[0].clone()
    };
    let a = one("MSH|^~\\&|\r");
    assert!(msa(&a).starts_with("MSA|AR|"), "only the delimiters: {a}");
    assert!(a.contains("|101^Required field missing^HL70357|"), "{a}");
    let a = one("MSH|^~\\&|S|F|R|F|20240101||ADT^A01||P|2.5.1\rPID|1||X^^^H^MR\r");
    assert!(msa(&a).starts_with("MSA|AR|"), "no MSH-10: {a}");
    let a = one("MSH|^~\\&|S|F|R|F|20240101||ADT^A01|V99|P|9.9\rPID|1||X^^^H^MR\r");
    assert!(msa(&a).starts_with("MSA|AR|V99|") && a.contains("|203^Unsupported version id^HL70357|"), "unknown version: {a}");
    let a = one("MSHa^~\\&aSaFaRaFa20240101aaADT^A01aL1aPa2.5.1\rPIDa1aaX^^^H^MR\r");
    assert!(a.starts_with("MSH|^~\\&|") && (msa(&a).starts_with("MSA|AR|") || msa(&a).starts_with("MSA|AE|")), "a letter as field separator: refused, in readable delimiters: {a}");
    // An ACK sent in gets no ACK: the one reply on this connection is for the
    // message after it.
    let wire = [frame("MSH|^~\\&|S|F|R|F|20240101||ACK|A1|P|2.5.1\rMSA|AA|X1\r"), frame("MSH|^~\\&|S|F|R|F|20240101||ADT^A01|OK1|P|2.5.1\rPID|1||OK1-P^^^H^MR||Doe^J\r")].concat();
    // (Were the ACK answered, that answer would come first.)
    let acks = raw_mllp(port, &wire, 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|OK1"), "{}", acks[0]);
    gw.stop();
    // Every one of them is stored and quarantined, nothing lost.
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages"), 6);
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM quarantine_records WHERE error_kind LIKE 'rejected-%'"), 5);
}

#[test]
fn one_bad_message_in_a_batch_is_refused_alone_and_a_wrong_trailer_count_is_reported() {
    let dir = workdir("batch");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    let msg = |id: &str| format!("MSH|^~\\&|S|F|R|F|20240101||ADT^A01|{id}|P|2.5.1\rPID|1||{id}-P^^^H^MR||Doe^J\r");
    // The middle message's MSH has no encoding characters: it cannot be parsed.
    let batch = format!("BHS|^~\\&|S|F|R|F|20240101||||BATCH7\r{}MSH|\rPID|1||BAD-P\r{}BTS|5\r", msg("B1"), msg("B3"));
    let wire = [&[0x0bu8][..], batch.as_bytes(), &[0x1c, 0x0d]].concat();
    let replies = raw_mllp(port, &wire, 1);
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    let msas: Vec<&str> = reply.split('\r').filter(|s| s.starts_with("MSA|")).collect();
    assert_eq!(msas.len(), 3, "one ACK per message: {reply}");
    assert!(msas[0].starts_with("MSA|AA|B1"), "{reply}");
    assert!(msas[1].starts_with("MSA|AE|"), "{reply}");
    assert!(msas[2].starts_with("MSA|AA|B3"), "{reply}");
    assert!(reply.contains("\rBTS|3|trailer count 5 but 3 messages received\r"), "{reply}");
    gw.stop();
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages"), 3);
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM silver_patient"), 2);
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM quarantine_records"), 1);
}

#[test]
fn a_drop_file_that_grows_while_it_is_ingested_is_ingested_again_whole() {
    let dir = workdir("drops-growing");
    let drops = dir.0.join("inbox");
    config(&dir.0, &format!("\n[[listeners.drops]]\nname = \"slow\"\ndir = \"{}\"\nstable_ms = 200\npoll_ms = 50\n", drops.display()));
    std::fs::create_dir_all(&drops).unwrap();
    // The gateway pauses after ingesting a file, before moving it aside: the
    // writer's second part comes during that pause.
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_FAULT_DROP_PAUSE_MS", "3000")]);
    let line = |i: u32| format!("{{\"resourceType\":\"Patient\",\"id\":\"grow-{i}\",\"meta\":{{\"lastUpdated\":\"2024-01-01T00:00:00Z\"}}}}\n");
    let file = drops.join("slow.ndjson");
    std::fs::write(&file, (0..3).map(line).collect::<String>()).unwrap();
    gw.wait_for("slow.ndjson: committed 3/3 units", Duration::from_secs(60));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all((3..5).map(line).collect::<String>().as_bytes()).unwrap();
    }
    gw.wait_for("changed while it was being ingested", Duration::from_secs(60));
    gw.wait_for("slow.ndjson: ingested 5 units", Duration::from_secs(60));
    gw.stop();
    assert_eq!(count(&dir.0, "SELECT count(DISTINCT id) AS n FROM silver_patient WHERE id LIKE 'grow-%'"), 5, "nothing of the second part is lost");
    assert!(drops.join("processed/slow.ndjson").is_file());
}

#[test]
fn one_non_utf8_byte_does_not_corrupt_the_utf8_names_of_a_message() {
    let dir = workdir("encoding");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    // UTF-8 names, and one Windows-1252 byte (é) in the street.
    let mut msg = "MSH|^~\\&|S|F|R|F|20240101||ADT^A01|ENC1|P|2.5.1\rPID|1||ENC1-P^^^H^MR||Müller^Jörg||19800101|M|||Rue de l'".as_bytes().to_vec();
    msg.extend_from_slice(b"\xe9glise 1^^Paris\r");
    let wire = [&[0x0bu8][..], &msg, &[0x1c, 0x0d]].concat();
    let acks = raw_mllp(port, &wire, 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|ENC1"), "{}", acks[0]);
    gw.stop();
    let rows = sql(&dir.0, "SELECT resource FROM silver_patient");
    assert_eq!(rows.len(), 1);
    let p: serde_json::Value = serde_json::from_str(rows[0]["resource"].as_str().unwrap()).unwrap();
    assert_eq!(p["name"][0]["family"], "Müller", "{p}");
    assert_eq!(p["name"][0]["given"][0], "Jörg", "{p}");
    assert_eq!(p["address"][0]["line"][0], "Rue de l'église 1", "{p}");
    // Bronze keeps the bytes as received.
    let raw = sql(&dir.0, "SELECT encode(raw, 'hex') AS h FROM bronze_hl7_messages");
    assert!(raw[0]["h"].as_str().unwrap().contains("e9676c697365"), "the 0xE9 byte as received");
}

#[test]
fn a_trickling_sender_is_cut_off_and_one_peer_cannot_take_every_connection() {
    use std::io::{Read, Write};
    let dir = workdir("slowloris");
    config(&dir.0, "frame_timeout_s = 2\nmax_connections_per_peer = 3\n");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");

    // Slow loris: a frame's bytes one at a time, every 300 ms. The idle timer
    // (600 s) would never fire; the frame timeout does, within a few seconds.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = std::time::Instant::now();
    let frame = b"\x0bMSH|^~\\&|S|F|R|F|20240101||ADT^A01|SLOW1|P|2.5.1\rPID|1||SLOW";
    let mut cut_off = false;
    for b in frame.iter() {
        if s.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300)); // the attacker's pace
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    if !cut_off {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        cut_off = matches!(s.read(&mut [0u8; 16]), Ok(0) | Err(_));
    }
    assert!(cut_off, "the trickling connection was closed");
    gw.wait_for("was not complete within 2s of its first byte", Duration::from_secs(30));

    // Three idle connections from 127.0.0.1 take its share; a fourth is closed at
    // once; the first three still work.
    let idle: Vec<std::net::TcpStream> = (0..3).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let mut fourth = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    fourth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(matches!(fourth.read(&mut [0u8; 16]), Ok(0) | Err(_)), "the fourth connection from one address is closed");
    gw.wait_for("3 connections from this address already", Duration::from_secs(10));
    let mut first = &idle[0];
    first.write_all(b"\x0bMSH|^~\\&|S|F|R|F|20240101||ADT^A01|PEER1|P|2.5.1\rPID|1||PEER1-P^^^H^MR\r\x1c\x0d").unwrap();
    first.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut ack = vec![0u8; 4096];
    let n = first.read(&mut ack).unwrap();
    assert!(text(&ack[..n]).contains("MSA|AA|PEER1"), "{}", text(&ack[..n]));
    drop(idle);
    gw.stop();
}

#[test]
fn half_sent_http_requests_cannot_take_the_gateway_down() {
    use std::io::{Read, Write};
    let dir = workdir("fd-dos");
    config(
        &dir.0,
        "\n[listeners.webhooks]\nbind = \"127.0.0.1:0\"\nmax_connections = 50\nheader_timeout_s = 2\n[[listeners.webhooks.sources]]\nname = \"cdc\"\nsecret = \"env:EHRGATE_TEST_WEBHOOK_SECRET\"\n",
    );
    const SECRET: &str = "correct horse battery staple";
    // 256 open files at most (soft and hard): 400 half-sent requests would use
    // them all up without a connection cap.
    let mut gw = Gateway::start_limited(&dir.0, &[("EHRGATE_TEST_WEBHOOK_SECRET", SECRET)], Some(256));
    let mllp = gw.port("mllp listener adt");
    let hooks = gw.port("ehrgate: webhooks on");
    let mut attack = Vec::new();
    for _ in 0..400 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", hooks)) {
            let _ = s.write_all(b"POST /v1/events/cdc HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ehrgate-Timestamp: 1");
            attack.push(s);
        }
    }
    gw.wait_for("connection limit of 50 reached", Duration::from_secs(30));
    // MLLP senders are still served while the attack holds its connections.
    let out = Command::new("python3").arg(peer_script()).args(["--port", &mllp.to_string(), "stream", "--count", "50", "--prefix", "DOS"]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).lines().filter(|l| l.ends_with(" AA")).count() == 50, "{}", text(&out.stdout));
    // The half-sent requests the server took (the first ones) are closed once their
    // headers are late (2 s), not held for ever.
    attack[0].set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut b = [0u8; 256];
    assert!(attack[0].read(&mut b).is_ok(), "the first held connection was closed by the server within 20 s");
    drop(attack);
    // And the webhook port serves again.
    assert_eq!(post_event(hooks, SECRET, unix_now(), r#"{"resourceType":"Patient","id":"after-dos"}"#), 202);
    gw.stop();
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages"), 50);
}

#[test]
fn the_gateway_raises_its_soft_open_files_limit_to_the_hard_limit() {
    let dir = workdir("nofile");
    config(&dir.0, "");
    let mut cmd = Command::new("sh");
    cmd.current_dir(&dir.0)
        .args(["-c", "ulimit -S -n 64 && exec \"$0\" serve --config ehrgate.toml", env!("CARGO_BIN_EXE_ehrgate")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("ehrgate: ready")));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let row = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let nums: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft = hard: {row}");
    assert_ne!(nums[0], "64", "{row}");
}

#[test]
fn a_message_stamped_in_2099_does_not_pin_its_record() {
    let dir = workdir("future");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    // The update's own time: a few seconds from now (MSH-7 has second precision).
    let now = text(&Command::new("date").args(["-u", "-d", "+5 seconds", "+%Y%m%d%H%M%S"]).output().unwrap().stdout).trim().to_string();
    let msg = |ts: &str, id: &str, family: &str| {
        format!("\x0bMSH|^~\\&|S|F|R|F|{ts}+0000||ADT^A08|{id}|P|2.5.1\rEVN|A08|{ts}+0000\rPID|1||FUT-P^^^H^MR||{family}^Ann||19800101|F\r\x1c\x0d")
    };
    let acks = raw_mllp(port, msg("20991231000000", "F1", "Future").as_bytes(), 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|F1"), "{}", acks[0]);
    let acks = raw_mllp(port, msg(&now, "F2", "Current").as_bytes(), 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|F2"), "{}", acks[0]);
    gw.stop();
    let rows = sql(&dir.0, "SELECT resource FROM silver_patient");
    assert_eq!(rows.len(), 1);
    let p: serde_json::Value = serde_json::from_str(rows[0]["resource"].as_str().unwrap()).unwrap();
    assert_eq!(p["name"][0]["family"], "Current", "the later update wins over the one stamped in 2099: {p}");
}

#[test]
fn an_update_in_the_same_second_as_the_add_wins() {
    let dir = workdir("same-second");
    config(&dir.0, "");
    let mut gw = Gateway::start(&dir.0, &[]);
    let port = gw.port("mllp listener adt");
    // MSH-7 with second precision: the A04 and the A08 carry the same time, as
    // when a registration is corrected at once. Separate connections, separate
    // commits and a single pipelined frame pair must all keep the A08.
    let msg = |ty: &str, id: &str, pid: &str, family: &str| {
        format!("\x0bMSH|^~\\&|S|F|R|F|20240301101010+0000||ADT^{ty}|{id}|P|2.5.1\rEVN|{ty}|20240301101010+0000\rPID|1||{pid}^^^H^MR||{family}^Ann||19800101|F\r\x1c\x0d")
    };
    let acks = raw_mllp(port, msg("A04", "S1", "TIE-1", "Added").as_bytes(), 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|S1"), "{}", acks[0]);
    // (the add is committed before the update arrives: the MERGE decides the tie)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let committed = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir.0).args(["sql", "SELECT resource FROM silver_patient", "--format", "json"]).output().unwrap();
        out.status.success() && text(&out.stdout).contains("TIE")
    };
    while !committed() {
        assert!(std::time::Instant::now() < deadline, "the A04 was not committed within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let acks = raw_mllp(port, msg("A08", "S2", "TIE-1", "Updated").as_bytes(), 1);
    assert!(msa(&acks[0]).starts_with("MSA|AA|S2"), "{}", acks[0]);
    // Both in one frame burst: one commit, the in-batch rule decides.
    let both = format!("{}{}", msg("A04", "S3", "TIE-2", "Added"), msg("A08", "S4", "TIE-2", "Updated"));
    let acks = raw_mllp(port, both.as_bytes(), 2);
    assert!(acks.iter().all(|a| msa(a).starts_with("MSA|AA")), "{acks:?}");
    gw.stop();
    let rows = sql(&dir.0, "SELECT resource, receipt_seq FROM silver_patient");
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let p: serde_json::Value = serde_json::from_str(r["resource"].as_str().unwrap()).unwrap();
        assert_eq!(p["name"][0]["family"], "Updated", "the later arrival wins a same-second tie: {p}");
        assert!(r["receipt_seq"].as_i64().is_some(), "{r}");
    }
}
