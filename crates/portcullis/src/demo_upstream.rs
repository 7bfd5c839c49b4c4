//! The demo's built-in upstream: a tiny MCP server on stdin/stdout with a few harmless tools.
//! Later issues replace it with the reference multi-tenant backend.

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

pub(crate) async fn run() -> anyhow::Result<()> {
    let service = DemoUpstream.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

struct DemoUpstream;

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let schema = match schema {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Tool::new(
        Cow::Borrowed(name),
        Cow::Borrowed(description),
        Arc::new(schema),
    )
}

impl ServerHandler for DemoUpstream {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info.server_info =
            Implementation::new("portcullis-demo-upstream", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![
            tool(
                "echo",
                "Return the given text unchanged.",
                json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            ),
            tool(
                "add",
                "Add two numbers.",
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.unwrap_or_default();
        let text = match request.name.as_ref() {
            "echo" => match arguments.get("text").and_then(Value::as_str) {
                Some(text) => text.to_owned(),
                None => {
                    return Ok(CallToolResult::error(vec![ContentBlock::text(
                        "`text` is required",
                    )])
                    .into());
                }
            },
            "add" => {
                let number = |key: &str| arguments.get(key).and_then(Value::as_f64);
                match (number("a"), number("b")) {
                    (Some(a), Some(b)) => (a + b).to_string(),
                    _ => {
                        return Ok(CallToolResult::error(vec![ContentBlock::text(
                            "`a` and `b` must be numbers",
                        )])
                        .into());
                    }
                }
            }
            _ => return Err(McpError::invalid_params("tool not found", None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}
