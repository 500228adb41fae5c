//! The token endpoint (SMART Backend Services `private_key_jwt`, and OAuth2
//! `client_credentials` with `client_secret_basic`), its discovery document, and the
//! bearer check on FHIR requests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, IssuedToken, lock};
use crate::http::outcome;
use crate::time::now_ms;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion may live at most this long (SMART Backend Services: five minutes).
const MAX_ASSERTION_SECS: u64 = 300;
const LEEWAY_SECS: u64 = 5;

pub async fn smart_configuration(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({
        "issuer": app.base_url(),
        "token_endpoint": app.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.read", "system/*.rs", "system/Task.write", "system/Task.c"],
        "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric"],
    }))
    .into_response()
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
    jti: Option<String>,
}

pub async fn token(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    lock(&app.stats).token_requests += 1;
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    let client_id = if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return oauth_error(400, "invalid_request", "client_assertion_type must be jwt-bearer");
        }
        match verify_assertion(&app, assertion) {
            Ok(id) => id,
            Err(why) => {
                tracing::info!(reason = %why, "sandbox refused a client assertion");
                return oauth_error(401, "invalid_client", &why);
            }
        }
    } else if let Some((id, secret)) = basic_credentials(&headers) {
        let ok = lock(&app.clients).get(&id).and_then(|c| c.client_secret.clone()).is_some_and(|s| s == secret);
        if !ok {
            return oauth_error(401, "invalid_client", "unknown client or wrong secret");
        }
        id
    } else {
        return oauth_error(401, "invalid_client", "no client authentication (private_key_jwt or client_secret_basic)");
    };
    let requested: Vec<String> = form.get("scope").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let allowed = lock(&app.clients).get(&client_id).and_then(|c| c.scopes.clone());
    let granted: Vec<String> = match (&allowed, requested.is_empty()) {
        (Some(a), true) => a.clone(),
        (Some(a), false) => requested.iter().filter(|s| a.contains(s)).cloned().collect(),
        (None, true) => vec!["system/*.read".into()],
        (None, false) => requested.clone(),
    };
    if granted.is_empty() {
        return oauth_error(400, "invalid_scope", "none of the requested scopes is allowed for this client");
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    let scope = granted.join(" ");
    let ttl = app.opts.token_ttl_secs;
    lock(&app.tokens).insert(access_token.clone(), IssuedToken { client_id, scope: scope.clone(), expires_at_ms: now_ms() + ttl * 1000 });
    lock(&app.stats).tokens_issued += 1;
    (
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        axum::Json(json!({"access_token": access_token, "token_type": "bearer", "expires_in": ttl, "scope": scope})),
    )
        .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 2.3.1: both are form-urlencoded inside the Basic credentials.
    let dec = |s: &str| form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((dec(id)?, dec(secret)?))
}

/// Checks a `private_key_jwt` assertion; returns the client id.
fn verify_assertion(app: &App, assertion: &str) -> Result<String, String> {
    let head = jsonwebtoken::decode_header(assertion).map_err(|e| format!("malformed assertion: {e}"))?;
    if !matches!(head.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(format!("assertion algorithm {:?} is not RS384 or ES384", head.alg));
    }
    let kid = head.kid.ok_or("assertion header has no kid")?;
    // Who claims to sign: read the payload unverified only to find the client's keys.
    let payload = assertion.split('.').nth(1).ok_or("malformed assertion")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| "malformed assertion payload")?;
    let claimed: Claims = serde_json::from_slice(&raw).map_err(|e| format!("assertion claims: {e}"))?;
    let client = lock(&app.clients).get(&claimed.iss).cloned().ok_or_else(|| format!("unknown client `{}`", claimed.iss))?;
    let jwks: JwkSet = client.jwks.clone().ok_or("client has no JWKS registered").and_then(|v| serde_json::from_value(v).map_err(|_| "bad JWKS"))?;
    let jwk = jwks.find(&kid).ok_or_else(|| format!("no key `{kid}` in the client's JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key `{kid}`: {e}"))?;
    let mut v = Validation::new(head.alg);
    v.set_audience(&[app.token_url()]);
    v.set_issuer(&[client.client_id.as_str()]);
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    v.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Claims>(assertion, &key, &v).map_err(|e| format!("assertion rejected: {e}"))?;
    let c = data.claims;
    if c.sub != c.iss {
        return Err("assertion sub must equal iss (the client id)".into());
    }
    let now = now_ms() / 1000;
    if c.exp > now + MAX_ASSERTION_SECS + LEEWAY_SECS {
        return Err("assertion exp is more than five minutes ahead".into());
    }
    let jti = c.jti.filter(|j| !j.is_empty()).ok_or("assertion has no jti")?;
    let mut seen = lock(&app.jtis);
    seen.retain(|_, exp| *exp + LEEWAY_SECS >= now);
    if seen.insert(format!("{}|{jti}", c.iss), c.exp).is_some() {
        return Err("assertion jti was already used (replay)".into());
    }
    Ok(c.iss)
}

pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| tok.trim().to_string())
}

/// `None` for a valid, unexpired bearer token, else the 401 to send.
pub fn check_bearer(app: &App, headers: &HeaderMap) -> Option<Response> {
    let deny = |why: &str| {
        let mut r = outcome(401, "login", why);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Some(r)
    };
    let Some(tok) = bearer(headers) else {
        return deny("a bearer token is required (POST the token endpoint first)");
    };
    let tokens = lock(&app.tokens);
    let Some(t) = tokens.get(&tok) else {
        return deny("unknown bearer token");
    };
    if t.expires_at_ms <= now_ms() {
        return deny("the bearer token has expired");
    }
    tracing::trace!(client = %t.client_id, "bearer accepted");
    None
}

/// The scopes granted to the request's bearer token (`None` without a known token).
pub fn granted(app: &App, headers: &HeaderMap) -> Option<String> {
    let tok = bearer(headers)?;
    lock(&app.tokens).get(&tok).map(|t| t.scope.clone())
}

/// A 403 for a token whose scopes do not cover the request.
pub fn forbidden(diagnostics: &str) -> Response {
    let mut r = outcome(403, "forbidden", diagnostics);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=\"insufficient_scope\""));
    r
}
