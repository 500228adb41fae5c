//! Install, activate, roll back and disable adapter versions in a running
//! gateway. Operations are serialised; compiling happens before the swap, off
//! the async threads, so a slow compile never holds up mapping or ACKs; the swap
//! itself is one pointer replacement in the [`Registry`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ehrgate_runtime::{Adapter, AdapterSettings, AuditEvent, AuditSink, Candidate, CandidateMode, ContractVersion, LoadError, Registry, Runtime, now_ms, split_pin};
use serde::Serialize;

use crate::PackageError;
use crate::package::Package;
use crate::sign::{Signer, TrustStore};
use crate::store::{CandidateState, Store};

/// The version of an adapter the operator's configuration provides (a built-in
/// component, or a file `[adapters.NAME] component` names): trusted by
/// construction, like the binary itself.
#[derive(Clone)]
pub struct Baseline {
    /// `built-in` or the file's path.
    pub origin: String,
    pub bytes: Arc<[u8]>,
}

pub struct ManagerConfig {
    pub store_dir: PathBuf,
    pub trust: TrustStore,
    pub max_component_bytes: u64,
    /// Per adapter name: the configured or built-in version.
    pub baselines: HashMap<String, Baseline>,
    /// Per adapter name: config values, grants and limits (every version gets the
    /// same).
    pub settings: HashMap<String, AdapterSettings>,
}

/// What an activation did.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub name: String,
    pub from: Option<String>,
    pub to: String,
    /// The signer's key id, `built-in`, `configured` or `unsigned`.
    pub signer: String,
    /// Compile (and describe) time; 0 when the version was already compiled.
    pub compile_ms: f64,
    /// The swap itself: from the compiled component being ready to new calls
    /// taking it.
    pub swap_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: String,
    /// `built-in`, `configured` or `store`.
    pub origin: String,
    /// Key id of the signer (store versions), or `unsigned`.
    pub signer: Option<String>,
    /// `active`, `previous`, `pinned`, `installed`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub name: String,
    pub active: Option<String>,
    pub previous: Option<String>,
    pub disabled: bool,
    pub candidate: Option<CandidateState>,
    pub versions: Vec<VersionInfo>,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub signer: String,
    /// False when this exact version was installed already.
    pub new: bool,
    pub compile_ms: f64,
    pub activated: Option<Swap>,
}

pub struct Manager {
    runtime: Runtime,
    registry: Arc<Registry>,
    store: Store,
    trust: TrustStore,
    max_component: u64,
    baselines: HashMap<String, Baseline>,
    settings: HashMap<String, AdapterSettings>,
    audit: Arc<dyn AuditSink>,
    /// One lifecycle operation at a time.
    ops: tokio::sync::Mutex<()>,
    /// Compiled versions kept for a quick activation: the last one installed and
    /// the last one replaced (for rollback), per name.
    warm: Mutex<HashMap<String, Vec<(Adapter, String)>>>,
    /// The configured version's number per name, once compiled.
    baseline_versions: Mutex<HashMap<String, String>>,
}

const WARM_PER_NAME: usize = 2;


fn load_error(e: LoadError) -> PackageError {
    match e {
        LoadError::UnsupportedContract { found, supported, .. } => {
            PackageError::UnsupportedContract { found: found.trim_start_matches("ehrgate:adapter@").to_string(), supported }
        }
        other => PackageError::Load(other.to_string()),
    }
}

