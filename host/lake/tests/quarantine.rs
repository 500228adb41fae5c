//! Quarantine: the adapter filter and marking a reprocess run.

use std::collections::BTreeMap;

use ehrgate_lake::quarantine::{self, Filter};
use ehrgate_lake::{BatchConfig, Lake, QuarantineRow, Storage};

fn row(id: &str, adapter: &str) -> QuarantineRow {
    QuarantineRow {
        id: id.into(),
        quarantined_at: 1_000_000,
        input_kind: "hl7".into(),
        source: "file:x.hl7".into(),
        adapter: adapter.into(),
        error_kind: "invalid-input".into(),
        error_message: "invalid input at PID-3".into(),
        location: Some("PID-3".into()),
        lineage: None,
        raw: b"MSH|^~\\&|".to_vec(),
        reprocessed_at: None,
        reprocess_outcome: None,
    }
}

async fn ids(lake: &Lake, filter: Filter) -> Vec<String> {
    quarantine::list(lake, &filter).await.unwrap().into_iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn filter_and_mark_reprocessed() {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-quarantine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Lake::open(Storage::Local { root: dir.join("lake") }, BatchConfig::default()).unwrap();
    assert_eq!(quarantine::mark_reprocessed(&lake, &[("x".into(), "mapped".into())], &[]).await.unwrap(), 0, "no table yet");
    lake.quarantine(vec![
        row("q1", "ref_x@1.0"),
        row("q2", "refAx@1.0"),
        row("q'3", "ref_x@2.0"),
        row("q4", "other@1"),
        row("q5", "ref_x@2.0"),
    ])
    .await
    .unwrap();

    // `_` in the name is not a wildcard; the version does not matter; the full label works.
    let by = |a: &str| Filter { adapter: Some(a.into()), ..Default::default() };
    assert_eq!(ids(&lake, by("ref_x")).await, ["q'3", "q1", "q5"]);
    assert_eq!(ids(&lake, by("ref_x@2.0")).await, ["q'3", "q5"]);
    assert_eq!(ids(&lake, by("ref")).await, Vec::<String>::new());

    let mapped = [
        ("q1".to_string(), "mapped by ref_x@3.0".to_string()),
        ("q'3".to_string(), "mapped by ref_x@3.0".to_string()),
    ];
    let failed = [("q5".to_string(), "invalid input at PID-5: 'bad'".to_string())];
    assert_eq!(quarantine::mark_reprocessed(&lake, &mapped, &failed).await.unwrap(), 3);

    // Mapped rows leave the pending list; a failure stays pending with its new error.
    assert_eq!(ids(&lake, Filter::default()).await, ["q2", "q4", "q5"]);
    let all: BTreeMap<String, QuarantineRow> =
        quarantine::list(&lake, &Filter { include_reprocessed: true, ..Default::default() }).await.unwrap().into_iter().map(|r| (r.id.clone(), r)).collect();
    assert_eq!(all.len(), 5);
    for id in ["q1", "q'3"] {
        assert!(all[id].reprocessed_at.is_some(), "{id}");
        assert_eq!(all[id].reprocess_outcome.as_deref(), Some("mapped by ref_x@3.0"));
    }
    assert_eq!(all["q5"].reprocessed_at, None);
    assert_eq!(all["q5"].reprocess_outcome.as_deref(), Some("invalid input at PID-5: 'bad'"));
    for id in ["q2", "q4"] {
        assert_eq!((all[id].reprocessed_at, all[id].reprocess_outcome.as_deref()), (None, None), "{id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn recent_is_newest_first_limited_and_without_the_bytes() {
    let dir = std::env::temp_dir().join(format!("ehrgate-lake-quarantine-recent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Lake::open(Storage::Local { root: dir.join("lake") }, BatchConfig::default()).unwrap();
    assert!(quarantine::recent(&lake, 10).await.unwrap().is_empty(), "no table yet");
    let rows: Vec<QuarantineRow> = (0..5).map(|i| QuarantineRow { quarantined_at: 1_000_000 + i, ..row(&format!("r{i}"), "a@1") }).collect();
    lake.quarantine(rows).await.unwrap();
    let recent = quarantine::recent(&lake, 3).await.unwrap();
    assert_eq!(recent.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r4", "r3", "r2"]);
    assert!(recent.iter().all(|r| r.raw.is_empty() && r.location.as_deref() == Some("PID-3")), "{recent:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
