//! # ehrgate-kpi
//!
//! The gold layer (docs/operations.md): `gold/kpi_minute`, one row per minute of
//! receipt, source and adapter, computed from what bronze records about each unit
//! (received, answered, landed: written by the live flow) and from the quarantine.
//!
//! - **received**: units in bronze; **quarantined**: those with a quarantine row;
//!   **accepted** the others; **error rate** quarantined / received.
//! - **records**: resources the accepted units mapped to.
//! - **ACK p50 / p95**: from receipt to the answer (HL7 ACK, webhook status),
//!   estimated from latency buckets as Prometheus' `histogram_quantile` does.
//! - **SLA**: of the accepted units, the share whose silver rows were committed
//!   within `sla_minutes` of receipt (bronze's `landed_at`, written after silver).
//!   A unit not landed yet counts as not met once its minute is past the SLA.
//!
//! [`refresh`] recomputes the minutes that can still change (the last
//! `sla_minutes` + 2, or more) and replaces them in one commit; older minutes are
//! final. `ehrgate kpi` and `serve` (`[kpi] refresh_every_s`) call it.

use std::collections::BTreeMap;
use std::time::Duration;

use ehrgate_lake::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use ehrgate_lake::arrow::compute::cast;
use ehrgate_lake::arrow::datatypes::DataType;
use ehrgate_lake::{Lake, LakeError, Micros, Table, sql};
use ehrgate_metrics::Histogram;

const MINUTE: Micros = 60_000_000;

/// `[kpi]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// A unit meets the SLA when in silver within this many minutes of receipt.
    #[serde(default = "default_sla")]
    pub sla_minutes: u64,
    /// `serve` refreshes the gold table this often (0: never).
    #[serde(default = "default_every")]
    pub refresh_every_s: u64,
}

fn default_sla() -> u64 {
    5
}

fn default_every() -> u64 {
    60
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig { sla_minutes: default_sla(), refresh_every_s: default_every() }
    }
}

/// One row of `gold/kpi_minute`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KpiRow {
    pub minute: Micros,
    pub source: String,
    pub adapter: String,
    pub received: i64,
    pub accepted: i64,
    pub quarantined: i64,
    pub error_rate: f64,
    pub records: i64,
    pub ack_p50_ms: Option<f64>,
    pub ack_p95_ms: Option<f64>,
    pub sla_units: i64,
    pub sla_met: i64,
    pub sla_share: Option<f64>,
    pub sla_minutes: i64,
    pub refreshed_at: Micros,
}

/// What one unit contributes.
#[derive(Debug, Clone)]
pub struct Unit {
    pub received_at: Micros,
    pub source: String,
    pub adapter: String,
    pub answered_at: Option<Micros>,
    pub landed_at: Option<Micros>,
    pub records: i64,
    pub quarantined: bool,
}

/// The KPI rows of `units` (computed at `now`), one per (minute, source, adapter).
pub fn aggregate(units: &[Unit], sla_minutes: u64, now: Micros) -> Vec<KpiRow> {
    #[derive(Default)]
    struct Acc {
        received: i64,
        quarantined: i64,
        records: i64,
        sla_units: i64,
        sla_met: i64,
        ack: Histogram,
    }
    let sla = sla_minutes as i64 * MINUTE;
    let mut groups: BTreeMap<(Micros, &str, &str), Acc> = BTreeMap::new();
    for u in units {
        let minute = u.received_at - u.received_at.rem_euclid(MINUTE);
        let a = groups.entry((minute, u.source.as_str(), u.adapter.as_str())).or_default();
        a.received += 1;
        if u.quarantined {
            a.quarantined += 1;
        } else {
            a.records += u.records;
            // Decided once landed, or once the SLA has passed without landing.
            match u.landed_at {
                Some(l) => {
                    a.sla_units += 1;
                    a.sla_met += i64::from(l - u.received_at <= sla);
                }
                None if now - u.received_at > sla => a.sla_units += 1,
                None => {}
            }
        }
        if let Some(t) = u.answered_at {
            a.ack.record(Duration::from_micros((t - u.received_at).max(0) as u64));
        }
    }
    groups
        .into_iter()
        .map(|((minute, source, adapter), a)| KpiRow {
            minute,
            source: source.to_string(),
            adapter: adapter.to_string(),
            received: a.received,
            accepted: a.received - a.quarantined,
            quarantined: a.quarantined,
            error_rate: a.quarantined as f64 / a.received as f64,
            records: a.records,
            ack_p50_ms: a.ack.quantile(0.5).map(|s| s * 1000.0),
            ack_p95_ms: a.ack.quantile(0.95).map(|s| s * 1000.0),
            sla_units: a.sla_units,
            sla_met: a.sla_met,
            sla_share: (a.sla_units > 0).then(|| a.sla_met as f64 / a.sla_units as f64),
            sla_minutes: sla_minutes as i64,
            refreshed_at: now,
        })
        .collect()
}

