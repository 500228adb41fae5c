//! Where the tables live: a local directory (the default, `./ehrgate-data`) or an
//! S3-compatible bucket. One code path for both: a table URL plus storage options.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::error::LakeError;

/// A secret given by reference, never by value: `env:NAME` or `file:/path`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(pub String);

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reference is not secret, but keep Debug output obviously safe.
        write!(f, "SecretRef({})", self.0.split(':').next().unwrap_or("?"))
    }
}

impl SecretRef {
    /// Read the secret. Errors name the reference, never a value.
    pub fn resolve(&self) -> Result<String, LakeError> {
        let r = &self.0;
        if let Some(name) = r.strip_prefix("env:") {
            std::env::var(name).map_err(|_| LakeError::Config(format!("secret reference `{r}`: environment variable {name} is not set")))
        } else if let Some(path) = r.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| LakeError::Config(format!("secret reference `{r}`: cannot read the file: {e}")))
        } else {
            Err(LakeError::Config(format!(
                "secret reference must be `env:NAME` or `file:/path`; got a value of {} characters (secrets are never written inline)",
                r.len()
            )))
        }
    }
}

/// The table root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Storage {
    /// A local directory.
    Local { root: PathBuf },
    /// An S3-compatible bucket (AWS S3, MinIO, moto, ...).
    S3 {
        bucket: String,
        #[serde(default)]
        prefix: String,
        /// e.g. `http://127.0.0.1:9000`; none for AWS itself.
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        access_key_id: SecretRef,
        secret_access_key: SecretRef,
        /// Allow plain HTTP to the endpoint (local servers only).
        #[serde(default)]
        allow_http: bool,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Local { root: PathBuf::from("ehrgate-data") }
    }
}

impl Storage {
    /// The URL of a table (`bronze/hl7_messages`, ...) under this root.
    pub fn table_url(&self, table: &str) -> Result<Url, LakeError> {
        match self {
            Storage::Local { root } => {
                let abs = if root.is_absolute() {
                    root.clone()
                } else {
                    std::env::current_dir().map_err(|e| LakeError::Config(format!("cannot resolve the working directory: {e}")))?.join(root)
                };
                let dir = abs.join(table);
                Url::from_directory_path(&dir).map_err(|_| LakeError::Config(format!("not an absolute path: {}", dir.display())))
            }
            Storage::S3 { bucket, prefix, .. } => {
                let prefix = prefix.trim_matches('/');
                let path = if prefix.is_empty() { table.to_string() } else { format!("{prefix}/{table}") };
                Url::parse(&format!("s3://{bucket}/{path}")).map_err(|e| LakeError::Config(format!("bad bucket or prefix: {e}")))
            }
        }
    }

    /// Whether a table exists, without asking Delta (which logs an error for a
    /// missing table). Only answers for local storage; `None` means "ask Delta".
    pub fn local_table_exists(&self, table: &str) -> Option<bool> {
        match self {
            Storage::Local { .. } => {
                let dir = self.table_url(table).ok()?.to_file_path().ok()?;
                Some(dir.join("_delta_log").is_dir())
            }
            Storage::S3 { .. } => None,
        }
    }

    /// Make sure a local table's folder exists before its first write.
    pub fn prepare(&self, table: &str) -> Result<(), LakeError> {
        if let Storage::Local { .. } = self {
            let dir = self.table_url(table)?.to_file_path().map_err(|_| LakeError::Config(format!("bad table path {table}")))?;
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::Config(format!("cannot create table folder {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Storage options for deltalake (credentials resolved here, kept in memory only).
    pub fn options(&self) -> Result<HashMap<String, String>, LakeError> {
        let mut o = HashMap::new();
        if let Storage::S3 { endpoint, region, access_key_id, secret_access_key, allow_http, .. } = self {
            if let Some(e) = endpoint {
                o.insert("AWS_ENDPOINT_URL".into(), e.clone());
            }
            o.insert("AWS_REGION".into(), region.clone());
            o.insert("AWS_ACCESS_KEY_ID".into(), access_key_id.resolve()?);
            o.insert("AWS_SECRET_ACCESS_KEY".into(), secret_access_key.resolve()?);
            if *allow_http {
                o.insert("AWS_ALLOW_HTTP".into(), "true".into());
            }
            // Commits are safe with several writers (a gateway, `ehrgate ingest`,
            // `ehrgate quarantine reprocess`, another host) without a lock service:
            // deltalake 1.x writes each commit file `_delta_log/<version>.json` with a
            // conditional put (`If-None-Match: *`), so of two writers racing for one
            // version exactly one wins and the other gets "version already exists",
            // re-reads the log and retries. `etag` is object_store's default; it is set
            // explicitly so an `AWS_CONDITIONAL_PUT` in the environment cannot turn it
            // off. The store must honour `If-None-Match: *` on PUT: AWS S3 (since
            // August 2024), MinIO, Cloudflare R2 and moto do; one that ignores the
            // header lets a racing commit overwrite another, so on such a store keep
            // to one writing process. No DynamoDB lock is used (deltalake 1.x dropped
            // it), and `AWS_S3_ALLOW_UNSAFE_RENAME` is not set: in deltalake 1.x it no
            // longer changes how commits are written.
            o.insert("AWS_CONDITIONAL_PUT".into(), "etag".into());
        }
        Ok(o)
    }

    /// A short description for logs (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Storage::Local { root } => format!("local {}", root.display()),
            Storage::S3 { bucket, prefix, endpoint, .. } => {
                format!("s3://{bucket}/{}{}", prefix.trim_matches('/'), endpoint.as_ref().map(|e| format!(" via {e}")).unwrap_or_default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs() {
        // SAFETY: test-only, single-threaded use of a unique variable name.
        unsafe { std::env::set_var("EHRGATE_TEST_SECRET_X", "s3cr3t") };
        assert_eq!(SecretRef("env:EHRGATE_TEST_SECRET_X".into()).resolve().unwrap(), "s3cr3t");
        let inline = SecretRef("s3cr3t-inline".into()).resolve().unwrap_err().to_string();
        assert!(!inline.contains("s3cr3t"), "an inline secret must not be echoed: {inline}");
        assert!(SecretRef("env:EHRGATE_DEFINITELY_UNSET".into()).resolve().unwrap_err().to_string().contains("EHRGATE_DEFINITELY_UNSET"));
    }

    #[test]
    fn s3_urls() {
        let s = Storage::S3 {
            bucket: "lake".into(),
            prefix: "/ehr/".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            access_key_id: SecretRef("env:A".into()),
            secret_access_key: SecretRef("env:B".into()),
            allow_http: true,
        };
        assert_eq!(s.table_url("silver/patient").unwrap().as_str(), "s3://lake/ehr/silver/patient");
    }

    #[test]
    fn s3_commits_use_conditional_puts() {
        let scratch = crate::scratch::Scratch::new("lake-secret");
        let secret = scratch.0.join("secret");
        std::fs::write(&secret, "x\n").unwrap();
        let r = SecretRef(format!("file:{}", secret.display()));
        let s = Storage::S3 {
            bucket: "lake".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: r.clone(),
            secret_access_key: r,
            allow_http: false,
        };
        let o = s.options().unwrap();
        assert_eq!(o.get("AWS_CONDITIONAL_PUT").map(String::as_str), Some("etag"));
        assert!(!o.keys().any(|k| k.contains("UNSAFE_RENAME") || k.contains("LOCKING_PROVIDER")), "{:?}", o.keys());
        assert_eq!(o.get("AWS_ACCESS_KEY_ID").map(String::as_str), Some("x"));
    }
}
