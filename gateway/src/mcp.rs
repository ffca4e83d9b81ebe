//! The MCP server: every endpoint of every service in the registry as a
//! tool, on rmcp (the official SDK), over streamable HTTP or stdio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::Endpoint;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::Shared;

/// The longest tool name MCP clients take.
const MAX_NAME: usize = 64;

/// A tool call's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of the tool for `endpoint` of `service`: `<service>_<Type>_<Method>`
/// with every character MCP clients refuse (anything but ASCII letters,
/// digits, `_` and `-`; dots above all) as `_`, cut to 64 characters.
///
/// ```
/// assert_eq!(micro_gateway::tool_name("helloworld", "Greeter.Hello"), "helloworld_Greeter_Hello");
/// assert_eq!(micro_gateway::tool_name("shop.eu", "Orders.Place"), "shop_eu_Orders_Place");
/// ```
pub fn tool_name(service: &str, endpoint: &str) -> String {
    format!("{service}_{endpoint}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect()
}

/// Tool names to what they call, as last listed.
#[derive(Debug, Default)]
pub(crate) struct ToolNames {
    names: Mutex<HashMap<String, Target>>,
}

/// What a tool calls.
#[derive(Clone, Debug)]
struct Target {
    service: String,
    endpoint: String,
    /// The request is not an object: the tool's arguments hold it as
    /// `request`.
    wrapped: bool,
}

/// The MCP server of one session.
#[derive(Clone, Debug)]
struct Tools {
    shared: Arc<Shared>,
    /// A token for every call (stdio's `MICRO_TOKEN`); over HTTP each
    /// request's own `Authorization` is used.
    token: Option<String>,
}

/// rmcp's streamable HTTP service for the router's `/mcp`.
pub(crate) fn http_service(
    shared: Arc<Shared>,
    hosts: Option<Vec<String>>,
) -> StreamableHttpService<ToolsHandle, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    if let Some(hosts) = hosts {
        config = config.with_allowed_hosts(hosts);
    }
    StreamableHttpService::new(
        move || {
            Ok(ToolsHandle(Tools {
                shared: shared.clone(),
                token: None,
            }))
        },
        LocalSessionManager::default().into(),
        config,
    )
}

/// The handler type rmcp serves (a name for [`Tools`] outside this module).
#[derive(Clone, Debug)]
pub(crate) struct ToolsHandle(Tools);