fn column(b: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef, LakeError> {
    let c = b.column_by_name(name).ok_or_else(|| LakeError::Sql(format!("no column {name}")))?;
    cast(c, ty).map_err(|e| LakeError::Sql(e.to_string()))
}

fn strings(b: &RecordBatch, name: &str) -> Result<StringArray, LakeError> {
    Ok(column(b, name, &DataType::Utf8)?.as_any().downcast_ref::<StringArray>().cloned().expect("cast to Utf8"))
}

fn longs(b: &RecordBatch, name: &str) -> Result<Int64Array, LakeError> {
    Ok(column(b, name, &DataType::Int64)?.as_any().downcast_ref::<Int64Array>().cloned().expect("cast to Int64"))
}

/// The bronze tables the live flow writes that exist with the processing columns
/// (a table from before them, not written since, has none of its units).
async fn live_bronze(lake: &Lake) -> Result<Vec<Table>, LakeError> {
    let mut out = Vec::new();
    for t in [Table::BronzeHl7, Table::BronzeEvents] {
        if lake.has_column(t.path(), "landed_at").await? == Some(true) {
            out.push(t);
        }
    }
    Ok(out)
}

/// `SELECT columns` of the flow's units in `tables` matching `filter`.
fn selects(tables: &[Table], columns: &str, filter: &str) -> Vec<String> {
    tables.iter().map(|t| format!("SELECT {columns} FROM {} WHERE landed_at IS NOT NULL AND {filter}", t.sql_name())).collect()
}

const PATHS: [&str; 3] = ["bronze/hl7_messages", "bronze/events", "quarantine/records"];

/// The units of the live flow (MLLP, webhooks) received from `from` (micros) on.
/// (Bronze rows written otherwise, by drops, `ehrgate ingest` or bulk exports, have
/// no `landed_at` and are not units of the flow's KPIs.)
pub async fn units_since(lake: &Lake, from: Micros) -> Result<Vec<Unit>, LakeError> {
    units_in(lake, &live_bronze(lake).await?, from).await
}

async fn units_in(lake: &Lake, tables: &[Table], from: Micros) -> Result<Vec<Unit>, LakeError> {
    let at = ehrgate_lake::rfc3339(from);
    // (`ingest_date` is the partition: older days are not read at all)
    let filter = format!("ingest_date >= '{}' AND received_at >= '{at}'", ehrgate_lake::date_of(from));
    let selects = selects(
        tables,
        "record_id, source, CAST(received_at AS BIGINT) AS received_at, adapter, CAST(answered_at AS BIGINT) AS answered_at, CAST(landed_at AS BIGINT) AS landed_at, records",
        &filter,
    );
    if selects.is_empty() {
        return Ok(Vec::new());
    }
    // A unit is quarantined after its receipt.
    let query = format!(
        "SELECT b.*, q.id IS NOT NULL AS quarantined FROM ({}) b \
         LEFT JOIN (SELECT DISTINCT id FROM quarantine_records WHERE quarantined_at >= '{at}') q ON q.id = b.record_id",
        selects.join(" UNION ALL ")
    );
    let mut out = Vec::new();
    for b in sql::query_paths(lake, &PATHS, &query).await? {
        let (source, adapter) = (strings(&b, "source")?, strings(&b, "adapter")?);
        let (received, answered, landed, records) = (longs(&b, "received_at")?, longs(&b, "answered_at")?, longs(&b, "landed_at")?, longs(&b, "records")?);
        let quarantined = b.column_by_name("quarantined").and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned()).ok_or_else(|| LakeError::Sql("no column quarantined".into()))?;
        let opt = |a: &Int64Array, k: usize| (!a.is_null(k)).then(|| a.value(k));
        for k in 0..b.num_rows() {
            out.push(Unit {
                received_at: received.value(k),
                source: source.value(k).to_string(),
                adapter: if adapter.is_null(k) { String::new() } else { adapter.value(k).to_string() },
                answered_at: opt(&answered, k),
                landed_at: opt(&landed, k),
                records: opt(&records, k).unwrap_or(0),
                quarantined: quarantined.value(k),
            });
        }
    }
    Ok(out)
}

