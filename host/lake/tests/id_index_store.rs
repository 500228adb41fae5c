//! The silver id index stored beside its table (`_ehrgate/silver_id_index`): a new
//! writer (a new process) loads it and reads only the files committed since it was
//! stored; a damaged one is read past; a purge removes it. Every step checks the
//! table keeps each id once, with its newest version. (Its own test binary: the
//! table metrics it reads are process-wide.)

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use ehrgate_lake::{BatchConfig, Lake, Receipt, SilverRow, Storage, removal};

fn lake_at(root: &Path) -> Lake {
    let cfg = BatchConfig {
        max_age: std::time::Duration::from_millis(1),
        deletion_vectors: true,
        ..Default::default()
    };
    Lake::open(
        Storage::Local {
            root: root.to_path_buf(),
        },
        cfg,
    )
    .unwrap()
}

fn patients(from: usize, to: usize, family: &str, ts: i64) -> Vec<SilverRow> {
    (from..to)
        .map(|i| {
            let json = format!(
                r#"{{"resourceType":"Patient","id":"p{i:05}","name":[{{"family":"{family}"}}]}}"#
            );
            SilverRow {
                source_ts: ts,
                ..SilverRow::from_json(
                    &json,
                    "t@1",
                    &format!("bronze/x/{family}{i}"),
                    Receipt::at(ts),
                )
                .unwrap()
            }
        })
        .collect()
}

/// (rows loaded from the stored index, ids read from data files, stores) so far.
fn counters() -> (u64, u64, u64) {
    let m = ehrgate_metrics::table("silver/patient");
    (
        m.id_index_rows_loaded.load(Ordering::Relaxed),
        m.id_index_rows_read.load(Ordering::Relaxed),
        m.id_index_stores.load(Ordering::Relaxed),
    )
}

/// What `f` did to the counters.
async fn counted<T, E: std::fmt::Debug>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> (u64, u64, u64) {
    let before = counters();
    f.await.unwrap();
    let after = counters();
    (after.0 - before.0, after.1 - before.1, after.2 - before.2)
}

/// Rows, distinct ids, and the rows per family, as ehrgate's own SQL reads silver.
async fn census(lake: &Lake) -> (u64, u64, Vec<(String, u64)>) {
    let rows = removal::count_where(lake, "silver/patient", "true")
        .await
        .unwrap();
    let ids = removal::values_where(lake, "silver/patient", "id", "true")
        .await
        .unwrap()
        .len() as u64;
    let mut families = vec![];
    for f in ["A", "B", "C", "D", "E", "F"] {
        let n = removal::count_where(
            lake,
            "silver/patient",
            &format!("resource LIKE '%\"family\":\"{f}\"%'"),
        )
        .await
        .unwrap();
        if n > 0 {
            families.push((f.to_string(), n));
        }
    }
    (rows, ids, families)
}

fn fam(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(f, n)| (f.to_string(), *n)).collect()
}

