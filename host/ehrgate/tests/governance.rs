//! PHI governance end to end, through the real binary: principals refused tables
//! they were not granted (and the refusal audited), a safe-harbor principal seeing
//! none of the identifiers the unmasked silver holds (JSON, CSV and table output),
//! pseudonyms stable across runs and joinable, and `ehrgate audit verify` naming the
//! row an independent Delta writer (Python deltalake) edited or deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::gateway::{Gateway, ehrgate, sql, text, workdir};
use serde_json::Value;

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(dir).args(args).envs(env.iter().copied()).output().expect("run ehrgate")
}

fn ingest_corpus(dir: &Path) {
    let shared = ehrgate_testkit::shared_dir();
    let mut files: Vec<PathBuf> = ehrgate_testkit::hl7_samples();
    files.push(shared.join("data/fhir/bulk_export_group_BMCHealthNet/28.Patient.ndjson"));
    let mut args = vec!["ingest".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ehrgate(dir, &refs);
}

/// Every identifying string the unmasked Patient resources hold: names, identifier
/// values, telecom values, address lines and cities, full birth dates.
fn identifiers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let strings = |v: &Value, out: &mut Vec<String>| {
        if let Some(s) = v.as_str() {
            out.push(s.to_string());
        }
    };
    for row in sql(dir, "SELECT resource FROM silver_patient") {
        let r: Value = serde_json::from_str(row["resource"].as_str().unwrap()).unwrap();
        for n in r["name"].as_array().into_iter().flatten() {
            strings(&n["family"], &mut out);
            n["given"].as_array().into_iter().flatten().for_each(|g| strings(g, &mut out));
        }
        r["identifier"].as_array().into_iter().flatten().for_each(|i| strings(&i["value"], &mut out));
        r["telecom"].as_array().into_iter().flatten().for_each(|t| strings(&t["value"], &mut out));
        for a in r["address"].as_array().into_iter().flatten() {
            a["line"].as_array().into_iter().flatten().for_each(|l| strings(l, &mut out));
            strings(&a["city"], &mut out);
        }
        // (a 1 January birth date reads like the year a masked timestamp keeps)
        if r["birthDate"].as_str().is_some_and(|b| b.len() == 10 && !b.ends_with("-01-01")) {
            strings(&r["birthDate"], &mut out);
        }
    }
    // (one- and two-letter initials would match anywhere, as would numbers of a
    // few digits inside codes and values; a test patient named "Patient" matches
    // every resourceType)
    out.retain(|s| {
        let min = if s.chars().all(|c| c.is_ascii_digit()) { 5 } else { 3 };
        s.trim().len() >= min && s != "Patient"
    });
    out.sort();
    out.dedup();
    out
}

/// `text` without the pseudonyms (`ps_` and 24 hex digits), whose digits could
/// match a short numeric identifier by chance.
fn without_pseudonyms(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("ps_") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 3..];
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        rest = if hex >= 24 { &tail[hex..] } else { out.push_str("ps_"); tail };
    }
    out.push_str(rest);
    out
}

fn audit_rows(dir: &Path) -> Vec<Value> {
    sql(dir, "SELECT seq, actor, outcome, purpose, path, detail FROM audit_access_log ORDER BY seq")
}

