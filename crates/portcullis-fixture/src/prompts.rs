//! The `test_*` prompts, including one that needs input first (SEP-2322 on `prompts/get`).

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult, Prompt,
        PromptArgument, PromptMessage, ResourceContents, Role,
    },
    service::RequestContext,
};
use serde_json::json;

use crate::{
    assets::RED_PIXEL_PNG,
    exchange::{Exchange, Interrupt, Question, StatePolicy},
    state::Shared,
};

const SIMPLE: &str = "test_simple_prompt";
const WITH_ARGUMENTS: &str = "test_prompt_with_arguments";
const WITH_EMBEDDED_RESOURCE: &str = "test_prompt_with_embedded_resource";
const WITH_IMAGE: &str = "test_prompt_with_image";
const INPUT_REQUIRED: &str = "test_input_required_result_prompt";

/// The prompt `completion/complete` can suggest argument values for.
pub(crate) const COMPLETABLE: &str = WITH_ARGUMENTS;

pub(crate) fn list() -> Vec<Prompt> {
    let required = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(SIMPLE, Some("A simple prompt without arguments"), None)
            .with_title("Simple Test Prompt"),
        Prompt::new(
            WITH_ARGUMENTS,
            Some("A prompt with required arguments"),
            Some(vec![
                required("arg1", "First test argument"),
                required("arg2", "Second test argument"),
            ]),
        )
        .with_title("Prompt With Arguments"),
        Prompt::new(
            WITH_EMBEDDED_RESOURCE,
            Some("A prompt that includes an embedded resource"),
            Some(vec![required(
                "resourceUri",
                "URI of the resource to embed",
            )]),
        )
        .with_title("Prompt With Embedded Resource"),
        Prompt::new(
            WITH_IMAGE,
            Some("A prompt that includes image content"),
            None,
        )
        .with_title("Prompt With Image"),
        Prompt::new(
            INPUT_REQUIRED,
            Some("A prompt that asks the user for context before it is returned"),
            None,
        )
        .with_title("Prompt Needing Input"),
    ]
}

/// Answer `prompts/get`.
pub(crate) async fn get(
    request: &GetPromptRequestParams,
    context: &RequestContext<RoleServer>,
    shared: &Shared,
) -> Result<GetPromptResponse, ErrorData> {
    let messages = match request.name.as_str() {
        SIMPLE => vec![user_text("This is a simple prompt for testing.")],
        WITH_ARGUMENTS => {
            let arg1 = argument(request, "arg1")?;
            let arg2 = argument(request, "arg2")?;
            vec![user_text(format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            ))]
        }
        WITH_EMBEDDED_RESOURCE => {
            let uri = argument(request, "resourceUri")?;
            let resource = ResourceContents::text("Embedded resource content for testing.", uri);
            vec![
                PromptMessage::new(Role::User, ContentBlock::resource(resource)),
                user_text("Please process the embedded resource above."),
            ]
        }
        WITH_IMAGE => vec![
            PromptMessage::new(Role::User, ContentBlock::image(RED_PIXEL_PNG, "image/png")),
            user_text("Please analyze the image above."),
        ],
        INPUT_REQUIRED => {
            let exchange = Exchange::new(
                context,
                shared,
                INPUT_REQUIRED,
                request.input_responses.as_ref(),
                request.request_state.as_deref(),
            );
            return Interrupt::finish(input_required(&exchange).await);
        }
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt `{other}`"),
                None,
            ));
        }
    };
    Ok(GetPromptResult::new(messages).into())
}

async fn input_required(exchange: &Exchange<'_>) -> Result<GetPromptResponse, Interrupt> {
    let schema = json!({
        "type": "object",
        "properties": { "context": { "type": "string" } },
        "required": ["context"]
    });
    let question = Question::elicit(
        "user_context",
        "What context should the prompt use?",
        schema,
    )?;
    let answers = exchange.ask(vec![question], StatePolicy::Unsealed).await?;
    let context = answers
        .accepted_text("user_context", "context")
        .unwrap_or_default();
    Ok(GetPromptResult::new(vec![user_text(format!(
        "Answer using this context: {context}"
    ))])
    .into())
}

fn user_text(text: impl Into<String>) -> PromptMessage {
    PromptMessage::new_text(Role::User, text)
}

/// A required string argument; missing ones are invalid params.
fn argument<'a>(request: &'a GetPromptRequestParams, name: &str) -> Result<&'a str, ErrorData> {
    request
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get(name))
        .and_then(|value| value.as_str())
        .ok_or_else(|| {
            ErrorData::invalid_params(format!("missing required argument `{name}`"), None)
        })
}
