//! Distribution through an OCI registry (`oci://host[:port]/repo:tag` or
//! `...@sha256:<digest>`), with the `oci-client` crate.
//!
//! Layout, after the Wasm OCI artifact layout (CNCF TAG Runtime, `wasm-oci`): the
//! config blob is `application/vnd.wasm.config.v0+json` and the component is a
//! layer of `application/wasm`, so generic wasm tooling sees a component; the
//! package's signed manifest and its detached signature are two more layers
//! (`application/vnd.ehrgate.adapter.manifest.v1+json`,
//! `application/vnd.ehrgate.adapter.signature.v1+json`). A pulled package is
//! reassembled byte for byte, so its signature verifies as it did before the push.
//!
//! Trust does not come from the registry: a pulled package is verified against
//! the gateway's trust store like any other. A digest pins *which* package: a
//! pull by digest, or by tag with an expected digest, refuses a manifest whose
//! digest differs, and every layer is checked against its descriptor's digest.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::PackageError;
use crate::package::{Package, Signature, sha256_hex};

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
pub const MANIFEST_LAYER: &str = "application/vnd.ehrgate.adapter.manifest.v1+json";
pub const SIGNATURE_LAYER: &str = "application/vnd.ehrgate.adapter.signature.v1+json";

fn oci_error(what: &str, e: impl std::fmt::Display) -> PackageError {
    PackageError::Registry(format!("{what}: {e}"))
}

/// `oci://host/repo:tag` -> the reference and the client for its registry
/// (plain HTTP for loopback registries, or when `plain_http` is set).
fn client_for(url: &str, plain_http: bool) -> Result<(Client, Reference), PackageError> {
    let rest = url.strip_prefix("oci://").ok_or_else(|| PackageError::Invalid(format!("`{url}` is not an oci://host/repository:tag reference")))?;
    let reference: Reference = rest.parse().map_err(|e| PackageError::Invalid(format!("`{url}` is not an OCI reference: {e}")))?;
    let host = reference.registry().split(':').next().unwrap_or_default().to_string();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let protocol = if plain_http || loopback { ClientProtocol::Http } else { ClientProtocol::Https };
    Ok((Client::new(ClientConfig { protocol, ..Default::default() }), reference))
}

/// Push a package; returns the manifest digest (`sha256:...`) to pin it by.
pub async fn push(pkg: &Package, url: &str, plain_http: bool) -> Result<String, PackageError> {
    let (client, reference) = client_for(url, plain_http)?;
    let annotations = |title: &str| Some(BTreeMap::from([("org.opencontainers.image.title".to_string(), title.to_string())]));
    let mut layers = vec![
        ImageLayer::new(pkg.component.clone(), WASM_LAYER.into(), annotations("component.wasm")),
        ImageLayer::new(pkg.manifest_bytes.clone(), MANIFEST_LAYER.into(), annotations("manifest.json")),
    ];
    if let Some(s) = &pkg.signature {
        layers.push(ImageLayer::new(serde_json::to_vec_pretty(s).expect("serializes"), SIGNATURE_LAYER.into(), annotations("signature.json")));
    }
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "author": pkg.manifest.vendor,
        "layerDigests": [format!("sha256:{}", sha256_hex(&pkg.component))],
    });
    let config = Config::new(serde_json::to_vec(&config).expect("serializes"), CONFIG_MEDIA_TYPE.into(), None);
    client.push(&reference, &layers, config, &RegistryAuth::Anonymous, None).await.map_err(|e| oci_error(&format!("push to {url}"), e))?;
    let (_, digest) = client.pull_image_manifest(&reference, &RegistryAuth::Anonymous).await.map_err(|e| oci_error(&format!("read back {url}"), e))?;
    Ok(digest)
}

/// Pull a package. `expect` pins the manifest digest (besides any digest in the
/// reference itself). Returns the package and the manifest digest it came from.
pub async fn pull(url: &str, expect: Option<&str>, plain_http: bool, max_component: u64) -> Result<(Package, String), PackageError> {
    let (client, reference) = client_for(url, plain_http)?;
    let data = client
        .pull(&reference, &RegistryAuth::Anonymous, vec![WASM_LAYER, MANIFEST_LAYER, SIGNATURE_LAYER])
        .await
        .map_err(|e| oci_error(&format!("pull {url}"), e))?;
    let digest = data.digest.clone().unwrap_or_default();
    for want in [reference.digest(), expect].into_iter().flatten() {
        if want != digest {
            return Err(PackageError::PinnedDigest { expected: want.to_string(), found: digest });
        }
    }
    // Layers arrive in any order (downloaded concurrently): each must be one the
    // manifest lists, by digest.
    let m = data.manifest.as_ref().ok_or_else(|| PackageError::Malformed(format!("{url}: the registry returned no manifest")))?;
    let listed: std::collections::HashSet<&str> = m.layers.iter().map(|d| d.digest.as_str()).collect();
    for layer in &data.layers {
        let found = format!("sha256:{}", sha256_hex(&layer.data));
        if !listed.contains(found.as_str()) {
            return Err(PackageError::PinnedDigest { expected: format!("one of the manifest's layers ({})", listed.len()), found });
        }
    }
    let layer = |media: &str| data.layers.iter().find(|l| l.media_type == media).map(|l| l.data.to_vec());
    let component = layer(WASM_LAYER).ok_or_else(|| PackageError::Malformed(format!("{url} holds no {WASM_LAYER} layer: not an adapter package")))?;
    if component.len() as u64 > max_component {
        return Err(PackageError::TooLarge { what: "component.wasm".into(), size: component.len() as u64, limit: max_component });
    }
    let manifest_bytes = layer(MANIFEST_LAYER).ok_or_else(|| PackageError::Malformed(format!("{url} holds no {MANIFEST_LAYER} layer: not an ehrgate adapter package")))?;
    let manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::Malformed(format!("manifest.json: {e}")))?;
    let signature = match layer(SIGNATURE_LAYER) {
        None => None,
        Some(s) => Some(serde_json::from_slice::<Signature>(&s).map_err(|e| PackageError::Malformed(format!("signature.json: {e}")))?),
    };
    let pkg = Package { manifest_bytes, manifest, component, signature };
    pkg.manifest.check_names()?;
    Ok((pkg, digest))
}