impl Manager {
    pub fn new(runtime: Runtime, registry: Arc<Registry>, audit: Arc<dyn AuditSink>, cfg: ManagerConfig) -> Result<Manager, PackageError> {
        if cfg.trust.allow_unsigned {
            tracing::warn!("adapter store: allow_unsigned = true: UNSIGNED ADAPTER PACKAGES WILL BE ACCEPTED. Development only; never in production.");
        }
        Ok(Manager {
            runtime,
            registry,
            store: Store::open(cfg.store_dir)?,
            trust: cfg.trust,
            max_component: cfg.max_component_bytes,
            baselines: cfg.baselines,
            settings: cfg.settings,
            audit,
            ops: tokio::sync::Mutex::new(()),
            warm: Mutex::new(HashMap::new()),
            baseline_versions: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn audit(&self, who: &str, action: &str, target: &str, outcome: String) {
        self.audit.record(AuditEvent {
            at_ms: now_ms(),
            actor: who.to_string(),
            action: action.to_string(),
            connection: "admin".into(),
            method: String::new(),
            path: target.to_string(),
            outcome,
        });
    }

    fn settings_for(&self, name: &str) -> AdapterSettings {
        let mut s = self.settings.get(name).cloned().unwrap_or_default();
        // The manifest (checked against describe()) names the adapter; the
        // comparison below gives the better message.
        s.name = None;
        s
    }

    async fn compile(&self, what: &str, name: &str, component: &[u8], pkg: Option<&Package>) -> Result<Adapter, PackageError> {
        compile(&self.runtime, self.settings_for(name), what, name, component, pkg).await
    }

    async fn check(&self, bytes: &[u8]) -> Result<(Package, Signer, Adapter, f64), PackageError> {
        let settings = Package::read(bytes, self.max_component).map(|p| self.settings_for(&p.manifest.name)).unwrap_or_default();
        check_package(&self.runtime, &self.trust, self.max_component, settings, bytes).await
    }

    /// Verify a package and keep it in the store; with `activate`, swap it in.
    pub async fn install(&self, bytes: &[u8], who: &str, activate: bool) -> Result<Installed, PackageError> {
        let _op = self.ops.lock().await;
        let checked = self.check(bytes).await;
        let (pkg, signer, adapter, compile_ms) = match checked {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("adapter package refused: {e}");
                self.audit(who, "adapter.install", "(package)", format!("refused: {}: {e}", e.code()));
                return Err(e);
            }
        };
        let (name, version) = (pkg.manifest.name.clone(), pkg.manifest.version.clone());
        let target = format!("{name}@{version}");
        let new = match self.store.put(&pkg) {
            Ok(n) => n,
            Err(e) => {
                self.audit(who, "adapter.install", &target, format!("refused: {}: {e}", e.code()));
                return Err(e);
            }
        };
        self.audit(who, "adapter.install", &target, format!("ok: installed, signed by {signer}, {} bytes", pkg.component.len()));
        tracing::info!(adapter = %name, %version, %signer, "adapter package installed");
        let activated = if activate {
            Some(self.swap_in(&name, adapter, signer.to_string(), compile_ms, who).await?)
        } else {
            self.keep_warm(&name, adapter, signer.to_string());
            None
        };
        Ok(Installed { name, version, signer: signer.to_string(), new, compile_ms, activated })
    }

    fn keep_warm(&self, name: &str, adapter: Adapter, signer: String) {
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        let list = warm.entry(name.to_string()).or_default();
        list.retain(|(a, _)| a.info().version != adapter.info().version);
        list.push((adapter, signer));
        while list.len() > WARM_PER_NAME {
            list.remove(0);
        }
    }

    fn take_warm(&self, name: &str, version: &str) -> Option<(Adapter, String)> {
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        let list = warm.get_mut(name)?;
        let i = list.iter().position(|(a, _)| a.info().version == version)?;
        Some(list.remove(i))
    }

    /// Compile `name`'s `version` from the store (verified again: the trust store
    /// may have changed) or from its baseline.
    async fn obtain(&self, name: &str, version: &str) -> Result<(Adapter, String, f64), PackageError> {
        if let Some((a, signer)) = self.take_warm(name, version) {
            return Ok((a, signer, 0.0));
        }
        let t = Instant::now();
        match self.store.get(name, version) {
            Ok(pkg) => {
                let signer = self.trust.verify(&pkg)?;
                let a = self.compile(&format!("{name}@{version} (store)"), name, &pkg.component, Some(&pkg)).await?;
                Ok((a, signer.to_string(), t.elapsed().as_secs_f64() * 1e3))
            }
            Err(PackageError::NotInstalled { .. }) => {
                let base = self.baselines.get(name).ok_or_else(|| PackageError::NotInstalled { name: name.into(), version: version.into() })?;
                let a = self.compile(&format!("{name} ({})", base.origin), name, &base.bytes, None).await?;
                self.baseline_versions.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), a.info().version.clone());
                if a.info().version != version {
                    return Err(PackageError::NotInstalled { name: name.into(), version: version.into() });
                }
                Ok((a, base_signer(base), t.elapsed().as_secs_f64() * 1e3))
            }
            Err(e) => Err(e),
        }
    }

