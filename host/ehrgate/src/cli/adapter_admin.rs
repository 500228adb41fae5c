//! `ehrgate adapter install | activate | rollback | disable | list --gateway URL`:
//! the admin API of a running gateway, from the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ehrgate_lake::SecretRef;

pub struct Remote {
    pub gateway: String,
    /// The admin token by reference (`env:NAME` / `file:/path`).
    pub token: String,
}

enum Body {
    None,
    Bytes(Vec<u8>),
}

async fn call(r: &Remote, method: &str, path: &str, body: Body) -> anyhow::Result<ExitCode> {
    let token = SecretRef(r.token.clone()).resolve().context("--token")?;
    let url = format!("{}{path}", r.gateway.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).build()?;
    let mut req = match method {
        "GET" => client.get(&url),
        "DELETE" => client.delete(&url),
        _ => client.post(&url),
    }
    .bearer_auth(token);
    if let Ok(user) = std::env::var("USER") {
        req = req.header("x-ehrgate-actor", user);
    }
    if let Body::Bytes(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach the gateway at {}", r.gateway))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the gateway refused ({status}):\n{pretty}");
        Ok(ExitCode::from(1))
    }
}

pub async fn install(r: &Remote, package: &Path, activate: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(package).with_context(|| format!("read {}", package.display()))?;
    call(r, "POST", &format!("/v1/adapters{}", if activate { "?activate=true" } else { "" }), Body::Bytes(bytes)).await
}

pub async fn activate(r: &Remote, name: &str, version: &str) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "version": version }).to_string().into_bytes();
    call(r, "POST", &format!("/v1/adapters/{name}/activate"), Body::Bytes(body)).await
}

pub async fn rollback(r: &Remote, name: &str) -> anyhow::Result<ExitCode> {
    call(r, "POST", &format!("/v1/adapters/{name}/rollback"), Body::None).await
}

pub async fn disable(r: &Remote, name: &str) -> anyhow::Result<ExitCode> {
    call(r, "POST", &format!("/v1/adapters/{name}/disable"), Body::None).await
}

/// `ehrgate workflow retry | cancel ID`: through the running gateway, which owns
/// the runs.
pub async fn workflow_run(r: &Remote, id: &str, op: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && !id.is_empty(), "`{id}` is not a run id (see `ehrgate workflow runs`)");
    call(r, "POST", &format!("/v1/workflows/runs/{id}/{op}"), Body::None).await
}

pub async fn list(r: &Remote) -> anyhow::Result<ExitCode> {
    call(r, "GET", "/v1/adapters", Body::None).await
}

/// A canary (`percent` of the units) or, with `percent` None, a shadow.
pub async fn candidate(r: &Remote, name: &str, version: &str, percent: Option<f64>) -> anyhow::Result<ExitCode> {
    let body = match percent {
        Some(p) => serde_json::json!({ "version": version, "mode": "canary", "percent": p }),
        None => serde_json::json!({ "version": version, "mode": "shadow" }),
    };
    call(r, "POST", &format!("/v1/adapters/{name}/candidate"), Body::Bytes(body.to_string().into_bytes())).await
}

pub async fn clear_candidate(r: &Remote, name: &str) -> anyhow::Result<ExitCode> {
    call(r, "DELETE", &format!("/v1/adapters/{name}/candidate"), Body::None).await
}
