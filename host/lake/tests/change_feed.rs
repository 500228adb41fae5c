//! Silver's change data feed, read back with an independent reader's change-feed
//! API (Python deltalake `load_cdf`): inserts, the pre and post images of an update
//! and of a tombstone, and a delete; nothing for a replay. (A table from before the
//! feed gets it turned on: versions.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

use ehrgate_lake::{BatchConfig, Lake, Receipt, SilverRow, Storage, removal};
use serde_json::Value;

fn lake(name: &str) -> (Lake, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-cdf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("lake");
    (Lake::open(Storage::Local { root: root.clone() }, BatchConfig { max_age: std::time::Duration::from_millis(1), ..Default::default() }).unwrap(), root)
}

fn patient(id: &str, family: &str, source_ts: i64) -> SilverRow {
    let json = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{family}"}}]}}"#);
    SilverRow { source_ts, ..SilverRow::from_json(&json, "t@1", &format!("bronze/x/{family}"), Receipt::at(source_ts)).unwrap() }
}

/// `load_cdf` from version 0: (commit version, change type, id, family or
/// "deleted"), in commit order, then by change type and id; and the table's protocol.
fn change_feed(table: &Path) -> (Vec<(i64, String, String, String)>, Value) {
    let script = r#"
import sys, json, os
import pyarrow as pa
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
rows = pa.RecordBatchReader.from_stream(t.load_cdf(starting_version=0)).read_all().to_pylist()
out = []
for r in rows:
    family = "deleted" if r["deleted"] else json.loads(r["resource"])["name"][0]["family"]
    out.append([r["_commit_version"], r["_change_type"], r["id"], family])
out.sort()
p = t.protocol()
print(json.dumps({"changes": out, "protocol": {"reader": p.min_reader_version, "writer": p.min_writer_version,
    "writer_features": p.writer_features}, "config": t.metadata().configuration}))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let out = Command::new("python3").args(["-c", script, table.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "load_cdf failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_i64().unwrap(), c[1].as_str().unwrap().to_string(), c[2].as_str().unwrap().to_string(), c[3].as_str().unwrap().to_string()))
        .collect();
    (changes, v)
}

fn change(version: i64, kind: &str, id: &str, family: &str) -> (i64, String, String, String) {
    (version, kind.to_string(), id.to_string(), family.to_string())
}

#[tokio::test]
async fn the_change_feed_holds_inserts_update_images_tombstones_and_deletes_and_nothing_for_a_replay() {
    let (lake, root) = lake("feed");
    let table = root.join("silver/patient");
    // v0: the table is created with two patients (an ingest).
    lake.upsert_silver(vec![patient("p1", "Admitted", 10), patient("p2", "Other", 10)]).await.unwrap();
    // v1: an update of p1 (an A08) goes through the MERGE.
    lake.upsert_silver(vec![patient("p1", "Updated", 20)]).await.unwrap();
    // A replay of the older p1 changes nothing.
    lake.upsert_silver(vec![patient("p1", "Admitted", 10)]).await.unwrap();
    // A tombstone for p2 (deleted at the source), and a new patient in one batch.
    let tomb = SilverRow::tombstone("Patient", "p2", "t@1", 30, "bronze/x/tomb", Receipt::at(30));
    lake.upsert_silver(vec![tomb, patient("p3", "New", 30)]).await.unwrap();
    // A delete (a purge or a retention run).
    let removed = removal::delete_where(&lake, "silver/patient", "id = 'p1'").await.unwrap();
    assert_eq!(removed.rows, 1);

    let (changes, v) = change_feed(&table);
    // Versions: 0 create, 1 the update's MERGE, (the replay's MERGE changes no row
    // and commits nothing), 2 the tombstone's MERGE, 3 the new id's append, 4 the
    // delete.
    let expected = vec![
        change(0, "insert", "p1", "Admitted"),
        change(0, "insert", "p2", "Other"),
        change(1, "update_postimage", "p1", "Updated"),
        change(1, "update_preimage", "p1", "Admitted"),
        change(2, "update_postimage", "p2", "deleted"),
        change(2, "update_preimage", "p2", "Other"),
        change(3, "insert", "p3", "New"),
        change(4, "delete", "p1", "Updated"),
    ];
    assert_eq!(changes, expected, "{v}");
    assert_eq!(v["config"]["delta.enableChangeDataFeed"], "true", "{v}");
    assert_eq!(v["protocol"]["reader"], 1, "readable by any Delta reader: {v}");
    // (docs/tables.md promises writer version 4 and no table features)
    assert_eq!(v["protocol"]["writer"], 4, "{v}");
    assert!(v["protocol"]["writer_features"].is_null(), "{v}");

    // A vacuum with a window of 0 (what a purge runs) deletes the change files with
    // the data files the versions removed: no file on disk holds a deleted or
    // superseded version any more. A file no version names is left alone while it is
    // young (a live writer's, about to be committed) and deleted once it is an hour
    // old (a failed commit's data or change file), and the table still reads.
    let in_flight = table.join("part-00000-in-flight.snappy.parquet");
    std::fs::write(&in_flight, b"not yet committed").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let orphans = [table.join("part-00000-failed-commit.snappy.parquet"), table.join("_change_data/cdc-00000-failed-commit.snappy.parquet")];
    for o in &orphans {
        std::fs::write(o, b"a commit that never landed").unwrap();
        std::fs::File::options().write(true).open(o).unwrap().set_modified(two_hours_ago).unwrap();
    }
    let deleted = removal::vacuum_now(&lake, "silver/patient", 0).await.unwrap();
    assert!(deleted >= 5, "change files, removed data files and the two old orphans: {deleted}");
    assert!(in_flight.exists(), "a young file no version names is not vacuumed");
    for o in &orphans {
        assert!(!o.exists(), "an hour-old file no version names is vacuumed: {}", o.display());
    }
    std::fs::remove_file(&in_flight).unwrap();
    let script = r#"
import sys, glob, os, json
import pyarrow.parquet as pq
from deltalake import DeltaTable
path = sys.argv[1]
words = []
for f in glob.glob(os.path.join(path, '**', '*.parquet'), recursive=True):
    if '_delta_log' in f:
        continue
    for r in pq.read_table(f).to_pylist():
        words.append(json.loads(r["resource"]).get("name", [{}])[0].get("family", "tombstone"))
rows = DeltaTable(path).to_pyarrow_table().to_pylist()
print(json.dumps({"on_disk": sorted(words), "rows": sorted(r["id"] for r in rows)}))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let out = Command::new("python3").args(["-c", script, table.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(left, serde_json::json!({"on_disk": ["New", "tombstone"], "rows": ["p2", "p3"]}), "only the live rows are left on disk");
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
}
