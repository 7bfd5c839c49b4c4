//! The demo's built-in upstream: a tiny MCP server on stdin/stdout with a few harmless tools
//! and a small in-memory policy library (search, and update, which needs more scope).
//! Later issues replace it with the reference multi-tenant backend.

use std::{
    borrow::Cow,
    sync::{Arc, PoisonError},
};

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
    let library = [
        ("POL-1", "Annual leave: 25 days, requested two weeks ahead."),
        ("POL-2", "Expenses: receipts within 30 days."),
        ("POL-3", "Remote work: up to three days a week."),
    ];
    let upstream = DemoUpstream {
        policies: std::sync::Mutex::new(
            library
                .iter()
                .map(|(id, text)| ((*id).to_owned(), (*text).to_owned()))
                .collect(),
        ),
    };
    let service = upstream.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

struct DemoUpstream {
    policies: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

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
            tool(
                "search_policies",
                "Search the policy library; returns matching policies, one per line.",
                json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
            ),
            tool(
                "update_policy",
                "Replace the text of a policy.",
                json!({"type": "object", "properties": {"id": {"type": "string"}, "text": {"type": "string"}}, "required": ["id", "text"]}),
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
            "search_policies" => {
                let query = arguments
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase();
                let policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
                let found: Vec<String> = policies
                    .iter()
                    .filter(|(_, text)| text.to_lowercase().contains(&query))
                    .map(|(id, text)| format!("{id}: {text}"))
                    .collect();
                if found.is_empty() {
                    "no policy matches".to_owned()
                } else {
                    found.join("\n")
                }
            }
            "update_policy" => {
                let field = |key: &str| arguments.get(key).and_then(Value::as_str);
                let (Some(id), Some(text)) = (field("id"), field("text")) else {
                    return Ok(CallToolResult::error(vec![ContentBlock::text(
                        "`id` and `text` are required",
                    )])
                    .into());
                };
                let mut policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
                match policies.get_mut(id) {
                    Some(policy) => {
                        text.clone_into(policy);
                        format!("{id} updated")
                    }
                    None => {
                        return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                            "no policy `{id}`"
                        ))])
                        .into());
                    }
                }
            }
            _ => return Err(McpError::invalid_params("tool not found", None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}
