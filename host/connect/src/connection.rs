//! One named upstream: auth, throttle, retries and a breaker around each request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ehrgate_runtime::{HttpError, HttpRequest, HttpResponse};
use reqwest::Method;
use tokio::sync::OwnedSemaphorePermit;

use crate::ConnectError;
use crate::auth::Auth;
use crate::egress::{Egress, GuardedResolver};
use crate::breaker::{Breaker, BreakerState};
use crate::config::{ConnectionConfig, RetryConfig};
use crate::retry::{backoff, failure_status, idempotent_method, parse_retry_after, retryable_status};
use crate::scopes::intersect;
use crate::secret::Secret;
use crate::throttle::Throttle;

/// The header that carries a request's idempotency key upstream
/// (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Counters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Requests sent upstream (every attempt).
    pub attempts: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Calls refused at once because the circuit was open.
    pub fast_failures: u64,
    pub token_requests: u64,
    /// Times the secret's file changed and was read again (cached tokens dropped).
    pub secret_reloads: u64,
    pub breaker: BreakerState,
    /// Upstream answers by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; 5],
    /// Answers 429 (Too Many Requests), also counted in 4xx.
    pub throttled: u64,
    /// Attempts that got no answer (connection failure, timeout).
    pub transport_errors: u64,
}

pub struct Connection {
    name: String,
    base: url::Url,
    base_str: String,
    http: reqwest::Client,
    auth: Auth,
    egress: Arc<Egress>,
    throttle: Throttle,
    breaker: Breaker,
    retry: RetryConfig,
    timeout: Duration,
    attempts: AtomicU64,
    retries: AtomicU64,
    fast_failures: AtomicU64,
    responses: [AtomicU64; 5],
    throttled: AtomicU64,
    transport_errors: AtomicU64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("name", &self.name).field("base_url", &self.base_str).finish_non_exhaustive()
    }
}

/// A transport error in words, without the URL (it can carry identifiers).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broken off"
    } else {
        "transport error"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    if last.is_empty() { kind.to_string() } else { format!("{kind}: {last}") }
}

/// A request as the connection sends it.
struct Outgoing<'a> {
    method: Method,
    url: String,
    headers: &'a [(String, String)],
    body: Option<Bytes>,
    idempotency_key: Option<&'a str>,
}

enum Attempt {
    Response(reqwest::Response, OwnedSemaphorePermit),
    Failed(HttpError),
}

