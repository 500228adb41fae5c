//! Several gateways, one lake: three `ehrgate serve` processes, each with its own
//! write-ahead log, write the same Delta tables on an S3-compatible store (moto's
//! S3 server) while MLLP senders spread messages over them. One is killed with
//! SIGKILL mid-stream and restarted: what it acknowledged comes back from its log,
//! and its senders resend what it had not acknowledged, as MLLP senders do.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::gateway::*;

/// Message `i` of a run over `patients` patients: its own control id, for patient
/// `i % patients`. The first message of each patient admits it (A01); a second one
/// (`i >= patients`) is a later update (A08) renaming it `Upd<n>`.
fn message(i: usize, patients: usize) -> String {
    let (p, update) = (i % patients, i >= patients);
    let (ts, kind, name) = if update { ("20261205020202", "A08", format!("Upd{p}")) } else { ("20261205010101", "A01", format!("Pat{p}")) };
    format!(
        "MSH|^~\\&|LOAD|HOSP|EHRGATE|HOSP|{ts}||ADT^{kind}|G{i}|P|2.5\rEVN|{kind}|{ts}\r\
         PID|1||M{p:07}^^^HOSP^MR||Doe^{name}||19800101|F\rPV1|1|I|W1^101^1\r"
    )
}

/// Send `queue`'s messages over `connections` connections, one at a time on each,
/// waiting for each ACK. Returns the indexes not acknowledged (the gateway died).
fn send(port: u16, queue: Vec<usize>, patients: usize, connections: usize, acked: Arc<AtomicUsize>) -> Vec<usize> {
    let queue = Arc::new(Mutex::new(VecDeque::from(queue)));
    let unacked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (queue, unacked, acked) = (queue.clone(), unacked.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(("127.0.0.1", port)).ok();
                loop {
                    let Some(i) = queue.lock().unwrap().pop_front() else { break };
                    let Some(c) = conn.as_mut() else {
                        unacked.lock().unwrap().push(i);
                        continue;
                    };
                    match exchange(c, &message(i, patients)) {
                        Ok(ack) => {
                            assert!(ack.contains("MSA|AA|"), "message {i} was not accepted: {ack}");
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            unacked.lock().unwrap().push(i);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut left = std::mem::take(&mut *unacked.lock().unwrap());
    left.sort_unstable();
    left
}

/// One MLLP frame out, the ACK frame back.
fn exchange(c: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    c.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut frame = Vec::with_capacity(msg.len() + 3);
    frame.push(0x0b);
    frame.extend_from_slice(msg.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    c.write_all(&frame)?;
    let mut ack = Vec::new();
    let mut buf = [0u8; 1024];
    while !ack.ends_with(&[0x1c, 0x0d]) {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        ack.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&ack).into_owned())
}

fn storage(endpoint: &str) -> String {
    format!(
        "[storage]\nkind = \"s3\"\nbucket = \"lake\"\nprefix = \"ehr\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"env:AWS_ACCESS_KEY_ID\"\nsecret_access_key = \"env:AWS_SECRET_ACCESS_KEY\"\nallow_http = true\n"
    )
}

/// Every row `query` gives, one JSON object each.
fn sql_on(dir: &Path, env: &[(&str, &str)], query: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(dir).args(["sql", query, "--format", "json"]).envs(env.iter().copied()).output().unwrap();
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn three_gateways_on_one_s3_lake_with_one_killed_lose_and_duplicate_nothing() {
    let total: usize = std::env::var("EHRGATE_TEST_GATEWAY_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    three_gateways("gateways", total, total, false);
}

/// The same with silver written by deletion vectors, and half the messages later
/// updates (A08) of the other half's patients, in any order over the gateways:
/// each gateway's id index follows the others' commits, so every patient is in
/// silver once, as its newer version.
#[test]
fn three_gateways_writing_silver_by_deletion_vectors_keep_each_patient_once_and_newest() {
    three_gateways("gateways-dv", 12_000, 6_000, true);
}

fn three_gateways(name: &str, total: usize, patients: usize, deletion_vectors: bool) {
    let (_s3, endpoint, env) = ehrgate_testkit::start_s3();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dirs: Vec<WorkDir> = (0..3).map(|g| workdir(&format!("{name}-{g}"))).collect();
    for d in &dirs {
        config(&d.0, &storage(&endpoint));
        if deletion_vectors {
            let cfg = std::fs::read_to_string(d.0.join("ehrgate.toml")).unwrap();
            std::fs::write(d.0.join("ehrgate.toml"), cfg.replace("[lake]\n", "[lake]\ndeletion_vectors = true\n")).unwrap();
        }
    }
    // The gateway to be killed commits only every 3 s, so that it dies holding
    // acknowledged units that are in its log and not yet in the lake.
    let victim = 1;
    let cfg = std::fs::read_to_string(dirs[victim].0.join("ehrgate.toml")).unwrap();
    assert!(cfg.contains("commit_age_ms = 100"), "{cfg}");
    std::fs::write(dirs[victim].0.join("ehrgate.toml"), cfg.replace("commit_age_ms = 100", "commit_age_ms = 3000")).unwrap();
    let mut gateways: Vec<Option<Gateway>> = dirs.iter().map(|d| Some(Gateway::start(&d.0, &env))).collect();
    let ports: Vec<u16> = gateways.iter_mut().map(|g| g.as_mut().unwrap().port("mllp listener adt")).collect();

    // Message i goes to gateway i % 3, over four connections per gateway.
    let acked: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let started = Instant::now();
    let senders: Vec<_> = (0..3)
        .map(|g| {
            let share: Vec<usize> = (0..total).filter(|i| i % 3 == g).collect();
            let (port, acked) = (ports[g], acked[g].clone());
            std::thread::spawn(move || send(port, share, patients, 4, acked))
        })
        .collect();

    // Kill it once it has acknowledged a third of its share.
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked[victim].load(Ordering::Relaxed) < total / 9 {
        assert!(Instant::now() < deadline, "gateway {victim} acknowledged only {} messages", acked[victim].load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }
    gateways[victim].take().unwrap().kill9();
    let mut results: Vec<Vec<usize>> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(results[0].is_empty() && results[2].is_empty(), "the live gateways acknowledged everything");
    let unacked = std::mem::take(&mut results[victim]);
    let acked_before_kill = acked[victim].load(Ordering::Relaxed);
    assert!(!unacked.is_empty() && acked_before_kill < total / 3, "the kill came mid-stream: {acked_before_kill} acknowledged");

    // Restarted on the same log: what it acknowledged is replayed into the lake; the
    // senders resend the rest.
    let mut restarted = Gateway::start(&dirs[victim].0, &env);
    let replay = restarted.wait_for("write-ahead log:", Duration::from_secs(5));
    let replayed: usize = replay.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!(replayed > 0, "{replay}");
    let port = restarted.port("mllp listener adt");
    let left = send(port, unacked.clone(), patients, 4, acked[victim].clone());
    assert!(left.is_empty(), "the restarted gateway acknowledged the resent messages");
    gateways[victim] = Some(restarted);
    // Each gateway stops with every unit it logged written to the lake (none left
    // in its log for a next start that this test never makes).
    let mut printed = Vec::new();
    for (g, gw) in gateways.into_iter().enumerate() {
        let (last, lines) = gw.unwrap().stop_with_output();
        // (replayed units are counted as accepted or quarantined too)
        let logged = stat(&last, "accepted") + stat(&last, "quarantined");
        assert_eq!(stat(&last, "committed"), logged, "gateway {g} stopped with units left in its log: {last}\n{}", lines.join("\n"));
        printed.push(lines);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{total} messages over 3 gateways on one S3 lake in {:.1} s ({:.0}/s); gateway {victim} killed after {acked_before_kill} ACKs, \
         {replayed} acknowledged units replayed from its log, {} resent",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        unacked.len()
    );

    let silver = sql_on(&dirs[0].0, &env, "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(*) FILTER (WHERE resource LIKE '%\"Upd%') AS updated FROM silver_patient").remove(0);
    let p = Some(patients as u64);
    assert_eq!((silver["n"].as_u64(), silver["ids"].as_u64()), (p, p), "every patient once: {silver}");
    assert_eq!(silver["updated"].as_u64(), Some((total - patients) as u64), "each updated patient as its newer version: {silver}");
    let bronze = sql_on(&dirs[0].0, &env, "SELECT count(*) AS n, count(DISTINCT record_id) AS ids, count(DISTINCT control_id) AS messages FROM bronze_hl7_messages").remove(0);
    assert_eq!(bronze["n"], bronze["ids"], "no bronze record twice: {bronze}");
    if bronze["messages"].as_u64() != Some(total as u64) {
        missing_from_bronze(&dirs[0].0, &env, total, &printed);
    }
    // (a resent message the killed gateway had logged but not acknowledged may be
    // in bronze twice, as two receipts; never more often than it was sent)
    assert!(bronze["n"].as_u64().unwrap() <= (total + unacked.len()) as u64, "{bronze}");
}

/// A failed count says which messages bronze lacks (by the gateway they were sent
/// to) and what each gateway printed, so that a rare failure can be read.
fn missing_from_bronze(dir: &Path, env: &[(&str, &str)], total: usize, printed: &[Vec<String>]) -> ! {
    let seen: std::collections::HashSet<usize> = sql_on(dir, env, "SELECT DISTINCT control_id FROM bronze_hl7_messages")
        .iter()
        .filter_map(|v| v["control_id"].as_str().and_then(|c| c.strip_prefix('G')).and_then(|n| n.parse().ok()))
        .collect();
    let missing: Vec<usize> = (0..total).filter(|i| !seen.contains(i)).collect();
    let by_gateway: Vec<Vec<usize>> = (0..3).map(|g| missing.iter().copied().filter(|i| i % 3 == g).collect()).collect();
    let mut report = format!("{} of {total} messages are not in bronze\n", missing.len());
    for (g, m) in by_gateway.iter().enumerate() {
        report += &format!("gateway {g}: {} missing, first {:?}, last {:?}\n", m.len(), m.first(), m.last());
    }
    for (g, lines) in printed.iter().enumerate() {
        report += &format!("--- gateway {g} printed:\n{}\n", lines.join("\n"));
    }
    panic!("{report}");
}
