//! The door's tools over the Model Context Protocol (rmcp, the official Rust SDK):
//!
//! - **streamable HTTP** at `/mcp` on the door's listener: the caller is the one
//!   the door's key-and-purpose check put into the request (every MCP POST passes
//!   that check), so scopes and audit are those of the HTTP API;
//! - **stdio** (`ehrgate door mcp`): for an agent that starts its tools as a
//!   subprocess. The tools are listed and called through the running gateway's HTTP
//!   API with the client's key, so there is one throttle, one token cache and one
//!   audit however a client connects.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::door::{Answer, Caller};
use crate::http::{PURPOSE_HEADER, Shared};
use crate::tools::{self, ToolSpec};

const INSTRUCTIONS: &str = "Tools of an EHR integration gateway. Reads come from the EHR now, shaped by the site's adapter; writes run adapter actions, never raw requests. Every call is audited with your client id and declared purpose.";

fn tool(spec: ToolSpec) -> Tool {
    let schema: JsonObject = match spec.input_schema {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    let annotations = ToolAnnotations::new().read_only(!spec.write);
    Tool::new(spec.name, spec.description, schema).with_annotations(annotations)
}

fn result(a: Answer) -> CallToolResponse {
    if a.status == 200 {
        CallToolResult::structured(a.body).into()
    } else {
        let mut body = a.body;
        body["status"] = json!(a.status);
        if let Some(s) = a.retry_after_s {
            body["retry_after_s"] = json!(s);
        }
        CallToolResult::structured_error(body).into()
    }
}

/// Where the tools run: in this process (HTTP transport) or on a gateway reached
/// over its HTTP API (stdio transport).
#[derive(Clone)]
enum Backend {
    Local(Shared),
    Remote(Arc<Remote>),
}

#[derive(Clone)]
pub struct McpDoor {
    backend: Backend,
}

fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("no authenticated caller on this request", None))
}

impl ServerHandler for McpDoor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ehrgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(&self, _req: Option<PaginatedRequestParams>, ctx: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        let specs = match &self.backend {
            Backend::Local(_) => tools::catalogue(&caller(&ctx)?.client),
            Backend::Remote(r) => r.list().await?,
        };
        Ok(ListToolsResult::with_all_items(specs.into_iter().map(tool).collect()))
    }

    async fn call_tool(&self, req: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(req.arguments.unwrap_or_default());
        let answer = match &self.backend {
            Backend::Local(s) => s.door.call(&caller(&ctx)?, &req.name, &args).await,
            Backend::Remote(r) => r.call(&req.name, &args).await,
        };
        Ok(result(answer))
    }
}

/// The MCP service mounted at `/mcp` (behind the door's authentication layer).
pub(crate) fn service(shared: Shared, remote: bool, shutdown: watch::Receiver<bool>) -> StreamableHttpService<McpDoor, LocalSessionManager> {
    let ct = CancellationToken::new();
    let stop = ct.clone();
    let mut rx = shutdown;
    tokio::spawn(async move {
        let _ = rx.wait_for(|v| *v).await;
        stop.cancel();
    });
    let handler = McpDoor { backend: Backend::Local(shared) };
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(ct).with_max_request_body_bytes(1 << 20);
    if remote {
        config = config.disable_allowed_hosts();
    }
    StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(LocalSessionManager::default()), config)
}

/// A gateway's door reached over HTTP, with one client's key and purpose.
struct Remote {
    http: reqwest::Client,
    url: String,
}

impl Remote {
    fn new(url: &str, key: &str, purpose: &str) -> Result<Remote, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| "the key is not a valid header value".to_string())?;
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        let p = reqwest::header::HeaderValue::from_str(purpose).map_err(|_| "the purpose is not a valid header value".to_string())?;
        headers.insert(PURPOSE_HEADER, p);
        let http = reqwest::Client::builder().default_headers(headers).no_proxy().build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Remote { http, url: url.trim_end_matches('/').to_string() })
    }

    async fn list(&self) -> Result<Vec<ToolSpec>, ErrorData> {
        let fail = |m: String| ErrorData::internal_error(format!("the gateway's tool list: {m}"), None);
        let resp = self.http.get(format!("{}/v1/tools", self.url)).send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        if status != 200 {
            return Err(fail(format!("{status} {}", body["message"].as_str().unwrap_or(""))));
        }
        let specs = body["tools"].as_array().cloned().unwrap_or_default();
        Ok(specs
            .into_iter()
            .filter_map(|t| {
                let name = tools::known(t["name"].as_str()?)?;
                Some(ToolSpec { name, description: t["description"].as_str().unwrap_or("").to_string(), input_schema: t["inputSchema"].clone(), write: t["write"].as_bool().unwrap_or(true) })
            })
            .collect())
    }

    async fn call(&self, name: &str, args: &Value) -> Answer {
        let Some(name) = tools::known(name) else {
            return Answer { status: 404, body: json!({"error": "unknown-tool", "message": "no such tool"}), retry_after_s: None };
        };
        let sent = self.http.post(format!("{}/v1/tools/{name}", self.url)).json(args).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Answer { status: 503, body: json!({"error": "gateway-unreachable", "message": format!("the gateway's door: {e}")}), retry_after_s: Some(5) },
        };
        let status = resp.status().as_u16();
        let retry_after_s = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = resp.json().await.unwrap_or_else(|e| json!({"error": "bad-answer", "message": format!("the gateway's answer is not JSON: {e}")}));
        Answer { status, body, retry_after_s }
    }
}

/// `ehrgate door mcp`: serve the tools on stdin/stdout until the client closes.
pub async fn stdio(url: &str, key: &str, purpose: &str) -> Result<(), String> {
    let remote = Remote::new(url, key, purpose)?;
    // Fail early and clearly (on stderr) when the gateway refuses the key or purpose.
    remote.list().await.map_err(|e| e.message.to_string())?;
    let handler = McpDoor { backend: Backend::Remote(Arc::new(remote)) };
    let running = handler.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP on stdio: {e}"))?;
    running.waiting().await.map_err(|e| format!("MCP on stdio: {e}"))?;
    Ok(())
}
