//! Tokens for a connection: SMART Backend Services (`private_key_jwt`) or OAuth2
//! client_credentials (`client_secret_basic`), cached per scope set and refreshed
//! before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ehrgate_runtime::HttpError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ConnectError;
use crate::config::{AuthConfig, SigningAlg};
use crate::secret::Secret;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Assertions live four minutes (SMART allows at most five).
const ASSERTION_LIFETIME_SECS: u64 = 240;
/// A token without `expires_in` is assumed to last this long.
const DEFAULT_TOKEN_SECS: u64 = 300;

enum Credentials {
    None,
    Smart { client_id: String, key: EncodingKey, alg: Algorithm, kid: String, token_url: Option<String> },
    Basic { client_id: String, secret: Secret, token_url: String },
}

struct Cached {
    value: Secret,
    refresh_at: Instant,
}

pub(crate) struct Auth {
    name: String,
    config: AuthConfig,
    /// Replaced when the secret's file changes.
    creds: std::sync::RwLock<std::sync::Arc<Credentials>>,
    /// The secret's file, when given as `file:`, and what it was when last read.
    watch: Option<Watch>,
    allowed: Vec<String>,
    base_url: String,
    discovered: tokio::sync::OnceCell<String>,
    cache: Mutex<HashMap<String, Cached>>,
    /// One token fetch at a time per connection, so a burst shares one token.
    fetching: tokio::sync::Mutex<()>,
    pub token_requests: AtomicU64,
    pub secret_reloads: AtomicU64,
    egress: std::sync::Arc<crate::egress::Egress>,
}

