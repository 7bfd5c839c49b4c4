//! The tools of DESIGN.md §5, and `describe_object` for the gateway's attribute resolver.

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError,
    model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    identity::Caller,
    store::{ObjectKind, Store, StoreError},
};

/// The tools, as `tools/list` shows them.
pub(crate) fn catalog() -> Vec<Tool> {
    let read = || ToolAnnotations::new().read_only(true).open_world(false);
    let write = || ToolAnnotations::new().read_only(false).open_world(false);
    vec![
        tool(
            "search_policies",
            "Search the policy documents of your tenant by title or text.",
            &[("query", "Text to look for; empty matches every document.")],
            read(),
        ),
        tool(
            "read_policy",
            "Read one policy document of your tenant by id.",
            &[("id", "The document id, such as POL-A1.")],
            read(),
        ),
        tool(
            "update_policy",
            "Replace the text of a policy document.",
            &[("id", "The document id."), ("text", "The new text.")],
            write().destructive(true).idempotent(true),
        ),
        tool(
            "create_ticket",
            "Open a ticket in your tenant.",
            &[("title", "What the ticket is about.")],
            write().destructive(false),
        ),
        tool(
            "close_ticket",
            "Close a ticket of your tenant.",
            &[("id", "The ticket id, such as TCK-A1.")],
            write().destructive(false).idempotent(true),
        ),
        tool(
            "delete_record",
            "Delete a record of your tenant.",
            &[("id", "The record id, such as REC-A1.")],
            write().destructive(true).idempotent(true),
        ),
        tool(
            "grant_access",
            "Grant a role to a subject in your tenant (recorded only).",
            &[("subject", "Who gets the role."), ("role", "The role.")],
            write().destructive(false),
        ),
        tool(
            "send_email",
            "Send an email (queued in the outbox only).",
            &[
                ("to", "The recipient."),
                ("subject", "The subject line."),
                ("body", "The message."),
            ],
            write().destructive(false).open_world(true),
        ),
        tool(
            "describe_object",
            "The tenant, owner and classification of an object of your tenant, for the \
             gateway's attribute resolver.",
            &[
                ("kind", "policy, ticket, record or hr-report."),
                ("id", "The object id."),
            ],
            read(),
        )
        .with_raw_output_schema(Arc::new(object(json!({
            "type": "object",
            "properties": {
                "exists": {"type": "boolean"},
                "tenant": {"type": "string"},
                "owner": {"type": "string"},
                "classification": {"type": "string", "enum": ["internal", "confidential"]}
            },
            "required": ["exists"]
        })))),
    ]
}

/// Run tool `name` for `caller`. Tool-level failures (a bad argument, an object the caller
/// cannot see) are error results the caller reads; an unknown tool or a broken database is a
/// JSON-RPC error.
pub(crate) fn call(
    store: &Store,
    caller: &Caller,
    name: &str,
    arguments: &JsonObject,
) -> Result<CallToolResult, McpError> {
    match run(store, caller, name, arguments) {
        Ok(value) => Ok(CallToolResult::structured(value)),
        Err(Failure::Missing(key)) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "`{key}` is required and must be a string"
        ))])),
        Err(Failure::Invalid(message)) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
        // SECURITY: the text names the kind only, never the id or the reason, so an object of
        // another tenant, a confidential one and a missing one answer byte for byte the same.
        Err(Failure::NotFound(message)) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
        Err(Failure::UnknownTool) => Err(McpError::invalid_params("tool not found", None)),
        Err(Failure::Store(error)) => Err(crate::internal(&error)),
        Err(Failure::Encode(error)) => Err(crate::internal(&error)),
    }
}

enum Failure {
    /// A required string argument is absent or not a string.
    Missing(&'static str),
    /// An argument has a value the tool does not know.
    Invalid(&'static str),
    NotFound(&'static str),
    UnknownTool,
    Store(StoreError),
    Encode(serde_json::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

fn run(
    store: &Store,
    caller: &Caller,
    name: &str,
    arguments: &JsonObject,
) -> Result<Value, Failure> {
    let arg = |key: &'static str| text(arguments, key);
    match name {
        "search_policies" => {
            let policies = store.search_policies(caller, arg("query")?)?;
            Ok(json!({ "policies": policies }))
        }
        "read_policy" => {
            let policy = store.policy(caller, arg("id")?)?;
            found(policy, "policy not found")
        }
        "update_policy" => {
            let policy = store.update_policy(caller, arg("id")?, arg("text")?)?;
            found(policy, "policy not found")
        }
        "create_ticket" => to_value(&store.create_ticket(caller, arg("title")?)?),
        "close_ticket" => found(store.close_ticket(caller, arg("id")?)?, "ticket not found"),
        "delete_record" => {
            let id = arg("id")?;
            if !store.delete_record(caller, id)? {
                return Err(Failure::NotFound("record not found"));
            }
            Ok(json!({ "deleted": id }))
        }
        "grant_access" => {
            let (subject, role) = (arg("subject")?, arg("role")?);
            store.grant_access(caller, subject, role)?;
            Ok(json!({ "granted": { "subject": subject, "role": role } }))
        }
        "send_email" => {
            store.send_email(caller, arg("to")?, arg("subject")?, arg("body")?)?;
            Ok(json!({ "queued": true }))
        }
        "describe_object" => {
            let kind = ObjectKind::parse(arg("kind")?).ok_or(Failure::Invalid(
                "`kind` must be one of policy, ticket, record, hr-report",
            ))?;
            to_value(&store.describe(caller, kind, arg("id")?)?)
        }
        _ => Err(Failure::UnknownTool),
    }
}

fn text<'a>(arguments: &'a JsonObject, key: &'static str) -> Result<&'a str, Failure> {
    arguments
        .get(key)
        .and_then(Value::as_str)
        .ok_or(Failure::Missing(key))
}

fn found<T: Serialize>(object: Option<T>, missing: &'static str) -> Result<Value, Failure> {
    match object {
        Some(object) => to_value(&object),
        None => Err(Failure::NotFound(missing)),
    }
}

fn to_value<T: Serialize>(object: &T) -> Result<Value, Failure> {
    serde_json::to_value(object).map_err(Failure::Encode)
}

fn tool(
    name: &'static str,
    description: &'static str,
    arguments: &[(&str, &str)],
    annotations: ToolAnnotations,
) -> Tool {
    let properties: serde_json::Map<String, Value> = arguments
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({"type": "string", "description": description}),
            )
        })
        .collect();
    let required: Vec<&str> = arguments.iter().map(|(name, _)| *name).collect();
    let schema = object(json!({
        "type": "object",
        "properties": properties,
        "required": required,
    }));
    Tool::new(name, description, Arc::new(schema)).with_annotations(annotations)
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}
