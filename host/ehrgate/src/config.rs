//! `ehrgate.toml`: every setting has a default that works on one machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ehrgate_lake::{BatchConfig, Storage};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub lake: LakeSettings,
}

/// When lake writers commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSettings {
    /// Commit once this many rows are pending for a table.
    pub commit_rows: usize,
    /// ... or this long after the first pending row arrived.
    pub commit_age_ms: u64,
    /// Submissions queued per table before producers wait (back-pressure).
    pub queue: usize,
}

impl Default for LakeSettings {
    fn default() -> Self {
        let d = BatchConfig::default();
        LakeSettings { commit_rows: d.max_rows, commit_age_ms: d.max_age.as_millis() as u64, queue: d.queue }
    }
}

impl LakeSettings {
    pub fn batch(&self) -> BatchConfig {
        BatchConfig { max_rows: self.commit_rows.max(1), max_age: Duration::from_millis(self.commit_age_ms), queue: self.queue.max(1) }
    }
}

impl Config {
    /// `--config PATH`, else `./ehrgate.toml` when present, else the defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let path: Option<PathBuf> = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("ehrgate.toml")).filter(|p| p.is_file()),
        };
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}
