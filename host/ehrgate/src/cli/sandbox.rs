//! `ehrgate sandbox`: the synthetic, fault-injecting EHR (host/sandbox).

use std::process::ExitCode;

use ehrgate_sandbox::{Flavor, SandboxOptions};

fn flavor(s: &str) -> anyhow::Result<Flavor> {
    Ok(match s {
        "generic" => Flavor::Generic,
        "epic" => Flavor::Epic,
        _ => match s.strip_prefix("oracle:") {
            Some(t) if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => Flavor::Oracle { tenant: t.into() },
            _ => anyhow::bail!("--flavor must be generic, epic or oracle:<tenant> (letters, digits, -); got `{s}`"),
        },
    })
}

pub struct Args {
    pub port: u16,
    pub patients: usize,
    pub seed: u64,
    pub lines_per_file: usize,
    pub export_polls: u32,
    pub retry_after: u64,
    pub error_count: Option<u64>,
}

pub async fn run(a: Args, flavor_name: &str) -> anyhow::Result<ExitCode> {
    let opts = SandboxOptions {
        port: a.port,
        patients: a.patients,
        seed: a.seed,
        flavor: flavor(flavor_name)?,
        ndjson_lines_per_file: a.lines_per_file.max(1),
        export_polls: a.export_polls,
        export_retry_after_secs: a.retry_after,
        error_count: a.error_count,
        ..Default::default()
    };
    ehrgate_sandbox::run(opts).await.map_err(|e| anyhow::anyhow!("sandbox: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
