//! Secrets by reference: `env:NAME` or `file:/path`. The value is read when a
//! connection is built (and a connection's `file:` secret again when the file
//! changes) and is never printed.

use serde::{Deserialize, Serialize};

use crate::ConnectError;

/// A reference to a secret, never the secret itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(String);

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A reference is not a secret, but a mistyped value could be: only show
        // well-formed references.
        match self.kind() {
            Some(_) => write!(f, "SecretRef({})", self.0),
            None => write!(f, "SecretRef(<not a reference>)"),
        }
    }
}

impl SecretRef {
    pub fn new(reference: impl Into<String>) -> Self {
        SecretRef(reference.into())
    }

    fn kind(&self) -> Option<(&str, &str)> {
        let (k, rest) = self.0.split_once(':')?;
        (matches!(k, "env" | "file") && !rest.is_empty()).then_some((k, rest))
    }

    /// The file a `file:` reference reads.
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match self.kind() {
            Some(("file", path)) => Some(std::path::Path::new(path)),
            _ => None,
        }
    }

    /// Reads the secret. `what` names the setting for the error message.
    pub fn resolve(&self, what: &str) -> Result<Secret, ConnectError> {
        match self.kind() {
            Some(("env", name)) => std::env::var(name)
                .map(Secret)
                .map_err(|_| ConnectError::Secret(format!("{what}: environment variable `{name}` is not set (or not UTF-8)"))),
            Some(("file", path)) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| ConnectError::Secret(format!("{what}: cannot read `{path}`: {e}"))),
            _ => Err(ConnectError::Secret(format!("{what}: not a secret reference; write `env:NAME` or `file:/path`, never the value itself"))),
        }
    }
}

/// A secret value. Debug and Display never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn from_string(s: String) -> Self {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_never_print_values() {
        let dir = std::env::temp_dir().join(format!("ehrgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "hunter2\n").unwrap();
        let r = SecretRef::new(format!("file:{}", f.display()));
        let s = r.resolve("client_secret").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let literal = SecretRef::new("hunter2");
        assert!(!format!("{literal:?}").contains("hunter2"));
        let err = literal.resolve("client_secret").unwrap_err().to_string();
        assert!(!err.contains("hunter2") && err.contains("env:NAME"), "{err}");
        assert!(SecretRef::new("env:EHRGATE_SURELY_UNSET_VAR").resolve("x").unwrap_err().to_string().contains("EHRGATE_SURELY_UNSET_VAR"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