impl Connection {
    pub fn new(cfg: &ConnectionConfig) -> Result<Connection, ConnectError> {
        let name = cfg.name.clone();
        if name.is_empty() {
            return Err(ConnectError::Config("a connection has an empty name".into()));
        }
        let base = url::Url::parse(&cfg.base_url)
            .map_err(|e| ConnectError::Config(format!("connection `{name}`: base_url `{}` is not a URL: {e}", cfg.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.query().is_some() {
            return Err(ConnectError::Config(format!("connection `{name}`: base_url must be http(s) without a query")));
        }
        let mut urls = vec![cfg.base_url.as_str()];
        match &cfg.auth {
            crate::config::AuthConfig::SmartBackend { token_url: Some(u), .. } | crate::config::AuthConfig::ClientCredentials { token_url: u, .. } => urls.push(u),
            _ => {}
        }
        let egress = Arc::new(Egress::new(&name, cfg.allow_internal, &urls));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // No proxy from the environment (HTTP(S)_PROXY): a proxy would resolve
            // the EHR's name itself, past the egress check.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(egress.clone())))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(100, 10_000)))
            .build()
            .map_err(|e| ConnectError::Config(format!("connection `{name}`: HTTP client: {e}")))?;
        let base_str = cfg.base_url.trim_end_matches('/').to_string();
        Ok(Connection {
            auth: Auth::new(&name, &cfg.auth, &base_str, egress.clone())?,
            egress,
            throttle: Throttle::new(cfg.rate.per_second, cfg.rate.burst, cfg.max_concurrency),
            breaker: Breaker::new(cfg.breaker.failure_threshold, Duration::from_millis(cfg.breaker.open_ms)),
            retry: cfg.retry,
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            fast_failures: AtomicU64::new(0),
            responses: Default::default(),
            throttled: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            name,
            base,
            base_str,
            http,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base_url(&self) -> &str {
        &self.base_str
    }

    /// The scopes a token is asked for: those `declared` that the connection allows.
    pub fn requested_scopes(&self, declared: &[String]) -> Vec<String> {
        intersect(declared, self.auth.allowed())
    }

    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            fast_failures: self.fast_failures.load(Ordering::Relaxed),
            token_requests: self.auth.token_requests.load(Ordering::Relaxed),
            secret_reloads: self.auth.secret_reloads.load(Ordering::Relaxed),
            breaker: self.breaker.state(),
            responses: std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed)),
            throttled: self.throttled.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
        }
    }

    /// How much longer the connection is paused by an upstream `Retry-After`, if at all.
    pub fn paused_for(&self) -> Option<Duration> {
        self.throttle.paused_for()
    }

    fn scopes_for(&self, declared: &[String]) -> Result<Vec<String>, HttpError> {
        if !self.auth.enabled() {
            return Ok(vec![]);
        }
        let s = self.requested_scopes(declared);
        if s.is_empty() {
            return Err(HttpError::Denied(format!(
                "no scope the caller declares is allowed on connection `{}` (declared: {}; allowed: {})",
                self.name,
                declared.join(" "),
                self.auth.allowed().join(" ")
            )));
        }
        Ok(s)
    }

    /// Sends `req` (its path relative to the base URL) with a token for the
    /// intersection of `declared_scopes` and the connection's scopes.
    pub async fn send(&self, req: HttpRequest, declared_scopes: &[String]) -> Result<HttpResponse, HttpError> {
        if !req.path.starts_with('/') {
            return Err(HttpError::Invalid("path must start with `/`".into()));
        }
        let url = format!("{}{}", self.base_str, req.path);
        self.send_to(&req.method, url, &req.headers, req.body, req.idempotency_key.as_deref(), declared_scopes).await
    }

    /// Like [`send`](Self::send) to an absolute URL, which must be on the base URL's
    /// origin (bulk status and file URLs); the token is never sent anywhere else.
    pub async fn send_url(&self, method: &str, url: &str, headers: &[(String, String)], declared_scopes: &[String]) -> Result<HttpResponse, HttpError> {
        self.check_origin(url)?;
        self.send_to(method, url.to_string(), headers, None, None, declared_scopes).await
    }

    fn check_origin(&self, url: &str) -> Result<(), HttpError> {
        let u = url::Url::parse(url).map_err(|_| HttpError::Invalid("not an absolute URL".into()))?;
        if u.origin() != self.base.origin() {
            return Err(HttpError::Denied(format!("URL is not on connection `{}`'s origin; its token is not sent elsewhere", self.name)));
        }
        Ok(())
    }

    async fn send_to(
        &self,
        method: &str,
        url: String,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
        declared_scopes: &[String],
    ) -> Result<HttpResponse, HttpError> {
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| HttpError::Invalid(format!("bad method `{method}`")))?;
        let out = Outgoing { method: m, url, headers, body: body.map(Bytes::from), idempotency_key };
        let (resp, permit) = match self.execute(&out, declared_scopes).await? {
            Attempt::Response(r, p) => (r, p),
            Attempt::Failed(e) => return Err(e),
        };
        let status = resp.status().as_u16();
        let headers = response_headers(&resp);
        let body = tokio::time::timeout(self.timeout, resp.bytes()).await;
        drop(permit);
        match body {
            Ok(Ok(b)) => Ok(HttpResponse { status, headers, body: b.to_vec() }),
            Ok(Err(e)) => Err(HttpError::Unavailable(format!("connection `{}`: {}", self.name, describe(&e)))),
            Err(_) => Err(HttpError::Timeout),
        }
    }

    /// Streams a large body (bulk NDJSON) from an absolute URL on the connection's
    /// origin. `with_token`: send the bearer token (the manifest's
    /// `requiresAccessToken`). Starting the download is retried like a GET; a break
    /// mid-stream is the caller's to handle.
    pub async fn download(&self, url: &str, declared_scopes: &[String], with_token: bool) -> Result<Download, HttpError> {
        let scopes: Vec<String> = if with_token { declared_scopes.to_vec() } else { vec![] };
        if with_token {
            self.check_origin(url)?;
        }
        let headers = [("accept".to_string(), "application/fhir+ndjson".to_string())];
        let out = Outgoing { method: Method::GET, url: url.to_string(), headers: &headers, body: None, idempotency_key: None };
        let skip_auth = !with_token;
        match self.execute_inner(&out, &scopes, skip_auth).await? {
            Attempt::Response(resp, permit) => {
                Ok(Download { status: resp.status().as_u16(), headers: response_headers(&resp), resp, _permit: permit, idle: self.timeout })
            }
            Attempt::Failed(e) => Err(e),
        }
    }

    async fn execute(&self, out: &Outgoing<'_>, declared_scopes: &[String]) -> Result<Attempt, HttpError> {
        self.execute_inner(out, declared_scopes, false).await
    }

    /// The attempt loop: breaker, throttle, token, send, classify, retry.
    async fn execute_inner(&self, out: &Outgoing<'_>, declared_scopes: &[String], skip_auth: bool) -> Result<Attempt, HttpError> {
        self.egress.check_url(&out.url).map_err(|e| HttpError::Denied(e.0))?;
        let scopes = if skip_auth { vec![] } else { self.scopes_for(declared_scopes)? };
        let retryable_request = idempotent_method(out.method.as_str()) || out.idempotency_key.is_some();
        let max_attempts = if retryable_request { self.retry.max_attempts.max(1) } else { 1 };
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            // Throttle first: a request must not hold the breaker's (half-open probe)
            // permit while it waits out a pause.
            let slot = self.throttle.admit().await;
            let permit = match self.breaker.acquire() {
                Ok(p) => p,
                Err(left) => {
                    self.fast_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(HttpError::Unavailable(format!(
                        "connection `{}` is failing; circuit open (next probe in {} ms)",
                        self.name,
                        left.as_millis()
                    )));
                }
            };
            // The token request gets the same deadline as the request itself: a token
            // endpoint that never answers must not hang every caller.
            let token = if skip_auth {
                None
            } else {
                match tokio::time::timeout(self.timeout, self.auth.bearer(&self.http, &scopes)).await {
                    Ok(t) => t?,
                    Err(_) => {
                        permit.failure();
                        return Err(HttpError::Timeout);
                    }
                }
            };
            let mut rb = self.http.request(out.method.clone(), &out.url);
            for (k, v) in out.headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            if !out.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
                rb = rb.header("accept", "application/fhir+json");
            }
            if let Some(b) = &out.body {
                if !out.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    rb = rb.header("content-type", "application/fhir+json");
                }
                rb = rb.body(b.clone());
            }
            if let Some(k) = out.idempotency_key {
                rb = rb.header(IDEMPOTENCY_HEADER, k);
            }
            if let Some(t) = &token {
                rb = rb.bearer_auth(t.expose());
            }
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            let result = tokio::time::timeout(self.timeout, rb.send()).await;
            let delay = match result {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    tracing::debug!(connection = %self.name, method = %out.method, status, attempt, "upstream answered");
                    if let Some(n) = self.responses.get((status / 100).saturating_sub(1) as usize) {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    if status == 429 {
                        self.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    if status == 401 && token.is_some() && !refreshed {
                        // The token may have expired early or been revoked: one fresh
                        // token, one more try (not counted as a retry attempt).
                        permit.success();
                        refreshed = true;
                        self.invalidate(&scopes, token.as_ref());
                        attempt -= 1;
                        drop(slot);
                        continue;
                    }
                    if failure_status(status) { permit.failure() } else { permit.success() }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()))
                        .filter(|d| !d.is_zero());
                    let paused = match (status == 429 || status == 503, retry_after) {
                        (true, Some(d)) => {
                            tracing::info!(connection = %self.name, status, pause_ms = d.as_millis() as u64, "upstream asked to slow down; pausing the connection");
                            self.throttle.pause(d);
                            true
                        }
                        _ => false,
                    };
                    if !retryable_status(status) || attempt >= max_attempts {
                        return Ok(Attempt::Response(resp, slot));
                    }
                    // A pause is waited out by the throttle; a Retry-After on another
                    // status is honoured here; otherwise back off.
                    match (paused, retry_after) {
                        (true, _) => Duration::ZERO,
                        (false, Some(d)) => d.max(backoff(&self.retry, attempt)),
                        (false, None) => backoff(&self.retry, attempt),
                    }
                }
                Ok(Err(e)) => {
                    if let Some(refused) = Egress::refusal(&e) {
                        // Not the EHR failing: neither retried nor held against it.
                        drop(permit);
                        return Ok(Attempt::Failed(HttpError::Denied(refused)));
                    }
                    permit.failure();
                    self.transport_errors.fetch_add(1, Ordering::Relaxed);
                    let why = describe(&e);
                    tracing::debug!(connection = %self.name, method = %out.method, attempt, error = %why, "upstream request failed");
                    if attempt >= max_attempts {
                        let note = if retryable_request { "" } else { " (not retried: the request is not idempotent and has no idempotency key)" };
                        return Ok(Attempt::Failed(if e.is_timeout() {
                            HttpError::Timeout
                        } else {
                            HttpError::Unavailable(format!("connection `{}`: {why}{note}", self.name))
                        }));
                    }
                    backoff(&self.retry, attempt)
                }
                Err(_) => {
                    permit.failure();
                    self.transport_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(connection = %self.name, method = %out.method, attempt, "upstream timed out");
                    if attempt >= max_attempts {
                        return Ok(Attempt::Failed(HttpError::Timeout));
                    }
                    backoff(&self.retry, attempt)
                }
            };
            drop(slot);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    fn invalidate(&self, scopes: &[String], token: Option<&Secret>) {
        if let Some(t) = token {
            self.auth.invalidate(scopes, t);
        }
    }
}

fn response_headers(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .filter(|(k, _)| *k != reqwest::header::SET_COOKIE)
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// A streamed response body. Holds the connection's concurrency slot until dropped.
pub struct Download {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    resp: reqwest::Response,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("status", &self.status).finish_non_exhaustive()
    }
}

impl Download {
    /// The next chunk, `None` at the end. A stall longer than the connection's timeout
    /// is [`HttpError::Timeout`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        match tokio::time::timeout(self.idle, self.resp.chunk()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(HttpError::Unavailable(describe(&e))),
            Err(_) => Err(HttpError::Timeout),
        }
    }
}
