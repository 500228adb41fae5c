//! End-to-end: `ehrgate ingest` into Delta tables, read back by readers no code here
//! wrote (Python deltalake and polars), idempotent replays, newer-wins, crash safety,
//! quarantine and reprocess, and the S3 path against a local S3-compatible server.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh working directory for one test (the lake goes to ./ehrgate-data in it),
/// removed when the test ends.
struct WorkDir(PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for WorkDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workdir(name: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("ehrgate-lake-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

fn ehrgate(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(dir).args(args).output().expect("run ehrgate");
    assert!(out.status.success(), "ehrgate {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    out
}

fn ingest(dir: &Path, files: &[PathBuf], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["ingest".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(files.iter().map(|f| f.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    text(&ehrgate(dir, &refs).stdout)
}

/// Rows of a query as JSON objects.
fn sql(dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = ehrgate(dir, &["sql", query, "--format", "json"]);
    text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn count(dir: &Path, table: &str) -> u64 {
    sql(dir, &format!("SELECT count(*) AS n FROM {table}"))[0]["n"].as_u64().unwrap()
}

/// The whole shared corpus: every HL7v2 sample and every bulk-export NDJSON file.
fn corpus() -> Vec<PathBuf> {
    let shared = ehrgate_testkit::shared_dir();
    let mut files = ehrgate_testkit::hl7_samples();
    let bulk = shared.join("data/fhir/bulk_export_group_BMCHealthNet");
    let mut nd: Vec<PathBuf> = std::fs::read_dir(&bulk).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ndjson")).collect();
    nd.sort();
    files.extend(nd);
    files
}

/// Table paths (`silver/patient`) that exist under `root`.
fn tables(root: &Path) -> Vec<String> {
    let mut out = vec![];
    for layer in ["bronze", "silver", "quarantine", "audit"] {
        if let Ok(rd) = std::fs::read_dir(root.join(layer)) {
            for e in rd.flatten() {
                if e.path().join("_delta_log").is_dir() {
                    out.push(format!("{layer}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    out.sort();
    out
}

fn silver_counts(dir: &Path) -> BTreeMap<String, u64> {
    tables(&dir.join("ehrgate-data"))
        .into_iter()
        .filter(|t| t.starts_with("silver/"))
        .map(|t| {
            let n = count(dir, &t.replace('/', "_"));
            (t, n)
        })
        .collect()
}

/// What the independent readers see: table -> reader -> (rows, keys digest).
fn independent_read(root: &str, tables: &[String], env: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, (u64, String)>> {
    let script = ehrgate_testkit::repo_root().join("tests/lake_read.py");
    let out = Command::new("python3").arg(script).arg(root).args(tables).envs(env.iter().copied()).output().expect("python3 tests/lake_read.py");
    assert!(out.status.success(), "independent readers failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    let mut m: BTreeMap<String, BTreeMap<String, (u64, String)>> = BTreeMap::new();
    for l in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        m.entry(v["table"].as_str().unwrap().into())
            .or_default()
            .insert(v["reader"].as_str().unwrap().into(), (v["rows"].as_u64().unwrap(), v["keys_sha256"].as_str().unwrap().into()));
    }
    m
}

fn sha256_sorted(mut values: Vec<String>) -> String {
    values.sort();
    ehrgate_lake::sha256_hex(values.join("\n").as_bytes())
}

#[test]
fn corpus_three_times_is_idempotent_and_independent_readers_agree() {
    let dir = workdir("corpus");
    let files = corpus();
    ingest(&dir, &files, &[]);
    let once = silver_counts(&dir);
    assert!(once.len() >= 10, "expected many silver tables, got {once:?}");
    assert!(once["silver/patient"] > 0 && once["silver/observation"] > 0, "{once:?}");
    let bronze_once = count(&dir, "bronze_hl7_messages") + count(&dir, "bronze_fhir_ndjson");

    ingest(&dir, &files, &[]);
    ingest(&dir, &files, &[]);
    assert_eq!(silver_counts(&dir), once, "replaying the corpus must not change silver");
    let bronze_thrice = count(&dir, "bronze_hl7_messages") + count(&dir, "bronze_fhir_ndjson");
    assert_eq!(bronze_thrice, 3 * bronze_once, "bronze keeps every receipt, as received");

    // Compaction rewrites files, not rows; vacuum's default retention keeps them all.
    let optimized = text(&ehrgate(&dir, &["lake", "optimize"]).stdout);
    assert!(optimized.contains("silver/observation"), "{optimized}");
    assert_eq!(silver_counts(&dir), once, "optimize must not change rows");
    let vacuumed = text(&ehrgate(&dir, &["lake", "vacuum", "--dry-run"]).stdout);
    assert!(vacuumed.contains("0 files would be deleted"), "files younger than 7 days are kept: {vacuumed}");

    let csv = text(&ehrgate(&dir, &["sql", "SELECT id, resource_type FROM silver_patient ORDER BY id LIMIT 2", "--format", "csv"]).stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], "id,resource_type");
    assert!(lines[1].ends_with(",Patient"), "{csv}");

    // Every silver row traces back to a bronze record.
    let orphans = sql(
        &dir,
        "SELECT count(*) AS n FROM silver_patient s LEFT JOIN bronze_hl7_messages b \
         ON s.lineage = concat('bronze/hl7_messages/', b.record_id) \
         LEFT JOIN bronze_fhir_ndjson f ON s.lineage = concat('bronze/fhir_ndjson/', f.record_id) \
         WHERE b.record_id IS NULL AND f.record_id IS NULL",
    );
    assert_eq!(orphans[0]["n"], 0, "silver rows without their bronze record");

    // Readers that no code here wrote see the same rows and keys.
    let root = dir.join("ehrgate-data");
    let all = tables(&root);
    let seen = independent_read(root.to_str().unwrap(), &all, &[]);
    for t in &all {
        let name = t.replace('/', "_");
        let key = if t.starts_with("bronze/") { "record_id" } else if t.starts_with("audit/") { "action" } else { "id" };
        let ours: Vec<String> = sql(&dir, &format!("SELECT {key} AS k FROM {name}")).into_iter().map(|v| v["k"].as_str().unwrap().to_string()).collect();
        let digest = sha256_sorted(ours.clone());
        for reader in ["deltalake", "polars"] {
            let (rows, keys) = &seen[t][reader];
            assert_eq!(*rows, ours.len() as u64, "{t}: {reader} row count");
            assert_eq!(keys, &digest, "{t}: {reader} sees different keys");
        }
    }
}

/// An ADT^A08 for the sample patient with a given message time and family name.
fn a08(time: &str, family: &str, control: &str) -> String {
    let raw = std::fs::read_to_string(ehrgate_testkit::shared_dir().join("data/hl7/adt_a08_ghh_v28.hl7")).unwrap();
    raw.lines()
        .map(|l| {
            let mut f: Vec<String> = l.split('|').map(str::to_owned).collect();
            if l.starts_with("MSH") {
                f[6] = time.into();
                f[9] = control.into();
            }
            if l.starts_with("PID") {
                let mut name: Vec<String> = f[5].split('^').map(str::to_owned).collect();
                name[0] = family.into();
                f[5] = name.join("^");
            }
            f.join("|")
        })
        .collect::<Vec<_>>()
        .join("\r")
}

#[test]
fn an_older_update_never_overwrites_a_newer_one() {
    let dir = workdir("a08");
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let newer = write("newer.hl7", a08("20240301120000+0000", "NEWER", "C2"));
    let older = write("older.hl7", a08("20240101120000+0000", "OLDER", "C1"));
    let newest = write("newest.hl7", a08("20240401120000+0000", "NEWEST", "C3"));
    let family = || {
        let rows = sql(&dir, "SELECT resource FROM silver_patient");
        assert_eq!(rows.len(), 1, "one patient row");
        let r: serde_json::Value = serde_json::from_str(rows[0]["resource"].as_str().unwrap()).unwrap();
        r["name"][0]["family"].as_str().unwrap().to_string()
    };
    ingest(&dir, std::slice::from_ref(&newer), &[]);
    assert_eq!(family(), "NEWER");
    ingest(&dir, std::slice::from_ref(&older), &[]);
    assert_eq!(family(), "NEWER", "the older A08 arrived late and must not win");
    // Both in one commit, out of order: the newest still wins.
    ingest(&dir, &[newest, older], &[]);
    assert_eq!(family(), "NEWEST");
}

#[test]
fn quarantine_keeps_rejects_and_reprocess_maps_them() {
    let dir = workdir("quarantine");
    let shared = ehrgate_testkit::shared_dir().join("data/hl7");
    // A valid ADT with a segment the hostile adapter cannot handle.
    let adt = std::fs::read_to_string(shared.join("adt_a01_ghh_v28_min.hl7")).unwrap();
    let zz = dir.join("zz.hl7");
    std::fs::write(&zz, format!("{}\rZZPANIC|1\r", adt.trim_end().replace('\n', "\r"))).unwrap();
    let hostile = ehrgate_testkit::guest("ehrgate-guest-hostile");
    ingest(&dir, &[zz], &["--adapter", hostile.to_str().unwrap()]);
    ingest(&dir, &[shared.join("malformed_msh_duplicate_encoding_chars_v26.hl7")], &[]);

    let list = text(&ehrgate(&dir, &["quarantine", "list"]).stdout);
    assert!(list.contains("trap") && list.contains("hostile@0.1.0"), "{list}");
    assert!(list.contains("invalid-input") && list.contains("[MSH-2]"), "{list}");
    assert_eq!(count(&dir, "quarantine_records"), 2);

    let out = text(&ehrgate(&dir, &["quarantine", "reprocess", "--adapter", "hostile", "--with", "reference"]).stdout);
    assert!(out.contains("examined 1; mapped and marked reprocessed 1"), "{out}");
    assert_eq!(count(&dir, "silver_patient"), 1, "the reprocessed message landed in silver");
    let pending = text(&ehrgate(&dir, &["quarantine", "list"]).stdout);
    assert!(!pending.contains("hostile@0.1.0"), "reprocessed rows are no longer pending: {pending}");
    assert!(pending.contains("[MSH-2]"));
    let all = text(&ehrgate(&dir, &["quarantine", "list", "--all"]).stdout);
    assert!(all.contains("reprocessed: mapped by reference@0.1.0"), "{all}");
}

#[test]
fn killing_ingest_mid_commit_leaves_every_table_readable() {
    let dir = workdir("kill");
    // Enough input that the process is still committing when it is killed.
    let adt = std::fs::read_to_string(ehrgate_testkit::shared_dir().join("data/hl7/adt_a01_ghh_v28_full.hl7")).unwrap().replace('\n', "\r");
    let mut files = vec![];
    for f in 0..60 {
        let mut batch = String::new();
        for m in 0..250 {
            batch.push_str(&adt.replacen("PATID1234", &format!("P{f}x{m}"), 1));
            batch.push('\r');
        }
        let p = dir.join(format!("f{f:02}.hl7"));
        std::fs::write(&p, batch).unwrap();
        files.push(p);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .current_dir(&dir)
        .arg("ingest")
        .args(&files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until silver has its first commit, then kill without warning.
    let log = dir.join("ehrgate-data/silver/patient/_delta_log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let commits = std::fs::read_dir(&log).map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()).unwrap_or(0);
        if commits >= 1 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "ingest finished before it could be killed; make the input larger");
        assert!(std::time::Instant::now() < deadline, "no silver commit within 2 minutes");
        // Poll the file system for the condition (a short interval, not a guess at timing).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let root = dir.join("ehrgate-data");
    let all = tables(&root);
    let seen = independent_read(root.to_str().unwrap(), &all, &[]);
    for t in &all {
        let ours = count(&dir, &t.replace('/', "_"));
        assert_eq!(seen[t]["deltalake"].0, ours, "{t}");
    }
    // Committed silver rows all have their bronze record (bronze commits first).
    let orphans = sql(
        &dir,
        "SELECT count(*) AS n FROM silver_patient s LEFT JOIN bronze_hl7_messages b \
         ON s.lineage = concat('bronze/hl7_messages/', b.record_id) WHERE b.record_id IS NULL",
    );
    assert_eq!(orphans[0]["n"], 0);
    // Running again to the end gives every patient exactly once.
    ingest(&dir, &files, &[]);
    assert_eq!(count(&dir, "silver_patient"), 60 * 250);
}

#[test]
fn two_processes_writing_the_same_tables_lose_nothing() {
    let dir = workdir("concurrent");
    let files = ehrgate_testkit::hl7_samples();
    let (a, b): (Vec<_>, Vec<_>) = files.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    let spawn = |part: Vec<(usize, PathBuf)>| {
        Command::new(env!("CARGO_BIN_EXE_ehrgate"))
            .current_dir(&dir)
            .arg("ingest")
            .args(part.into_iter().map(|(_, p)| p))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(a), spawn(b));
    for p in [pa, pb] {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let together = silver_counts(&dir);
    let alone = workdir("concurrent-alone");
    ingest(&alone, &files, &[]);
    assert_eq!(together, silver_counts(&alone), "concurrent writers must not lose or duplicate rows");
    assert_eq!(count(&dir, "bronze_hl7_messages"), count(&alone, "bronze_hl7_messages"));
}

#[test]
fn s3_storage_against_a_local_s3_server() {
    let dir = workdir("s3");
    let (_server, endpoint, env) = ehrgate_testkit::start_s3();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    std::fs::write(
        dir.join("ehrgate.toml"),
        format!(
            "[storage]\nkind = \"s3\"\nbucket = \"lake\"\nprefix = \"ehr\"\nendpoint = \"{endpoint}\"\n\
             access_key_id = \"env:AWS_ACCESS_KEY_ID\"\nsecret_access_key = \"env:AWS_SECRET_ACCESS_KEY\"\nallow_http = true\n"
        ),
    )
    .unwrap();
    let shared = ehrgate_testkit::shared_dir();
    let files = vec![
        shared.join("data/hl7/adt_a01_ghh_v28_full.hl7"),
        shared.join("data/hl7/oru_r01_nist_lri_cbc_v251_bom.hl7"),
        shared.join("data/fhir/bulk_export_group_BMCHealthNet/28.Patient.ndjson"),
    ];
    let run = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir).args(args).envs(env.iter().copied()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };
    let mut args = vec!["ingest".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    run(&args);
    run(&args);
    assert!(!dir.join("ehrgate-data").exists(), "nothing may land on local disk with S3 storage");
    let n = |t: &str| -> u64 {
        let out = run(&["sql".into(), format!("SELECT count(*) AS n FROM {t}"), "--format".into(), "json".into()]);
        serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).unwrap()["n"].as_u64().unwrap()
    };
    let patients = n("silver_patient");
    let observations = n("silver_observation");
    assert!(patients > 1 && observations > 0);
    let tables = vec!["silver/patient".to_string(), "silver/observation".to_string(), "bronze/hl7_messages".to_string()];
    let seen = independent_read("s3://lake/ehr", &tables, &env);
    assert_eq!(seen["silver/patient"]["deltalake"].0, patients);
    assert_eq!(seen["silver/patient"]["polars"].0, patients);
    assert_eq!(seen["silver/observation"]["deltalake"].0, observations);
    assert_eq!(seen["bronze/hl7_messages"]["deltalake"].0, n("bronze_hl7_messages"));
    assert_eq!(n("bronze_hl7_messages"), 4, "two messages, ingested twice");
}
