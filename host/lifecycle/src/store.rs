//! The adapter store on disk: `<dir>/<name>/<version>/` holds `component.wasm`,
//! `manifest.json` and `signature.json` as installed, and `<dir>/<name>/state.json`
//! says which version is active, which was active before it, and whether the
//! adapter is disabled. Every write is a temporary file (or directory), fsynced,
//! then renamed, so a crash leaves the old state or the new, never a mixture.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::PackageError;
use crate::package::{Manifest, Package, Signature};

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// `<dir>/<name>/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreState {
    pub active: Option<String>,
    pub previous: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// A version on trial beside the active one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateState {
    pub version: String,
    /// `canary` or `shadow`.
    pub mode: String,
    /// Canary: the share of units it maps, 0-100.
    #[serde(default)]
    pub percent: f64,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> PackageError {
    move |e| PackageError::Store(format!("{what}: {e}"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("rename {}", tmp.display())))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// The folders in `dir` (not hidden ones: installs in progress).
fn subdirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Store {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, PackageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(format!("create the adapter store {}", dir.display())))?;
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.dir.join(name).join(version)
    }

    /// Keep a verified package. Installing the same version again with the same
    /// component is a no-op; with a different component it is refused (versions
    /// are immutable: publish a new one).
    pub fn put(&self, pkg: &Package) -> Result<bool, PackageError> {
        let m = &pkg.manifest;
        m.check_names()?;
        let target = self.version_dir(&m.name, &m.version);
        if target.is_dir() {
            let existing = self.get(&m.name, &m.version)?;
            if existing.manifest.component.sha256 == m.component.sha256 {
                return Ok(false);
            }
            return Err(PackageError::VersionExists { name: m.name.clone(), version: m.version.clone() });
        }
        let parent = self.dir.join(&m.name);
        std::fs::create_dir_all(&parent).map_err(io(format!("create {}", parent.display())))?;
        let tmp = parent.join(format!(".{}.installing", m.version));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        let files: [(&str, Option<Vec<u8>>); 3] = [
            ("component.wasm", Some(pkg.component.clone())),
            ("manifest.json", Some(pkg.manifest_bytes.clone())),
            ("signature.json", pkg.signature.as_ref().map(|s| serde_json::to_vec_pretty(s).expect("serializes"))),
        ];
        for (file, bytes) in files {
            if let Some(b) = bytes {
                let p = tmp.join(file);
                let mut f = std::fs::File::create(&p).map_err(io(format!("create {}", p.display())))?;
                f.write_all(&b).and_then(|_| f.sync_all()).map_err(io(format!("write {}", p.display())))?;
            }
        }
        sync_dir(&tmp);
        std::fs::rename(&tmp, &target).map_err(io(format!("rename into {}", target.display())))?;
        sync_dir(&parent);
        Ok(true)
    }

    /// An installed version, as a package (to be verified again before use: the
    /// trust store may have changed since it was installed).
    pub fn get(&self, name: &str, version: &str) -> Result<Package, PackageError> {
        let d = self.version_dir(name, version);
        if !d.is_dir() {
            return Err(PackageError::NotInstalled { name: name.into(), version: version.into() });
        }
        let read = |f: &str| std::fs::read(d.join(f));
        let manifest_bytes = read("manifest.json").map_err(io(format!("read {}/manifest.json", d.display())))?;
        let component = read("component.wasm").map_err(io(format!("read {}/component.wasm", d.display())))?;
        let signature = match read("signature.json") {
            Ok(b) => Some(serde_json::from_slice::<Signature>(&b).map_err(|e| PackageError::Store(format!("{}/signature.json: {e}", d.display())))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(format!("read {}/signature.json", d.display()))(e)),
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::Store(format!("{}/manifest.json: {e}", d.display())))?;
        Ok(Package { manifest_bytes, manifest, component, signature })
    }

    /// Installed versions of `name`, oldest first (semantic version order).
    pub fn versions(&self, name: &str) -> Vec<String> {
        let mut v = subdirs(&self.dir.join(name));
        v.sort_by(|a, b| match (semver::Version::parse(a), semver::Version::parse(b)) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        v
    }

    /// Names with anything in the store.
    pub fn names(&self) -> Vec<String> {
        let mut v = subdirs(&self.dir);
        v.sort();
        v
    }

    pub fn state(&self, name: &str) -> Result<StoreState, PackageError> {
        let p = self.dir.join(name).join("state.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PackageError::Store(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreState::default()),
            Err(e) => Err(io(format!("read {}", p.display()))(e)),
        }
    }

    pub fn set_state(&self, name: &str, state: &StoreState) -> Result<(), PackageError> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
        write_atomic(&d.join("state.json"), &serde_json::to_vec_pretty(state).expect("serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{ComponentRef, FORMAT, Facts, sha256_hex};

    fn pkg(version: &str, component: &[u8]) -> Package {
        Package::new(
            Manifest {
                format: FORMAT.into(),
                name: "acme".into(),
                version: version.into(),
                vendor: "Acme".into(),
                contract: "0.1.0".into(),
                component: ComponentRef { sha256: sha256_hex(component), size: component.len() as u64 },
                describe: Facts { hl7_message_types: vec![], fhir_resource_types: vec![], event_sources: vec![], actions: vec![], connections: vec![] },
            },
            component.to_vec(),
            None,
        )
    }

    #[test]
    fn versions_are_kept_immutable_and_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.put(&pkg("1.10.0", b"b")).unwrap());
        assert!(store.put(&pkg("1.2.0", b"a")).unwrap());
        assert!(!store.put(&pkg("1.2.0", b"a")).unwrap(), "same content again is a no-op");
        let e = store.put(&pkg("1.2.0", b"changed")).unwrap_err();
        assert!(matches!(e, PackageError::VersionExists { .. }), "{e}");
        assert_eq!(store.versions("acme"), vec!["1.2.0", "1.10.0"]);
        assert_eq!(store.get("acme", "1.2.0").unwrap().component, b"a");
        assert!(matches!(store.get("acme", "9.9.9").unwrap_err(), PackageError::NotInstalled { .. }));
        let s = StoreState { active: Some("1.10.0".into()), previous: Some("1.2.0".into()), disabled: false, candidate: None };
        store.set_state("acme", &s).unwrap();
        assert_eq!(store.state("acme").unwrap(), s);
        assert_eq!(store.names(), vec!["acme"]);
    }
}