pub(crate) async fn serve_stdio(shared: Arc<Shared>) -> micro::Result<()> {
    let tools = ToolsHandle(Tools {
        shared,
        token: std::env::var("MICRO_TOKEN").ok().filter(|t| !t.is_empty()),
    });
    let running = rmcp::serve_server(tools, rmcp::transport::io::stdio())
        .await
        .map_err(|e| micro::Error::internal(format!("mcp over stdio: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| micro::Error::internal(format!("mcp over stdio: {e}")))?;
    Ok(())
}

/// The JSON object schema a tool takes for `endpoint`'s request, and
/// whether the request is wrapped as the argument `request` (MCP's input
/// schema must be an object; a request that is not one is wrapped).
fn input_schema(endpoint: &Endpoint) -> (JsonObject, bool) {
    let Some(schema) = &endpoint.request_schema else {
        // No schema published (a type without one): any object.
        if endpoint.request == "()" {
            return (object(json!({ "type": "object", "properties": {} })), false);
        }
        return (object(json!({ "type": "object" })), false);
    };
    if schema.get("type").and_then(Value::as_str) == Some("object") {
        let mut schema = object(schema.clone());
        schema.remove("$schema");
        return (schema, false);
    }
    if endpoint.request == "()" || schema.get("type").and_then(Value::as_str) == Some("null") {
        return (object(json!({ "type": "object", "properties": {} })), false);
    }
    let mut inner = object(schema.clone());
    inner.remove("$schema");
    let defs = inner.remove("$defs");
    let mut wrapped = json!({
        "type": "object",
        "properties": { "request": Value::Object(inner) },
        "required": ["request"],
    });
    if let Some(defs) = defs {
        wrapped["$defs"] = defs;
    }
    (object(wrapped), true)
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// A tool's description: the endpoint's doc comment, its types, and who
/// may call it.
fn description(service: &str, endpoint: &Endpoint) -> String {
    let mut text = endpoint
        .metadata
        .get("description")
        .cloned()
        .unwrap_or_else(|| format!("Calls {} of the {service} service.", endpoint.name));
    text.push_str(&format!(
        "\n\n{service} {} ({} -> {})",
        endpoint.name, endpoint.request, endpoint.response
    ));
    match (
        endpoint.metadata.get("auth"),
        endpoint.metadata.get("scopes"),
    ) {
        (Some(auth), _) if auth == "public" => text.push_str("; public"),
        (_, Some(scopes)) => text.push_str(&format!("; needs scopes {scopes}")),
        _ => {}
    }
    text
}

impl Tools {
    /// Every unary endpoint of every service as a tool (streams are not
    /// tools: a tool call has one reply), remembering each name's target.
    async fn list(&self) -> Result<Vec<Tool>, ErrorData> {
        let registry = self.shared.backends.registry().clone();
        let rows = crate::inspect::services(registry.as_ref())
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut tools = Vec::new();
        let mut names = HashMap::new();
        for row in rows {
            // A service that left between the listing and now is skipped.
            let Ok(records) = crate::inspect::records(registry.as_ref(), &row.name).await else {
                continue;
            };
            // Versions share endpoint names: the first record's win.
            for record in &records {
                for endpoint in &record.endpoints {
                    if endpoint.metadata.contains_key("stream") {
                        continue;
                    }
                    let name = tool_name(&record.name, &endpoint.name);
                    if names.contains_key(&name) {
                        continue;
                    }
                    let (schema, wrapped) = input_schema(endpoint);
                    let mut tool = Tool::new(
                        name.clone(),
                        description(&record.name, endpoint),
                        Arc::new(schema),
                    );
                    if let Some(response) = &endpoint.response_schema
                        && response.get("type").and_then(Value::as_str) == Some("object")
                    {
                        let mut output = object(response.clone());
                        output.remove("$schema");
                        tool.output_schema = Some(Arc::new(output));
                    }
                    tool.title = Some(format!("{} {}", record.name, endpoint.name));
                    let mut meta = rmcp::model::MetaObject::new();
                    meta.insert("micro/service".into(), json!(record.name));
                    meta.insert("micro/endpoint".into(), json!(endpoint.name));
                    if let Some(scopes) = endpoint.metadata.get("scopes") {
                        meta.insert(
                            "micro/scopes".into(),
                            json!(scopes.split(',').collect::<Vec<_>>()),
                        );
                    }
                    tool.meta = Some(meta);
                    tools.push(tool);
                    names.insert(
                        name,
                        Target {
                            service: record.name.clone(),
                            endpoint: endpoint.name.clone(),
                            wrapped,
                        },
                    );
                }
            }
        }
        *self
            .shared
            .tools
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = names;
        Ok(tools)
    }

    /// The target of the tool `name`, listing again if it is not known.
    async fn target(&self, name: &str) -> Result<Target, ErrorData> {
        let known = |tools: &ToolNames| {
            (tools.names.lock().unwrap_or_else(|e| e.into_inner()))
                .get(name)
                .cloned()
        };
        if let Some(target) = known(&self.shared.tools) {
            return Ok(target);
        }
        self.list().await?;
        known(&self.shared.tools)
            .ok_or_else(|| ErrorData::invalid_params(format!("no tool named \"{name}\""), None))
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let target = self.target(&request.name).await?;
        // Over HTTP, the caller's own token; over stdio, MICRO_TOKEN.
        let token = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| crate::caller::token(&parts.headers, parts.uri.query()))
            .or_else(|| self.token.clone());
        if let Err(e) = self.shared.admit(token.as_deref()).await {
            return Ok(failure(&e));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let body = if target.wrapped {
            arguments.get("request").cloned().unwrap_or(Value::Null)
        } else {
            arguments
        };
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut options = CallOptions::new().timeout(CALL_TIMEOUT);
        if let Some(token) = &token {
            options = options.token(token);
        }
        let reply = self
            .shared
            .client
            .call_raw(
                &target.service,
                &target.endpoint,
                ContentType::Json,
                body,
                options,
            )
            .await;
        Ok(match reply {
            Ok((_, bytes)) => {
                let value: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
                let text = serde_json::to_string(&value).unwrap_or_default();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                if value.is_object() {
                    result.structured_content = Some(value);
                }
                result
            }
            Err(e) => failure(&e),
        })
    }
}

/// A call that failed, as a tool result the model reads: micro's error JSON.
fn failure(error: &micro::Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(error.to_json())])
}

impl ServerHandler for ToolsHandle {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "micro-gateway",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Each tool calls one endpoint of a micro service found in the registry. \
                 The arguments are the endpoint's request; the result is its JSON reply, \
                 or micro's error JSON ({id, code, detail, status}) with isError set.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.list().await?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.0.call(request, &context).await.map(Into::into)
    }
}
