//! `refresh` against real Delta tables: a unit that lands late counts in the minute
//! it was received (as an SLA miss) even when that minute is outside the recent
//! window; bronze rows not written by the live flow are not units; an explicit
//! window never reaches back past the oldest unit still in bronze.

use ehrgate_kpi::{KpiConfig, read, refresh};
use ehrgate_lake::{BatchConfig, BronzeDetail, BronzeRow, Lake, Processed, Storage};

const MIN: i64 = 60_000_000;

fn lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(Storage::Local { root: dir.path().join("lake") }, BatchConfig { max_age: std::time::Duration::from_millis(1), ..Default::default() }).unwrap()
}

fn unit(i: u64, received: i64, landed: Option<i64>) -> BronzeRow {
    let mut b = BronzeRow::new(format!("MSH|unit {i}").into_bytes(), "mllp:adt", received, i, BronzeDetail::Event { event_id: None });
    b.processed = Processed { adapter: Some("reference@1.0.0".into()), answered_at: Some(received + 2_000), landed_at: landed, records: Some(2) };
    b
}

#[tokio::test]
async fn late_units_count_in_their_minute_and_only_flow_units_count() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let cfg = KpiConfig { sla_minutes: 5, refresh_every_s: 60 };
    let now = ehrgate_lake::now_micros();
    let now = now - now.rem_euclid(MIN) + 30_000_000;
    // On time, 1 min ago; held up by an outage: received 30 min ago, landed now;
    // not from the flow (an `ehrgate ingest` row: no landed_at).
    let mut not_flow = unit(3, now - 2 * MIN, None);
    not_flow.processed = Processed::default();
    lake.append_bronze(vec![unit(1, now - MIN, Some(now - MIN + 500_000)), unit(2, now - 30 * MIN, Some(now - 10_000_000)), not_flow]).await.unwrap();

    let r = refresh(&lake, &cfg, None, now).await.unwrap();
    assert_eq!(r.from, now - now.rem_euclid(MIN) - 30 * MIN, "back to the late unit's minute");
    assert_eq!(r.units, 2, "the row without landed_at is not a unit of the flow");
    let rows = read(&lake, 0).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let late = &rows[0];
    assert_eq!((late.received, late.sla_units, late.sla_met, late.records), (1, 1, 0, 2), "late: an SLA miss");
    let on_time = &rows[1];
    assert_eq!((on_time.sla_units, on_time.sla_met), (1, 1));
    assert!(on_time.ack_p50_ms.is_some_and(|v| (1.0..=2.5).contains(&v)), "{on_time:?}");

    // A later refresh with nothing landed meanwhile leaves the old minute alone...
    let later = now + 10 * MIN;
    let r = refresh(&lake, &cfg, None, later).await.unwrap();
    assert_eq!(r.from, later - later.rem_euclid(MIN) - 7 * MIN);
    assert_eq!(read(&lake, 0).await.unwrap().len(), 2);
    // ... and `--since 1d` does not reach back past the oldest unit in bronze.
    let r = refresh(&lake, &cfg, Some(later - 24 * 60 * MIN), later).await.unwrap();
    assert_eq!(r.from, now - now.rem_euclid(MIN) - 30 * MIN);
    assert_eq!(read(&lake, 0).await.unwrap().len(), 2);
}
