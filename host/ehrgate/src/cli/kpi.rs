//! `ehrgate kpi [--since 1h] [--refresh]`: the operations KPIs of gold/kpi_minute
//! (docs/operations.md), refreshed from bronze and the quarantine first unless
//! `--no-refresh`.

use std::process::ExitCode;

use ehrgate_lake::{now_micros, rfc3339};

use crate::config::Config;

pub async fn kpi(cfg: &Config, since: &str, refresh: bool, json: bool) -> anyhow::Result<ExitCode> {
    let lake = super::lake_cmds::open_lake(cfg)?;
    let now = now_micros();
    let from = now - super::workflow::parse_since(since)?;
    if refresh {
        // Everything in the window, not only the minutes that can still change.
        let r = ehrgate_kpi::refresh(&lake, &cfg.kpi, Some(from.min(now - (cfg.kpi.sla_minutes as i64 + 2) * 60_000_000)), now).await?;
        eprintln!("kpi: {} units since {} -> {} rows of gold/kpi_minute", r.units, rfc3339(r.from), r.rows);
    }
    let rows = ehrgate_kpi::read(&lake, from - from.rem_euclid(60_000_000)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"sla_minutes": cfg.kpi.sla_minutes, "rows": rows}))?);
        return Ok(ExitCode::SUCCESS);
    }
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "{:<20} {:<18} {:<22} {:>8} {:>8} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9}",
        "minute (UTC)", "source", "adapter", "received", "accepted", "quar.", "err %", "records", "ack p50", "ack p95", format!("SLA {}m", cfg.kpi.sla_minutes)
    );
    let (mut received, mut quarantined, mut units, mut met) = (0, 0, 0, 0);
    for r in &rows {
        println!(
            "{:<20} {:<18} {:<22} {:>8} {:>8} {:>6} {:>7.2} {:>8} {:>8} {:>8} {:>9}",
            &rfc3339(r.minute)[..16],
            r.source,
            if r.adapter.is_empty() { "-" } else { &r.adapter },
            r.received,
            r.accepted,
            r.quarantined,
            r.error_rate * 100.0,
            r.records,
            ms(r.ack_p50_ms),
            ms(r.ack_p95_ms),
            r.sla_share.map(|s| format!("{:.1}%", s * 100.0)).unwrap_or_else(|| "-".into())
        );
        (received, quarantined, units, met) = (received + r.received, quarantined + r.quarantined, units + r.sla_units, met + r.sla_met);
    }
    if rows.is_empty() {
        println!("(no units received since {})", rfc3339(from));
    } else {
        println!(
            "total: {received} received, {quarantined} quarantined ({:.2}% error rate), SLA {}m met by {met} of {units} decided ({})",
            quarantined as f64 * 100.0 / received.max(1) as f64,
            cfg.kpi.sla_minutes,
            if units > 0 { format!("{:.1}%", met as f64 * 100.0 / units as f64) } else { "-".into() }
        );
    }
    for (source, first, landed) in ehrgate_kpi::first_records(&lake).await? {
        let ttf = landed.map(|l| format!("{:.3} s", (l - first) as f64 / 1e6)).unwrap_or_else(|| "not landed".into());
        println!("time to first record, {source}: first unit {} -> in the lake after {ttf}", rfc3339(first));
    }
    Ok(ExitCode::SUCCESS)
}
