//! `completion/complete`: prefix matches from small fixed vocabularies.

use rmcp::{
    ErrorData,
    model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference},
};

use crate::prompts;

/// Suggestions for the arguments of the completable prompt.
const PROMPT_WORDS: &[&str] = &["paris", "park", "party", "test", "testValue1", "testValue2"];

/// Suggestions for the `{id}` of `test://template/{id}/data`.
const TEMPLATE_IDS: &[&str] = &["1", "2", "3", "123"];

const TEMPLATE_URI: &str = "test://template/{id}/data";

/// Values starting with the typed prefix; an unknown reference gets no suggestions.
pub(crate) fn complete(request: &CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
    let vocabulary: &[&str] = match &request.r#ref {
        Reference::Prompt(prompt) if prompt.name == prompts::COMPLETABLE => PROMPT_WORDS,
        Reference::Resource(template)
            if template.uri == TEMPLATE_URI && request.argument.name == "id" =>
        {
            TEMPLATE_IDS
        }
        _ => &[],
    };
    let prefix = request.argument.value.as_str();
    let values: Vec<String> = vocabulary
        .iter()
        .filter(|word| word.starts_with(prefix))
        .map(|word| (*word).to_owned())
        .collect();
    let completion = CompletionInfo::with_all_values(values)
        .map_err(|error| ErrorData::internal_error(error, None))?;
    Ok(CompleteResult::new(completion))
}
