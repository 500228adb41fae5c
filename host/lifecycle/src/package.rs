//! The adapter package: one file (`.ehrpkg`, a plain tar archive) holding
//!
//! - `manifest.json`: name, version, contract version, vendor, the describe()
//!   facts and the component's sha256 and size ([`Manifest`]);
//! - `component.wasm`: the component;
//! - `signature.json` (absent when unsigned): an ed25519 signature over the exact
//!   bytes of `manifest.json`, with the signer's key id ([`Signature`]).
//!
//! The signature covers the manifest, and the manifest pins the component by
//! digest, so one signature covers both while the component stays a plain file
//! that any wasm tool can read (see docs/adapters.md for why not embedded
//! signatures).

use std::io::Read;

use ehrgate_runtime::AdapterInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PackageError;

pub const FORMAT: &str = "ehrgate-adapter-package/1";
const MANIFEST: &str = "manifest.json";
const COMPONENT: &str = "component.wasm";
const SIGNATURE: &str = "signature.json";
/// Manifests and signatures are small; anything bigger is not one.
const MAX_SMALL_ENTRY: u64 = 1 << 20;

/// A connection the adapter declares it needs (from describe()).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionFacts {
    pub name: String,
    pub scopes: Vec<String>,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
}

/// What describe() says the adapter handles; the manifest carries a copy that
/// must agree with the component's own answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub hl7_message_types: Vec<String>,
    pub fhir_resource_types: Vec<String>,
    pub event_sources: Vec<String>,
    pub actions: Vec<String>,
    pub connections: Vec<ConnectionFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRef {
    /// Lower-case hex sha256 of `component.wasm`.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub version: String,
    pub vendor: String,
    /// The contract version the component exports, e.g. `0.1.0`.
    pub contract: String,
    pub component: ComponentRef,
    pub describe: Facts,
}

impl Manifest {
    /// The manifest for `component`, from what its describe() said.
    pub fn from_describe(info: &AdapterInfo, contract: &str, component: &[u8]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            name: info.name.clone(),
            version: info.version.clone(),
            vendor: info.vendor.clone(),
            contract: contract.into(),
            component: ComponentRef { sha256: sha256_hex(component), size: component.len() as u64 },
            describe: Facts {
                hl7_message_types: info.hl7_message_types.clone(),
                fhir_resource_types: info.fhir_resource_types.clone(),
                event_sources: info.event_sources.clone(),
                actions: info.actions.clone(),
                connections: info
                    .connections
                    .iter()
                    .map(|c| ConnectionFacts { name: c.name.clone(), scopes: c.scopes.clone(), methods: c.methods.clone(), paths: c.paths.clone() })
                    .collect(),
            },
        }
    }

    /// Where this manifest and the component's describe() disagree: the first
    /// field that differs, as (field, manifest says, component says).
    pub fn disagreement(&self, info: &AdapterInfo, contract: &str) -> Option<(String, String, String)> {
        let theirs = Manifest::from_describe(info, contract, &[]);
        let pairs: [(&str, String, String); 5] = [
            ("name", self.name.clone(), theirs.name.clone()),
            ("version", self.version.clone(), theirs.version.clone()),
            ("vendor", self.vendor.clone(), theirs.vendor.clone()),
            ("contract", self.contract.clone(), theirs.contract.clone()),
            ("describe", serde_json::to_string(&self.describe).unwrap_or_default(), serde_json::to_string(&theirs.describe).unwrap_or_default()),
        ];
        pairs.into_iter().find(|(_, a, b)| a != b).map(|(f, a, b)| (f.to_string(), a, b))
    }

    /// Name and version must be safe as path segments of the store.
    pub fn check_names(&self) -> Result<(), PackageError> {
        let ok_name = !self.name.is_empty() && self.name.len() <= 64 && self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(PackageError::Malformed(format!("the manifest's name `{}` is not 1-64 ASCII letters, digits, `-` or `_`", self.name.escape_debug())));
        }
        if semver::Version::parse(&self.version).is_err() || self.version.len() > 64 {
            return Err(PackageError::Malformed(format!("the manifest's version `{}` is not a semantic version (e.g. 1.2.0)", self.version.escape_debug())));
        }
        if self.format != FORMAT {
            return Err(PackageError::Malformed(format!("the manifest's format is `{}`; this gateway reads `{FORMAT}`", self.format.escape_debug())));
        }
        Ok(())
    }
}

