//! `ehrgate workflow list | runs | kpi`: the configured workflows, their runs and
//! their KPIs, read from `ops/workflow_runs` (docs/workflows.md).

use std::collections::BTreeMap;
use std::process::ExitCode;

use ehrgate_lake::{WorkflowRunRow, now_micros};
use ehrgate_workflows::kpi;

use crate::config::Config;

/// `ehrgate workflow list`
pub fn list(cfg: &Config) -> anyhow::Result<ExitCode> {
    if cfg.workflows.is_empty() {
        println!("no [[workflows]] configured");
    }
    for w in &cfg.workflows {
        let when: Vec<String> = w.when.iter().map(|(k, v)| format!("{k} in [{}]", v.join(", "))).collect();
        println!(
            "{}: on {}{} -> {}.{}; {} attempts, deadline {} s, SLA {} s",
            w.name,
            w.triggers(),
            if when.is_empty() { String::new() } else { format!(" when {}", when.join(" and ")) },
            w.adapter,
            w.action,
            w.retry.max_attempts,
            w.deadline_s,
            w.sla_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `2h`, `30m`, `45s`, `7d` -> micros.
pub fn parse_since(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| anyhow::anyhow!("--since {s}: a number and a unit (s, m, h, d), e.g. 1h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("--since {s}: the unit is s, m, h or d"),
    };
    Ok(n.saturating_mul(secs).saturating_mul(1_000_000))
}

async fn runs_since(cfg: &Config, since: Option<&str>) -> anyhow::Result<Vec<WorkflowRunRow>> {
    let lake = super::lake_cmds::open_lake(cfg)?;
    let mut runs = ehrgate_workflows::store::current(&lake).await?;
    if let Some(s) = since {
        let from = now_micros() - parse_since(s)?;
        runs.retain(|r| r.received_at >= from);
    }
    Ok(runs)
}

fn time(micros: Option<i64>) -> String {
    micros.map(ehrgate_lake::rfc3339).unwrap_or_else(|| "-".into())
}

/// `ehrgate workflow runs [--status S] [--workflow W] [--since 1h]`
pub async fn runs(cfg: &Config, status: Option<&str>, workflow: Option<&str>, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let runs = runs_since(cfg, since).await?;
    let mut shown = 0;
    for r in runs.iter().filter(|r| status.is_none_or(|s| r.status == s) && workflow.is_none_or(|w| r.workflow == w)) {
        shown += 1;
        println!(
            "{}  {:<20} {:<9} attempts {:<2} {} received {} completed {}{}",
            r.run_id,
            r.workflow,
            r.status,
            r.attempts,
            r.encounter_ref.as_deref().unwrap_or("-"),
            time(Some(r.received_at)),
            time(r.completed_at),
            r.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    eprintln!("{shown} runs");
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate workflow kpi [--since 1h]`
pub async fn kpi(cfg: &Config, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let runs = runs_since(cfg, since).await?;
    let sla: BTreeMap<String, u64> = cfg.workflows.iter().map(|w| (w.name.clone(), w.sla_s)).collect();
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into());
    let rows = kpi::compute(&runs, &sla, now_micros());
    if rows.is_empty() {
        println!("no workflow runs{}", since.map(|s| format!(" in the last {s}")).unwrap_or_default());
    }
    for k in rows {
        println!(
            "{}: runs {} succeeded {} failed {} open {} cancelled {}; success {:.1}% error {:.1}%; event to completion p50 {} p95 {} p99 {}; within the {} s SLA: {:.1}%",
            k.workflow,
            k.runs,
            k.succeeded,
            k.failed,
            k.open,
            k.cancelled,
            k.success_rate * 100.0,
            k.error_rate * 100.0,
            ms(k.p50_ms),
            ms(k.p95_ms),
            ms(k.p99_ms),
            k.sla_s,
            k.within_sla * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
