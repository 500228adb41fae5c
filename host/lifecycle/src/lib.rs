//! # ehrgate-lifecycle
//!
//! How an adapter gets into a running gateway and out again:
//!
//! - [`package`]: the package file (component + manifest + detached signature);
//! - [`sign`]: ed25519 publisher keys, signing, and the gateway's [`TrustStore`];
//! - [`store`]: the on-disk store `<dir>/<name>/<version>/` and which version is active;
//! - [`watch`]: a watched directory of packages;
//! - [`oci`]: push and pull packages through an OCI registry;
//! - [`manager`]: install (verify, compile, check describe() against the manifest,
//!   store), activate (compile first, then one atomic swap in the runtime's
//!   [`ehrgate_runtime::Registry`]), roll back, disable, list — each audited.
//!
//! A refused package never touches what is serving.

pub mod manager;
pub mod oci;
pub mod package;
pub mod sign;
pub mod store;
pub mod watch;

pub use manager::{Baseline, Installed, Listing, Manager, ManagerConfig, Swap, VersionInfo, check_package};
pub use package::{Manifest, Package};
pub use sign::{Signer, TrustStore};
pub use store::{CandidateState, Store, StoreState};

/// Why a package or a lifecycle operation was refused. Every message names the
/// reason and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("malformed package: {0}")]
    Malformed(String),
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("the package is unsigned; sign it (`ehrgate adapter sign`) with a key this gateway trusts, or set allow_unsigned = true for development")]
    Unsigned,
    #[error("the package is signed by key {key_id}, which is not in this gateway's trust store ([adapter_store] trusted_keys)")]
    UntrustedKey { key_id: String },
    #[error("the signature by key {key_id} does not verify: {reason}")]
    BadSignature { key_id: String, reason: String },
    #[error("the component does not match the manifest's digest (manifest sha256 {expected}, component sha256 {found}): it was altered after signing")]
    DigestMismatch { expected: String, found: String },
    #[error("the package is for contract ehrgate:adapter@{found}, which this gateway does not serve (it serves {supported})")]
    UnsupportedContract { found: String, supported: String },
    #[error("the manifest disagrees with the component's describe() on {field}: manifest `{manifest}`, component `{component}`")]
    ManifestMismatch { field: String, manifest: String, component: String },
    #[error("the component cannot be loaded: {0}")]
    Load(String),
    #[error("{name} {version} is already installed with a different component; versions are immutable, publish a new version")]
    VersionExists { name: String, version: String },
    #[error("{name} {version} is not installed")]
    NotInstalled { name: String, version: String },
    #[error("no adapter `{0}` is served, installed or built in")]
    Unknown(String),
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(String),
    #[error("{0}")]
    Invalid(String),
    #[error("key: {0}")]
    Key(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("the registry served digest {found}, not the pinned {expected}: refusing it")]
    PinnedDigest { expected: String, found: String },
    #[error("adapter store: {0}")]
    Store(String),
}

impl PackageError {
    /// A short, stable name for the reason (API answers, audit rows, tests).
    pub fn code(&self) -> &'static str {
        match self {
            PackageError::Malformed(_) => "malformed",
            PackageError::TooLarge { .. } => "too-large",
            PackageError::Unsigned => "unsigned",
            PackageError::UntrustedKey { .. } => "untrusted-key",
            PackageError::BadSignature { .. } => "bad-signature",
            PackageError::DigestMismatch { .. } => "digest-mismatch",
            PackageError::UnsupportedContract { .. } => "unsupported-contract",
            PackageError::ManifestMismatch { .. } => "manifest-mismatch",
            PackageError::Load(_) => "load-failed",
            PackageError::VersionExists { .. } => "version-exists",
            PackageError::NotInstalled { .. } => "not-installed",
            PackageError::Unknown(_) => "unknown-adapter",
            PackageError::NoPrevious(_) => "no-previous",
            PackageError::Invalid(_) => "invalid",
            PackageError::Key(_) => "key",
            PackageError::Registry(_) => "registry",
            PackageError::PinnedDigest { .. } => "digest-mismatch",
            PackageError::Store(_) => "store",
        }
    }
}