/// The earliest receipt (micros) among the flow's units that landed at or after
/// `landed` (`None`: none did).
async fn earliest_received_landed_since(lake: &Lake, tables: &[Table], landed: Micros) -> Result<Option<Micros>, LakeError> {
    let selects = selects(tables, "CAST(received_at AS BIGINT) AS r", &format!("landed_at >= '{}'", ehrgate_lake::rfc3339(landed)));
    if selects.is_empty() {
        return Ok(None);
    }
    let q = format!("SELECT min(r) AS r FROM ({})", selects.join(" UNION ALL "));
    let b = sql::query_paths(lake, &PATHS, &q).await?;
    Ok(b.first().and_then(|b| longs(b, "r").ok()).and_then(|a| (a.len() > 0 && !a.is_null(0)).then(|| a.value(0))))
}

/// What a refresh did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refreshed {
    /// The first minute recomputed (micros).
    pub from: Micros,
    pub rows: usize,
    pub units: usize,
}

/// Recompute `gold/kpi_minute` from minute `from` on (rounded down) and replace
/// those minutes in one commit.
///
/// Without `from`: the minutes that can still change, i.e. the last `sla_minutes`
/// + 2, and further back the minute of any unit that landed in that time or in the
/// `refresh_every_s` before it (a unit held up by a lake outage lands late and
/// counts in the minute it was received, as an SLA miss). A unit can only change a
/// minute when it lands, so a minute nothing landed in since the last refresh keeps
/// its row.
///
/// With `from` (`ehrgate kpi --since`): never earlier than the oldest unit still
/// in bronze, so that minutes whose units retention removed keep their rows.
pub async fn refresh(lake: &Lake, cfg: &KpiConfig, from: Option<Micros>, now: Micros) -> Result<Refreshed, LakeError> {
    let recent = now - (cfg.sla_minutes as i64 + 2) * MINUTE;
    let tables = live_bronze(lake).await?;
    let from = match from {
        None => {
            let landed_since = recent - cfg.refresh_every_s as i64 * 1_000_000;
            earliest_received_landed_since(lake, &tables, landed_since).await?.map_or(recent, |r| r.min(recent))
        }
        Some(f) => match earliest_received_landed_since(lake, &tables, 0).await? {
            Some(oldest) => f.max(oldest),
            None => return Ok(Refreshed { from: f, rows: 0, units: 0 }),
        },
    };
    let from = from - from.rem_euclid(MINUTE);
    let units = units_in(lake, &tables, from).await?;
    let rows = aggregate(&units, cfg.sla_minutes, now);
    let batch = batch(&rows)?;
    lake.replace_where(Table::KpiMinute, batch, &format!("minute >= '{}'", ehrgate_lake::rfc3339(from))).await?;
    Ok(Refreshed { from, rows: rows.len(), units: units.len() })
}

