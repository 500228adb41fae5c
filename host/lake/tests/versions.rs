//! Which version of a resource silver keeps, and that units read again (a log
//! replay, a drop file re-read after a crash) land in bronze and quarantine once.

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{Field, Schema};
use ehrgate_lake::{BatchConfig, BronzeDetail, BronzeRow, Lake, QuarantineRow, Receipt, SilverRow, Storage, sql};

fn lake(name: &str) -> (Lake, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-versions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("lake");
    (Lake::open(Storage::Local { root: root.clone() }, BatchConfig { max_age: std::time::Duration::from_millis(1), ..Default::default() }).unwrap(), root)
}

fn patient(id: &str, family: &str, source_ts: i64, receipt: Receipt) -> SilverRow {
    let json = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{family}"}}]}}"#);
    SilverRow { source_ts, ..SilverRow::from_json(&json, "t@1", &format!("bronze/x/{family}"), receipt).unwrap() }
}

async fn families(lake: &Lake) -> Vec<String> {
    let b = sql::query(lake, "SELECT lineage FROM silver_patient ORDER BY id").await.unwrap();
    sql::render(&b, sql::Format::Csv).unwrap().lines().skip(1).map(|l| l.trim_start_matches("bronze/x/").to_string()).collect()
}

#[tokio::test]
async fn a_source_time_tie_goes_to_the_later_receipt_and_a_replay_changes_nothing() {
    let (lake, _) = lake("tie");
    let r = |at, seq| Receipt { at, seq };
    lake.upsert_silver(vec![patient("p", "added", 5, r(100, 1))]).await.unwrap();
    // The update stamped in the same second, received after the add.
    lake.upsert_silver(vec![patient("p", "updated", 5, r(100, 2))]).await.unwrap();
    assert_eq!(families(&lake).await, ["updated"]);
    // The add again (a replay: its receipt is unchanged) and an earlier receipt.
    lake.upsert_silver(vec![patient("p", "added", 5, r(100, 1))]).await.unwrap();
    lake.upsert_silver(vec![patient("p", "older", 5, r(99, 9))]).await.unwrap();
    assert_eq!(families(&lake).await, ["updated"]);
    // A later receipt; then a newer source time beats any receipt.
    lake.upsert_silver(vec![patient("p", "later", 5, r(101, 0))]).await.unwrap();
    assert_eq!(families(&lake).await, ["later"]);
    lake.upsert_silver(vec![patient("p", "newer", 6, r(1, 0))]).await.unwrap();
    assert_eq!(families(&lake).await, ["newer"]);
}

