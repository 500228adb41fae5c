//! Tests' scratch directories.

/// A directory for one test, made empty, and removed when dropped (whether the
/// test passed or not).
pub(crate) struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// `ehrgate-<name>-<pid>` in the temporary directory.
    pub(crate) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ehrgate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
