//! What an adapter may reach: connection, methods and path patterns. Checked by the
//! host on every `http.send` before anything leaves the gateway.

use serde::Deserialize;

/// One grant: a connection, the methods allowed on it, and path patterns.
///
/// Patterns are `/`-separated: `*` matches exactly one path segment, a final `**`
/// matches any rest (including nothing). The query string is not part of the match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    pub connection: String,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
}

/// All grants of one adapter. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    pub fn none() -> Self {
        Grants(Vec::new())
    }

    /// Why `method path` on `connection` is not allowed, or `Ok` when it is.
    pub fn check(&self, connection: &str, method: &str, path: &str) -> Result<(), String> {
        let on_conn: Vec<&Grant> = self.0.iter().filter(|g| g.connection == connection).collect();
        if on_conn.is_empty() {
            return Err(format!("no grant for connection `{connection}`"));
        }
        let path_only = path.split(['?', '#']).next().unwrap_or("");
        let allowed = on_conn.iter().any(|g| {
            g.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) && g.paths.iter().any(|p| path_matches(p, path_only))
        });
        if allowed {
            Ok(())
        } else {
            Err(format!("{method} {path_only} is not granted on connection `{connection}`"))
        }
    }
}

/// Does `path` match `pattern`?
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pat = pattern.trim_start_matches('/').split('/');
    let mut segs = path.trim_start_matches('/').split('/');
    loop {
        match (pat.next(), segs.next()) {
            (Some("**"), _) => return pat.next().is_none() && segs.all(|s| !s.starts_with('$') && !s.starts_with('_')),
            (Some(p), Some(s)) => {
                if s.is_empty() && p != s {
                    return false;
                }
                // A wildcard stands for an id, never for an operation (`$export`) or a
                // special path (`_search`, `_history`): those must be granted by name.
                if p == "*" && (s.starts_with('$') || s.starts_with('_')) {
                    return false;
                }
                if p != "*" && p != s {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Headers an adapter may set: content negotiation and FHIR's conditional and
/// async semantics. Everything else (authentication, method overrides, rewrites,
/// forwarding, hop-by-hop) is refused: an allow-list, so a header nobody thought
/// of cannot steer a request around the grants.
pub const ALLOWED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "prefer",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "x-request-id",
];

/// Reject requests that try to steer around the host: relative or dotted paths,
/// control characters, and headers outside the allow-list.
pub fn validate_request(method: &str, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
    if !METHODS.contains(&method) {
        return Err(format!("method `{method}` is not one of {}", METHODS.join(", ")));
    }
    if !path.starts_with('/') || path.starts_with("//") {
        return Err("path must start with a single `/` (it is relative to the connection's base URL)".into());
    }
    if path.chars().any(|c| c.is_control() || c == ' ' || c == '\\') {
        return Err("path contains control characters, spaces or backslashes".into());
    }
    let path_only = path.split(['?', '#']).next().unwrap_or("");
    if path_only.split('/').any(|s| s == ".." || s == "." || s.contains("%2e") || s.contains("%2E") || s.contains("%2f") || s.contains("%2F")) {
        return Err("path contains dot segments or encoded separators".into());
    }
    for (name, value) in headers {
        if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "header `{name}` is not one an adapter may set (allowed: {}); the host owns authentication, routing and transport headers",
                ALLOWED_HEADERS.join(", ")
            ));
        }
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            return Err(format!("header `{name}` has a control character in its value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants(vec![Grant {
            connection: "ehr".into(),
            methods: vec!["GET".into(), "POST".into()],
            paths: vec!["/Task".into(), "/Patient/*".into(), "/Group/*/$export".into(), "/Binary/**".into()],
        }])
    }

    #[test]
    fn patterns() {
        let g = grants();
        assert!(g.check("ehr", "POST", "/Task").is_ok());
        assert!(g.check("ehr", "GET", "/Patient/123?_format=json").is_ok());
        assert!(g.check("ehr", "GET", "/Group/abc/$export").is_ok());
        assert!(g.check("ehr", "GET", "/Binary/a/b/c").is_ok());
        assert!(g.check("ehr", "GET", "/Binary").is_ok());
        assert!(g.check("ehr", "GET", "/Patient/123/Observation").unwrap_err().contains("not granted"));
        assert!(g.check("ehr", "GET", "/Patient/").is_err());
        // A wildcard is an id, not an operation or a special path.
        assert!(g.check("ehr", "GET", "/Patient/$export").is_err());
        assert!(g.check("ehr", "GET", "/Patient/_search").is_err());
        assert!(g.check("ehr", "GET", "/Patient/_history").is_err());
        assert!(g.check("ehr", "GET", "/Binary/a/$everything").is_err());
        assert!(g.check("ehr", "DELETE", "/Task").is_err());
        assert!(g.check("billing", "GET", "/Task").unwrap_err().contains("no grant for connection `billing`"));
        assert!(Grants::none().check("ehr", "GET", "/Task").is_err());
    }

    #[test]
    fn request_validation() {
        assert!(validate_request("GET", "/Patient/1", &[]).is_ok());
        assert!(validate_request("GET", "Patient/1", &[]).is_err());
        assert!(validate_request("GET", "//evil.example/x", &[]).is_err());
        assert!(validate_request("GET", "/Patient/../admin", &[]).is_err());
        assert!(validate_request("GET", "/Patient/%2e%2e/admin", &[]).is_err());
        assert!(validate_request("CONNECT", "/x", &[]).is_err());
        assert!(validate_request("GET", "/x", &[("Authorization".into(), "Bearer x".into())]).is_err());
        assert!(validate_request("GET", "/x", &[("X-A".into(), "a\r\nb".into())]).is_err());
        assert!(validate_request("GET", "/x", &[("Prefer".into(), "respond-async".into())]).is_ok());
        for h in ["X-HTTP-Method-Override", "X-Original-URL", "X-Rewrite-URL", "Forwarded", "X-Forwarded-Host", "Cookie", "Host"] {
            assert!(validate_request("POST", "/Task", &[(h.into(), "x".into())]).is_err(), "{h} must be refused");
        }
    }
}
