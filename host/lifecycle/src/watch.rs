//! A watched directory: drop a package (`*.ehrpkg`) in and it is verified and
//! installed (and activated, when configured) as if uploaded to the admin API.
//!
//! Writers should write under another name and rename into place (a rename is
//! atomic); a file is also taken only once its size and modification time held
//! still across two polls. Installed packages move to `installed/`, refused ones
//! to `rejected/` with `<file>.reason.txt` beside them saying why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::manager::Manager;

pub struct WatchConfig {
    pub dir: PathBuf,
    pub poll: Duration,
    pub activate: bool,
}

fn signature(p: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn move_to(file: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new(".")).join(sub);
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(file.file_name().unwrap_or_default());
    std::fs::rename(file, &target)?;
    Ok(target)
}

/// Poll `cfg.dir` until `shutdown` changes.
pub fn spawn(cfg: WatchConfig, manager: Arc<Manager>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<JoinHandle<()>> {
    std::fs::create_dir_all(&cfg.dir)?;
    Ok(tokio::spawn(async move {
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        let who = format!("watch:{}", cfg.dir.display());
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&cfg.dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "ehrpkg"))
                .collect();
            files.sort();
            seen.retain(|p, _| files.contains(p));
            for f in files {
                let Some(sig) = signature(&f) else { continue };
                if seen.insert(f.clone(), sig) != Some(sig) {
                    continue; // new or still changing: look again at the next poll
                }
                let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let bytes = match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!("adapter drop {name}: cannot read it ({e}); trying again");
                        continue;
                    }
                };
                match manager.install(&bytes, &who, cfg.activate).await {
                    Ok(i) => {
                        tracing::info!(adapter = %i.name, version = %i.version, "adapter drop {name}: installed{}", if i.activated.is_some() { " and activated" } else { "" });
                        if let Err(e) = move_to(&f, "installed") {
                            tracing::error!("adapter drop {name}: installed, but cannot move it aside: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("adapter drop {name}: refused: {e}");
                        match move_to(&f, "rejected") {
                            Ok(t) => {
                                let _ = std::fs::write(t.with_extension("ehrpkg.reason.txt"), format!("{}: {e}\n", e.code()));
                            }
                            Err(m) => tracing::error!("adapter drop {name}: refused, and cannot move it aside: {m}"),
                        }
                    }
                }
                seen.remove(&f);
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }))
}