fn batch(rows: &[KpiRow]) -> Result<RecordBatch, LakeError> {
    let s = |f: fn(&KpiRow) -> &str| -> ArrayRef { std::sync::Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) };
    let i = |f: fn(&KpiRow) -> i64| -> ArrayRef { std::sync::Arc::new(rows.iter().map(|r| Some(f(r))).collect::<Int64Array>()) };
    let d = |f: fn(&KpiRow) -> Option<f64>| -> ArrayRef { std::sync::Arc::new(rows.iter().map(f).collect::<Float64Array>()) };
    let t = |f: fn(&KpiRow) -> Micros| -> ArrayRef { std::sync::Arc::new(rows.iter().map(|r| Some(f(r))).collect::<TimestampMicrosecondArray>().with_timezone("UTC")) };
    let cols = vec![
        t(|r| r.minute),
        s(|r| &r.source),
        s(|r| &r.adapter),
        i(|r| r.received),
        i(|r| r.accepted),
        i(|r| r.quarantined),
        d(|r| Some(r.error_rate)),
        i(|r| r.records),
        d(|r| r.ack_p50_ms),
        d(|r| r.ack_p95_ms),
        i(|r| r.sla_units),
        i(|r| r.sla_met),
        d(|r| r.sla_share),
        i(|r| r.sla_minutes),
        t(|r| r.refreshed_at),
    ];
    RecordBatch::try_new(Table::KpiMinute.schema(), cols).map_err(|e| LakeError::Invalid(format!("gold/kpi_minute: {e}")))
}

/// The rows of `gold/kpi_minute` from `since` (micros) on, oldest first.
pub async fn read(lake: &Lake, since: Micros) -> Result<Vec<KpiRow>, LakeError> {
    let q = format!(
        "SELECT CAST(minute AS BIGINT) AS minute, source, adapter, received, accepted, quarantined, error_rate, records, ack_p50_ms, ack_p95_ms, \
         sla_units, sla_met, sla_share, sla_minutes, CAST(refreshed_at AS BIGINT) AS refreshed_at FROM gold_kpi_minute \
         WHERE CAST(minute AS BIGINT) >= {since} ORDER BY minute, source, adapter"
    );
    let mut out = Vec::new();
    for b in sql::query_one(lake, Table::KpiMinute.path(), &q).await? {
        let (source, adapter) = (strings(&b, "source")?, strings(&b, "adapter")?);
        let f = |n: &str| -> Result<Float64Array, LakeError> { Ok(column(&b, n, &DataType::Float64)?.as_any().downcast_ref::<Float64Array>().cloned().expect("cast")) };
        let (minute, received, accepted, quarantined, records) = (longs(&b, "minute")?, longs(&b, "received")?, longs(&b, "accepted")?, longs(&b, "quarantined")?, longs(&b, "records")?);
        let (sla_units, sla_met, sla_minutes, refreshed) = (longs(&b, "sla_units")?, longs(&b, "sla_met")?, longs(&b, "sla_minutes")?, longs(&b, "refreshed_at")?);
        let (error_rate, p50, p95, share) = (f("error_rate")?, f("ack_p50_ms")?, f("ack_p95_ms")?, f("sla_share")?);
        let opt = |a: &Float64Array, k: usize| (!a.is_null(k)).then(|| a.value(k));
        for k in 0..b.num_rows() {
            out.push(KpiRow {
                minute: minute.value(k),
                source: source.value(k).to_string(),
                adapter: adapter.value(k).to_string(),
                received: received.value(k),
                accepted: accepted.value(k),
                quarantined: quarantined.value(k),
                error_rate: error_rate.value(k),
                records: records.value(k),
                ack_p50_ms: opt(&p50, k),
                ack_p95_ms: opt(&p95, k),
                sla_units: sla_units.value(k),
                sla_met: sla_met.value(k),
                sla_share: opt(&share, k),
                sla_minutes: sla_minutes.value(k),
                refreshed_at: refreshed.value(k),
            });
        }
    }
    Ok(out)
}

