//! Tool definitions: descriptions and input schemas, as `tools/list` shows them.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use super::FixtureTool;

/// Every tool definition, in listing order.
pub(crate) fn catalog() -> Vec<Tool> {
    FixtureTool::ALL.into_iter().map(definition).collect()
}

/// The definition of `tool`.
pub(crate) fn definition(tool: FixtureTool) -> Tool {
    Tool::new(tool.name(), description(tool), Arc::new(input_schema(tool)))
}

fn description(tool: FixtureTool) -> &'static str {
    match tool {
        FixtureTool::SimpleText => "Returns a simple text response",
        FixtureTool::ImageContent => "Returns a 1x1 PNG image",
        FixtureTool::AudioContent => "Returns a short WAV audio clip",
        FixtureTool::EmbeddedResource => "Returns an embedded text resource",
        FixtureTool::MultipleContentTypes => "Returns text, image and resource content together",
        FixtureTool::ErrorHandling => "Always fails with a tool error (isError: true)",
        FixtureTool::JsonSchema2020 => "Tool with JSON Schema 2020-12 features",
        FixtureTool::ToolWithLogging => "Sends three info log messages while it runs",
        FixtureTool::LoggingTool => {
            "Sends log messages only when the request asks for them with a log level"
        }
        FixtureTool::ToolWithProgress => "Reports progress 0, 50 and 100 of 100",
        FixtureTool::Reconnection => "Completes after a short pause, for SSE resumption tests",
        FixtureTool::TriggerToolChange => "Announces that the tool list changed",
        FixtureTool::TriggerPromptChange => "Announces that the prompt list changed",
        FixtureTool::MissingCapability => "Requires the client to declare the sampling capability",
        FixtureTool::Sampling => "Asks the client to sample an LLM completion for a prompt",
        FixtureTool::Elicitation => "Asks the user for a username and an email address",
        FixtureTool::ElicitationDefaults => {
            "Elicits a form whose fields carry defaults for every primitive type (SEP-1034)"
        }
        FixtureTool::ElicitationEnums => "Elicits a form with all five enum styles (SEP-1330)",
        FixtureTool::StreamingElicitation => "Needs one elicitation before it completes",
        FixtureTool::InputElicitation => "Input-required result asking for the user's name",
        FixtureTool::InputSampling => "Input-required result asking for a sampled completion",
        FixtureTool::InputListRoots => "Input-required result asking for the client's roots",
        FixtureTool::InputRequestState => {
            "Input-required result whose answer is bound to a sealed requestState"
        }
        FixtureTool::InputMultipleInputs => {
            "Input-required result asking for elicitation, sampling and roots at once"
        }
        FixtureTool::InputMultiRound => "Input-required results over two rounds of elicitation",
        FixtureTool::InputTamperedState => "Rejects a requestState that fails integrity checks",
        FixtureTool::InputCapabilities => {
            "Asks only for input the client declared a capability for"
        }
        FixtureTool::Greet => "Returns a greeting; never runs as a task",
        FixtureTool::SlowCompute => {
            "Sleeps for `seconds`, as a task when the client supports the tasks extension"
        }
        FixtureTool::FailingJob => "Task that completes with a tool error (task required)",
        FixtureTool::ProtocolErrorJob => "Task that fails with a protocol-level error",
        FixtureTool::ConfirmDelete => {
            "Task that waits for the user to confirm deleting a file (task required)"
        }
        FixtureTool::MultiInput => "Task that waits for two confirmations at once (task required)",
        FixtureTool::ToolWithTask => {
            "Asks for a name by input-required result, then finishes as a task (task required)"
        }
        FixtureTool::Echo => "Returns its text argument",
        FixtureTool::Slow => {
            "Sleeps for ms milliseconds, then returns \"done\"; honours cancellation"
        }
        FixtureTool::Crash => {
            "Exits the fixture process without answering (upstream-failure tests)"
        }
        FixtureTool::HeaderEcho => {
            "Returns its region argument, which travels in an Mcp-Param header"
        }
    }
}

fn input_schema(tool: FixtureTool) -> JsonObject {
    let schema = match tool {
        FixtureTool::Sampling => {
            object_with_strings(&[("prompt", "The prompt to send to the LLM")])
        }
        FixtureTool::Elicitation => {
            object_with_strings(&[("message", "The message to show the user")])
        }
        FixtureTool::Echo => object_with_strings(&[("text", "The text to return")]),
        FixtureTool::Greet => object_with_strings(&[("name", "Who to greet")]),
        FixtureTool::SlowCompute => json!({
            "type": "object",
            "properties": {
                "seconds": { "type": "number", "minimum": 0, "description": "How long to work" },
                "label": { "type": "string", "description": "A label echoed in the result" }
            }
        }),
        FixtureTool::ConfirmDelete => json!({
            "type": "object",
            "properties": {
                "filename": { "type": "string", "description": "The file to (pretend to) delete" }
            }
        }),
        FixtureTool::Slow => json!({
            "type": "object",
            "properties": {
                "ms": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How long to sleep, in milliseconds"
                }
            },
            "required": ["ms"]
        }),
        // See: SEP-2243, `x-mcp-header` mirrors the argument into an `Mcp-Param-Region` header.
        FixtureTool::HeaderEcho => json!({
            "type": "object",
            "properties": {
                "region": {
                    "type": "string",
                    "description": "The region to return",
                    "x-mcp-header": "Region"
                }
            },
            "required": ["region"]
        }),
        FixtureTool::JsonSchema2020 => json_schema_2020(),
        _ => json!({ "type": "object", "properties": {} }),
    };
    match schema {
        Value::Object(map) => map,
        // Every arm above builds an object literal.
        _ => JsonObject::new(),
    }
}

/// An object schema whose listed properties are all required strings.
fn object_with_strings(properties: &[(&str, &str)]) -> Value {
    let described: JsonObject = properties
        .iter()
        .map(|(name, description)| {
            let property = json!({ "type": "string", "description": description });
            ((*name).to_owned(), property)
        })
        .collect();
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    json!({ "type": "object", "properties": described, "required": required })
}

/// The schema the suite's json-schema-2020-12 scenario expects verbatim: `$schema`, `$defs` with
/// an `$anchor`, composition and conditional keywords must all survive `tools/list`.
///
/// See: SEP-1613, SEP-2106.
fn json_schema_2020() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"]
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_description() {
        for tool in catalog() {
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                tool.name
            );
            assert!(
                tool.description.is_some_and(|d| !d.is_empty()),
                "{}",
                tool.name
            );
        }
    }

    #[test]
    fn tool_names_match_the_sep_986_format() {
        for tool in catalog() {
            assert!(tool.name.len() <= 64);
            assert!(
                tool.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c)),
                "{}",
                tool.name
            );
        }
    }
}
