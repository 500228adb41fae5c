//! `ehrgate.toml`: every setting has a default that works on one machine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ehrgate_ingest::route::Rule;
use ehrgate_lake::{BatchConfig, SecretRef, Storage};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub lake: LakeSettings,
    /// `ehrgate serve`: the write-ahead log.
    #[serde(default)]
    pub wal: WalSettings,
    /// Adapters by name (the built-in ones need no entry unless they get config or
    /// grants).
    #[serde(default)]
    pub adapters: BTreeMap<String, AdapterEntry>,
    /// Named upstream EHR connections (base URL, auth, rate, retry, breaker).
    #[serde(default)]
    pub connections: Vec<ehrgate_connect::ConnectionConfig>,
    /// `ehrgate serve`: what it listens on. With none configured, one MLLP listener
    /// on 127.0.0.1:2575 routed to the reference adapter.
    #[serde(default)]
    pub listeners: Listeners,
    /// FHIR Bulk Data exports: where their state lives, and jobs per connection.
    #[serde(default)]
    pub bulk: BulkSettings,
    /// `ehrgate serve`: the admin HTTP server (adapter lifecycle). None: no server.
    pub admin: Option<AdminSettings>,
    /// Installed adapter packages and the publisher keys they must be signed by.
    #[serde(default)]
    pub adapter_store: AdapterStoreSettings,
    /// `ehrgate serve`: events that trigger adapter actions (docs/workflows.md).
    #[serde(default)]
    pub workflows: Vec<ehrgate_workflows::WorkflowSpec>,
    /// `ehrgate serve`: the agent door, an HTTP and MCP listener for agents and
    /// pipelines (docs/agent-door.md). None: no door.
    pub agent_door: Option<ehrgate_door::DoorSettings>,
    /// Principals, masking profiles, the pseudonym key (docs/governance.md).
    #[serde(default)]
    pub governance: ehrgate_govern::GovernanceSettings,
    /// The operations KPIs (gold/kpi_minute, docs/operations.md).
    #[serde(default)]
    pub kpi: ehrgate_kpi::KpiConfig,
    /// `ehrgate serve`: Kafka topics as sources, landed events to a topic
    /// (docs/serve.md, "Kafka"). None: no Kafka client.
    pub kafka: Option<KafkaEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaEntry {
    /// The brokers, `host:port[,host:port...]`.
    pub bootstrap: String,
    /// librdkafka client properties (TLS, SASL mechanism and user...); no secrets.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `sasl.password`: `env:NAME` or `file:/path`.
    pub sasl_password: Option<SecretRef>,
    #[serde(default)]
    pub sources: Vec<KafkaSourceEntry>,
    pub landed: Option<KafkaLandedEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceEntry {
    pub name: String,
    pub topics: Vec<String>,
    #[serde(default = "default_group")]
    pub group: String,
    /// `hl7` (one HL7v2 message per record) or `event`.
    pub kind: KafkaKind,
    pub adapter: String,
    pub max_in_flight: Option<usize>,
}

fn default_group() -> String {
    "ehrgate".into()
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaKind {
    Hl7,
    Event,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaLandedEntry {
    pub topic: String,
}

impl KafkaEntry {
    /// The client settings, the password resolved.
    pub fn client(&self) -> anyhow::Result<ehrgate_kafka::ClientSettings> {
        let sasl_password = match &self.sasl_password {
            Some(r) => Some(r.resolve().context("[kafka] sasl_password")?),
            None => None,
        };
        let c = ehrgate_kafka::ClientSettings { bootstrap: self.bootstrap.clone(), properties: self.properties.clone(), sasl_password };
        c.check()?;
        Ok(c)
    }

    pub fn sources(&self) -> anyhow::Result<Vec<ehrgate_kafka::SourceSettings>> {
        let mut names = std::collections::HashSet::new();
        self.sources
            .iter()
            .map(|e| {
                anyhow::ensure!(names.insert(e.name.as_str()), "[[kafka.sources]]: two sources are named `{}`", e.name);
                let s = ehrgate_kafka::SourceSettings {
                    name: e.name.clone(),
                    topics: e.topics.clone(),
                    group: e.group.clone(),
                    kind: match e.kind {
                        KafkaKind::Hl7 => ehrgate_kafka::SourceKind::Hl7,
                        KafkaKind::Event => ehrgate_kafka::SourceKind::Event,
                    },
                    adapter: e.adapter.clone(),
                    max_in_flight: e.max_in_flight.unwrap_or(10_000),
                };
                s.check()?;
                Ok(s)
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// `host:port`; loopback unless `allow_remote`. Port 0 picks a free port.
    #[serde(default = "admin_bind")]
    pub bind: String,
    #[serde(default)]
    pub allow_remote: bool,
    /// The admin token, by reference: `env:NAME` or `file:/path`.
    pub token: SecretRef,
    /// A read-only token for the console's data, by reference (optional).
    pub viewer_token: Option<SecretRef>,
    /// Per-unit metrics on the hot path (listener counters, ACK codes, latency
    /// histograms); off only to measure what they cost (docs/operations.md).
    #[serde(default = "yes")]
    pub metrics: bool,
}

fn yes() -> bool {
    true
}

fn admin_bind() -> String {
    "127.0.0.1:9771".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterStoreSettings {
    /// Default: `<storage root>/adapters` for a local lake, else `ehrgate-adapters`.
    pub dir: Option<PathBuf>,
    /// Publisher keys: `ed25519:<base64>`, or `file:/path` to a public key file.
    pub trusted_keys: Vec<String>,
    /// Development only: accept unsigned packages (logged loudly at start).
    pub allow_unsigned: bool,
    /// The largest component a package may carry.
    pub max_component_mb: u64,
    /// `ehrgate serve` installs packages (`*.ehrpkg`) dropped here.
    pub watch_dir: Option<PathBuf>,
    /// ... and activates them at once.
    pub activate_on_drop: bool,
    /// Where compiled adapters are kept, so that each process (`serve`, `ingest`,
    /// every CLI job) does not compile them again. Default: `$XDG_CACHE_HOME/ehrgate/compiled`
    /// (else `~/.cache/ehrgate/compiled`); `""`: off; a relative path is taken from
    /// the working directory. It and every directory above it must be writable by
    /// no one but this user (and root): what is loaded from it runs as native code.
    /// If not, adapters are compiled at each start, with a warning.
    pub compile_cache: Option<PathBuf>,
}

impl Default for AdapterStoreSettings {
    fn default() -> Self {
        AdapterStoreSettings { dir: None, trusted_keys: vec![], allow_unsigned: false, max_component_mb: 32, watch_dir: None, activate_on_drop: false, compile_cache: None }
    }
}

impl AdapterStoreSettings {
    pub fn dir(&self, storage: &Storage) -> PathBuf {
        match (&self.dir, storage) {
            (Some(d), _) => d.clone(),
            (None, Storage::Local { root }) => root.join("adapters"),
            (None, _) => PathBuf::from("ehrgate-adapters"),
        }
    }

    /// The compile cache's directory, if any (see `compile_cache`).
    pub fn compile_cache(&self) -> Option<PathBuf> {
        match &self.compile_cache {
            Some(d) if d.as_os_str().is_empty() => None,
            Some(d) => std::path::absolute(d).ok(),
            None => {
                // (a relative XDG_CACHE_HOME or HOME is ignored, as the XDG rules say)
                let env = |k| std::env::var_os(k).map(PathBuf::from).filter(|p| p.is_absolute());
                env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache"))).map(|c| c.join("ehrgate").join("compiled"))
            }
        }
    }

    /// The trust store these settings describe.
    pub fn trust(&self) -> anyhow::Result<ehrgate_lifecycle::TrustStore> {
        let mut t = ehrgate_lifecycle::TrustStore::default();
        t.allow_unsigned = self.allow_unsigned;
        for k in &self.trusted_keys {
            let text = match k.strip_prefix("file:") {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("adapter_store.trusted_keys: cannot read {path}"))?,
                None => k.clone(),
            };
            let key = ehrgate_lifecycle::sign::read_public(&text).with_context(|| format!("adapter_store.trusted_keys: `{}`", k.chars().take(60).collect::<String>()))?;
            t.add(key);
        }
        Ok(t)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkSettings {
    /// Per connection: the export in progress (status URL, files done) and the last
    /// transaction time (the next `_since`). Local disk.
    pub state_dir: PathBuf,
    /// Files downloaded at once.
    pub parallel: usize,
    /// NDJSON lines per batch (adapter call and commit).
    pub batch_lines: usize,
    pub jobs: Vec<BulkJob>,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings { state_dir: PathBuf::from("ehrgate-bulk"), parallel: 4, batch_lines: 5_000, jobs: vec![] }
    }
}

/// An export of one connection: what `ehrgate bulk export --connection NAME` does
/// by default, and what `ehrgate serve` runs every `interval_s` (incrementally).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkJob {
    pub connection: String,
    #[serde(default = "reference")]
    pub adapter: String,
    /// Group-level export of this group (else system level, or Patient level with
    /// `patient_level = true`).
    pub group: Option<String>,
    #[serde(default)]
    pub patient_level: bool,
    /// `_type`; empty: every type the server exports.
    #[serde(default)]
    pub types: Vec<String>,
    /// `ehrgate serve` runs the export every this many seconds (none: only on demand).
    pub interval_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSettings {
    /// Directory of the write-ahead log (local disk: it is fsynced).
    pub dir: PathBuf,
    /// Units received but not yet committed to the lake before listeners stop
    /// reading (back-pressure).
    pub max_pending: usize,
    pub segment_mb: u64,
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings { dir: PathBuf::from("ehrgate-wal"), max_pending: 100_000, segment_mb: 64 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterEntry {
    /// A component file (.wasm), or a built-in adapter's name. None: versions come
    /// only from the adapter store (installed and activated through the admin API);
    /// until one is, its units are quarantined.
    pub component: Option<String>,
    /// Values the adapter reads with config-get.
    #[serde(default)]
    pub config: HashMap<String, String>,
    /// What the adapter may call: `[{ connection, methods, paths }]`. None by default.
    #[serde(default)]
    pub grants: ehrgate_runtime::Grants,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    #[serde(default)]
    pub mllp: Vec<MllpEntry>,
    #[serde(default)]
    pub drops: Vec<DropEntry>,
    pub webhooks: Option<WebhookEntry>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FramingKind {
    #[default]
    Mllp,
    Custom,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AckKind {
    #[default]
    Hl7,
    /// MLLP release 2 commit ACK/NAK (Cloverleaf MLLP2).
    Commit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpEntry {
    pub name: Option<String>,
    /// `host:port`; port 0 picks a free port (printed at start).
    pub bind: String,
    /// The adapter for messages no route matches.
    pub adapter: Option<String>,
    #[serde(default)]
    pub routes: Vec<Rule>,
    #[serde(default)]
    pub framing: FramingKind,
    /// Custom framing: start and end blocks in hex, e.g. "0b" and "1c0d".
    pub start_hex: Option<String>,
    pub end_hex: Option<String>,
    #[serde(default)]
    pub ack: AckKind,
    pub max_message_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    /// Connections at once from one peer address (default 32).
    pub max_connections_per_peer: Option<usize>,
    pub idle_timeout_s: Option<u64>,
    /// A frame must be complete within this long of its first byte (default 60).
    pub frame_timeout_s: Option<u64>,
    pub max_in_flight: Option<usize>,
    /// Follow MSH-15 (NE / ER / SU) for enhanced-mode accept ACKs; by default every
    /// frame gets a reply.
    #[serde(default)]
    pub honour_msh15: bool,
    /// TLS for this listener: PEM certificate chain and private key files.
    pub tls: Option<TlsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsEntry {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropEntry {
    pub name: String,
    pub dir: PathBuf,
    #[serde(default = "reference")]
    pub adapter: String,
    /// A file is complete once unchanged this long...
    pub stable_ms: Option<u64>,
    /// ...or once `<file><done_suffix>` exists (e.g. ".done").
    pub done_suffix: Option<String>,
    pub poll_ms: Option<u64>,
    pub processed_dir: Option<PathBuf>,
    /// Units committed per step.
    pub chunk: Option<usize>,
}

fn reference() -> String {
    "reference".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    pub bind: String,
    pub max_body_bytes: Option<usize>,
    /// Connections at once (default 256); more are closed at once.
    pub max_connections: Option<usize>,
    /// Request headers must arrive within this long (default 10).
    pub header_timeout_s: Option<u64>,
    /// A whole request, body included, within this long (default 60).
    pub request_timeout_s: Option<u64>,
    #[serde(default)]
    pub sources: Vec<WebhookSourceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceEntry {
    pub name: String,
    /// `env:NAME` or `file:/path`.
    pub secret: SecretRef,
    #[serde(default = "reference")]
    pub adapter: String,
    /// Replay window in seconds (default 300).
    pub window_s: Option<u64>,
    /// Request headers handed to the adapter with the body (names or `Prefix-*`),
    /// e.g. `["X-Mirth-*"]` for a Mirth HTTP Sender.
    #[serde(default)]
    pub forward_headers: Vec<String>,
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
    /// Write silver tables with deletion vectors: an update marks the row it
    /// replaces deleted instead of rewriting its file, so a commit costs the same
    /// however large silver is (docs/tables.md). Readers need deletion-vector
    /// support (Databricks Runtime 12.2+, Delta Lake 2.3+, delta-rs `scan()`).
    pub deletion_vectors: bool,
}

impl Default for LakeSettings {
    fn default() -> Self {
        let d = BatchConfig::default();
        LakeSettings { commit_rows: d.max_rows, commit_age_ms: d.max_age.as_millis() as u64, queue: d.queue, deletion_vectors: d.deletion_vectors }
    }
}

impl LakeSettings {
    /// For batch jobs (`ingest`, `bulk export`, the demo's files): commit as soon as
    /// rows are queued; their producers wait for each commit.
    pub fn eager_batch(&self) -> BatchConfig {
        BatchConfig { eager: true, ..self.batch() }
    }

    pub fn batch(&self) -> BatchConfig {
        BatchConfig { max_rows: self.commit_rows.max(1), max_age: Duration::from_millis(self.commit_age_ms), queue: self.queue.max(1), eager: false, deletion_vectors: self.deletion_vectors }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration shown in README.md parses, so the documentation stays true.
    #[test]
    fn the_readme_example_parses() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let start = readme.find("```toml\n[storage]").expect("README has the config example") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let cfg: Config = toml::from_str(&readme[start..end]).unwrap_or_else(|e| panic!("README config: {e}"));
        assert_eq!(cfg.listeners.mllp.len(), 1);
        assert_eq!(cfg.connections.len(), 1);
        assert_eq!(cfg.adapters["epic"].grants.0.len(), 1);
        assert_eq!(cfg.wal.max_pending, 100_000);
        assert_eq!(cfg.workflows.len(), 1);
        assert!(cfg.workflows[0].check().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[wal]\nmax_pendng = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_pendng"), "{err}");
    }
}
