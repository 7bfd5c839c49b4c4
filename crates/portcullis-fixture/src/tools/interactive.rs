//! The suite's sampling and elicitation tools.
//!
//! On a 2025-11-25 session they ask the client in-band, as the suite's tools-call-sampling,
//! tools-call-elicitation and elicitation-sep1034/sep1330 scenarios expect. On 2026-07-28 the same
//! tools answer with an input-required result bound to a sealed `requestState`, so gateway tests
//! can drive both eras through one tool name.

use rmcp::model::CallToolResponse;
use serde_json::{Value, json};

use super::{Call, text};
use crate::exchange::{Answers, Interrupt, Question, StatePolicy};

/// The key each tool's single question has in `inputRequests`.
const KEY: &str = "input";

pub(super) async fn sampling(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let prompt = call.string_argument("prompt")?;
    let question = Question::sample(KEY, prompt, 100);
    let answers = ask_once(call, question).await?;
    let reply = answers.sampled_text(KEY).unwrap_or_default();
    Ok(text(format!("LLM response: {reply}")))
}

pub(super) async fn elicitation(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let message = call.string_argument("message")?;
    let schema = json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    });
    let question = Question::elicit(KEY, message, schema)?;
    answer_with(call, question, "User response").await
}

/// See: SEP-1034, every primitive type with a default value.
pub(super) async fn elicitation_defaults(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verified user", "default": true }
        }
    });
    let question = Question::elicit(KEY, "Please review and update the form fields", schema)?;
    answer_with(call, question, "Elicitation completed").await
}

/// See: SEP-1330, untitled and titled single-select, legacy `enumNames`, untitled and titled
/// multi-select.
pub(super) async fn elicitation_enums(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let titled = |prefix: &str, titles: [&str; 3]| -> Vec<Value> {
        titles
            .iter()
            .enumerate()
            .map(|(index, title)| json!({ "const": format!("{prefix}{}", index + 1), "title": title }))
            .collect()
    };
    let schema = json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Pick one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Pick one titled option",
                "oneOf": titled("value", ["First Option", "Second Option", "Third Option"])
            },
            "legacyEnum": {
                "type": "string",
                "description": "Pick one (legacy enumNames)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Pick any options",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Pick any titled options",
                "items": {
                    "anyOf": titled("value", ["First Choice", "Second Choice", "Third Choice"])
                }
            }
        }
    });
    let question = Question::elicit(KEY, "Please choose from each kind of enum", schema)?;
    answer_with(call, question, "Elicitation completed").await
}

/// One confirmation; on 2026-07-28 the response stream carries only the input-required result.
pub(super) async fn streaming_elicitation(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let schema = json!({
        "type": "object",
        "properties": { "confirmed": { "type": "boolean", "description": "Continue?" } },
        "required": ["confirmed"]
    });
    let question = Question::elicit(KEY, "Please confirm to continue", schema)?;
    answer_with(call, question, "Streaming elicitation completed").await
}

/// Ask one elicitation and report the user's action and content after `prefix`.
async fn answer_with(
    call: &Call<'_>,
    question: Question,
    prefix: &str,
) -> Result<CallToolResponse, Interrupt> {
    let answers = ask_once(call, question).await?;
    Ok(text(format!("{prefix}: {}", describe(&answers))))
}

async fn ask_once(call: &Call<'_>, question: Question) -> Result<Answers, Interrupt> {
    call.exchange()
        .ask(vec![question], StatePolicy::sealed(1, Vec::new()))
        .await
}

/// `action=<action>, content=<json>` for the elicitation under [`KEY`].
fn describe(answers: &Answers) -> String {
    match answers.elicitation(KEY) {
        Some(result) => {
            let action = serde_json::to_value(&result.action).unwrap_or(Value::Null);
            let action = action.as_str().unwrap_or("unknown");
            let content = result.content.clone().unwrap_or_else(|| json!({}));
            format!("action={action}, content={content}")
        }
        None => "action=unknown, content={}".to_owned(),
    }
}
