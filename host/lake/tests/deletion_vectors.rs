//! Silver written with deletion vectors (`[lake] deletion_vectors`): updates mark
//! the replaced row deleted instead of rewriting its file. Checked with an
//! independent reader (Python deltalake: `scan()`, `deletion_vectors()`,
//! `load_cdf`) and with ehrgate's own SQL; two writers (two gateways) on one table
//! keep each id once.

use std::path::{Path, PathBuf};
use std::process::Command;

use ehrgate_lake::{BatchConfig, Lake, Receipt, SilverRow, Storage, removal};
use serde_json::Value;

fn lake_at(root: &Path) -> Lake {
    let cfg = BatchConfig { max_age: std::time::Duration::from_millis(1), deletion_vectors: true, ..Default::default() };
    Lake::open(Storage::Local { root: root.to_path_buf() }, cfg).unwrap()
}

fn root(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-dv-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("lake")
}

fn patient(id: &str, family: &str, source_ts: i64) -> SilverRow {
    let json = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{family}"}}]}}"#);
    SilverRow { source_ts, ..SilverRow::from_json(&json, "t@1", &format!("bronze/x/{family}"), Receipt::at(source_ts)).unwrap() }
}

/// What the independent reader sees: live rows (id, family or "deleted"), sorted;
/// the change feed from version 0; how many files carry a deletion vector; the
/// protocol.
fn read(table: &Path) -> Value {
    let script = r#"
import sys, json, os
import pyarrow as pa
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
def fam(r):
    return "deleted" if r["deleted"] else json.loads(r["resource"])["name"][0]["family"]
rows = pa.RecordBatchReader.from_stream(t.scan()).read_all().to_pylist()
live = sorted([r["id"], fam(r)] for r in rows)
try:
    cdf = pa.RecordBatchReader.from_stream(t.load_cdf(starting_version=0)).read_all().to_pylist()
    changes = sorted([r["_commit_version"], r["_change_type"], r["id"], fam(r)] for r in cdf)
except Exception as e:  # (after a vacuum with window 0: the change files are gone)
    changes = str(e)
dvs = pa.RecordBatchReader.from_stream(t.deletion_vectors()).read_all().to_pylist()
deleted = sum(len([k for k in d["selection_vector"] if not k]) for d in dvs)
p = t.protocol()
print(json.dumps({"live": live, "changes": changes, "dv_files": len(dvs), "dv_rows": deleted,
    "protocol": {"reader": p.min_reader_version, "writer": p.min_writer_version,
    "reader_features": sorted(p.reader_features or []), "writer_features": sorted(p.writer_features or [])}}))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let out = Command::new("python3").args(["-c", script, table.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "python deltalake failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The family of every row in every Parquet file under `table` (data and change
/// files, live or not), sorted.
fn on_disk(table: &Path) -> Vec<String> {
    let script = r#"
import sys, glob, os, json
import pyarrow.parquet as pq
words = []
for f in glob.glob(os.path.join(sys.argv[1], '**', '*.parquet'), recursive=True):
    if '_delta_log' in f:
        continue
    for r in pq.read_table(f).to_pylist():
        words.append(json.loads(r["resource"]).get("name", [{}])[0].get("family", "tombstone"))
print(json.dumps(sorted(words)))
"#;
    let out = Command::new("python3").args(["-c", script, table.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row(id: &str, family: &str) -> Value {
    serde_json::json!([id, family])
}

fn change(version: i64, kind: &str, id: &str, family: &str) -> Value {
    serde_json::json!([version, kind, id, family])
}

async fn own_ids(lake: &Lake) -> Vec<String> {
    let mut ids = removal::values_where(lake, "silver/patient", "id", "true").await.unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn updates_mark_rows_deleted_and_every_reader_sees_each_id_once_with_its_changes() {
    let root = root("feed");
    let lake = lake_at(&root);
    let table = root.join("silver/patient");
    // v0: created with deletion vectors on, two patients.
    lake.upsert_silver(vec![patient("p1", "Admitted", 10), patient("p2", "Other", 10)]).await.unwrap();
    let files_v0: Vec<_> = std::fs::read_dir(&table).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().ends_with(".parquet")).collect();
    // v1: an update of p1 (an A08): a deletion vector on the first file, a new file.
    lake.upsert_silver(vec![patient("p1", "Updated", 20)]).await.unwrap();
    // A replay of the older p1 changes nothing (no commit).
    lake.upsert_silver(vec![patient("p1", "Admitted", 10)]).await.unwrap();
    // v2, v3: a new patient and a tombstone for p2, given together: the new id is
    // committed first, as an append (its inserts come from the file it adds), then
    // the update with its change file (pre and post images only).
    let tomb = SilverRow::tombstone("Patient", "p2", "t@1", 30, "bronze/x/tomb", Receipt::at(30));
    lake.upsert_silver(vec![tomb, patient("p3", "New", 30)]).await.unwrap();
    let v = read(&table);
    assert_eq!(v["live"], serde_json::json!([row("p1", "Updated"), row("p2", "deleted"), row("p3", "New")]), "{v}");
    assert_eq!(v["dv_files"], 1, "the first file carries a vector: {v}");
    assert_eq!(v["dv_rows"], 2, "which removes both its rows (p1, p2), replaced since: {v}");
    for f in &files_v0 {
        assert!(table.join(f).exists(), "no file is rewritten: {f:?}");
    }
    let mut protocol = v["protocol"].clone();
    protocol["writer_features"] = serde_json::json!(protocol["writer_features"].as_array().unwrap().iter().filter(|f| ["deletionVectors", "changeDataFeed"].contains(&f.as_str().unwrap())).collect::<Vec<_>>());
    assert_eq!(protocol, serde_json::json!({"reader": 3, "writer": 7, "reader_features": ["deletionVectors"], "writer_features": ["changeDataFeed", "deletionVectors"]}), "{v}");
    assert_eq!(own_ids(&lake).await, ["p1", "p2", "p3"], "ehrgate's own reader applies the vectors");

    // v4: new ids only: a plain append (no change file; readers derive the inserts).
    lake.upsert_silver(vec![patient("p4", "Fourth", 40)]).await.unwrap();
    // v5: a delete (a purge) through deltalake's DELETE, on a table with vectors.
    let removed = removal::delete_where(&lake, "silver/patient", "id = 'p1'").await.unwrap();
    assert_eq!(removed.rows, 1);
    let v = read(&table);
    assert_eq!(v["live"], serde_json::json!([row("p2", "deleted"), row("p3", "New"), row("p4", "Fourth")]), "{v}");
    let expected = serde_json::json!([
        change(0, "insert", "p1", "Admitted"),
        change(0, "insert", "p2", "Other"),
        change(1, "update_postimage", "p1", "Updated"),
        change(1, "update_preimage", "p1", "Admitted"),
        change(2, "insert", "p3", "New"),
        change(3, "update_postimage", "p2", "deleted"),
        change(3, "update_preimage", "p2", "Other"),
        change(4, "insert", "p4", "Fourth"),
        change(5, "delete", "p1", "Updated"),
    ]);
    assert_eq!(v["changes"], expected, "{v}");
    assert_eq!(own_ids(&lake).await, ["p2", "p3", "p4"]);
    // v7: p3 renamed: the file holding p3 gets a vector.
    lake.upsert_silver(vec![patient("p3", "Renamed", 60)]).await.unwrap();
    let v = read(&table);
    // A vacuum with a window of 0 (what a purge runs) keeps the vector files live
    // files name, however old, so the table reads the same; one only a removed file
    // named goes once it is an hour old, like any file no version names. (It deletes
    // the change files too: docs/tables.md, "Purges".)
    let vectors = || std::fs::read_dir(&table).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("deletion_vector_")).count();
    let before = vectors();
    // (a file no version names goes once it is an hour old: make them all older)
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for e in std::fs::read_dir(&table).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("deletion_vector_") {
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(two_hours_ago).unwrap();
        }
    }
    removal::vacuum_now(&lake, "silver/patient", 0).await.unwrap();
    let after = read(&table);
    assert_eq!(after["live"], v["live"], "{after}");
    // (before: v1's, v3's and v7's, and any of an attempt that lost a race: the
    // writer's first try at v7 was on the version before the delete)
    assert!(before >= 3, "{before}");
    assert_eq!(vectors(), 1, "only the vector file a live file names stays");
    // The DELETE read through the vectors; the file that hid p1's first version was
    // rewritten without its hidden rows (v6, no change rows), so after the vacuum no
    // file on disk holds any version of p1, nor p2's superseded one. p3's superseded
    // version stays hidden in its live file (until a compaction or a purge of p3).
    // (young files of the writer's attempt that lost the race stay, as any file a
    // live writer may be about to commit: they hold p3's versions)
    let words = on_disk(&table);
    for gone in ["Admitted", "Updated", "Other"] {
        assert!(!words.iter().any(|w| w == gone), "{gone} is on disk: {words:?}");
    }
    for kept in ["Fourth", "New", "Renamed", "tombstone"] {
        assert!(words.iter().any(|w| w == kept), "{kept} is not on disk: {words:?}");
    }
    assert_eq!(own_ids(&lake).await, ["p2", "p3", "p4"]);
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
}

#[tokio::test]
async fn two_writers_on_one_table_keep_each_id_once_with_its_newest_version() {
    let root = root("two");
    let (a, b) = (lake_at(&root), lake_at(&root));
    let batch = |from: usize, to: usize, family: &str, ts: i64| (from..to).map(|i| patient(&format!("p{i:03}"), family, ts)).collect::<Vec<_>>();
    a.upsert_silver(batch(0, 100, "A0", 10)).await.unwrap();
    // b indexes the table as a writes, and each sees the other's commits
    b.upsert_silver(batch(0, 50, "B1", 20)).await.unwrap();
    a.upsert_silver(batch(25, 75, "A2", 30)).await.unwrap();
    b.upsert_silver(batch(60, 120, "B3", 40)).await.unwrap();
    // an older version through a, which last read the table before b's last commit
    a.upsert_silver(batch(60, 70, "stale", 35)).await.unwrap();
    // one more through a, after a delete through b
    removal::delete_where(&b, "silver/patient", "id = 'p010'").await.unwrap();
    a.upsert_silver(batch(5, 15, "A4", 50)).await.unwrap();

    let v = read(&root.join("silver/patient"));
    // (the delete of p010 also rewrote the file that hid p010's first version,
    // without any of its hidden rows)
    assert!(v["dv_rows"].as_u64().unwrap() > 0, "updates marked rows deleted: {v}");
    // Compaction (`ehrgate lake optimize`) rewrites the files without the deleted
    // rows; the writers' indexes follow the files it removes and adds.
    ehrgate_lake::maintenance::optimize(&b).await.unwrap();
    let compacted = read(&root.join("silver/patient"));
    assert_eq!(compacted["dv_files"], 0, "{compacted}");
    assert_eq!(compacted["live"], v["live"]);
    a.upsert_silver(batch(0, 5, "A5", 60)).await.unwrap();
    b.upsert_silver(batch(115, 120, "B6", 60)).await.unwrap();
    // a row in the middle of a file this writer indexed as it wrote it
    a.upsert_silver(batch(200, 210, "A7", 70)).await.unwrap();
    a.upsert_silver(batch(205, 206, "A8", 80)).await.unwrap();

    let v = read(&root.join("silver/patient"));
    let family = |i: usize| match i {
        0..5 => "A5",
        115..120 => "B6",
        5..15 => "A4",
        60..120 => "B3",
        25..60 => "A2",
        0..25 => "B1",
        _ => "A0",
    };
    let mut expected: Vec<Value> = (0..120).map(|i| row(&format!("p{i:03}"), family(i))).collect();
    expected.extend((200..210).map(|i| row(&format!("p{i:03}"), if i == 205 { "A8" } else { "A7" })));
    assert_eq!(v["live"], serde_json::json!(expected), "{v}");
    assert_eq!(own_ids(&a).await.len(), 130);
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
}

#[tokio::test]
async fn commits_by_deletion_vectors_write_checkpoints() {
    let root = root("checkpoint");
    let lake = lake_at(&root);
    lake.upsert_silver(vec![patient("p1", "V0", 1), patient("p2", "Other", 1)]).await.unwrap();
    // (delta.checkpointInterval: 100 by default)
    for ts in 2..=101 {
        lake.upsert_silver(vec![patient("p1", &format!("V{ts}"), ts)]).await.unwrap();
    }
    let log = root.join("silver/patient/_delta_log");
    let checkpoints: Vec<_> = std::fs::read_dir(&log).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".checkpoint.")).collect();
    assert_eq!(checkpoints, ["00000000000000000099.checkpoint.parquet"], "deltalake checkpoints when (version + 1) is a multiple of the interval");
    let v = read(&root.join("silver/patient"));
    assert_eq!(v["live"], serde_json::json!([row("p1", "V101"), row("p2", "Other")]), "{v}");
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
}
