//! `ehrgate adapter keygen | sign | verify | push | pull`: publisher keys and
//! packages, offline or through an OCI registry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ehrgate_lifecycle::{Manifest, Package, check_package, sign};
use ehrgate_runtime::{AdapterSettings, TracingAudit};

use crate::adapters;
use crate::config::Config;

/// Write `PREFIX.key` (PKCS#8 PEM, readable by the owner only) and `PREFIX.pub`.
pub fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let (private, public) = sign::keygen()?;
    let key_path = PathBuf::from(format!("{}.key", out.display()));
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    anyhow::ensure!(!key_path.exists(), "{} exists; refusing to overwrite a private key", key_path.display());
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&key_path).with_context(|| format!("create {}", key_path.display()))?;
    f.write_all(private.as_bytes())?;
    f.sync_all()?;
    std::fs::write(&pub_path, format!("{public}\n")).with_context(|| format!("write {}", pub_path.display()))?;
    let id = sign::key_id(&sign::read_public(&public)?);
    println!("key {id}: private key {} (keep it secret), public key {}", key_path.display(), pub_path.display());
    println!("trust it in a gateway: [adapter_store] trusted_keys = [\"{public}\"]");
    Ok(ExitCode::SUCCESS)
}

/// Build a package from a component (its manifest from describe()), or re-sign
/// a package, and write it.
pub async fn sign_cmd(cfg: &Config, input: &Path, key: Option<&Path>, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(input).with_context(|| format!("read {}", input.display()))?;
    let mut pkg = if bytes.starts_with(b"\0asm") {
        let (runtime, _) = adapters::runtime(cfg, Arc::new(TracingAudit))?;
        let adapter = runtime.load(&input.display().to_string(), &bytes, AdapterSettings::default()).await?;
        let manifest = Manifest::from_describe(adapter.info(), &adapter.contract().0.to_string(), &bytes);
        Package::new(manifest, bytes, None)
    } else {
        Package::read(&bytes, u64::MAX).with_context(|| format!("{} is neither a component (.wasm) nor a package", input.display()))?
    };
    match key {
        Some(k) => {
            let pem = std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?;
            sign::sign(&mut pkg, &sign::read_private(&pem)?);
        }
        None => {
            pkg.signature = None;
            eprintln!("warning: no --key: the package is UNSIGNED; a gateway accepts it only with allow_unsigned = true (development)");
        }
    }
    let m = &pkg.manifest;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("{}-{}.ehrpkg", m.name, m.version)));
    std::fs::write(&out, pkg.to_bytes()).with_context(|| format!("write {}", out.display()))?;
    let by = pkg.signature.as_ref().map(|s| format!("signed by key {}", s.key_id)).unwrap_or_else(|| "unsigned".into());
    println!("{}: {} {} (contract {}, component sha256 {}), {by}", out.display(), m.name, m.version, m.contract, m.component.sha256);
    Ok(ExitCode::SUCCESS)
}

/// Everything a gateway checks before installing, against the configured trust
/// store plus `--trust` keys. Exit 1 when refused.
pub async fn verify(cfg: &Config, package: &Path, extra_keys: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(package).with_context(|| format!("read {}", package.display()))?;
    let mut trust = cfg.adapter_store.trust()?;
    for k in extra_keys {
        let text = std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?;
        trust.add(sign::read_public(&text)?);
    }
    let (runtime, _) = adapters::runtime(cfg, Arc::new(TracingAudit))?;
    let max = cfg.adapter_store.max_component_mb.max(1) << 20;
    match check_package(&runtime, &trust, max, AdapterSettings::default(), &bytes).await {
        Ok((pkg, signer, _, compile_ms)) => {
            let m = pkg.manifest;
            println!("ok: {} {} for contract {}, signed by {signer}; compiled in {compile_ms:.0} ms; describe() agrees with the manifest", m.name, m.version, m.contract);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("refused ({}): {e}", e.code());
            Ok(ExitCode::from(1))
        }
    }
}

/// Push a package to an OCI registry and print its digest.
pub async fn push(package: &Path, target: &str, plain_http: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(package).with_context(|| format!("read {}", package.display()))?;
    let pkg = Package::read(&bytes, u64::MAX).with_context(|| format!("{} is not a package", package.display()))?;
    let digest = ehrgate_lifecycle::oci::push(&pkg, target, plain_http).await?;
    println!("pushed {} {} to {target}", pkg.manifest.name, pkg.manifest.version);
    println!("digest {digest}");
    Ok(ExitCode::SUCCESS)
}

/// Pull a package from an OCI registry into a file (install it with `adapter install`).
pub async fn pull(cfg: &Config, source: &str, digest: Option<&str>, out: Option<&Path>, plain_http: bool) -> anyhow::Result<ExitCode> {
    let max = cfg.adapter_store.max_component_mb.max(1) << 20;
    match ehrgate_lifecycle::oci::pull(source, digest, plain_http, max).await {
        Ok((pkg, got)) => {
            let m = &pkg.manifest;
            let out = out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("{}-{}.ehrpkg", m.name, m.version)));
            std::fs::write(&out, pkg.to_bytes()).with_context(|| format!("write {}", out.display()))?;
            println!("pulled {} {} ({got}) into {}", m.name, m.version, out.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("refused ({}): {e}", e.code());
            Ok(ExitCode::from(1))
        }
    }
}
