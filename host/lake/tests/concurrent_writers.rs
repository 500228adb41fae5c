//! Several writers on one table, as two processes would be: two `Lake`s append to
//! the same bronze table and MERGE into the same silver table at once, on a local
//! directory and on S3 (moto's S3 server on 127.0.0.1, started here; it must be
//! installed: `pip install 'moto[server]'`). No row may be lost or duplicated, and
//! for an id both write, the newest version wins.

use std::path::PathBuf;
use std::time::Duration;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::logstore::object_store::{self, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use ehrgate_lake::{BatchConfig, BronzeDetail, BronzeRow, Lake, Receipt, SecretRef, SilverRow, Storage};

/// Bronze commits per writer: every one its own commit, so the writers race for
/// log versions all the time.
const APPENDS: usize = 30;
/// Silver batches per writer, and new ids per batch.
const ROUNDS: usize = 6;
const PER_ROUND: usize = 5;

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ehrgate-lake-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn patient(id: &str, ts: i64, writer: &str) -> SilverRow {
    SilverRow {
        resource_type: "Patient".into(),
        id: id.into(),
        patient_ref: None,
        encounter_ref: None,
        effective_at: None,
        code_system: None,
        code: None,
        status: None,
        source_system: None,
        adapter: "test@1".into(),
        source_ts: ts,
        deleted: false,
        lineage: format!("{writer}/{id}/{ts}"),
        ingested_at: 0,
        resource: format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#),
        receipt: Receipt::at(0),
    }
}

async fn append_bronze(lake: &Lake, writer: &str) {
    for i in 0..APPENDS {
        let row = BronzeRow::new(
            format!("{writer}-{i}").into_bytes(),
            &format!("test:{writer}"),
            1_000_000 + i as i64,
            i as u64,
            BronzeDetail::Event { event_id: None },
        );
        lake.append_bronze(vec![row]).await.unwrap_or_else(|e| panic!("writer {writer}, append {i}: {e}"));
    }
}

/// Per round: the writer's own new ids, plus a shared id that the other writer also
/// writes (writer `a` with the newer `source_ts`).
async fn merge_silver(lake: &Lake, writer: &str) {
    for round in 0..ROUNDS {
        let mut rows: Vec<SilverRow> = (0..PER_ROUND).map(|i| patient(&format!("{writer}-{round}-{i}"), 1, writer)).collect();
        let ts = if writer == "a" { 20 } else { 10 };
        rows.push(patient(&format!("shared-{round}"), ts, writer));
        lake.upsert_silver(rows).await.unwrap_or_else(|e| panic!("writer {writer}, round {round}: {e}"));
    }
}

/// The table's `_delta_log/*.json` files, in order: (name, content).
async fn log_files(table: &deltalake::DeltaTable) -> Vec<(String, String)> {
    use futures::TryStreamExt;
    let store = table.object_store();
    let mut files: Vec<_> = store.list(Some(&object_store::path::Path::from("_delta_log"))).try_collect().await.unwrap();
    files.retain(|f| f.location.as_ref().ends_with(".json"));
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::new();
    for f in files {
        let bytes = store.get(&f.location).await.unwrap().bytes().await.unwrap();
        out.push((f.location.to_string(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    out
}

/// Commits that deltalake retried at a later version because another writer had
/// taken theirs (it records `num_retries` in the commit's metrics).
async fn retried_commits(table: &deltalake::DeltaTable) -> usize {
    let retried = |text: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["commitInfo"]["operationMetrics"]["num_retries"].as_u64().is_some_and(|r| r > 0))
    };
    log_files(table).await.iter().filter(|(_, text)| retried(text)).count()
}

fn single_i64(batches: &[RecordBatch], col: usize) -> i64 {
    batches[0].column(col).as_primitive::<Int64Type>().value(0)
}

async fn check(storage: Storage) {
    // Bronze: a commit per row.
    let eager = BatchConfig { max_rows: 1, max_age: Duration::from_millis(1), queue: 4, eager: false, deletion_vectors: false };
    let (a, b) = (Lake::open(storage.clone(), eager).unwrap(), Lake::open(storage.clone(), eager).unwrap());
    tokio::join!(append_bronze(&a, "a"), append_bronze(&b, "b"));
    // Silver: batching as a gateway does (by age), so that the writers collide but
    // are not both committing back to back without pause.
    let batching = BatchConfig { max_rows: 10_000, max_age: Duration::from_millis(200), queue: 4, eager: false, deletion_vectors: false };
    let (a, b) = (Lake::open(storage.clone(), batching).unwrap(), Lake::open(storage.clone(), batching).unwrap());
    tokio::join!(merge_silver(&a, "a"), merge_silver(&b, "b"));

    let lake = Lake::open(storage, BatchConfig::default()).unwrap();
    let q = |sql: &'static str| {
        let lake = &lake;
        async move { ehrgate_lake::sql::query(lake, sql).await.unwrap() }
    };
    let bronze = q("SELECT count(*), count(DISTINCT record_id) FROM bronze_events").await;
    if single_i64(&bronze, 0) != (2 * APPENDS) as i64 {
        // Keep what is needed to tell a lost commit from a lost file.
        let t = lake.table("bronze/events").await.unwrap().unwrap();
        eprintln!("bronze/events at version {:?}; its log:", t.version());
        for (name, text) in log_files(&t).await {
            eprintln!("{name}: {}", text.replace('\n', " | "));
        }
    }
    assert_eq!((single_i64(&bronze, 0), single_i64(&bronze, 1)), ((2 * APPENDS) as i64, (2 * APPENDS) as i64), "bronze rows lost or duplicated");
    let silver = q("SELECT count(*), count(DISTINCT id) FROM silver_patient").await;
    let expected = (2 * ROUNDS * PER_ROUND + ROUNDS) as i64;
    assert_eq!((single_i64(&silver, 0), single_i64(&silver, 1)), (expected, expected), "silver rows lost or duplicated");
    let newest = q("SELECT count(*) FROM silver_patient WHERE id LIKE 'shared-%' AND lineage LIKE 'a/%'").await;
    assert_eq!(single_i64(&newest, 0), ROUNDS as i64, "the newer version of a shared id must win");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_a_local_directory() {
    let dir = workdir("concurrent-local");
    check(Storage::Local { root: dir.join("lake") }).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_s3_with_conditional_puts() {
    let dir = workdir("concurrent-s3");
    let (_server, endpoint, _) = ehrgate_testkit::start_s3();
    std::fs::write(dir.join("key-id"), "testing").unwrap();
    std::fs::write(dir.join("secret"), "testing-secret").unwrap();
    let storage = Storage::S3 {
        bucket: "lake".into(),
        prefix: "ehr".into(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: SecretRef(format!("file:{}", dir.join("key-id").display())),
        secret_access_key: SecretRef(format!("file:{}", dir.join("secret").display())),
        allow_http: true,
    };
    check(storage.clone()).await;

    // What makes it safe: the store refuses to create a commit file that exists.
    let lake = Lake::open(storage, BatchConfig::default()).unwrap();
    let table = lake.table("bronze/events").await.unwrap().expect("the table exists");
    let first_commit = object_store::path::Path::from("_delta_log/00000000000000000000.json");
    let create = PutOptions { mode: PutMode::Create, ..Default::default() };
    let e = table.object_store().put_opts(&first_commit, PutPayload::from_static(b"{}"), create).await.expect_err("overwrote a commit");
    assert!(matches!(e, object_store::Error::AlreadyExists { .. }), "expected AlreadyExists, got {e}");
    // ... and the writers did race for versions (the test exercised it): a store that
    // ignored `If-None-Match` here loses about one bronze row in six.
    let retried = retried_commits(&table).await;
    eprintln!("bronze commits retried after losing a version race: {retried} of {}", 2 * APPENDS);
    assert!(retried > 0, "the two writers never collided; the test proved nothing");
    let _ = std::fs::remove_dir_all(&dir);
}
