//! Contract versions: which ones this host runs, and which one a component targets.

use wasmtime::component::Component;
use wasmtime::Engine;

/// The contract versions this host can run (one entry per frozen `wit/vX.Y.Z` folder).
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

const PACKAGE: &str = "ehrgate:adapter";
const GUEST_PREFIX: &str = "ehrgate:adapter/guest@";

/// A contract version as `major.minor.patch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractVersion(pub semver::Version);

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PACKAGE}@{}", self.0)
    }
}

impl ContractVersion {
    /// Is a component built against `self` runnable by this host? Same rule as the
    /// component model's semver matching: equal major, and for 0.x equal minor.
    pub fn supported(&self) -> Option<ContractVersion> {
        if !self.0.pre.is_empty() || !self.0.build.is_empty() {
            return None;
        }
        SUPPORTED_CONTRACTS.iter().map(|s| semver::Version::parse(s).expect("valid constant")).find_map(|s| {
            let compatible = if s.major == 0 {
                self.0.major == 0 && self.0.minor == s.minor && self.0.patch <= s.patch
            } else {
                self.0.major == s.major && self.0.minor <= s.minor
            };
            compatible.then(|| ContractVersion(s))
        })
    }

    pub fn supported_list() -> String {
        SUPPORTED_CONTRACTS.iter().map(|v| format!("{PACKAGE}@{v}")).collect::<Vec<_>>().join(", ")
    }
}

/// Read the contract version from the component's exported `guest` interface name.
pub fn exported_version(engine: &Engine, component: &Component) -> Result<ContractVersion, String> {
    let ty = component.component_type();
    let mut others = Vec::new();
    for (name, _) in ty.exports(engine) {
        if let Some(v) = name.strip_prefix(GUEST_PREFIX) {
            return semver::Version::parse(v)
                .map(ContractVersion)
                .map_err(|e| format!("its export `{name}` has an invalid version: {e}"));
        }
        others.push(name.to_string());
    }
    Err(format!(
        "it exports no `{PACKAGE}/guest` interface (exports: {}); build it with ehrgate-sdk's export_adapter!",
        if others.is_empty() { "none".to_string() } else { others.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ContractVersion {
        ContractVersion(semver::Version::parse(s).unwrap())
    }

    #[test]
    fn compatible_versions() {
        assert!(v("0.1.0").supported().is_some());
        assert!(v("0.2.0").supported().is_none());
        assert!(v("0.1.1").supported().is_none(), "a newer patch than the host knows is not assumed");
        assert!(v("1.0.0").supported().is_none());
        assert!(v("0.1.0-rc1").supported().is_none(), "pre-releases are not the released contract");
        assert_eq!(v("0.9.0").to_string(), "ehrgate:adapter@0.9.0");
    }
}
