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

pub async fn run(port: u16, patients: usize, seed: u64, flavor_name: &str) -> anyhow::Result<ExitCode> {
    let opts = SandboxOptions { port, patients, seed, flavor: flavor(flavor_name)?, ..Default::default() };
    ehrgate_sandbox::run(opts).await.map_err(|e| anyhow::anyhow!("sandbox: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