    /// Make `version` the active version of `name`.
    pub async fn activate(&self, name: &str, version: &str, who: &str) -> Result<Swap, PackageError> {
        check_ref(name, Some(version))?;
        let _op = self.ops.lock().await;
        let target = format!("{name}@{version}");
        if self.registry.active_version(name).as_deref() == Some(version) && !self.store.state(name)?.disabled {
            let signer = self.signer_of(name, version);
            self.audit(who, "adapter.activate", &target, "ok: already active".into());
            return Ok(Swap { name: name.into(), from: Some(version.into()), to: version.into(), signer, compile_ms: 0.0, swap_us: 0.0 });
        }
        let (adapter, signer, compile_ms) = match self.obtain(name, version).await {
            Ok(x) => x,
            Err(e) => {
                self.audit(who, "adapter.activate", &target, format!("refused: {}: {e}", e.code()));
                return Err(e);
            }
        };
        self.swap_in(name, adapter, signer, compile_ms, who).await
    }

    /// Record the new state, then swap. (Called with `ops` held.)
    async fn swap_in(&self, name: &str, adapter: Adapter, signer: String, compile_ms: f64, who: &str) -> Result<Swap, PackageError> {
        let to = adapter.info().version.clone();
        let from = self.registry.active_version(name);
        let mut state = self.store.state(name)?;
        if from.as_deref() != Some(to.as_str()) {
            state.previous = from.clone().or(state.previous);
        }
        state.active = Some(to.clone());
        state.disabled = false;
        let promoted = state.candidate.as_ref().is_some_and(|c| c.version == to);
        if promoted {
            state.candidate = None;
        }
        // The state first: if it cannot be written nothing is swapped, so a restart
        // serves what is serving now.
        if let Err(e) = self.store.set_state(name, &state) {
            self.audit(who, "adapter.activate", &format!("{name}@{to}"), format!("refused: {}: {e}", e.code()));
            return Err(e);
        }
        let t = Instant::now();
        let old = self.registry.activate(name, adapter);
        let swap_us = t.elapsed().as_secs_f64() * 1e6;
        if promoted {
            self.registry.set_candidate(name, None);
        }
        if let Some(old) = old
            && old.info().version != to
        {
            let old_signer = self.signer_of(name, &old.info().version);
            self.keep_warm(name, old, old_signer);
        }
        let from_text = from.clone().unwrap_or_else(|| "(none)".into());
        self.audit(who, "adapter.activate", &format!("{name}@{to}"), format!("ok: {name} {from_text} -> {to}, key {signer}"));
        tracing::info!(adapter = %name, from = %from_text, %to, %signer, compile_ms, swap_us, "adapter version activated");
        Ok(Swap { name: name.into(), from, to, signer, compile_ms, swap_us })
    }

    /// Go back to the version that was active before the current one.
    pub async fn rollback(&self, name: &str, who: &str) -> Result<Swap, PackageError> {
        check_ref(name, None)?;
        let state = self.store.state(name)?;
        let Some(previous) = state.previous.clone() else {
            let e = PackageError::NoPrevious(name.into());
            self.audit(who, "adapter.rollback", name, format!("refused: {}: {e}", e.code()));
            return Err(e);
        };
        self.activate(name, &previous, &format!("{who} (rollback)")).await
    }