/// A detached ed25519 signature over the manifest's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub alg: String,
    /// The signer's key id (see [`crate::sign::key_id`]).
    pub key_id: String,
    /// Base64 (standard, padded) of the 64 signature bytes.
    pub signature: String,
}

/// A package as read from its file: nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct Package {
    /// The manifest's exact bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub component: Vec<u8>,
    pub signature: Option<Signature>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Package {
    pub fn new(manifest: Manifest, component: Vec<u8>, signature: Option<Signature>) -> Package {
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        Package { manifest_bytes, manifest, component, signature }
    }

    /// Read a package file's bytes. `max_component` bounds the component (checked
    /// from the archive header, before it is read).
    pub fn read(bytes: &[u8], max_component: u64) -> Result<Package, PackageError> {
        let mut archive = tar::Archive::new(bytes);
        let (mut manifest, mut component, mut signature) = (None, None, None);
        let entries = archive.entries().map_err(|e| PackageError::Malformed(format!("not a package (a tar archive): {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| PackageError::Malformed(format!("not a package (a tar archive): {e}")))?;
            let path = entry.path().map_err(|e| PackageError::Malformed(format!("an entry's name is unreadable: {e}")))?.to_string_lossy().into_owned();
            let size = entry.size();
            let limit = if path == COMPONENT { max_component } else { MAX_SMALL_ENTRY };
            if size > limit {
                return Err(PackageError::TooLarge { what: path, size, limit });
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.by_ref().take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(|e| PackageError::Malformed(format!("reading {path}: {e}")))?;
            let slot = match path.as_str() {
                MANIFEST => &mut manifest,
                COMPONENT => &mut component,
                SIGNATURE => &mut signature,
                other => return Err(PackageError::Malformed(format!("unexpected entry `{}` (a package holds {MANIFEST}, {COMPONENT} and {SIGNATURE})", other.escape_debug()))),
            };
            if slot.replace(buf).is_some() {
                return Err(PackageError::Malformed(format!("{path} appears twice")));
            }
        }
        let manifest_bytes = manifest.ok_or_else(|| PackageError::Malformed(format!("no {MANIFEST} in the package")))?;
        let component = component.ok_or_else(|| PackageError::Malformed(format!("no {COMPONENT} in the package")))?;
        let parsed: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::Malformed(format!("{MANIFEST}: {e}")))?;
        let signature = match signature {
            None => None,
            Some(s) => Some(serde_json::from_slice::<Signature>(&s).map_err(|e| PackageError::Malformed(format!("{SIGNATURE}: {e}")))?),
        };
        parsed.check_names()?;
        Ok(Package { manifest_bytes, manifest: parsed, component, signature })
    }

    /// The package file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, data).expect("writing to memory");
        };
        add(MANIFEST, &self.manifest_bytes);
        add(COMPONENT, &self.component);
        if let Some(s) = &self.signature {
            add(SIGNATURE, &serde_json::to_vec_pretty(s).expect("a signature serializes"));
        }
        b.into_inner().expect("writing to memory")
    }

    /// The component is the one the manifest pins.
    pub fn check_digest(&self) -> Result<(), PackageError> {
        let found = sha256_hex(&self.component);
        if found != self.manifest.component.sha256 || self.component.len() as u64 != self.manifest.component.size {
            return Err(PackageError::DigestMismatch { expected: self.manifest.component.sha256.clone(), found });
        }
        Ok(())
    }
}
