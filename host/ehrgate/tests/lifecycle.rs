//! End-to-end: the adapter lifecycle in a running `ehrgate serve`. Packages are
//! made and signed with the CLI (`adapter keygen`, `adapter sign`), installed,
//! activated and rolled back through the admin API (`adapter install|activate|
//! rollback --gateway`) while an independent MLLP client (python-hl7) keeps a
//! steady load on the gateway; hostile packages are crafted with the package
//! library, as an attacker would.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::gateway::*;
use ehrgate_lifecycle::{Package, sign};

const TOKEN: &str = "lifecycle-test-admin-token-0123456789";

/// A publisher key pair (CLI), the admin token in a file, and the config.
fn setup(dir: &Path, extra: &str) {
    ehrgate(dir, &["adapter", "keygen", "--out", "keys/publisher"]);
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(
        dir.join("ehrgate.toml"),
        format!(
            "[lake]\ncommit_age_ms = 100\n\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"env:EHRGATE_ADMIN_TOKEN\"\n\n\
             [adapter_store]\ntrusted_keys = [\"file:keys/publisher.pub\"]\n{extra}\n\n\
             [[listeners.mllp]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\nadapter = \"reference\"\n"
        ),
    )
    .unwrap();
}

fn start(dir: &Path) -> (Gateway, u16, String) {
    let mut gw = Gateway::start(dir, &[("EHRGATE_ADMIN_TOKEN", TOKEN)]);
    let mllp = gw.port("mllp listener adt");
    let admin = format!("http://127.0.0.1:{}", gw.port("admin on"));
    (gw, mllp, admin)
}

