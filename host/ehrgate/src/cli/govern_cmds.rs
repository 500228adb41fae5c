//! `ehrgate sql` (governed and audited), `ehrgate export`, `ehrgate audit verify`,
//! `ehrgate lake retain` and `ehrgate lake purge`.

use std::process::ExitCode;

use anyhow::Context;
use ehrgate_govern::sql::Reader;
use ehrgate_govern::{GovernError, Policy};
use ehrgate_lake::sql;

use super::lake_cmds::{OutFormat, open_lake};
use crate::config::Config;

/// Who runs `ehrgate sql`.
pub struct Who {
    pub principal: Option<String>,
    /// By reference (env:/file:).
    pub key: Option<String>,
    pub purpose: Option<String>,
}

/// `ehrgate sql "<query>" [--format table|json|csv] [--as NAME [--key REF]] [--purpose P]`
pub async fn sql(cfg: &Config, query: &str, format: OutFormat, who: Who) -> anyhow::Result<ExitCode> {
    let policy = Policy::new(&cfg.governance).context("[governance]")?;
    let key = match &who.key {
        Some(r) => Some(ehrgate_connect::SecretRef::new(r.as_str()).resolve("--key").map_err(|e| anyhow::anyhow!("{e}"))?.expose().to_string()),
        None => None,
    };
    if let Some(p) = &who.purpose
        && !ehrgate_govern::policy::valid_purpose(p)
    {
        anyhow::bail!("--purpose must be 1-64 printable characters without spaces (e.g. TREAT, HOPERAT)");
    }
    let lake = open_lake(cfg)?;
    let principal = match &who.principal {
        Some(name) => match policy.admit(name, key.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                // (a failed admission is an access attempt: audited)
                let row = ehrgate_lake::AuditRow {
                    at: ehrgate_lake::now_micros(),
                    actor: format!("sql:{}", ehrgate_govern::policy::clean_name(name)),
                    action: "sql.query".into(),
                    outcome: format!("refused: {e}"),
                    purpose: who.purpose.clone(),
                    detail: Some(serde_json::json!({"query": query}).to_string()),
                    ..Default::default()
                };
                lake.audit(vec![row]).await.context("writing the audit row")?;
                anyhow::bail!("{e}");
            }
        },
        None => None,
    };
    let reader = Reader { principal, operator: operator(), purpose: who.purpose.clone() };
    let batches = match ehrgate_govern::sql::query(&lake, &policy, &reader, query).await {
        Ok(b) => b,
        Err(GovernError::Lake(ehrgate_lake::LakeError::Refused(why))) | Err(GovernError::Refused(why)) => anyhow::bail!("refused: {why}"),
        Err(e) => return Err(e.into()),
    };
    let f = match format {
        OutFormat::Table => sql::Format::Table,
        OutFormat::Json => sql::Format::Json,
        OutFormat::Csv => sql::Format::Csv,
    };
    let mut text = sql::render(&batches, f)?;
    if matches!(format, OutFormat::Table) {
        text.push('\n');
    }
    // A reader that stops early (`| head`) is not an error.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r.map(|_| ExitCode::SUCCESS).context("writing the result"),
    }
}

/// The OS user, for queries run without a principal.
fn operator() -> String {
    ehrgate_govern::policy::clean_name(&std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()))
}

