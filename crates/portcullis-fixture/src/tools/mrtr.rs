//! The suite's `test_input_required_result_*` tools (SEP-2322 multi round-trip requests).
//!
//! Each asks through [`crate::exchange`], so on a 2025-11-25 session the same tools ask in-band.
//! Keys, messages and schemas follow the suite's scenario descriptions.

use rmcp::{ErrorData, model::CallToolResponse};
use serde_json::{Value, json};

use super::{Call, text};
use crate::exchange::{Interrupt, Question, StatePolicy};

fn name_question(key: &'static str, message: &str) -> Result<Question, ErrorData> {
    Question::elicit(key, message, one_string_field("name"))
}

fn one_string_field(field: &str) -> Value {
    json!({
        "type": "object",
        "properties": { field: { "type": "string" } },
        "required": [field]
    })
}

/// A1: one elicitation, no `requestState`, so a retry carrying only the answer completes.
pub(super) async fn elicitation(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let question = name_question("user_name", "What is your name?")?;
    let answers = call
        .exchange()
        .ask(vec![question], StatePolicy::Unsealed)
        .await?;
    // A declined or cancelled form is a valid answer; there is just no name in it.
    let name = answers
        .accepted_text("user_name", "name")
        .unwrap_or_else(|| "stranger".to_owned());
    Ok(text(format!("Hello, {name}!")))
}

/// A2: one sampling request.
pub(super) async fn sampling(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let question = Question::sample("capital_question", "What is the capital of France?", 100);
    let answers = call
        .exchange()
        .ask(vec![question], StatePolicy::Unsealed)
        .await?;
    let reply = answers
        .sampled_text("capital_question")
        .unwrap_or_else(|| "no response".to_owned());
    Ok(text(format!("Sampling result: {reply}")))
}

/// A3: one `roots/list` request.
pub(super) async fn list_roots(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let question = Question::list_roots("client_roots");
    let answers = call
        .exchange()
        .ask(vec![question], StatePolicy::Unsealed)
        .await?;
    let uris = answers.root_uris("client_roots").unwrap_or_default();
    Ok(text(format!("Client roots: {}", uris.join(", "))))
}

/// A4 and A12: the answer counts only with the sealed `requestState` issued alongside the
/// question; a tampered one is an invalid-params error.
pub(super) async fn request_state(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let schema = json!({
        "type": "object",
        "properties": { "ok": { "type": "boolean" } },
        "required": ["ok"]
    });
    let question = Question::elicit("confirm", "Please confirm", schema)?;
    let answers = call
        .exchange()
        .ask(vec![question], StatePolicy::sealed(1, Vec::new()))
        .await?;
    let confirmed = answers
        .elicitation("confirm")
        .and_then(|result| result.content.as_ref())
        .and_then(|content| content.get("ok"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(text(format!("state-ok: confirmed={confirmed}")))
}

/// A5: elicitation, sampling and roots in one round.
pub(super) async fn multiple_inputs(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let questions = vec![
        name_question("user_name", "What is your name?")?,
        Question::sample("greeting", "Generate a greeting", 50),
        Question::list_roots("client_roots"),
    ];
    let answers = call
        .exchange()
        .ask(questions, StatePolicy::sealed(1, Vec::new()))
        .await?;
    let name = answers
        .accepted_text("user_name", "name")
        .unwrap_or_default();
    let greeting = answers.sampled_text("greeting").unwrap_or_default();
    let roots = answers.root_uris("client_roots").unwrap_or_default().len();
    Ok(text(format!(
        "Received all inputs: name={name}, greeting={greeting}, roots={roots}"
    )))
}

/// A6: two rounds. The name from round one rides in the sealed state of round two, so the
/// server keeps nothing between requests.
pub(super) async fn multi_round(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let exchange = call.exchange();
    let prior = exchange.prior()?.unwrap_or_default();
    let name = match (prior.round, prior.carried.first()) {
        (2, Some(name)) => name.clone(),
        _ => {
            let question = name_question("step1", "Step 1: What is your name?")?;
            let answers = exchange
                .ask(vec![question], StatePolicy::sealed(1, Vec::new()))
                .await?;
            answers.accepted_text("step1", "name").unwrap_or_default()
        }
    };
    let question = Question::elicit(
        "step2",
        "Step 2: What is your favorite color?",
        one_string_field("color"),
    )?;
    let answers = exchange
        .ask(vec![question], StatePolicy::sealed(2, vec![name.clone()]))
        .await?;
    let color = answers.accepted_text("step2", "color").unwrap_or_default();
    Ok(text(format!("Multi-round complete: {name} likes {color}")))
}

/// A13: ask only for what the client declared it can answer.
pub(super) async fn capabilities(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    let exchange = call.exchange();
    let questions: Vec<Question> = [
        name_question("user_name", "What is your name?")?,
        Question::sample("capital_question", "What is the capital of France?", 100),
        Question::list_roots("client_roots"),
    ]
    .into_iter()
    .filter(|question| exchange.client_supports(question))
    .collect();
    if questions.is_empty() {
        return Ok(text(
            "No input requested: the client declared none of elicitation, sampling or roots",
        ));
    }
    let answers = exchange
        .ask(questions, StatePolicy::sealed(1, Vec::new()))
        .await?;
    let received: Vec<&str> = answers.keys().collect();
    Ok(text(format!(
        "capabilities-ok: received {}",
        received.join(",")
    )))
}