/// The silver schema as the first release wrote it: no receipt columns.
fn old_silver_batch(id: &str, lineage: &str, source_ts: i64) -> RecordBatch {
    let schema = ehrgate_lake::silver_schema();
    let old: Vec<Field> = schema.fields().iter().filter(|f| !["received_at", "receipt_seq"].contains(&f.name().as_str())).map(|f| f.as_ref().clone()).collect();
    let s = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let t = |v: Option<i64>| Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC")) as ArrayRef;
    let cols: Vec<ArrayRef> = vec![
        s(Some("Patient")),
        s(Some(id)),
        s(None),
        s(None),
        t(None),
        s(None),
        s(None),
        s(None),
        s(None),
        s(Some("t@0")),
        t(Some(source_ts)),
        Arc::new(BooleanArray::from(vec![false])),
        s(Some(lineage)),
        t(Some(0)),
        s(Some(&format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#))),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(old)), cols).unwrap()
}

#[tokio::test]
async fn a_silver_table_from_before_the_receipt_columns_gets_them_and_loses_ties() {
    let (lake, root) = lake("migrate");
    let url = url::Url::from_directory_path(root.join("silver/patient")).unwrap();
    std::fs::create_dir_all(root.join("silver/patient")).unwrap();
    let t = DeltaTable::try_from_url(url.clone()).await.unwrap();
    t.write(vec![old_silver_batch("p", "bronze/x/old", 5), old_silver_batch("q", "bronze/x/old-q", 5)]).await.unwrap();

    lake.upsert_silver(vec![patient("p", "tie", 5, Receipt::at(1)), patient("r", "fresh", 1, Receipt::at(1))]).await.unwrap();
    assert_eq!(families(&lake).await, ["tie", "old-q", "fresh"]);
    let t = DeltaTable::try_from_url(url).await.unwrap();
    let fields: Vec<String> = t.snapshot().unwrap().schema().fields().map(|f| f.name().clone()).collect();
    assert!(fields.ends_with(&["received_at".to_string(), "receipt_seq".to_string()]), "{fields:?}");
    // It also gets the change data feed (change_feed.rs), which an independent
    // reader's change-feed API reads from the version that turned it on.
    let config = t.snapshot().unwrap().metadata().configuration().clone();
    assert_eq!(config.get("delta.enableChangeDataFeed").map(String::as_str), Some("true"), "{config:?}");
    let script = r#"
import sys, json, os
import pyarrow as pa
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
on = next(h["version"] for h in t.history() if h.get("operation") == "SET TBLPROPERTIES")
rows = pa.RecordBatchReader.from_stream(t.load_cdf(starting_version=on)).read_all().to_pylist()
print(json.dumps(sorted([r["_change_type"], r["id"], r["lineage"]] for r in rows)))
sys.stdout.flush(); os._exit(0)  # deltalake may abort at exit: see tests/lake_read.py
"#;
    let out = std::process::Command::new("python3").args(["-c", script, root.join("silver/patient").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        changes,
        serde_json::json!([["insert", "r", "bronze/x/fresh"], ["update_postimage", "p", "bronze/x/tie"], ["update_preimage", "p", "bronze/x/old"]])
    );
    // The old row reads as null in the new columns.
    let b = sql::query(&lake, "SELECT count(*) AS n FROM silver_patient WHERE received_at IS NULL").await.unwrap();
    assert_eq!(sql::render(&b, sql::Format::Csv).unwrap().lines().nth(1), Some("1"));
}

fn bronze(i: u64, received_at: i64) -> BronzeRow {
    BronzeRow::new(format!("unit {i}").into_bytes(), "mllp:adt", received_at, i, BronzeDetail::Event { event_id: None })
}

fn quarantined(id: &str) -> QuarantineRow {
    QuarantineRow {
        id: id.into(),
        quarantined_at: 1,
        input_kind: "event".into(),
        source: "webhook:x".into(),
        adapter: "t@1".into(),
        error_kind: "invalid-input".into(),
        error_message: "bad".into(),
        location: None,
        lineage: None,
        raw: vec![],
        reprocessed_at: None,
        reprocess_outcome: None,
    }
}

#[tokio::test]
async fn units_read_again_land_in_bronze_and_quarantine_once() {
    let (lake, _) = lake("once");
    // Nothing there yet: nothing is known, everything is appended.
    assert_eq!(lake.append_bronze_once(vec![], vec![bronze(1, 1_000), bronze(2, 2_000)]).await.unwrap(), 0);
    // Two days later, a replay of 1 and 2 (first day) with new units 3 and 4.
    let day = 86_400_000_000;
    let skipped = lake.append_bronze_once(vec![bronze(3, day + 5)], vec![bronze(1, 1_000), bronze(2, 2_000), bronze(4, day + 6), bronze(4, day + 6)]).await.unwrap();
    assert_eq!(skipped, 3, "1 and 2 are there; 4 offered twice is kept once");
    let b = sql::query(&lake, "SELECT count(*) AS n, count(DISTINCT record_id) AS d FROM bronze_events").await.unwrap();
    assert_eq!(sql::render(&b, sql::Format::Csv).unwrap().lines().nth(1), Some("4,4"));
    // A unit whose content differs has another record id: appended.
    assert_eq!(lake.append_bronze_once(vec![], vec![bronze(5, 1_000)]).await.unwrap(), 0);

    assert_eq!(lake.quarantine_once(vec![quarantined("a")], vec![quarantined("b")]).await.unwrap(), 0);
    assert_eq!(lake.quarantine_once(vec![], vec![quarantined("b"), quarantined("c'")]).await.unwrap(), 1);
    let b = sql::query(&lake, "SELECT count(*) AS n FROM quarantine_records").await.unwrap();
    assert_eq!(sql::render(&b, sql::Format::Csv).unwrap().lines().nth(1), Some("3"));
}