#[tokio::test]
async fn a_new_writer_loads_the_stored_index_and_reads_only_what_came_since() {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-idstore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root: PathBuf = dir.join("lake");
    let stored = root.join("silver/patient/_ehrgate/silver_id_index");

    // A writes 3,000 patients in two commits; its index is stored (3,000 rows; due
    // after 1,000)
    let a = lake_at(&root);
    let (_, read, stores) = counted(async {
        a.upsert_silver(patients(0, 2000, "A", 10)).await?;
        a.upsert_silver(patients(2000, 3000, "A", 10)).await
    })
    .await;
    // (the first commit created the table, a plain write: the index is built at the
    // first upsert, from that file; the second file is indexed from its rows)
    assert_eq!(read, 2000);
    assert!(stores >= 1 && stored.exists(), "stored: {stores}");

    // B, a new process: loads it, reads no data file, and replaces every tenth id
    let b = lake_at(&root);
    let (loaded, read, _) = counted(
        b.upsert_silver(
            (0..3000)
                .step_by(10)
                .flat_map(|i| patients(i, i + 1, "B", 20))
                .collect(),
        ),
    )
    .await;
    assert!(loaded >= 3000, "loaded {loaded}");
    assert_eq!(read, 0);
    assert_eq!(
        census(&b).await,
        (3000, 3000, fam(&[("A", 2700), ("B", 300)]))
    );

    // A commits twice more, below the share that stores it again (A's index, in
    // memory, follows B's commit by reading B's file)
    a.upsert_silver(patients(3000, 3100, "A", 30))
        .await
        .unwrap();
    let before = std::fs::read(&stored).unwrap();
    let (_, _, stores) = counted(a.upsert_silver(patients(3100, 3150, "A", 30))).await;
    assert_eq!(stores, 0);
    assert_eq!(std::fs::read(&stored).unwrap(), before, "not stored again");

    // C, a new process: loads the stored index, reads the files committed since
    // (B's 300 ids, which neither A nor B stored, and A's last two files: 150), and
    // updates ids from both parts
    let c = lake_at(&root);
    let ids = [5, 10, 1234, 2999, 3005, 3120, 3149];
    let (loaded, read, _) = counted(
        c.upsert_silver(
            ids.iter()
                .flat_map(|&i| patients(i, i + 1, "C", 40))
                .collect(),
        ),
    )
    .await;
    assert!(loaded >= 3000, "loaded {loaded}");
    assert_eq!(read, 450);
    assert_eq!(
        census(&c).await,
        (3150, 3150, fam(&[("A", 2844), ("B", 299), ("C", 7)]))
    );

    // A damaged copy is read past: D builds from the table
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    // (replaced by a rename, as writers replace it: C has the file mapped)
    std::fs::write(stored.with_extension("damaged"), &bytes).unwrap();
    std::fs::rename(stored.with_extension("damaged"), &stored).unwrap();
    let d = lake_at(&root);
    let (loaded, read, _) = counted(d.upsert_silver(patients(3100, 3110, "D", 50))).await;
    // (every row of every live file, hidden ones too)
    assert_eq!(loaded, 0);
    assert!(read >= 3150, "read {read}");
    assert_eq!(
        census(&d).await,
        (
            3150,
            3150,
            fam(&[("A", 2834), ("B", 299), ("C", 7), ("D", 10)])
        )
    );

    // A purge removes the stored index (it holds the purged id's hash); the next
    // writer builds again from what is left, and stores it
    assert!(stored.exists());
    removal::delete_where(&d, "silver/patient", "id = 'p00001'")
        .await
        .unwrap();
    assert!(!stored.exists(), "the purge left the stored index");
    let e = lake_at(&root);
    let (loaded, read, stores) = counted(e.upsert_silver(patients(1, 3, "E", 60))).await;
    assert_eq!(loaded, 0);
    assert!(read >= 3149, "read {read}");
    assert_eq!(stores, 1);
    assert!(stored.exists());
    assert_eq!(
        census(&e).await,
        (
            3150,
            3150,
            fam(&[("A", 2832), ("B", 299), ("C", 7), ("D", 10), ("E", 2)])
        )
    );

    // F, a new process that gets silver ready at start (`Lake::warm_silver`, as
    // `serve` and `ingest` do): its index is loaded before any rows arrive, and its
    // first upsert then loads and reads nothing
    let f = lake_at(&root);
    let before = counters();
    assert_eq!(f.warm_silver().await.unwrap(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while counters().0 < before.0 + 3150 {
        assert!(std::time::Instant::now() < deadline, "the index was not loaded ahead: {:?} -> {:?}", before, counters());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (loaded, read, _) = counted(f.upsert_silver(patients(3, 5, "F", 70))).await;
    assert_eq!((loaded, read), (0, 0));
    assert_eq!(
        census(&f).await,
        (
            3150,
            3150,
            fam(&[("A", 2830), ("B", 299), ("C", 7), ("D", 10), ("E", 2), ("F", 2)])
        )
    );

    // A writer that stops (`Lake::close`, the end of an ingest) stores its index
    // once a 32nd behind; after a commit, only an eighth: H builds 40,000 rows and
    // stores them; I adds 2,000 (not stored after its commit), and stores them as
    // its lake closes; so J loads all and reads no data file
    let root = dir.join("lake2");
    let stored = root.join("silver/patient/_ehrgate/silver_id_index");
    let h = lake_at(&root);
    h.upsert_silver(patients(0, 20000, "A", 10)).await.unwrap();
    h.upsert_silver(patients(20000, 40000, "A", 10)).await.unwrap();
    h.close().await;
    let before = std::fs::read(&stored).unwrap();
    let i = lake_at(&root);
    i.upsert_silver(patients(40000, 42000, "B", 20)).await.unwrap();
    assert_eq!(std::fs::read(&stored).unwrap(), before, "not stored after the commit");
    i.close().await;
    assert_ne!(std::fs::read(&stored).unwrap(), before, "stored as the writer stopped");
    let j = lake_at(&root);
    let (loaded, read, _) = counted(j.upsert_silver(patients(0, 1, "C", 30))).await;
    assert_eq!((loaded, read), (42000, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
