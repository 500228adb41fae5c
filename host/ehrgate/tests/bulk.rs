//! End-to-end: `ehrgate bulk export|cancel|status` against the sandbox EHR
//! (`ehrgate sandbox`), the real binary on both sides. Every test compares what
//! landed in the lake with what the sandbox says it holds (`/_sandbox/stats`), so a
//! lost, doubled or silently dropped resource fails it: full and incremental
//! exports (deletions as tombstones), kill -9 in the middle of the downloads and a
//! restart, server faults (429, 500, truncated and invalid NDJSON), expired files,
//! cancel, and a Patient-level POST kick-off. Admin calls, tokens and FHIR searches
//! go through Python's urllib; silver_patient is also read back with Python's
//! deltalake package, a reader no code here wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET_ENV: &str = "EHRGATE_TEST_EHR_SECRET";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------- the sandbox EHR

mod common;

use common::{Sandbox, start_sandbox};

fn sandbox(patients: u32, lines_per_file: u32, export_polls: u32, retry_after: u32) -> Sandbox {
    let (p, l, e, r) = (patients.to_string(), lines_per_file.to_string(), export_polls.to_string(), retry_after.to_string());
    start_sandbox(&["--patients", &p, "--lines-per-file", &l, "--export-polls", &e, "--retry-after", &r])
}

/// One HTTP call with Python's urllib: (status, body). With `token`, a bearer token
/// from `<base>/token` (client_secret_basic as the demo client) goes along.
const PY_HTTP: &str = r#"
import base64, json, sys, urllib.request, urllib.error
method, url, body, token_base = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
headers = {}
if token_base:
    basic = base64.b64encode(b"ehrgate-demo:sandbox-demo-secret").decode()
    req = urllib.request.Request(token_base + "/token", b"grant_type=client_credentials&scope=system%2F*.read",
        {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req) as r:
        headers["Authorization"] = "Bearer " + json.loads(r.read())["access_token"]
data = None
if body:
    data = body.encode()
    headers["Content-Type"] = "application/json"
req = urllib.request.Request(url, data=data, headers=headers, method=method)
try:
    with urllib.request.urlopen(req) as r:
        status, out = r.status, r.read()
except urllib.error.HTTPError as e:
    status, out = e.code, e.read()
sys.stdout.write(str(status) + "\n" + out.decode())
"#;

fn http(method: &str, url: &str, body: Option<&Value>, token_base: Option<&str>) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let out = Command::new("python3").args(["-c", PY_HTTP, method, url, &body, token_base.unwrap_or("")]).output().unwrap();
    assert!(out.status.success(), "python {method} {url}: {}", text(&out.stderr));
    let s = text(&out.stdout);
    let (status, rest) = s.split_once('\n').unwrap_or((s.as_str(), ""));
    (status.trim().parse().unwrap(), rest.to_string())
}

/// An admin call (`<base>/_sandbox<path>`, no token); panics unless it answers 2xx.
fn admin(sb: &Sandbox, method: &str, path: &str, body: Option<Value>) -> String {
    let (status, out) = http(method, &format!("{}/_sandbox{path}", sb.base), body.as_ref(), None);
    assert!((200..300).contains(&status), "admin {method} {path} answered {status}: {out}");
    out
}

fn fault(sb: &Sandbox, method: Option<&str>, path_prefix: &str, spec: &str) {
    let mut rule = json!({"path_prefix": path_prefix, "fault": spec});
    if let Some(m) = method {
        rule["method"] = json!(m);
    }
    admin(sb, "POST", "/faults", Some(rule));
}

/// The resources the sandbox holds now, per type (only types with some).
fn sandbox_counts(sb: &Sandbox) -> BTreeMap<String, u64> {
    let stats: Value = serde_json::from_str(&admin(sb, "GET", "/stats", None)).unwrap();
    let counts: BTreeMap<String, u64> = stats["resources"]
        .as_object()
        .expect("stats has resources")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(counts.get("Patient").is_some_and(|n| *n > 0), "the sandbox has patients: {stats}");
    counts
}

// ---------------------------------------------------------------- the gateway

struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh folder with an ehrgate.toml: connection `ehr` to the sandbox, plus `extra`.
fn workdir(name: &str, sb: &Sandbox, extra: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("ehrgate-bulk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let base = &sb.base;
    let toml = format!(
        r#"[[connections]]
name = "ehr"
base_url = "{base}"
auth = {{ kind = "client_credentials", client_id = "ehrgate-demo", client_secret = "env:{SECRET_ENV}", token_url = "{base}/token", scopes = ["system/*.read"] }}
retry = {{ max_attempts = 3, base_ms = 50, cap_ms = 200 }}
{extra}"#
    );
    std::fs::write(d.join("ehrgate.toml"), toml).unwrap();
    WorkDir(d)
}

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ehrgate"));
    cmd.current_dir(dir).args(args).env(SECRET_ENV, "sandbox-demo-secret").env_remove("EHRGATE_FAULT_SLOW_COMMIT_MS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs ehrgate in `dir`; panics unless it succeeds.
fn ehrgate(dir: &Path, args: &[&str]) -> Output {
    let out = command(dir, args, &[]).output().expect("run ehrgate");
    assert!(out.status.success(), "ehrgate {args:?} failed ({}):\n{}\n{}", out.status, text(&out.stdout), text(&out.stderr));
    out
}

/// `bulk export --connection ehr <more>`: (export id from the report, stdout, stderr).
fn export(dir: &Path, more: &[&str]) -> (String, String, String) {
    let mut args = vec!["bulk", "export", "--connection", "ehr"];
    args.extend_from_slice(more);
    let out = ehrgate(dir, &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("bulk ehr: export ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("no report on stdout:\n{stdout}\n{stderr}"))
        .to_string();
    assert!(stdout.contains(&format!("export {id} complete")), "{stdout}");
    (id, stdout, stderr)
}

fn sql(dir: &Path, query: &str) -> Vec<Value> {
    let out = ehrgate(dir, &["sql", query, "--format", "json"]);
    text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `SELECT ... AS n` with one row.
fn count(dir: &Path, query: &str) -> u64 {
    let rows = sql(dir, query);
    rows[0]["n"].as_u64().unwrap_or_else(|| panic!("{query}: {rows:?}"))
}

/// Like `sql`, but a table that was never created (nothing was ever written to it)
/// reads as no rows.
fn sql_or_none(dir: &Path, query: &str) -> Vec<Value> {
    let out = command(dir, &["sql", query, "--format", "json"], &[]).output().unwrap();
    if !out.status.success() {
        let err = text(&out.stderr);
        assert!(err.contains("not found"), "{query}: {err}");
        return vec![];
    }
    text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn quarantine(dir: &Path) -> Vec<Value> {
    sql_or_none(dir, "SELECT error_kind, error_message, location, input_kind FROM quarantine_records")
}

/// Patient -> patient, MedicationRequest -> medication_request.
fn snake(ty: &str) -> String {
    let mut s = String::new();
    for (i, c) in ty.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// silver_<type>: (rows, distinct ids, rows not deleted); a table that does not
/// exist counts as empty.
fn silver(dir: &Path, ty: &str) -> (u64, u64, u64) {
    let q = format!("SELECT count(*) AS n, count(DISTINCT id) AS d, sum(CASE WHEN deleted THEN 0 ELSE 1 END) AS live FROM silver_{}", snake(ty));
    match sql_or_none(dir, &q).first() {
        None => (0, 0, 0),
        Some(r) => (r["n"].as_u64().unwrap(), r["d"].as_u64().unwrap(), r["live"].as_u64().unwrap_or(0)),
    }
}

/// Every type the sandbox holds is in silver exactly once per resource, none deleted.
fn assert_silver_is(dir: &Path, expected: &BTreeMap<String, u64>) {
    for (ty, n) in expected {
        let (rows, ids, live) = silver(dir, ty);
        assert_eq!((rows, ids, live), (*n, *n, *n), "silver_{}: rows, distinct ids, not deleted vs the sandbox's {n} {ty}", snake(ty));
    }
}

/// Bronze lines of one export: (rows, distinct (file, line)).
fn bronze_of(dir: &Path, export_id: &str) -> (u64, u64) {
    let r = &sql(
        dir,
        &format!("SELECT count(*) AS n, count(DISTINCT concat(file, '#', CAST(line AS VARCHAR))) AS d FROM bronze_fhir_ndjson WHERE export_id = '{export_id}'"),
    )[0];
    (r["n"].as_u64().unwrap(), r["d"].as_u64().unwrap())
}

/// Bronze lines of one export by resource_type.
fn bronze_types(dir: &Path, export_id: &str) -> BTreeMap<String, u64> {
    sql(dir, &format!("SELECT resource_type AS t, count(*) AS n FROM bronze_fhir_ndjson WHERE export_id = '{export_id}' GROUP BY resource_type"))
        .iter()
        .map(|r| (r["t"].as_str().unwrap_or("<null>").to_string(), r["n"].as_u64().unwrap()))
        .collect()
}

fn state(dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(dir.join("ehrgate-bulk/ehr.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A `bulk export` in the background, its stdout and stderr into files in `dir`.
fn spawn_export(dir: &Path, env: &[(&str, &str)]) -> Child {
    let out = std::fs::File::create(dir.join("bg.stdout")).unwrap();
    let err = std::fs::File::create(dir.join("bg.stderr")).unwrap();
    command(dir, &["bulk", "export", "--connection", "ehr"], env).stdout(out).stderr(err).spawn().expect("start bulk export")
}

/// Polls the state file until `cond` holds (the export must still be running).
fn wait_for_state(dir: &Path, child: &mut Child, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = state(dir).filter(|s| cond(s)) {
            return s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(dir.join("bg.stderr")).unwrap_or_default();
            panic!("the export ended ({status}) before {what}; state {:?}\n{err}", state(dir));
        }
        assert!(Instant::now() < deadline, "no {what} within 60 s; state {:?}", state(dir));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Some file is done and another is part-way in (lines committed, not done).
fn mid_downloads(s: &Value) -> bool {
    let Some(files) = s["current"]["files"].as_object() else { return false };
    let done = files.values().any(|f| f["done"] == true);
    let partial = files.values().any(|f| f["done"] == false && f["lines"].as_u64().unwrap_or(0) > 0);
    done && partial
}

fn kill9(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn sum(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

// ---------------------------------------------------------------- the tests

#[test]
fn full_system_export_lands_exactly_the_sandbox_counts() {
    let sb = sandbox(300, 100, 2, 1);
    let dir = workdir("full", &sb, "");
    let (id, stdout, stderr) = export(&dir.0, &[]);
    assert!(stderr.contains("bulk ehr: server: "), "X-Progress shown while the server works:\n{stderr}");
    let expected = sandbox_counts(&sb);
    assert_silver_is(&dir.0, &expected);
    let total = sum(&expected);
    assert_eq!(bronze_of(&dir.0, &id), (total, total), "one bronze row per line, none twice");
    assert_eq!(count(&dir.0, "SELECT count(*) AS n FROM bronze_fhir_ndjson"), total);
    let q = quarantine(&dir.0);
    assert!(q.is_empty(), "nothing quarantined: {q:?}");
    assert!(stdout.contains(&format!("resources {total},")), "{stdout}");
    // The same figures as metrics (Prometheus text format) beside the state.
    let prom = std::fs::read_to_string(dir.0.join("ehrgate-bulk/ehr.prom")).expect("metrics file");
    for line in [format!("ehrgate_bulk_resources{{connection=\"ehr\"}} {total}\n"), "ehrgate_bulk_in_progress{connection=\"ehr\"} 0\n".to_string()] {
        assert!(prom.contains(&line), "{line} in:\n{prom}");
    }
    // An independent reader of the Delta table.
    let out = Command::new("python3")
        .args(["-c", "import os, sys, deltalake; print(deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows); sys.stdout.flush(); os._exit(0)"])
        .arg(dir.0.join("ehrgate-data/silver/patient"))
        .output()
        .unwrap();
    assert!(out.status.success(), "python deltalake: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim().parse::<u64>().unwrap(), expected["Patient"], "deltalake reads the same patients");
}

#[test]
fn incremental_run_lands_only_the_new_data_and_deletions_become_tombstones() {
    let sb = sandbox(60, 100, 1, 1);
    let dir = workdir("incremental", &sb, "");
    let (first, _, _) = export(&dir.0, &[]);
    let before = sandbox_counts(&sb);
    assert_silver_is(&dir.0, &before);

    admin(&sb, "POST", "/patients", Some(json!({"count": 7})));
    let condition = sql(&dir.0, "SELECT id FROM silver_condition ORDER BY id LIMIT 1")[0]["id"].as_str().unwrap().to_string();
    let observation = sql(&dir.0, "SELECT id FROM silver_observation ORDER BY id LIMIT 1")[0]["id"].as_str().unwrap().to_string();
    admin(&sb, "POST", "/delete", Some(json!({"type": "Observation", "id": observation})));
    admin(&sb, "POST", "/delete", Some(json!({"type": "Condition", "id": condition})));
    let after = sandbox_counts(&sb);
    assert_eq!(after["Patient"], before["Patient"] + 7);

    let (second, _, stderr) = export(&dir.0, &["--incremental"]);
    assert_ne!(second, first, "a new export");
    assert!(stderr.contains("_since="), "incremental exports pass _since:\n{stderr}");
    // New resources per type: the growth, plus what the deletions took away; Group/all
    // is rewritten (new members); one Bundle line per deletion.
    let deleted: BTreeMap<&str, u64> = [("Observation", 1), ("Condition", 1)].into();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (ty, n) in &after {
        let new = if ty == "Group" { 1 } else { n - before.get(ty).copied().unwrap_or(0) + deleted.get(ty.as_str()).copied().unwrap_or(0) };
        if new > 0 {
            want.insert(ty.clone(), new);
        }
    }
    want.insert("Bundle".into(), 2);
    assert_eq!(want["Patient"], 7);
    assert_eq!(bronze_types(&dir.0, &second), want, "the incremental export holds only the new data and the deletions");
    // Silver: the live rows are exactly what the sandbox holds; the deleted ones are
    // tombstones.
    for (ty, n) in &after {
        let (rows, ids, live) = silver(&dir.0, ty);
        assert_eq!(live, *n, "silver_{} not deleted", snake(ty));
        assert_eq!(rows, ids, "silver_{}: one row per id", snake(ty));
        assert_eq!(rows, n + deleted.get(ty.as_str()).copied().unwrap_or(0), "silver_{}: the live rows and the tombstones", snake(ty));
    }
    for (table, id) in [("silver_observation", &observation), ("silver_condition", &condition)] {
        let rows = sql(&dir.0, &format!("SELECT deleted FROM {table} WHERE id = '{id}'"));
        assert_eq!(rows, vec![json!({"deleted": true})], "{table} {id} is a tombstone");
    }
    let q = quarantine(&dir.0);
    assert!(q.is_empty(), "{q:?}");

    // Nothing changed since: the third export lands nothing.
    let (third, _, _) = export(&dir.0, &["--incremental"]);
    assert_ne!(third, second);
    assert_eq!(bronze_types(&dir.0, &third), BTreeMap::new(), "no new lines, no Patient lines");
    for (ty, n) in &after {
        assert_eq!(silver(&dir.0, ty).2, *n, "silver_{} unchanged", snake(ty));
    }
}

#[test]
fn kill_during_downloads_then_restart_ends_with_the_same_counts_and_no_duplicates() {
    let sb = sandbox(400, 200, 1, 1);
    let dir = workdir("kill", &sb, "[bulk]\nbatch_lines = 40\nparallel = 2\n");
    let mut child = spawn_export(&dir.0, &[("EHRGATE_FAULT_SLOW_COMMIT_MS", "150")]);
    let s = wait_for_state(&dir.0, &mut child, "a file done and another part-way in", mid_downloads);
    let id = s["current"]["export_id"].as_str().unwrap().to_string();
    kill9(child);
    let (rejoined, stdout, stderr) = export(&dir.0, &[]);
    assert!(stderr.contains(&format!("rejoining export {id}")), "{stderr}");
    assert!(!stderr.contains("kicked off export"), "no second kick-off:\n{stderr}");
    assert_eq!(rejoined, id, "the same export completes");
    assert!(stdout.contains("rejoined after a restart"), "{stdout}");
    let expected = sandbox_counts(&sb);
    assert_silver_is(&dir.0, &expected);
    let total = sum(&expected);
    assert_eq!(bronze_of(&dir.0, &id), (total, total), "bronze: every line of the export once (rows, distinct (file, line))");
    let q = quarantine(&dir.0);
    assert!(q.is_empty(), "{q:?}");
}

#[test]
fn faults_end_in_success_or_quarantine_never_silent_loss() {
    // (a) transient faults: retried, nothing lost, nothing quarantined.
    {
        let sb = sandbox(120, 100, 1, 1);
        let dir = workdir("faults-transient", &sb, "");
        fault(&sb, Some("GET"), "/_bulk/status", "429;retry-after=1;times=2");
        fault(&sb, None, "/_bulk/file", "500;times=1");
        fault(&sb, None, "/_bulk/file", "truncate-ndjson;times=1");
        let (id, _, _) = export(&dir.0, &[]);
        let stats: Value = serde_json::from_str(&admin(&sb, "GET", "/stats", None)).unwrap();
        assert_eq!(stats["faults_applied"], 4, "every fault was served: {stats}");
        let expected = sandbox_counts(&sb);
        assert_silver_is(&dir.0, &expected);
        let total = sum(&expected);
        assert_eq!(bronze_of(&dir.0, &id), (total, total));
        let q = quarantine(&dir.0);
        assert!(q.is_empty(), "transient faults quarantine nothing: {q:?}");
    }
    // (b) a line that is not JSON in every file: quarantined, one per file; every real
    // resource still lands.
    {
        let lines_per_file = 100;
        let sb = sandbox(120, lines_per_file, 1, 1);
        let dir = workdir("faults-invalid", &sb, "");
        fault(&sb, Some("GET"), "/_bulk/file", "invalid-ndjson");
        let (id, _, _) = export(&dir.0, &[]);
        let expected = sandbox_counts(&sb);
        assert_silver_is(&dir.0, &expected);
        let files: u64 = expected.values().map(|n| n.div_ceil(lines_per_file as u64)).sum();
        let q = quarantine(&dir.0);
        assert_eq!(q.len() as u64, files, "one quarantine row per file: {q:?}");
        for r in &q {
            assert_eq!(r["error_kind"], "invalid-ndjson", "{r}");
            assert!(r["error_message"].as_str().is_some_and(|m| !m.trim().is_empty()), "{r}");
        }
        let total = sum(&expected);
        assert_eq!(bronze_of(&dir.0, &id), (total + files, total + files), "bronze keeps every line as received, the bad ones too");
    }
    // (c) every download cut short: after the retries the torn last line of each file
    // is quarantined (said so), everything before it lands.
    {
        let sb = sandbox(20, 1000, 1, 1);
        let dir = workdir("faults-truncated", &sb, "");
        fault(&sb, Some("GET"), "/_bulk/file", "truncate-ndjson");
        let (_, stdout, _) = export(&dir.0, &[]);
        let expected = sandbox_counts(&sb);
        let q = quarantine(&dir.0);
        for r in &q {
            assert_eq!(r["error_kind"], "truncated", "{r}");
            assert!(r["error_message"].as_str().is_some_and(|m| m.contains("cut short")), "the message says the line was cut short: {r}");
        }
        assert_eq!(q.len(), expected.len(), "one torn line per file (one file per type): {q:?}\n{stdout}");
        let mut landed = 0;
        for (ty, n) in &expected {
            let (rows, ids, live) = silver(&dir.0, ty);
            assert_eq!((rows, ids, live), (n - 1, n - 1, n - 1), "silver_{}: all but the torn last line", snake(ty));
            landed += rows;
        }
        assert_eq!(landed + q.len() as u64, sum(&expected), "silver and quarantine together hold every resource");
    }
}

#[test]
fn expired_files_lead_to_a_fresh_kick_off() {
    let sb = sandbox(400, 200, 1, 1);
    let dir = workdir("expired", &sb, "[bulk]\nbatch_lines = 40\nparallel = 2\n");
    let mut child = spawn_export(&dir.0, &[("EHRGATE_FAULT_SLOW_COMMIT_MS", "150")]);
    let s = wait_for_state(&dir.0, &mut child, "a file done and another part-way in", mid_downloads);
    let first = s["current"]["export_id"].as_str().unwrap().to_string();
    kill9(child);
    let (status, _) = http("GET", s["current"]["status_url"].as_str().unwrap(), None, Some(&sb.base));
    assert_eq!(status, 200, "the export is complete on the server before it expires");
    admin(&sb, "POST", "/expire-exports", None);
    let (second, stdout, stderr) = export(&dir.0, &[]);
    assert!(stderr.contains(&format!("rejoining export {first}")), "{stderr}");
    assert!(stderr.contains(&format!("kicked off export {second}")), "a fresh kick-off:\n{stderr}");
    assert_ne!(second, first, "{stdout}");
    let expected = sandbox_counts(&sb);
    assert_silver_is(&dir.0, &expected);
    let total = sum(&expected);
    assert_eq!(bronze_of(&dir.0, &second), (total, total), "the fresh export: every line once");
    let q = quarantine(&dir.0);
    assert!(q.is_empty(), "{q:?}");
    // The operator is told why a fresh export was kicked off.
    assert!(stderr.contains("expired"), "stderr says the export's files expired (not only \"answered 410\"):\n{stderr}");
}

#[test]
fn exports_given_up_on_are_deleted_on_the_server() {
    // Every file download answers 410 (expired) while the status URL still answers:
    // each export is abandoned for a fresh one, three times, then the run gives up.
    let sb = sandbox(10, 1000, 1, 1);
    let dir = workdir("abandoned", &sb, "");
    fault(&sb, Some("GET"), "/_bulk/file", "410");
    let out = command(&dir.0, &["bulk", "export", "--connection", "ehr"], &[]).output().unwrap();
    assert!(!out.status.success(), "the run gives up");
    assert!(text(&out.stderr).contains("gave up after 3 kick-offs"), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_str(&admin(&sb, "GET", "/stats", None)).unwrap();
    let by_route = stats["by_route"].as_object().unwrap();
    let count = |prefix: &str| -> u64 { by_route.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.as_u64().unwrap()).sum() };
    assert_eq!(count("GET /$export"), 3, "{by_route:?}");
    assert_eq!(count("DELETE /_bulk/status/"), 3, "every export it started and abandoned is released: {by_route:?}");
}

#[test]
fn cancel_deletes_the_export_on_the_server() {
    let sb = sandbox(10, 1000, 100_000, 1);
    let dir = workdir("cancel", &sb, "");
    let mut child = spawn_export(&dir.0, &[]);
    let s = wait_for_state(&dir.0, &mut child, "a status URL in the state file", |s| s["current"]["status_url"].is_string());
    let (id, status_url) = (s["current"]["export_id"].as_str().unwrap().to_string(), s["current"]["status_url"].as_str().unwrap().to_string());
    kill9(child);
    let (before, _) = http("GET", &status_url, None, Some(&sb.base));
    assert_eq!(before, 202, "the export is still running on the server");

    let status = text(&ehrgate(&dir.0, &["bulk", "status", "--connection", "ehr"]).stdout);
    assert!(status.contains(&format!("in progress: export {id}")), "{status}");
    let out = text(&ehrgate(&dir.0, &["bulk", "cancel", "--connection", "ehr"]).stdout);
    assert!(out.contains(&format!("export {id} cancelled")) && out.contains("202"), "{out}");
    let (after, body) = http("GET", &status_url, None, Some(&sb.base));
    assert_eq!(after, 404, "the server forgot the export: {body}");
    let status = text(&ehrgate(&dir.0, &["bulk", "status", "--connection", "ehr"]).stdout);
    assert!(status.contains("no export in progress"), "{status}");
    let again = text(&ehrgate(&dir.0, &["bulk", "cancel", "--connection", "ehr"]).stdout);
    assert!(again.contains("no export in progress"), "{again}");
    let st = state(&dir.0).unwrap();
    assert!(st["current"].is_null(), "{st}");
}

#[test]
fn patient_level_post_exports_only_the_listed_patients() {
    let sb = sandbox(30, 1000, 1, 1);
    let dir = workdir("patients", &sb, "");
    let chosen = ["patient-0001", "patient-0002"];
    let (id, _, _) = export(&dir.0, &["--patient", chosen[0], "--patient", chosen[1], "--type", "Patient,Observation"]);
    let stats: Value = serde_json::from_str(&admin(&sb, "GET", "/stats", None)).unwrap();
    assert!(stats.to_string().contains("/Patient/$export"), "a Patient-level kick-off: {stats}");
    let ids: Vec<String> = sql(&dir.0, "SELECT id FROM silver_patient ORDER BY id").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, chosen, "exactly the listed patients");
    // What the sandbox serves for them, by FHIR search.
    let mut want = 0;
    for p in chosen {
        let (status, body) = http("GET", &format!("{}/Observation?patient={p}&_count=1000", sb.base), None, Some(&sb.base));
        assert_eq!(status, 200, "{body}");
        let bundle: Value = serde_json::from_str(&body).unwrap();
        assert!(bundle["link"].as_array().into_iter().flatten().all(|l| l["relation"] != "next"), "one page: {bundle}");
        want += bundle["entry"].as_array().map_or(0, Vec::len) as u64;
    }
    assert!(want > 0);
    let rows = sql(&dir.0, "SELECT id, resource FROM silver_observation");
    assert_eq!(rows.len() as u64, want, "the listed patients' observations, all of them");
    for r in &rows {
        let res: Value = serde_json::from_str(r["resource"].as_str().unwrap()).unwrap();
        let subject = res["subject"]["reference"].as_str().unwrap_or("");
        assert!(chosen.iter().any(|p| subject == format!("Patient/{p}")), "{} belongs to {subject}", r["id"]);
    }
    let types = bronze_types(&dir.0, &id);
    assert_eq!(types.keys().cloned().collect::<Vec<_>>(), ["Observation", "Patient"], "only the requested types: {types:?}");
    for other in ["encounter", "condition", "medication_request", "group"] {
        assert!(sql_or_none(&dir.0, &format!("SELECT id FROM silver_{other}")).is_empty(), "nothing in silver_{other}");
    }
}

#[test]
fn a_file_that_never_downloads_is_not_reported_as_a_complete_export() {
    // Every file download fails (500, for good). Either the export fails and stays
    // rejoinable (a rerun once the server recovers lands everything), or it succeeds
    // with every resource in silver or quarantine. What must not happen: "complete",
    // exit 0, the next `_since` moved past data that is nowhere.
    let sb = sandbox(20, 1000, 1, 1);
    let dir = workdir("never-downloads", &sb, "");
    fault(&sb, Some("GET"), "/_bulk/file", "500");
    let out = command(&dir.0, &["bulk", "export", "--connection", "ehr"], &[]).output().unwrap();
    let expected = sandbox_counts(&sb);
    let total = sum(&expected);
    let q = quarantine(&dir.0);
    if out.status.success() {
        let landed: u64 = expected.keys().map(|ty| silver(&dir.0, ty).2).sum();
        assert_eq!(
            landed + q.len() as u64,
            total,
            "exit 0 and \"complete\", yet of {total} resources {landed} are in silver and {} rows in quarantine (since is now {}):\n{}\n{q:#?}",
            q.len(),
            state(&dir.0).map(|s| s["since"].clone()).unwrap_or_default(),
            text(&out.stdout)
        );
        return;
    }
    let st = state(&dir.0).expect("a state file");
    assert!(st["since"].as_object().is_none_or(|m| m.is_empty()), "a failed export does not move the next _since: {st}");
    assert!(st["current"]["status_url"].is_string(), "the export stays, to be rejoined: {st}");
    admin(&sb, "DELETE", "/faults", None);
    let (_, _, stderr) = export(&dir.0, &[]);
    assert!(stderr.contains("rejoining export"), "{stderr}");
    assert_silver_is(&dir.0, &expected);
}

/// `ehrgate serve` with a `[[bulk.jobs]]` entry exports on its interval: the first
/// run lands everything, a later (incremental) run picks up patients added while
/// the gateway runs; SIGTERM stops it cleanly.
#[test]
fn serve_runs_the_scheduled_export_incrementally() {
    let sb = sandbox(40, 100, 0, 1);
    let extra = "[[listeners.mllp]]\nbind = \"127.0.0.1:0\"\n\n[[bulk.jobs]]\nconnection = \"ehr\"\ninterval_s = 1\n";
    let dir = workdir("serve", &sb, extra);
    let err = std::fs::File::create(dir.0.join("serve.stderr")).unwrap();
    let mut child = command(&dir.0, &["serve"], &[]).stdout(Stdio::null()).stderr(err).spawn().expect("start serve");
    let log = || std::fs::read_to_string(dir.0.join("serve.stderr")).unwrap_or_default();
    let wait = |what: &str, cond: &dyn Fn() -> bool, child: &mut Child| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !cond() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve ended ({status}) before {what}:\n{}", log());
            }
            assert!(Instant::now() < deadline, "no {what} within 90 s:\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let done_runs = || log().lines().filter(|l| l.contains("bulk ehr: export") && l.contains("done")).count();
    wait("a first scheduled export", &|| done_runs() >= 1, &mut child);
    assert_silver_is(&dir.0, &sandbox_counts(&sb));
    admin(&sb, "POST", "/patients", Some(json!({"count": 5})));
    let expected = sandbox_counts(&sb);
    wait("the added patients in silver", &|| silver(&dir.0, "Patient").0 == expected["Patient"], &mut child);
    let runs = done_runs();
    wait("one more run", &|| done_runs() > runs, &mut child);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}:\n{}", log());
    assert_silver_is(&dir.0, &expected);
    let st = state(&dir.0).expect("state file");
    assert!(st["since"].as_object().is_some_and(|m| m.values().all(Value::is_string) && m.len() == 1), "the next _since is stored: {st}");
    assert!(log().contains("_since="), "later runs are incremental:\n{}", log());
}

/// The peak RSS `bulk export` reports.
fn peak_rss_mb(stdout: &str) -> f64 {
    let at = stdout.find("peak RSS ").unwrap_or_else(|| panic!("no peak RSS in the report:\n{stdout}")) + "peak RSS ".len();
    stdout[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Ten times the data does not take ten times the memory: files are streamed and
/// only a bounded number of batches is in flight. (If the export were held whole,
/// the 10x run would need well over 100 MB more.)
#[test]
fn peak_memory_stays_flat_with_ten_times_the_data() {
    let mut rss = Vec::new();
    for patients in [500, 5000] {
        let sb = sandbox(patients, 5000, 0, 1);
        // Small batches, so that even the 1x run fills what may be in flight.
        let dir = workdir(&format!("rss-{patients}"), &sb, "[bulk]\nbatch_lines = 500\nparallel = 2\n");
        let (_, stdout, _) = export(&dir.0, &[]);
        let expected = sandbox_counts(&sb);
        assert!(stdout.contains(&format!("resources {},", sum(&expected))), "{stdout}");
        rss.push((sum(&expected), peak_rss_mb(&stdout)));
    }
    let ((n1, r1), (n10, r10)) = (rss[0], rss[1]);
    eprintln!("peak RSS: {n1} resources {r1:.1} MB; {n10} resources {r10:.1} MB");
    assert!(n10 >= 9 * n1, "the second export has about ten times the data: {n1} vs {n10}");
    assert!(r10 < r1 + 60.0, "peak RSS grew from {r1:.1} MB to {r10:.1} MB with 10x the data");
}

/// `ehrgate bulk export` that must end within `secs` (a 15-minute pause would not).
fn export_within(dir: &Path, secs: u64) -> String {
    let mut child = command(dir, &["bulk", "export", "--connection", "ehr"], &[]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the export did not end within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn an_error_files_count_is_advisory_and_an_absurd_retry_after_is_ignored() {
    // (a) The error entry counts the failed resources (4), the file holds one
    // OperationOutcome: it is read once, lands as one export-error row, nothing is
    // called truncated, and the watermark moves.
    {
        let sb = start_sandbox(&["--patients", "20", "--export-polls", "1", "--retry-after", "1", "--error-count", "4"]);
        let dir = workdir("error-count", &sb, "");
        let stdout = export_within(&dir.0, 300);
        assert!(stdout.contains("complete"), "{stdout}");
        let q = quarantine(&dir.0);
        let kinds: Vec<&str> = q.iter().map(|r| r["error_kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["export-error"], "{q:?}");
        let status = text(&command(&dir.0, &["bulk", "status", "--connection", "ehr"], &[]).output().unwrap().stdout);
        assert!(status.contains("next _since"), "the watermark moved: {status}");
    }
    // (b) An epoch timestamp sent as Retry-After delta-seconds: ignored (normal
    // backoff), not a 15-minute pause.
    {
        let sb = sandbox(20, 1000, 1, 1);
        let dir = workdir("absurd-retry-after", &sb, "");
        fault(&sb, Some("GET"), "/_bulk/status", "429;retry-after=1733300000;times=1");
        let stdout = export_within(&dir.0, 120);
        assert!(stdout.contains("complete"), "{stdout}");
        let stats: Value = serde_json::from_str(&admin(&sb, "GET", "/stats", None)).unwrap();
        assert_eq!(stats["faults_applied"], 1, "the absurd Retry-After was served: {stats}");
    }
}

#[test]
fn a_connection_allowing_smart_v2_scopes_exports() {
    // The connection allows `system/*.rs` (SMART v2, what SMART's reference server
    // grants); the bulk client declares `system/*.read`: it asks for `system/*.rs`.
    let sb = sandbox(10, 1000, 1, 1);
    let dir = workdir("smart-v2", &sb, "");
    let toml = std::fs::read_to_string(dir.0.join("ehrgate.toml")).unwrap().replace("scopes = [\"system/*.read\"]", "scopes = [\"system/*.rs\"]");
    assert!(toml.contains("system/*.rs"));
    std::fs::write(dir.0.join("ehrgate.toml"), toml).unwrap();
    let (id, stdout, _) = export(&dir.0, &[]);
    assert!(stdout.contains(&format!("export {id} complete")));
    assert_silver_is(&dir.0, &sandbox_counts(&sb));
    // A connection that allows nothing the caller needs: a sentence, not a Rust Debug form.
    let toml = std::fs::read_to_string(dir.0.join("ehrgate.toml")).unwrap().replace("scopes = [\"system/*.rs\"]", "scopes = [\"system/*.c\"]");
    std::fs::write(dir.0.join("ehrgate.toml"), toml).unwrap();
    let out = command(&dir.0, &["bulk", "export", "--connection", "ehr"], &[]).output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused before sending: no scope the caller declares is allowed"), "{err}");
    assert!(!err.contains("Denied("), "{err}");
}
