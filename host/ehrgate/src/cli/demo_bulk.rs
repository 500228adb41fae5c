//! The demo's Bulk Data part: the built-in sandbox EHR on 127.0.0.1 (SMART token
//! endpoint, `$export`), a full system export through the reference adapter into
//! the lake, then the sandbox changes (new patients, a deletion) and an incremental
//! export lands only that, the deletion as a tombstone.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ehrgate_connect::{AuthConfig, Connection, ConnectionConfig, SecretRef};
use ehrgate_ingest::Pipeline;
use ehrgate_ingest::bulk::{self, BulkOptions, BulkReport, ExportRequest, Level, Progress};
use ehrgate_lake::Lake;
use ehrgate_sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SandboxOptions};

use crate::config::Config;

const CONNECTION: &str = "demo-sandbox";

fn line(what: &str, r: &BulkReport) {
    let f = &r.figures;
    println!(
        "  {what:<34} files {:>3}  resources {:>6}  tombstones {:>3}  quarantined {:>3}  {:>6.2} s  {:>8.0} resources/s",
        f.files_done, f.resources, r.tombstones, f.quarantined, f.seconds, f.resources_per_s
    );
}

pub async fn run(cfg: &Config, lake: Arc<Lake>, pipeline: Arc<Pipeline>) -> anyhow::Result<()> {
    let sandbox = ehrgate_sandbox::serve(SandboxOptions { patients: 500, export_polls: 1, export_retry_after_secs: 1, ndjson_lines_per_file: 500, ..Default::default() })
        .await
        .map_err(|e| anyhow::anyhow!("starting the sandbox EHR: {e}"))?;
    // The sandbox's well-known demo secret, by reference like any secret.
    std::fs::create_dir_all(&cfg.bulk.state_dir).with_context(|| format!("creating {}", cfg.bulk.state_dir.display()))?;
    let secret_file = cfg.bulk.state_dir.join("demo-sandbox.secret");
    std::fs::write(&secret_file, DEMO_CLIENT_SECRET).context("writing the demo secret file")?;
    let mut cc = ConnectionConfig::new(CONNECTION, sandbox.base_url());
    cc.auth = AuthConfig::ClientCredentials {
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: SecretRef::new(format!("file:{}", secret_file.display())),
        token_url: sandbox.token_url(),
        scopes: vec!["system/*.read".into()],
    };
    let conn = Arc::new(Connection::new(&cc).context("the demo connection")?);
    // Each demo has a sandbox of its own: an export an interrupted demo left
    // unfinished (at another sandbox's address) is not rejoined.
    let _ = std::fs::remove_file(cfg.bulk.state_dir.join(format!("{CONNECTION}.json")));
    println!("FHIR Bulk Data $export from the sandbox EHR at {} (client_credentials token, reference adapter):", sandbox.base_url());
    let request = ExportRequest { level: Level::System, types: vec![], patients: vec![], since: None };
    let mut opts = BulkOptions::new(CONNECTION, request, cfg.bulk.state_dir.clone());
    opts.parallel = cfg.bulk.parallel.max(1);
    opts.batch_lines = cfg.bulk.batch_lines.max(1);
    opts.poll.first = Duration::from_millis(200);
    let quiet = |_: &str| {};

    let full = bulk::run_export(conn.clone(), pipeline.clone(), lake.clone(), &opts, Arc::new(Progress::default()), quiet).await?;
    line("full system export", &full);

    let added = sandbox.add_patients(25);
    let gone = ["Observation/obs-0001-0-0", "Condition/cond-0002-0"];
    for g in gone {
        let (ty, id) = g.split_once('/').expect("type/id");
        sandbox.delete(ty, id);
    }
    opts.incremental = true;
    let inc = bulk::run_export(conn, pipeline, lake, &opts, Arc::new(Progress::default()), quiet).await?;
    line(&format!("incremental (+{} patients, -{})", added.len(), gone.len()), &inc);
    println!("  _since {} = the first export's transactionTime; state in {}", inc.since.as_deref().unwrap_or("-"), cfg.bulk.state_dir.display());
    let _ = std::fs::remove_file(&secret_file);
    sandbox.stop().await.map_err(|e| anyhow::anyhow!("stopping the sandbox: {e}"))?;
    println!();
    Ok(())
}