    /// Put `version` beside the active version of `name`: as a canary taking
    /// `percent` of the units, or in shadow (every unit mapped by both, only the
    /// active version's output written, differences in `ops/shadow_diffs`).
    pub async fn set_candidate(&self, name: &str, version: &str, mode: CandidateMode, who: &str) -> Result<CandidateState, PackageError> {
        check_ref(name, Some(version))?;
        let _op = self.ops.lock().await;
        let target = format!("{name}@{version}");
        let refuse = |e: PackageError| {
            self.audit(who, "adapter.candidate", &target, format!("refused: {}: {e}", e.code()));
            e
        };
        let Some(active) = self.registry.active_version(name) else { return Err(refuse(PackageError::Unknown(name.into()))) };
        if active == version {
            return Err(refuse(PackageError::Invalid(format!("{name} {version} is the active version already; a candidate is another version"))));
        }
        if let CandidateMode::Canary { percent } = mode
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(refuse(PackageError::Invalid(format!("a canary percentage is between 0 and 100, not {percent}"))));
        }
        let (adapter, signer, _) = self.obtain(name, version).await.map_err(refuse)?;
        let cs = match mode {
            CandidateMode::Canary { percent } => CandidateState { version: version.into(), mode: "canary".into(), percent },
            CandidateMode::Shadow => CandidateState { version: version.into(), mode: "shadow".into(), percent: 0.0 },
        };
        let mut state = self.store.state(name)?;
        state.candidate = Some(cs.clone());
        self.store.set_state(name, &state).map_err(refuse)?;
        if let Some(old) = self.registry.set_candidate(name, Some(Candidate { adapter, mode })) {
            let s = self.signer_of(name, &old.adapter.info().version);
            self.keep_warm(name, old.adapter, s);
        }
        let how = match mode {
            CandidateMode::Canary { percent } => format!("canary {percent}%"),
            CandidateMode::Shadow => "shadow".into(),
        };
        self.audit(who, "adapter.candidate", &target, format!("ok: {name} {version} {how} beside {active}, key {signer}"));
        tracing::info!(adapter = %name, %version, %how, "adapter candidate set");
        Ok(cs)
    }

    /// End a canary or shadow trial: every unit goes to the active version.
    pub async fn clear_candidate(&self, name: &str, who: &str) -> Result<(), PackageError> {
        check_ref(name, None)?;
        let _op = self.ops.lock().await;
        let mut state = self.store.state(name)?;
        let was = state.candidate.take();
        self.store.set_state(name, &state)?;
        if let Some(old) = self.registry.set_candidate(name, None) {
            let s = self.signer_of(name, &old.adapter.info().version);
            self.keep_warm(name, old.adapter, s);
        }
        let what = was.map(|c| format!("ok: {name} {} {} ended", c.version, c.mode)).unwrap_or_else(|| "ok: no candidate".into());
        self.audit(who, "adapter.candidate", name, what);
        Ok(())
    }

    /// Stop serving `name`: its units are quarantined (AE, kept, reprocessable)
    /// and its file drops wait, until a version is activated again.
    pub async fn disable(&self, name: &str, who: &str) -> Result<(), PackageError> {
        check_ref(name, None)?;
        let _op = self.ops.lock().await;
        if self.registry.active_version(name).is_none() {
            let e = PackageError::Unknown(name.into());
            self.audit(who, "adapter.disable", name, format!("refused: {}: {e}", e.code()));
            return Err(e);
        }
        let mut state = self.store.state(name)?;
        state.disabled = true;
        if state.active.is_none() {
            state.active = self.registry.active_version(name);
        }
        self.store.set_state(name, &state)?;
        self.registry.disable(name);
        self.audit(who, "adapter.disable", name, "ok: disabled".into());
        tracing::warn!(adapter = %name, "adapter disabled: its units are quarantined until a version is activated");
        Ok(())
    }

    fn signer_of(&self, name: &str, version: &str) -> String {
        match self.store.get(name, version) {
            Ok(p) => p.signature.map(|s| s.key_id).unwrap_or_else(|| "unsigned".into()),
            Err(_) => self.baselines.get(name).map(base_signer).unwrap_or_else(|| "unknown".into()),
        }
    }

    /// At start: serve what the store says is active for each name a route uses
    /// (else its configured or built-in version), and load pinned versions.
    /// A store version that no longer verifies is reported and the configured
    /// version serves instead. Returns (reference, label) per loaded reference.
    pub async fn start(&self, references: &[String], optional: &[String]) -> Result<Vec<(String, String)>, PackageError> {
        let mut out = Vec::new();
        for reference in references {
            let (name, pin) = split_pin(reference);
            if let Some(v) = pin {
                let (a, _, _) = self.obtain(name, v).await?;
                out.push((reference.clone(), a.label().to_string()));
                self.registry.pin(name, a);
                continue;
            }
            if self.registry.active_version(name).is_some() {
                continue;
            }
            let state = self.store.state(name)?;
            let mut chosen = None;
            if let Some(v) = &state.active {
                match self.obtain(name, v).await {
                    Ok((a, _, _)) => chosen = Some(a),
                    Err(e) => tracing::error!(adapter = %name, version = %v, "the store's active version cannot be served ({e}); serving the configured version instead"),
                }
            }
            if chosen.is_none()
                && let Some(base) = self.baselines.get(name)
            {
                let a = self.compile(&format!("{name} ({})", base.origin), name, &base.bytes, None).await?;
                self.baseline_versions.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), a.info().version.clone());
                chosen = Some(a);
            }
            match chosen {
                Some(a) => {
                    out.push((reference.clone(), a.label().to_string()));
                    self.registry.activate(name, a);
                    if state.disabled {
                        self.registry.disable(name);
                    }
                    if let Some(c) = &state.candidate {
                        let mode = if c.mode == "shadow" { CandidateMode::Shadow } else { CandidateMode::Canary { percent: c.percent } };
                        match self.obtain(name, &c.version).await {
                            Ok((ca, _, _)) => {
                                out.push((format!("{reference} ({} candidate)", c.mode), ca.label().to_string()));
                                self.registry.set_candidate(name, Some(Candidate { adapter: ca, mode }));
                            }
                            Err(e) => tracing::error!(adapter = %name, version = %c.version, "the candidate cannot be served ({e}); every unit goes to the active version"),
                        }
                    }
                }
                None if optional.iter().any(|o| o == name) => {
                    tracing::warn!(adapter = %name, "no version installed yet: its units are quarantined until one is installed and activated");
                }
                None => return Err(PackageError::Unknown(name.into())),
            }
        }
        Ok(out)
    }

    /// Every adapter served or installed, with its versions.
    pub fn list(&self) -> Vec<Listing> {
        let served = self.registry.state();
        let mut names: Vec<String> = served.keys().cloned().collect();
        for n in self.store.names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names.sort();
        let baseline_versions = self.baseline_versions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        names
            .into_iter()
            .map(|name| {
                let slot = served.get(&name);
                let state = self.store.state(&name).unwrap_or_default();
                let active = slot.and_then(|s| s.active.clone());
                let pinned = slot.map(|s| s.pinned.clone()).unwrap_or_default();
                let mut versions: BTreeMap<String, VersionInfo> = BTreeMap::new();
                let role = |v: &str| {
                    if active.as_deref() == Some(v) {
                        "active"
                    } else if state.previous.as_deref() == Some(v) {
                        "previous"
                    } else if state.candidate.as_ref().is_some_and(|c| c.version == v) {
                        "candidate"
                    } else if pinned.iter().any(|p| p == v) {
                        "pinned"
                    } else {
                        "installed"
                    }
                    .to_string()
                };
                if let (Some(base), Some(v)) = (self.baselines.get(&name), baseline_versions.get(&name)) {
                    versions.insert(v.clone(), VersionInfo { version: v.clone(), origin: base_signer(base), signer: None, state: role(v) });
                }
                for v in self.store.versions(&name) {
                    let signer = self.store.get(&name, &v).ok().map(|p| p.signature.map(|s| s.key_id).unwrap_or_else(|| "unsigned".into()));
                    versions.insert(v.clone(), VersionInfo { version: v.clone(), origin: "store".into(), signer, state: role(&v) });
                }
                Listing {
                    name: name.clone(),
                    active,
                    previous: state.previous.clone(),
                    disabled: slot.map(|s| s.disabled).unwrap_or(state.disabled),
                    candidate: state.candidate.clone(),
                    versions: versions.into_values().collect(),
                }
            })
            .collect()
    }
}