/// Per source of the live flow: the first unit's receipt and when it landed in
/// the lake (time to first record).
pub async fn first_records(lake: &Lake) -> Result<Vec<(String, Micros, Option<Micros>)>, LakeError> {
    let selects = selects(&live_bronze(lake).await?, "source, CAST(received_at AS BIGINT) AS r, CAST(landed_at AS BIGINT) AS l", "true");
    if selects.is_empty() {
        return Ok(Vec::new());
    }
    // The landing of the first unit received (not the first landing of any unit).
    let q = format!(
        "SELECT source, r AS first_received, l AS first_landed FROM (SELECT source, r, l, row_number() OVER (PARTITION BY source ORDER BY r, l) AS k FROM ({})) WHERE k = 1 ORDER BY source",
        selects.join(" UNION ALL ")
    );
    let mut out = Vec::new();
    for b in sql::query_paths(lake, &PATHS, &q).await? {
        let (source, r, l) = (strings(&b, "source")?, longs(&b, "first_received")?, longs(&b, "first_landed")?);
        for k in 0..b.num_rows() {
            out.push((source.value(k).to_string(), r.value(k), (!l.is_null(k)).then(|| l.value(k))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(received_s: i64, adapter: &str, ack_ms: Option<i64>, landed_s: Option<i64>, quarantined: bool) -> Unit {
        let r = 1_800_000_000 * 1_000_000 + received_s * 1_000_000;
        Unit {
            received_at: r,
            source: "mllp:adt".into(),
            adapter: adapter.into(),
            answered_at: ack_ms.map(|a| r + a * 1000),
            landed_at: landed_s.map(|l| r + l * 1_000_000),
            records: 3,
            quarantined,
        }
    }

    #[test]
    fn counts_error_rate_sla_and_ack_quantiles_per_minute_source_and_adapter() {
        let now = 1_800_000_000 * 1_000_000 + 3600 * 1_000_000;
        let units = vec![
            unit(0, "reference@1.0.0", Some(2), Some(1), false),
            unit(10, "reference@1.0.0", Some(3), Some(400), false), // landed after 6 min 40 s
            unit(20, "reference@1.0.0", Some(40), None, false),     // never landed, SLA long past
            unit(30, "reference@1.0.0", Some(2), None, true),       // quarantined
            unit(70, "reference@1.0.0", Some(2), Some(1), false),   // the next minute
            unit(5, "epic@2.0.0", None, Some(1), false),
        ];
        let rows = aggregate(&units, 5, now);
        assert_eq!(rows.len(), 3, "{rows:#?}");
        let r = rows.iter().find(|r| r.adapter == "reference@1.0.0" && r.received == 4).unwrap();
        assert_eq!((r.accepted, r.quarantined, r.records), (3, 1, 9));
        assert_eq!(r.error_rate, 0.25);
        assert_eq!((r.sla_units, r.sla_met), (3, 1), "one in time, one late, one never");
        let p50 = r.ack_p50_ms.unwrap();
        assert!((2.5..=5.0).contains(&p50), "{p50}");
        assert!(r.ack_p95_ms.unwrap() >= 25.0, "{r:?}");
        let e = rows.iter().find(|r| r.adapter == "epic@2.0.0").unwrap();
        assert_eq!((e.received, e.sla_met, e.ack_p50_ms), (1, 1, None));
        assert_eq!(rows.iter().filter(|r| r.minute > r.refreshed_at - 3600 * 1_000_000).count(), 1);
    }

    #[test]
    fn a_unit_not_landed_within_its_sla_window_is_undecided_not_missed() {
        let r0 = 1_800_000_000 * 1_000_000;
        let units = vec![unit(0, "a@1", Some(1), None, false)];
        let rows = aggregate(&units, 5, r0 + 60 * 1_000_000);
        assert_eq!((rows[0].sla_units, rows[0].sla_met, rows[0].sla_share), (0, 0, None));
    }
}
