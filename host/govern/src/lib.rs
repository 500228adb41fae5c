//! PHI governance (DESIGN.md §9): who may read what, how it is masked, and proof of
//! every access. `lake` stays storage; reads by `ehrgate sql`, the agent door and
//! exports pass through here.
//!
//! - [`verify`]: walks the audit table's hash chain (sealed by the lake's audit
//!   writer, `ehrgate_lake::audit`) and names the first broken row.

pub mod catalog;
pub mod evidence;
pub mod export;
pub mod keys;
pub mod mask;
pub mod policy;
pub mod retention;
pub mod sql;
pub mod verify;

pub use policy::{GovernanceSettings, Policy, Principal, Profile};
pub use verify::{Break, Verdict, verify};

/// Errors a user can cause or meet.
#[derive(Debug, thiserror::Error)]
pub enum GovernError {
    #[error(transparent)]
    Lake(#[from] ehrgate_lake::LakeError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Refused(String),
}