#[test]
fn principals_see_only_their_tables_masked_by_their_profile_and_every_query_is_audited() {
    let dir = workdir("govern");
    ingest_corpus(&dir.0);
    let ids = identifiers(&dir.0);
    assert!(ids.len() > 20, "the corpus holds identifiers to look for: {ids:?}");
    let (key, hash) = {
        let out = ehrgate(&dir.0, &["door", "key"]);
        let t = text(&out.stdout);
        let key = t.lines().next().unwrap().split_whitespace().nth(1).unwrap().to_string();
        let hash = t.lines().nth(1).unwrap().split('"').nth(1).unwrap().to_string();
        (key, hash)
    };
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        format!(
            "[governance]\npseudonym_key = \"env:TEST_PSEUDONYM_KEY\"\n\
             [[governance.principals]]\nname = \"clerk\"\ntables = [\"silver_patient\"]\n\
             [[governance.principals]]\nname = \"analyst\"\nkey_hash = \"{hash}\"\ntables = [\"silver_*\"]\nprofile = \"safe-harbor\"\npurposes = [\"HOPERAT\"]\n"
        ),
    )
    .unwrap();
    let env = [("TEST_PSEUDONYM_KEY", "a secret of the covered entity"), ("ANALYST_KEY", key.as_str())];

    // A table not granted: a clear refusal, and an audit row saying so.
    let out = run(&dir.0, &["sql", "--as", "clerk", "SELECT count(*) AS n FROM silver_observation"], &env);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("may not read silver_observation"), "{}", text(&out.stderr));
    // ... also when hidden in a subquery or a join.
    let out = run(&dir.0, &["sql", "--as", "clerk", "SELECT p.id FROM silver_patient p WHERE p.id IN (SELECT id FROM silver_observation)"], &env);
    assert!(text(&out.stderr).contains("may not read silver_observation"), "{}", text(&out.stderr));
    let out = run(&dir.0, &["sql", "--as", "clerk", "SELECT count(*) AS n FROM silver_patient", "--format", "json"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A wrong key, no key, no purpose: refused.
    for args in [
        vec!["sql", "--as", "analyst", "--purpose", "HOPERAT", "SELECT 1"],
        vec!["sql", "--as", "analyst", "--key", "env:TEST_PSEUDONYM_KEY", "--purpose", "HOPERAT", "SELECT 1"],
        vec!["sql", "--as", "analyst", "--key", "env:ANALYST_KEY", "SELECT 1"],
        vec!["sql", "--as", "analyst", "--key", "env:ANALYST_KEY", "--purpose", "MARKETING", "SELECT 1"],
    ] {
        let out = run(&dir.0, &args, &env);
        assert!(!out.status.success(), "{args:?} must be refused");
    }

    // The safe-harbor principal: none of the identifiers, in any output format.
    let analyst = |q: &str, format: &str| {
        let out = run(&dir.0, &["sql", "--as", "analyst", "--key", "env:ANALYST_KEY", "--purpose", "HOPERAT", q, "--format", format], &env);
        assert!(out.status.success(), "{q}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for format in ["json", "csv", "table"] {
        for table in ["silver_patient", "silver_encounter", "silver_observation"] {
            let seen = without_pseudonyms(&analyst(&format!("SELECT * FROM {table}"), format));
            assert!(seen.lines().count() > 1, "{table} has rows");
            let leaked: Vec<&String> = ids.iter().filter(|i| seen.contains(i.as_str())).collect();
            assert!(leaked.is_empty(), "{table} as {format} shows {leaked:?}");
        }
    }
    let masked = analyst("SELECT id, patient_ref, resource FROM silver_patient ORDER BY id", "json");
    assert!(masked.contains("\"id\":\"ps_"), "ids are pseudonyms: {}", &masked[..masked.len().min(400)]);
    assert_eq!(masked, analyst("SELECT id, patient_ref, resource FROM silver_patient ORDER BY id", "json"), "stable across runs");
    // Joinable: the masked tables join as the stored ones do.
    let join = "SELECT count(*) AS n FROM silver_observation o JOIN silver_patient p ON o.patient_ref = concat('Patient/', p.id)";
    let stored = sql(&dir.0, join)[0]["n"].as_u64().unwrap();
    let seen: Value = serde_json::from_str(analyst(join, "json").trim()).unwrap();
    assert!(stored > 0);
    assert_eq!(seen["n"].as_u64(), Some(stored));

    // A de-identified export: none of the identifiers in any file (Parquet read
    // back by pyarrow), pseudonyms the same in a second export, and joinable.
    let exports: Vec<PathBuf> = (0..2).map(|i| dir.0.join(format!("export-{i}"))).collect();
    for to in &exports {
        let out = run(&dir.0, &["export", "--profile", "safe-harbor", "--to", to.to_str().unwrap()], &env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("rows/s"), "{}", text(&out.stdout));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&exports[0]).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("silver_patient.parquet")) && files.iter().any(|f| f.ends_with("silver_observation.ndjson")), "{files:?}");
    let dump = "import sys, json, pyarrow.parquet as pq\nfor f in sys.argv[1:]:\n    print(json.dumps(pq.read_table(f).to_pylist(), default=str))\n";
    let parquet: Vec<String> = files.iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).map(|f| f.display().to_string()).collect();
    let read = Command::new("python3").arg("-c").arg(dump).args(&parquet).output().unwrap();
    assert!(read.status.success(), "{}", text(&read.stderr));
    let mut exported = without_pseudonyms(&text(&read.stdout));
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "ndjson")) {
        exported.push_str(&without_pseudonyms(&std::fs::read_to_string(f).unwrap()));
    }
    let leaked: Vec<&String> = ids.iter().filter(|i| exported.contains(i.as_str())).collect();
    assert!(leaked.is_empty(), "the export shows {leaked:?}");
    let ndjson = |d: &Path, t: &str| -> Vec<Value> {
        std::fs::read_to_string(d.join(format!("{t}.ndjson"))).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let ids_of = |d: &Path| -> Vec<String> { ndjson(d, "silver_patient").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect() };
    let (first, second) = (ids_of(&exports[0]), ids_of(&exports[1]));
    assert!(first.iter().all(|i| i.starts_with("ps_")));
    assert_eq!(first, second, "pseudonyms are stable across exports");
    let patients: std::collections::HashSet<String> = first.iter().map(|i| format!("Patient/{i}")).collect();
    let joined = ndjson(&exports[0], "silver_observation").iter().filter(|o| o["patient_ref"].as_str().is_some_and(|r| patients.contains(r))).count();
    assert_eq!(joined as u64, stored, "observations join their patients in the export as in the lake");

    // Every query above, refused or not, is in the audit, with principal, purpose,
    // tables and rows; and the chain holds.
    let rows = audit_rows(&dir.0);
    let refused = rows.iter().find(|r| r["actor"] == "sql:clerk" && r["outcome"].as_str().unwrap().starts_with("refused")).expect("the refusal is audited");
    assert!(refused["detail"].as_str().unwrap().contains("silver_observation"));
    let read = rows.iter().find(|r| r["actor"] == "sql:analyst" && r["path"] == "silver_encounter").expect("the analyst's read is audited");
    assert_eq!(read["purpose"], "HOPERAT");
    let detail: Value = serde_json::from_str(read["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["profile"], "safe-harbor");
    assert!(detail["rows"].as_u64().unwrap() > 0 && detail["query"].as_str().unwrap().contains("silver_encounter"));
    assert!(rows.iter().filter(|r| r["actor"] == "sql:analyst" && r["outcome"].as_str().unwrap().starts_with("refused")).count() >= 4);
    assert_eq!(rows.iter().filter(|r| r["outcome"].as_str().unwrap().starts_with("ok") && r["detail"].as_str().unwrap().contains("\"to\"")).count(), 2, "each export is audited");
    let v = ehrgate(&dir.0, &["audit", "verify"]);
    assert!(text(&v.stdout).contains("audit chain intact"), "{}", text(&v.stdout));
}

/// Rewrite the audit table with Python deltalake (another writer, not ours).
fn tamper(dir: &Path, python: &str) {
    let table = dir.join("ehrgate-data/audit/access_log");
    let script = format!("from deltalake import DeltaTable\ndt = DeltaTable({:?})\n{python}\n", table.display().to_string());
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3 with deltalake (scripts/test installs it)");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn verify(dir: &Path) -> (bool, String) {
    let out = run(dir, &["audit", "verify"], &[]);
    (out.status.success(), text(&out.stdout))
}

#[test]
fn audit_verify_names_the_first_row_an_independent_writer_edited_or_deleted() {
    for (case, python, seq, why) in [
        ("edit", "dt.update(predicate='seq = 2', updates={'outcome': \"'ok: 0 rows'\"})", 2, "edited"),
        ("delete", "dt.delete('seq = 1')", 1, "missing"),
        ("truncate", "dt.delete('seq = 4')", 4, "at the end"),
    ] {
        let dir = workdir(&format!("audit-{case}"));
        for i in 0..5 {
            // each query appends one audit row (seq 0 to 4)
            sql(&dir.0, &format!("SELECT {i} AS n"));
        }
        let (ok, out) = verify(&dir.0);
        assert!(ok && out.contains("5 rows, seq 0 to 4"), "{case}: {out}");
        tamper(&dir.0, python);
        let (ok, out) = verify(&dir.0);
        assert!(!ok, "{case}: verify must fail: {out}");
        assert!(out.contains(&format!("BROKEN at seq {seq}")) && out.contains(why), "{case}: {out}");
    }
}

/// An independent reader (Python deltalake) over every table but the audit:
/// table -> rows whose values mention `needle`.
fn mentions(root: &Path, needle: &str) -> serde_json::Map<String, Value> {
    let script = r#"
import sys, json, glob, os
import pyarrow.parquet as pq
from deltalake import DeltaTable
root, needle = sys.argv[1], sys.argv[2]
hits = {}
for log in glob.glob(os.path.join(root, '**', '_delta_log'), recursive=True):
    path = os.path.dirname(log)
    rel = os.path.relpath(path, root)
    if rel.startswith('audit'):
        continue
    rows = DeltaTable(path).to_pyarrow_table().to_pylist()
    hits[rel] = sum(1 for r in rows if needle in json.dumps(r, default=str))
    # Every Parquet file on disk as well, whether the table's current version uses
    # it or not: superseded data files and the change data feed's files (silver's
    # update and delete images) would otherwise keep what a purge removed.
    # (the log's checkpoints are left out: their file statistics are another matter)
    for f in glob.glob(os.path.join(path, '**', '*.parquet'), recursive=True):
        if '_delta_log' in f:
            continue
        rows = pq.read_table(f).to_pylist()
        hits[rel + ' (files)'] = hits.get(rel + ' (files)', 0) + sum(1 for r in rows if needle in json.dumps(r, default=str))
print(json.dumps(hits))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let out = Command::new("python3").args(["-c", script, root.to_str().unwrap(), needle]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).unwrap()
}

/// With the independent reader: rows of the table at `path` with `column` before
/// `cutoff` now, and at `version` (None when that version can no longer be read).
fn old_rows(path: &Path, column: &str, cutoff: &str, version: i64) -> (u64, u64, Option<u64>) {
    let script = r#"
import sys, json, datetime, os
import pyarrow.compute as pc
from deltalake import DeltaTable
path, column, cutoff, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cut = datetime.datetime.fromisoformat(cutoff.replace('Z', '+00:00'))
def old(t):
    c = t.column(column)
    return int(pc.sum(pc.less(c, pc.cast(cut, c.type))).as_py() or 0)
now = DeltaTable(path).to_pyarrow_table()
if len(sys.argv) > 5:
    # (the time-travel read, in a process of its own: deltalake may abort at exit
    # after failing to read files that are gone)
    print(json.dumps({"old": old(DeltaTable(path, version=version).to_pyarrow_table())}))
    sys.stdout.flush(); os._exit(0)
import subprocess
r = subprocess.run([sys.executable, "-c", "SCRIPT = " + repr(SCRIPT) + "\n" + SCRIPT, path, column, cutoff, str(version), "then"], capture_output=True, text=True)
then = json.loads(r.stdout)["old"] if r.returncode == 0 and r.stdout.strip() else None
print(json.dumps({"rows": now.num_rows, "old": old(now), "old_then": then}))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let script = format!("SCRIPT = {:?}\n{script}", script);
    let out = Command::new("python3").args(["-c", &script, path.to_str().unwrap(), column, cutoff, &version.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    (v["rows"].as_u64().unwrap(), v["old"].as_u64().unwrap(), v["old_then"].as_u64())
}

#[test]
fn retention_and_purge_leave_nothing_an_independent_reader_can_find() {
    let dir = workdir("retain");
    ingest_corpus(&dir.0);
    let root = dir.0.join("ehrgate-data");

    // Purge the patient with the most observations, from a lake where every
    // message is still in bronze.
    let patient = sql(
        &dir.0,
        "SELECT p.id FROM silver_patient p JOIN silver_observation o ON o.patient_ref = concat('Patient/', p.id) GROUP BY p.id ORDER BY count(*) DESC LIMIT 1",
    )[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resource = sql(&dir.0, &format!("SELECT resource FROM silver_patient WHERE id = '{patient}'"))[0]["resource"].as_str().unwrap().to_string();
    let mrns: Vec<String> = serde_json::from_str::<Value>(&resource).unwrap()["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_str().map(str::to_string))
        .filter(|v| v.len() >= 4)
        .collect();
    assert!(!mrns.is_empty(), "the patient has identifiers: {resource}");
    let before = mentions(&root, &patient);
    assert!(before.values().map(|n| n.as_u64().unwrap()).sum::<u64>() > 1, "the patient is in the lake: {before:?}");
    let out = ehrgate(&dir.0, &["lake", "purge", "--patient", &patient]);
    assert!(text(&out.stdout).contains("purged"), "{}", text(&out.stdout));
    let after = mentions(&root, &patient);
    assert!(after.values().all(|n| n.as_u64() == Some(0)), "rows still mention the patient: {after:?}");
    // No message in bronze or quarantine carries the patient's identifiers either
    // (superseded versions included, which silver's lineage no longer names).
    for m in &mrns {
        let left = mentions(&root, &format!("|{m}^"));
        let raw: u64 = left.iter().filter(|(t, _)| t.starts_with("bronze") || t.starts_with("quarantine")).map(|(_, n)| n.as_u64().unwrap()).sum();
        assert_eq!(raw, 0, "a message with identifier {m} is left: {left:?}");
    }
    let purge = sql(&dir.0, "SELECT detail FROM audit_access_log WHERE action = 'lake.purge'");
    let detail = purge[0]["detail"].as_str().unwrap();
    assert!(!detail.contains(&patient), "the audit names the patient only by hash");

    // Retention.
    let observations = sql(&dir.0, "SELECT count(*) AS n FROM silver_observation")[0]["n"].as_u64().unwrap();
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        "[[governance.retention]]\ntables = [\"silver_observation\"]\ndays = 3650\nby = \"clinical\"\n\
         [[governance.retention]]\ntables = [\"bronze_hl7_messages\"]\ndays = 0\n",
    )
    .unwrap();
    let out = ehrgate(&dir.0, &["lake", "retain"]);
    assert!(text(&out.stdout).contains("rows deleted"), "{}", text(&out.stdout));
    let attest = sql(&dir.0, "SELECT path, detail FROM audit_access_log WHERE action = 'lake.retain' ORDER BY seq");
    assert_eq!(attest.len(), 2, "{attest:?}");
    for a in &attest {
        let d: Value = serde_json::from_str(a["detail"].as_str().unwrap()).unwrap();
        let table = root.join(d["table"].as_str().unwrap());
        let (rows, old, old_then) = old_rows(&table, d["column"].as_str().unwrap(), d["cutoff"].as_str().unwrap(), d["version_before"].as_i64().unwrap());
        assert!(d["rows"].as_u64().unwrap() > 0, "the rule removed something: {d}");
        assert_eq!(old, 0, "no row older than the window is left in {table:?}");
        assert_eq!(old_then.unwrap_or(0), 0, "nor readable at the version before the retention run: {d}");
        if d["table"] == "silver/observation" {
            assert_eq!(rows + d["rows"].as_u64().unwrap(), observations, "the attestation counts what went: {d}");
        } else {
            assert_eq!(rows, 0, "every bronze message was older than a window of 0 days");
        }
    }
    let v = ehrgate(&dir.0, &["audit", "verify"]);
    assert!(text(&v.stdout).contains("audit chain intact"), "{}", text(&v.stdout));

    // The evidence package: the rows, the chain's verdict, the policies, the attestations.
    let pkg = dir.0.join("evidence");
    ehrgate(&dir.0, &["audit", "export", "--to", pkg.to_str().unwrap(), "--from", "2000-01-01"]);
    let attestations = std::fs::read_to_string(pkg.join("attestations.ndjson")).unwrap();
    let actions: Vec<String> = attestations.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(actions, ["lake.purge", "lake.retain", "lake.retain"]);
    let verdict: Value = serde_json::from_str(&std::fs::read_to_string(pkg.join("chain_verification.json")).unwrap()).unwrap();
    assert_eq!(verdict["intact"], true);
    let policies: Value = serde_json::from_str(&std::fs::read_to_string(pkg.join("policies.json")).unwrap()).unwrap();
    assert_eq!(policies["governance"]["retention"][0]["tables"][0], "silver_observation");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(pkg.join("manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array().unwrap() {
        let body = std::fs::read(pkg.join(f["name"].as_str().unwrap())).unwrap();
        assert_eq!(f["sha256"].as_str().unwrap(), ehrgate_lake::sha256_hex(&body), "{f}");
    }
    let rows = std::fs::read_to_string(pkg.join("audit_rows.ndjson")).unwrap();
    assert!(rows.lines().count() >= 3 && rows.contains("\"prev_hash\""));
}


#[test]
fn unity_catalog_sql_parses_as_databricks_and_its_masker_matches_ehrgate() {
    let dir = workdir("catalog");
    ingest_corpus(&dir.0);
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        "[governance]\npseudonym_key = \"env:TEST_PSEUDONYM_KEY\"\n\
         [[governance.principals]]\nname = \"clerk\"\ntables = [\"silver_patient\"]\n\
         [[governance.principals]]\nname = \"analyst\"\ntables = [\"silver_*\"]\nprofile = \"safe-harbor\"\n",
    )
    .unwrap();
    let env = [("TEST_PSEUDONYM_KEY", "uc-test-key")];
    // (counted before the queries below create the audit table)
    let tables = walk_delta_tables(&dir.0.join("ehrgate-data"));
    let out = run(&dir.0, &["catalog", "sql", "--catalog", "hospital"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sql_text = text(&out.stdout);
    let sql_file = dir.0.join("catalog.sql");
    std::fs::write(&sql_file, &sql_text).unwrap();
    // The unmasked resources, and what `ehrgate sql --as analyst` shows for them.
    let raw: Vec<String> = sql(&dir.0, "SELECT resource FROM silver_patient").iter().map(|r| r["resource"].as_str().unwrap().to_string()).collect();
    let masked = run(&dir.0, &["sql", "--as", "analyst", "SELECT resource FROM silver_patient", "--format", "json"], &env);
    assert!(masked.status.success(), "{}", text(&masked.stderr));
    let raw_file = dir.0.join("raw.json");
    std::fs::write(&raw_file, serde_json::to_string(&raw).unwrap()).unwrap();
    let masked_file = dir.0.join("masked.ndjson");
    std::fs::write(&masked_file, masked.stdout).unwrap();
    let script = r#"
import sys, json, datetime
import sqlglot
from sqlglot import exp
sql_file, raw_file, masked_file, key = sys.argv[1:5]
text = open(sql_file).read()
stmts = [s.strip() for s in text.split(";\n\n") if s.strip() and not s.strip().startswith("--")]
kinds = {}
functions = set()
for s in stmts:
    e = sqlglot.parse_one(s, read="databricks", error_level=sqlglot.ErrorLevel.RAISE)
    kind = type(e).__name__
    if isinstance(e, exp.Create):
        kind = "Create" + str(e.args.get("kind", "")).title()
        if kind == "CreateFunction":
            functions.add(e.this.sql(dialect="databricks").split("(")[0].replace("`", ""))
    kinds[kind] = kinds.get(kind, 0) + 1
# Each SET MASK names a function created above.
masks = [s for s in stmts if " SET MASK " in s]
for m in masks:
    name = m.split(" SET MASK ")[1].split(" USING")[0].replace("`", "")
    assert name in functions, (name, sorted(functions)[:5])
# The resource masker, run as Databricks would run the Python UDF, equals ehrgate's.
udf = next(s for s in stmts if "ehrgate_mask_resource(resource STRING" in s)
body = udf.split("AS $$\n", 1)[1].rsplit("\n$$", 1)[0]
fn = "def ehrgate_mask_resource(resource, profile, k, shift_range, this_year):\n" + "\n".join("    " + l for l in body.splitlines())
scope = {}
exec(fn, scope)
year = datetime.date.today().year
ours = sorted(json.dumps(json.loads(scope["ehrgate_mask_resource"](r, "safe-harbor", key, 365, year)), sort_keys=True) for r in json.load(open(raw_file)))
theirs = sorted(json.dumps(json.loads(json.loads(l)["resource"]), sort_keys=True) for l in open(masked_file) if l.strip())
print(json.dumps({"kinds": kinds, "masks": len(masks), "same": ours == theirs, "rows": len(ours),
                  "diff": [a for a, b in zip(ours, theirs) if a != b][:1]}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, sql_file.to_str().unwrap(), raw_file.to_str().unwrap(), masked_file.to_str().unwrap(), "uc-test-key"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(tables >= 20);
    assert_eq!(v["kinds"]["CreateTable"].as_u64(), Some(tables), "every table registered: {v}");
    assert!(v["kinds"]["CreateFunction"].as_u64().unwrap() > 4 && v["masks"].as_u64().unwrap() > 10, "{v}");
    assert!(v["kinds"]["Grant"].as_u64().unwrap() > 0, "{v}");
    assert!(v["rows"].as_u64().unwrap() > 5);
    assert_eq!(v["same"], true, "the Databricks masker differs from ehrgate's: {v}");
    assert!(sql_text.contains("is_account_group_member('ehrgate_analyst')") && sql_text.contains("secret('ehrgate', 'pseudonym_key')"));
    assert!(!sql_text.contains("uc-test-key"), "the key itself is never emitted");
}

#[test]
fn serve_applies_retention_on_its_schedule_and_records_the_policy_in_force() {
    let dir = workdir("retain-serve");
    ingest_corpus(&dir.0);
    let before = sql(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages")[0]["n"].as_u64().unwrap();
    assert!(before > 0);
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        "[[listeners.mllp]]\nbind = \"127.0.0.1:0\"\n\
         [governance]\nretain_every_minutes = 60\nretain_vacuum_minutes = 0\n\
         [[governance.retention]]\ntables = [\"bronze_hl7_messages\"]\ndays = 0\n",
    )
    .unwrap();
    let mut gw = Gateway::start(&dir.0, &[]);
    let line = gw.wait_for("ehrgate: retention:", std::time::Duration::from_secs(120));
    assert!(line.contains(&format!("{before} rows deleted")), "{line}");
    gw.stop();
    assert_eq!(sql(&dir.0, "SELECT count(*) AS n FROM bronze_hl7_messages")[0]["n"].as_u64(), Some(0));
    let rows = sql(&dir.0, "SELECT actor, action, outcome, detail FROM audit_access_log WHERE actor = 'serve:retention' OR action = 'policy.in_force' ORDER BY seq");
    assert_eq!(rows[0]["action"], "policy.in_force", "{rows:?}");
    assert!(rows[0]["detail"].as_str().unwrap().contains("retain_every_minutes"));
    assert_eq!(rows[1]["outcome"], format!("ok: {before} rows deleted"));
}

/// Delta tables (folders with a `_delta_log`) under `root`.
fn walk_delta_tables(root: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join("_delta_log").is_dir() {
            n += 1;
        } else if p.is_dir() {
            n += walk_delta_tables(&p);
        }
    }
    n
}