/// A secret file and the (modified time, length) it had when read.
struct Watch {
    path: std::path::PathBuf,
    seen: Mutex<Option<(SystemTime, u64)>>,
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The credentials `cfg` describes, its secret read now.
fn credentials(name: &str, cfg: &AuthConfig) -> Result<Credentials, ConnectError> {
    Ok(match cfg {
        AuthConfig::None => Credentials::None,
        AuthConfig::SmartBackend { client_id, private_key, alg, kid, token_url, .. } => {
            let pem = private_key.resolve(&format!("connection `{name}` auth.private_key"))?;
            let bad = |e: jsonwebtoken::errors::Error| {
                ConnectError::Config(format!("connection `{name}`: auth.private_key is not a usable {alg:?} PEM private key ({e})"))
            };
            let (key, alg) = match alg {
                SigningAlg::RS384 => (EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(bad)?, Algorithm::RS384),
                SigningAlg::ES384 => (EncodingKey::from_ec_pem(pem.expose().as_bytes()).map_err(bad)?, Algorithm::ES384),
            };
            Credentials::Smart { client_id: client_id.clone(), key, alg, kid: kid.clone(), token_url: token_url.clone() }
        }
        AuthConfig::ClientCredentials { client_id, client_secret, token_url, .. } => {
            let secret = client_secret.resolve(&format!("connection `{name}` auth.client_secret"))?;
            Credentials::Basic { client_id: client_id.clone(), secret, token_url: token_url.clone() }
        }
    })
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Auth {
    pub fn new(name: &str, cfg: &AuthConfig, base_url: &str, egress: std::sync::Arc<crate::egress::Egress>) -> Result<Auth, ConnectError> {
        let (allowed, secret) = match cfg {
            AuthConfig::None => (vec![], None),
            AuthConfig::SmartBackend { scopes, private_key, .. } => (scopes.clone(), Some(private_key)),
            AuthConfig::ClientCredentials { scopes, client_secret, .. } => (scopes.clone(), Some(client_secret)),
        };
        let watch = secret.and_then(|s| s.file_path()).map(|p| Watch { path: p.to_path_buf(), seen: Mutex::new(stamp(p)) });
        Ok(Auth {
            name: name.to_string(),
            config: cfg.clone(),
            creds: std::sync::RwLock::new(std::sync::Arc::new(credentials(name, cfg)?)),
            watch,
            allowed,
            base_url: base_url.to_string(),
            discovered: tokio::sync::OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            token_requests: AtomicU64::new(0),
            secret_reloads: AtomicU64::new(0),
            egress,
        })
    }

    fn creds(&self) -> std::sync::Arc<Credentials> {
        self.creds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rotation without a restart: when the secret's file changed since it was read,
    /// read it again and drop every cached token (minted with the old secret). A
    /// file that does not hold a usable secret now leaves the old one in use (and
    /// says so once per change).
    fn reload_if_changed(&self) {
        let Some(w) = &self.watch else { return };
        let now = stamp(&w.path);
        {
            let mut seen = w.seen.lock().unwrap_or_else(|p| p.into_inner());
            if now.is_none() || *seen == now {
                return;
            }
            *seen = now;
        }
        match credentials(&self.name, &self.config) {
            Ok(c) => {
                *self.creds.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(c);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.secret_reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(connection = %self.name, "the secret's file changed: read again; cached tokens dropped");
            }
            Err(e) => tracing::error!(connection = %self.name, "the secret's file changed but is not usable; the previous secret stays in use: {e}"),
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(*self.creds(), Credentials::None)
    }

    /// Scopes the connection allows.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    fn cached(&self, key: &str) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|c| Instant::now() < c.refresh_at).map(|c| c.value.clone())
    }

    /// A token for `scopes` (already narrowed), from the cache or the token endpoint.
    pub async fn bearer(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Option<Secret>, HttpError> {
        if !self.enabled() {
            return Ok(None);
        }
        self.reload_if_changed();
        let key = scopes.join(" ");
        if let Some(t) = self.cached(&key) {
            return Ok(Some(t));
        }
        let _one = self.fetching.lock().await;
        if let Some(t) = self.cached(&key) {
            return Ok(Some(t));
        }
        let (value, lifetime) = self.fetch(http, &key).await?;
        // Refresh a fifth of the lifetime (at most a minute) before it runs out.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        let refresh_at = Instant::now() + lifetime.saturating_sub(margin);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Cached { value: value.clone(), refresh_at });
        Ok(Some(value))
    }

    /// Forgets `token` (the upstream said 401), unless a newer one replaced it already.
    pub fn invalidate(&self, scopes: &[String], token: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let key = scopes.join(" ");
        if cache.get(&key).is_some_and(|c| c.value.expose() == token.expose()) {
            cache.remove(&key);
        }
    }

    async fn token_url(&self, http: &reqwest::Client) -> Result<String, HttpError> {
        match &*self.creds() {
            Credentials::Smart { token_url: Some(u), .. } | Credentials::Basic { token_url: u, .. } => Ok(u.clone()),
            _ => self
                .discovered
                .get_or_try_init(|| async {
                    let url = format!("{}/.well-known/smart-configuration", self.base_url.trim_end_matches('/'));
                    let resp = http.get(&url).header("accept", "application/json").send().await.map_err(|e| match crate::egress::Egress::refusal(&e) {
                        Some(refused) => HttpError::Denied(format!("SMART discovery: {refused}")),
                        None => HttpError::Unavailable(format!("SMART discovery failed: {}", crate::connection::describe(&e))),
                    })?;
                    if !resp.status().is_success() {
                        return Err(HttpError::Unavailable(format!("SMART discovery answered {}", resp.status().as_u16())));
                    }
                    let body = resp.bytes().await.map_err(|e| HttpError::Unavailable(format!("SMART discovery: {}", crate::connection::describe(&e))))?;
                    let doc: serde_json::Value =
                        serde_json::from_slice(&body).map_err(|_| HttpError::Unavailable("SMART discovery document is not JSON".into()))?;
                    doc["token_endpoint"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| HttpError::Unavailable("SMART discovery document has no token_endpoint".into()))
                })
                .await
                .cloned(),
        }
    }

    async fn fetch(&self, http: &reqwest::Client, scope: &str) -> Result<(Secret, Duration), HttpError> {
        let token_url = self.token_url(http).await?;
        // (a discovered token endpoint may name an address outright)
        self.egress.check_url(&token_url).map_err(|e| HttpError::Denied(e.0))?;
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if !scope.is_empty() {
            form.push(("scope", scope.to_string()));
        }
        let creds = self.creds();
        let req = match &*creds {
            Credentials::None => return Ok((Secret::from_string(String::new()), Duration::ZERO)),
            Credentials::Smart { client_id, key, alg, kid, .. } => {
                let mut header = Header::new(*alg);
                header.kid = Some(kid.clone());
                header.typ = Some("JWT".into());
                let now = unix_now();
                let claims = AssertionClaims {
                    iss: client_id,
                    sub: client_id,
                    aud: &token_url,
                    iat: now,
                    exp: now + ASSERTION_LIFETIME_SECS,
                    jti: uuid::Uuid::new_v4().to_string(),
                };
                let jwt = jsonwebtoken::encode(&header, &claims, key)
                    .map_err(|e| HttpError::Unavailable(format!("cannot sign the client assertion: {e}")))?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", jwt));
                http.post(&token_url).form(&form)
            }
            // RFC 6749 2.3.1: the id and secret are form-urlencoded before Basic.
            Credentials::Basic { client_id, secret, .. } => {
                let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                http.post(&token_url).basic_auth(enc(client_id), Some(enc(secret.expose()))).form(&form)
            }
        };
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| match crate::egress::Egress::refusal(&e) {
                Some(refused) => HttpError::Denied(format!("token endpoint: {refused}")),
                None => HttpError::Unavailable(format!("token endpoint unreachable: {}", crate::connection::describe(&e))),
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| HttpError::Unavailable(format!("token response: {}", crate::connection::describe(&e))))?;
        if !(200..300).contains(&status) {
            let why: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let error = why["error"].as_str().unwrap_or("unknown_error");
            tracing::warn!(status, error, "token endpoint refused the gateway's credentials");
            return Err(HttpError::Unavailable(format!("token endpoint answered {status} ({error}); check the connection's client id, key or secret, and scopes")));
        }
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| HttpError::Unavailable("token response is not a token JSON object".into()))?;
        tracing::debug!(expires_in = t.expires_in, "fetched an access token");
        Ok((Secret::from_string(t.access_token), Duration::from_secs(t.expires_in.unwrap_or(DEFAULT_TOKEN_SECS))))
    }
}