/// `ehrgate audit verify`
pub async fn audit_verify(cfg: &Config) -> anyhow::Result<ExitCode> {
    let lake = open_lake(cfg)?;
    let v = ehrgate_govern::verify(&lake).await?;
    let extra = if v.unchained > 0 { format!(" ({} rows from before the chain are not covered)", v.unchained) } else { String::new() };
    match (&v.broken, &v.head) {
        (None, Some(h)) => {
            println!("audit chain intact: {} rows, seq 0 to {}, head {}{extra}", v.chained, h.seq, h.hash);
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => {
            println!("audit chain empty: no rows yet{extra}");
            Ok(ExitCode::SUCCESS)
        }
        (Some(b), _) => {
            println!("audit chain BROKEN at {b}");
            println!("({} rows on the chain read{extra}; rows after the break are not trusted)", v.chained);
            Ok(ExitCode::from(1))
        }
    }
}

/// `ehrgate export --profile NAME --to DIR [--tables P ...]`
pub async fn export(cfg: &Config, profile: &str, to: &std::path::Path, tables: &[String]) -> anyhow::Result<ExitCode> {
    let policy = Policy::new(&cfg.governance).context("[governance]")?;
    let lake = open_lake(cfg)?;
    let done = ehrgate_govern::export::export(&lake, &policy, profile, tables, to, &format!("export:{}", operator())).await?;
    for t in &done.tables {
        println!("{:<28} {:>9} rows  {} {}", t.table, t.rows, t.ndjson, t.parquet);
    }
    let rate = if done.seconds > 0.0 { done.rows as f64 / done.seconds } else { 0.0 };
    println!("exported {} rows through profile {} into {} in {:.2} s ({rate:.0} rows/s)", done.rows, done.profile, to.display(), done.seconds);
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate lake retain [--vacuum-minutes M]`
pub async fn retain(cfg: &Config, vacuum_minutes: u64) -> anyhow::Result<ExitCode> {
    if cfg.governance.retention.is_empty() {
        println!("no [[governance.retention]] rules: nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    let lake = open_lake(cfg)?;
    let done = ehrgate_govern::retention::retain(&lake, &cfg.governance.retention, vacuum_minutes, &format!("retain:{}", operator())).await?;
    for a in &done {
        println!(
            "{:<28} {:>8} rows deleted  ({} before {}; version {} -> {}; {} files vacuumed)",
            a.table, a.rows, a.column, a.cutoff, a.version_before, a.version_after, a.files_vacuumed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate lake purge --patient ID [--vacuum-minutes M]`
pub async fn purge(cfg: &Config, patient: &str, vacuum_minutes: u64) -> anyhow::Result<ExitCode> {
    let lake = open_lake(cfg)?;
    let done = ehrgate_govern::retention::purge_patient(&lake, patient, vacuum_minutes, &format!("purge:{}", operator())).await?;
    for r in done.removed.iter().filter(|r| r.rows > 0) {
        println!("{:<28} {:>8} rows deleted  (version {} -> {})", r.table, r.rows, r.version_before, r.version_after);
    }
    let rows: u64 = done.removed.iter().map(|r| r.rows).sum();
    println!("purged {rows} rows about the patient; {} files vacuumed; audited as patient sha256 {}", done.files_vacuumed, done.patient_sha256);
    Ok(ExitCode::SUCCESS)
}

fn instant(what: &str, t: Option<&str>) -> anyhow::Result<Option<ehrgate_lake::Micros>> {
    t.map(|t| ehrgate_lake::parse_fhir_time(t).ok_or_else(|| anyhow::anyhow!("{what} `{t}` is not a time (RFC 3339 or YYYY-MM-DD)"))).transpose()
}

/// `ehrgate audit export --to DIR [--from T] [--until T]`
pub async fn audit_export(cfg: &Config, to: &std::path::Path, from: Option<&str>, until: Option<&str>) -> anyhow::Result<ExitCode> {
    let (from, until) = (instant("--from", from)?, instant("--until", until)?);
    let lake = open_lake(cfg)?;
    let e = ehrgate_govern::evidence::export(&lake, &cfg.governance, from, until, to, &format!("audit-export:{}", operator())).await?;
    println!(
        "evidence package in {}: {} audit rows, {} attestations, chain {}",
        to.display(),
        e.rows,
        e.attestations,
        if e.chain_intact { "intact" } else { "BROKEN (see chain_verification.json)" }
    );
    for (name, hash) in &e.files {
        println!("  {name:<26} sha256 {hash}");
    }
    Ok(if e.chain_intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `ehrgate catalog sql --catalog NAME`
pub async fn catalog_sql(cfg: &Config, opts: ehrgate_govern::catalog::CatalogOptions) -> anyhow::Result<ExitCode> {
    let policy = Policy::new(&cfg.governance).context("[governance]")?;
    let lake = open_lake(cfg)?;
    let mut tables = Vec::new();
    for (path, _) in lake.tables().await? {
        let schema = match ehrgate_lake::Table::ALL.iter().find(|t| t.path() == path) {
            Some(t) => t.schema(),
            None => ehrgate_lake::silver_schema(),
        };
        let location = lake.storage().table_url(&path)?.to_string();
        tables.push(ehrgate_govern::catalog::CatalogTable { path, location, schema });
    }
    if matches!(cfg.storage, ehrgate_lake::Storage::Local { .. }) {
        println!("-- The lake is on the local disk: Databricks reads these tables only once they are on object storage ([storage] kind = \"s3\").\n");
    }
    for s in ehrgate_govern::catalog::catalog_sql(&policy, &tables, &opts, cfg.governance.date_shift_days) {
        println!("{s};\n");
    }
    Ok(ExitCode::SUCCESS)
}