/// `ehrgate adapter <args> --gateway URL --token file:token`: (exit code, stdout, stderr).
fn admin_cli(dir: &Path, gateway: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .current_dir(dir)
        .arg("adapter")
        .args(args)
        .args(["--gateway", gateway, "--token", "file:token"])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The second version of `reference` (0.9.0), packaged and signed with the CLI.
fn signed_next(dir: &Path) -> PathBuf {
    let wasm = ehrgate_testkit::guest("ehrgate-guest-reference-next");
    let out = dir.join("reference-0.9.0.ehrpkg");
    ehrgate(dir, &["adapter", "sign", wasm.to_str().unwrap(), "--key", "keys/publisher.key", "--out", out.to_str().unwrap()]);
    out
}

/// One raw HTTP/1.1 request: (status, body).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = text(&resp);
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn active_version(admin_port: u16, name: &str) -> Option<String> {
    let (status, body) = http(admin_port, "GET", "/v1/adapters", Some(TOKEN), b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["adapters"].as_array().unwrap().iter().find(|a| a["name"] == name).and_then(|a| a["active"].as_str().map(str::to_owned))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn ten_swaps_and_rollbacks_under_steady_load_lose_nothing_and_each_unit_names_the_version_that_mapped_it() {
    const N: u64 = 16_000;
    let dir = workdir("lifecycle-swaps");
    setup(&dir.0, "");
    let pkg = signed_next(&dir.0);
    let (gw, mllp, admin) = start(&dir.0);

    // A steady 1,000 msg/s from python-hl7, 16 in flight at most.
    let mut peer = Command::new("python3")
        .arg(peer_script())
        .args(["--port", &mllp.to_string(), "stream", "--count", &N.to_string(), "--prefix", "SWAP", "--window", "16", "--rate", "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, acked) = std::sync::mpsc::channel::<String>();
    let stdout = peer.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // Wait (on the client's own progress, not on a clock) until `n` ACKs came back.
    let wait_acks = |n: usize, lines: &mut Vec<String>| {
        while lines.len() < n {
            let l = acked.recv_timeout(Duration::from_secs(60)).expect("the client keeps receiving ACKs");
            lines.push(l);
        }
    };

    let mut swaps = Vec::new();
    for cycle in 0..10 {
        wait_acks(500 + cycle * 1400, &mut lines);
        let (code, out, err) = if cycle == 0 {
            admin_cli(&dir.0, &admin, &["install", pkg.to_str().unwrap(), "--activate"])
        } else {
            admin_cli(&dir.0, &admin, &["activate", "reference", "0.9.0"])
        };
        assert_eq!(code, 0, "activate: {out}\n{err}");
        swaps.push(out);
        wait_acks(1200 + cycle * 1400, &mut lines);
        let (code, out, err) = admin_cli(&dir.0, &admin, &["rollback", "reference"]);
        assert_eq!(code, 0, "rollback: {out}\n{err}");
        assert!(out.contains("\"to\": \"0.1.0\""), "{out}");
        swaps.push(out);
    }
    while let Ok(l) = acked.recv_timeout(Duration::from_secs(60)) {
        lines.push(l);
    }
    let status = peer.wait().unwrap();
    assert!(status.success(), "the client failed: {:?}", lines.last());
    assert_eq!(lines.len() as u64, N, "one ACK per message");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("acked {i} AA"), "every ACK is AA, in order");
    }
    // Activating once more leaves 0.9.0 active for the restart below.
    let (code, out, err) = admin_cli(&dir.0, &admin, &["activate", "reference", "0.9.0"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let swap: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(swap["compile_ms"].as_f64(), Some(0.0), "the replaced version was kept compiled: {out}");
    gw.stop();

    // Nothing lost, and the version that mapped each message changes only at the
    // swaps: ordered by message, 0.1.0 / 0.9.0 alternate in at most 20 runs.
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages") as u64, N);
    let rows = sql(&dir.0, "SELECT source_system, adapter FROM silver_patient");
    let mut by_msg: Vec<(u64, String)> = rows
        .iter()
        .filter_map(|r| {
            let s = r["source_system"].as_str()?;
            let i = s.rsplit_once("#SWAP")?.1.parse().ok()?;
            Some((i, r["adapter"].as_str()?.to_string()))
        })
        .collect();
    by_msg.sort();
    assert_eq!(by_msg.len() as u64, N, "one Patient per message");
    let mut runs = vec![by_msg[0].1.clone()];
    for (_, a) in &by_msg[1..] {
        if runs.last() != Some(a) {
            runs.push(a.clone());
        }
    }
    assert_eq!(runs[0], "reference@0.1.0");
    assert!(runs.len() <= 21 && runs.len() >= 11, "versions change only at swaps: {runs:?}");
    for pair in runs.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }
    assert!(runs.iter().all(|r| r == "reference@0.1.0" || r == "reference@0.9.0"), "{runs:?}");

    // Every swap is one audit row naming who, from, to and the signing key.
    let key_id = text(&ehrgate(&dir.0, &["adapter", "verify", pkg.to_str().unwrap()]).stdout);
    assert!(key_id.starts_with("ok: reference 0.9.0"), "{key_id}");
    let audit = sql(&dir.0, "SELECT actor, outcome FROM audit_access_log WHERE action = 'adapter.activate' ORDER BY at");
    assert_eq!(audit.len(), 21, "{audit:?}");
    let up = audit.iter().filter(|r| r["outcome"].as_str().unwrap().starts_with("ok: reference 0.1.0 -> 0.9.0, key ")).count();
    let down = audit.iter().filter(|r| r["outcome"].as_str().unwrap() == "ok: reference 0.9.0 -> 0.1.0, key built-in").count();
    assert_eq!((up, down), (11, 10), "{audit:?}");
    assert!(audit.iter().all(|r| r["actor"].as_str().unwrap().starts_with("admin")), "{audit:?}");

    // The store remembers the active version across a restart.
    let (gw, _, admin) = start(&dir.0);
    assert_eq!(active_version(port_of(&admin), "reference").as_deref(), Some("0.9.0"));
    gw.stop();
}

/// A package as the gateway would read it, changed and re-signed as an attacker
/// holding (or not holding) a trusted key would.
fn craft(from: &Path, key: Option<&Path>, change: impl FnOnce(&mut Package)) -> Vec<u8> {
    let mut pkg = Package::read(&std::fs::read(from).unwrap(), u64::MAX).unwrap();
    change(&mut pkg);
    if let Some(k) = key {
        pkg.manifest_bytes = serde_json::to_vec_pretty(&pkg.manifest).unwrap();
        sign::sign(&mut pkg, &sign::read_private(&std::fs::read_to_string(k).unwrap()).unwrap());
    }
    pkg.to_bytes()
}

#[test]
fn refused_packages_name_their_reason_and_the_active_version_keeps_serving() {
    let dir = workdir("lifecycle-refusals");
    setup(&dir.0, "");
    let good = signed_next(&dir.0);
    ehrgate(&dir.0, &["adapter", "keygen", "--out", "keys/stranger"]);
    let trusted = dir.0.join("keys/publisher.key");
    let (gw, mllp, admin) = start(&dir.0);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("untrusted key", craft(&good, Some(&dir.0.join("keys/stranger.key")), |_| {}), "untrusted-key"),
        ("one byte of the component changed", craft(&good, None, |p| { let n = p.component.len() / 2; p.component[n] ^= 0x01; }), "digest-mismatch"),
        ("manifest claiming another name", craft(&good, Some(&trusted), |p| p.manifest.name = "epic".into()), "manifest-mismatch"),
        (
            "contract 9.0.0",
            {
                let future = std::fs::read(ehrgate_testkit::guest("ehrgate-guest-future-contract")).unwrap();
                craft(&good, Some(&trusted), |p| {
                    p.manifest.contract = "9.0.0".into();
                    p.manifest.component = ehrgate_lifecycle::package::ComponentRef { sha256: ehrgate_lifecycle::package::sha256_hex(&future), size: future.len() as u64 };
                    p.component = future;
                })
            },
            "unsupported-contract",
        ),
        ("unsigned", craft(&good, None, |p| p.signature = None), "unsigned"),
    ];
    for (i, (what, bytes, code)) in cases.into_iter().enumerate() {
        let path = dir.0.join(format!("bad-{i}.ehrpkg"));
        std::fs::write(&path, bytes).unwrap();
        // `adapter verify` says the same as the gateway, offline.
        let v = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir.0).args(["adapter", "verify", path.to_str().unwrap()]).output().unwrap();
        assert_eq!(v.status.code(), Some(1), "{what}: verify refuses");
        assert!(text(&v.stdout).contains(&format!("refused ({code})")), "{what}: {}", text(&v.stdout));
        let (status, out, err) = admin_cli(&dir.0, &admin, &["install", path.to_str().unwrap(), "--activate"]);
        assert_eq!(status, 1, "{what}: refused\n{out}\n{err}");
        assert!(err.contains(&format!("\"error\": \"{code}\"")), "{what}: the answer names the reason: {err}");
        // The active version keeps serving.
        assert_eq!(active_version(port_of(&admin), "reference").as_deref(), Some("0.1.0"), "{what}");
        let out = Command::new("python3").arg(peer_script()).args(["--port", &mllp.to_string(), "stream", "--count", "5", "--start", &(i * 5).to_string(), "--prefix", "REF"]).output().unwrap();
        assert!(out.status.success() && text(&out.stdout).lines().all(|l| l.ends_with(" AA")), "{what}: {}", text(&out.stdout));
    }
    gw.stop();
    let adapters = sql(&dir.0, "SELECT DISTINCT adapter FROM silver_patient");
    assert_eq!(adapters.len(), 1);
    assert_eq!(adapters[0]["adapter"], "reference@0.1.0");
    let refusals = count(&dir.0, "SELECT count(*) AS n FROM audit_access_log WHERE action = 'adapter.install' AND outcome LIKE 'refused: %'");
    assert_eq!(refusals, 5, "each refusal is audited");
    assert!(std::fs::read_dir(dir.0.join("ehrgate-data/adapters")).map(|d| d.count()).unwrap_or(0) == 0, "nothing refused reached the store");
}

#[test]
fn the_admin_api_needs_its_token_stays_on_loopback_and_audits_every_call() {
    let dir = workdir("lifecycle-admin");
    setup(&dir.0, "");
    let (gw, _, admin) = start(&dir.0);
    let port = port_of(&admin);
    assert_eq!(http(port, "GET", "/healthz", None, b"").0, 200, "health needs no token");
    assert_eq!(http(port, "GET", "/v1/adapters", None, b"").0, 401, "no token");
    assert_eq!(http(port, "GET", "/v1/adapters", Some("wrong-token-wrong-token-wrong"), b"").0, 401, "wrong token");
    assert_eq!(http(port, "POST", "/v1/adapters/reference/rollback", Some("nope"), b"").0, 401, "wrong token on a change");
    let (status, body) = http(port, "GET", "/v1/adapters", Some(TOKEN), b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = v["adapters"].as_array().unwrap().iter().find(|a| a["name"] == "reference").expect("reference listed");
    assert_eq!(r["active"], "0.1.0");
    assert_eq!(r["versions"][0]["origin"], "built-in");
    let (status, body) = http(port, "POST", "/v1/adapters/reference/rollback", Some(TOKEN), b"");
    assert_eq!(status, 409, "nothing to roll back to: {body}");
    assert!(body.contains("no-previous"), "{body}");
    // Names and versions reach store paths: nothing but what a manifest could hold.
    let (status, body) = http(port, "POST", "/v1/adapters/..%2F..%2Fetc/activate", Some(TOKEN), br#"{"version": "../../x"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"invalid\""), "{body}");
    gw.stop();
    let rows = sql(&dir.0, "SELECT method, path, outcome FROM audit_access_log WHERE action = 'admin.call'");
    let mut outcomes: Vec<String> = rows.iter().map(|r| format!("{} {} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            "GET /v1/adapters allowed: 200",
            "GET /v1/adapters denied: 401 no bearer token",
            "GET /v1/adapters denied: 401 wrong token",
            "POST /v1/adapters/..%2F..%2Fetc/activate failed: 400",
            "POST /v1/adapters/reference/rollback denied: 401 wrong token",
            "POST /v1/adapters/reference/rollback failed: 409",
        ],
        "every call, allowed or not, is audited"
    );

    // A non-loopback address is refused unless configured.
    let dir2 = workdir("lifecycle-remote");
    setup(&dir2.0, "");
    let cfg = std::fs::read_to_string(dir2.0.join("ehrgate.toml")).unwrap().replace("bind = \"127.0.0.1:0\"\ntoken", "bind = \"0.0.0.0:0\"\ntoken");
    std::fs::write(dir2.0.join("ehrgate.toml"), cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir2.0).args(["serve"]).env("EHRGATE_ADMIN_TOKEN", TOKEN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a loopback address"), "{}", text(&out.stderr));
}

/// Which version mapped each stream message (`<prefix><i>` -> adapter label).
fn versions_by_message(dir: &Path, prefix: &str) -> std::collections::BTreeMap<u64, String> {
    sql(dir, "SELECT source_system, adapter FROM silver_patient")
        .iter()
        .filter_map(|r| {
            let i = r["source_system"].as_str()?.rsplit_once(&format!("#{prefix}"))?.1.parse().ok()?;
            Some((i, r["adapter"].as_str()?.to_string()))
        })
        .collect()
}

fn stream_all_aa(mllp: u16, prefix: &str, count: u64) {
    let out = Command::new("python3")
        .arg(peer_script())
        .args(["--port", &mllp.to_string(), "stream", "--count", &count.to_string(), "--prefix", prefix, "--window", "64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let acks = text(&out.stdout);
    assert_eq!(acks.lines().count() as u64, count);
    assert!(acks.lines().all(|l| l.ends_with(" AA")), "every message is accepted");
}

#[test]
fn a_ten_percent_canary_takes_ten_percent_and_the_same_messages_every_time() {
    const N: u64 = 10_000;
    let dir = workdir("lifecycle-canary");
    // The store outside the lake, so a second run can use a fresh lake.
    setup(&dir.0, "dir = \"adapters\"");
    let pkg = signed_next(&dir.0);
    let (gw, mllp, admin) = start(&dir.0);
    let (code, out, err) = admin_cli(&dir.0, &admin, &["install", pkg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = admin_cli(&dir.0, &admin, &["canary", "reference", "0.9.0", "--percent", "10"]);
    assert_eq!(code, 0, "{out}\n{err}");
    stream_all_aa(mllp, "CAN", N);
    gw.stop();
    let first = versions_by_message(&dir.0, "CAN");
    assert_eq!(first.len() as u64, N);
    let canary = first.values().filter(|v| *v == "reference@0.9.0").count() as f64 * 100.0 / N as f64;
    assert!((canary - 10.0).abs() <= 3.0, "10% ± 3 points went to the canary: {canary:.2}%");
    assert!(first.values().all(|v| v == "reference@0.9.0" || v == "reference@0.1.0"));

    // A new process on a fresh lake, the same messages: each goes to the same
    // version (the split is a stable hash of the control id; the canary setting
    // survives the restart).
    std::fs::rename(dir.0.join("ehrgate-data"), dir.0.join("first-lake")).unwrap();
    std::fs::remove_dir_all(dir.0.join("ehrgate-wal")).unwrap();
    let (gw, mllp, _) = start(&dir.0);
    stream_all_aa(mllp, "CAN", N);
    gw.stop();
    assert_eq!(versions_by_message(&dir.0, "CAN"), first, "the same unit always takes the same version");
}

#[test]
fn shadow_mode_writes_differences_and_nothing_of_the_candidate_into_silver() {
    let dir = workdir("lifecycle-shadow");
    setup(&dir.0, "");
    let pkg = signed_next(&dir.0);
    let (gw, mllp, admin) = start(&dir.0);
    let (code, out, err) = admin_cli(&dir.0, &admin, &["install", pkg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = admin_cli(&dir.0, &admin, &["shadow", "reference", "0.9.0"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, listed, _) = admin_cli(&dir.0, &admin, &["list"]);
    assert!(listed.contains("\"mode\": \"shadow\""), "{listed}");
    stream_all_aa(mllp, "SHD", 300);
    let (code, out, err) = admin_cli(&dir.0, &admin, &["clear-candidate", "reference"]);
    assert_eq!(code, 0, "{out}\n{err}");
    stream_all_aa(mllp, "AFT", 50);
    gw.stop();
    let adapters = sql(&dir.0, "SELECT DISTINCT adapter FROM silver_patient");
    assert_eq!(adapters, vec![serde_json::json!({"adapter": "reference@0.1.0"})], "only the active version's output is written");
    let diffs = sql(
        &dir.0,
        "SELECT count(*) AS n, min(active_version) AS a, min(candidate_version) AS c, sum(active_resources) AS ar, sum(candidate_resources) AS cr, \
         sum(unchanged) AS same, sum(added + removed + changed) AS different, min(message_type) AS t FROM ops_shadow_diffs",
    );
    let d = &diffs[0];
    assert_eq!(d["n"], 300, "one row per unit mapped in shadow, none after the trial ended: {d}");
    assert_eq!((d["a"].as_str(), d["c"].as_str(), d["t"].as_str()), (Some("0.1.0"), Some("0.9.0"), Some("ADT^A01")));
    // 0.9.0 maps as 0.1.0 does: every resource the same.
    assert!(d["ar"].as_i64().unwrap() >= 600, "{d}");
    assert_eq!(d["ar"], d["cr"]);
    assert_eq!(d["same"], d["ar"]);
    assert_eq!(d["different"], 0);
}

#[test]
fn a_route_pinned_to_a_version_keeps_it_while_another_becomes_active() {
    let dir = workdir("lifecycle-pin");
    setup(&dir.0, "");
    let cfg = std::fs::read_to_string(dir.0.join("ehrgate.toml")).unwrap()
        + "\n[[listeners.mllp]]\nname = \"pinned\"\nbind = \"127.0.0.1:0\"\nadapter = \"reference@0.1.0\"\n";
    std::fs::write(dir.0.join("ehrgate.toml"), cfg).unwrap();
    let pkg = signed_next(&dir.0);
    let (mut gw, mllp, admin) = start(&dir.0);
    let pinned = gw.port("mllp listener pinned");
    let (code, out, err) = admin_cli(&dir.0, &admin, &["install", pkg.to_str().unwrap(), "--activate"]);
    assert_eq!(code, 0, "{out}\n{err}");
    stream_all_aa(mllp, "FOLLOW", 20);
    stream_all_aa(pinned, "PIN", 20);
    gw.stop();
    let followed = versions_by_message(&dir.0, "FOLLOW");
    let pinned = versions_by_message(&dir.0, "PIN");
    assert_eq!(followed.len(), 20);
    assert_eq!(pinned.len(), 20);
    assert!(followed.values().all(|v| v == "reference@0.9.0"), "the route naming `reference` follows the active version: {followed:?}");
    assert!(pinned.values().all(|v| v == "reference@0.1.0"), "the route pinned to reference@0.1.0 keeps it: {pinned:?}");
}