/// Compile `component` as `name` and check what its describe() says against
/// `pkg`'s manifest (or, with no package, that it calls itself `name`).
async fn compile(runtime: &Runtime, settings: AdapterSettings, what: &str, name: &str, component: &[u8], pkg: Option<&Package>) -> Result<Adapter, PackageError> {
    let adapter = runtime.load(what, component, settings).await.map_err(load_error)?;
    let info = adapter.info();
    match pkg {
        Some(p) => {
            let contract = adapter.contract().0.to_string();
            if let Some((field, manifest, component)) = p.manifest.disagreement(info, &contract) {
                return Err(PackageError::ManifestMismatch { field, manifest, component });
            }
        }
        None if info.name != name => {
            return Err(PackageError::ManifestMismatch { field: "name".into(), manifest: name.into(), component: info.name.clone() });
        }
        None => {}
    }
    Ok(adapter)
}

/// Read, verify and compile a package: everything short of storing it. Returns
/// the package, its signer, the compiled adapter and the compile time (ms).
pub async fn check_package(runtime: &Runtime, trust: &TrustStore, max_component: u64, settings: AdapterSettings, bytes: &[u8]) -> Result<(Package, Signer, Adapter, f64), PackageError> {
    let pkg = Package::read(bytes, max_component)?;
    let signer = trust.verify(&pkg)?;
    let contract = semver::Version::parse(&pkg.manifest.contract)
        .map_err(|e| PackageError::Malformed(format!("the manifest's contract `{}` is not a version: {e}", pkg.manifest.contract.escape_debug())))?;
    if ContractVersion(contract).supported().is_none() {
        return Err(PackageError::UnsupportedContract { found: pkg.manifest.contract.clone(), supported: ContractVersion::supported_list() });
    }
    let t = Instant::now();
    let what = format!("{}@{} (package)", pkg.manifest.name, pkg.manifest.version);
    let adapter = compile(runtime, settings, &what, &pkg.manifest.name, &pkg.component, Some(&pkg)).await?;
    Ok((pkg, signer, adapter, t.elapsed().as_secs_f64() * 1e3))
}

/// Names and versions reach store paths: only what a manifest could hold.
fn check_ref(name: &str, version: Option<&str>) -> Result<(), PackageError> {
    let ok_name = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_name {
        return Err(PackageError::Invalid(format!("`{}` is not an adapter name (1-64 ASCII letters, digits, `-`, `_`)", name.chars().take(80).collect::<String>().escape_debug())));
    }
    if let Some(v) = version
        && (semver::Version::parse(v).is_err() || v.len() > 64)
    {
        return Err(PackageError::Invalid(format!("`{}` is not a version (e.g. 1.2.0)", v.chars().take(80).collect::<String>().escape_debug())));
    }
    Ok(())
}

fn base_signer(b: &Baseline) -> String {
    if b.origin == "built-in" { "built-in".into() } else { "configured".into() }
}
