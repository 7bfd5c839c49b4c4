//! One round of server-to-client questions (sampling, elicitation, roots), era-independent.
//!
//! On a 2025-11-25 session the questions go to the client as requests in the middle of the call.
//! On 2026-07-28 the server may not send requests, so the call ends with an input-required
//! (MRTR) result listing the questions, and the client retries with the answers in
//! `inputResponses`, echoing the `requestState` it was given.
//!
//! See: SEP-2322 (multi round-trip requests), SEP-2575 (stateless requests).
#![expect(
    deprecated,
    reason = "sampling and roots are SEP-2577-deprecated but still in the suite"
)]

use std::collections::BTreeMap;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability,
        ElicitationSchema, InputRequest, InputRequests, InputRequiredResult, InputResponses,
        ListRootsRequest, ListRootsResult, RootsCapabilities, SamplingCapability, SamplingMessage,
    },
    service::{RequestContext, ServiceError},
};
use serde_json::Value;

use crate::{
    era::Era,
    state::{RoundState, Shared},
};

/// One question for the client, under the key it has in `inputRequests`.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    key: &'static str,
    request: InputRequest,
}

impl Question {
    /// An `elicitation/create` form; `schema` is the JSON of its `requestedSchema`.
    pub(crate) fn elicit(
        key: &'static str,
        message: impl Into<String>,
        schema: Value,
    ) -> Result<Self, ErrorData> {
        let requested_schema: ElicitationSchema =
            serde_json::from_value(schema).map_err(|error| {
                ErrorData::internal_error(format!("fixture elicitation schema: {error}"), None)
            })?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.into(),
            requested_schema,
        };
        Ok(Self {
            key,
            request: InputRequest::Elicitation(ElicitRequest::new(params)),
        })
    }

    /// A `sampling/createMessage` with one user message.
    pub(crate) fn sample(key: &'static str, prompt: impl Into<String>, max_tokens: u32) -> Self {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], max_tokens);
        Self {
            key,
            request: InputRequest::CreateMessage(CreateMessageRequest::new(params)),
        }
    }

    /// A `roots/list`.
    pub(crate) fn list_roots(key: &'static str) -> Self {
        Self {
            key,
            request: InputRequest::ListRoots(ListRootsRequest::default()),
        }
    }

    /// The request itself, for asking it from inside a task (`tasks/update` brings the answer).
    pub(crate) fn into_request(self) -> InputRequest {
        self.request
    }
}

/// The client capability a question needs (SEP-2575: never ask for an undeclared one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capability {
    Elicitation,
    Sampling,
    Roots,
}

impl Capability {
    /// `None` for request kinds a newer rmcp may add; the fixture never builds those.
    fn of(request: &InputRequest) -> Option<Self> {
        match request {
            InputRequest::Elicitation(_) => Some(Self::Elicitation),
            InputRequest::CreateMessage(_) => Some(Self::Sampling),
            InputRequest::ListRoots(_) => Some(Self::Roots),
            _ => None,
        }
    }

    fn declared_in(self, declared: &ClientCapabilities) -> bool {
        match self {
            Self::Elicitation => declared.elicitation.is_some(),
            Self::Sampling => declared.sampling.is_some(),
            Self::Roots => declared.roots.is_some(),
        }
    }

    /// The `requiredCapabilities` of a -32021 error for this capability.
    fn required(self) -> ClientCapabilities {
        let mut required = ClientCapabilities::default();
        match self {
            Self::Elicitation => required.elicitation = Some(ElicitationCapability::default()),
            Self::Sampling => required.sampling = Some(SamplingCapability::default()),
            Self::Roots => required.roots = Some(RootsCapabilities::default()),
        }
        required
    }
}

/// The client's answer to one [`Question`].
#[derive(Debug, Clone)]
enum Answer {
    Elicit(ElicitResult),
    Sample(CreateMessageResult),
    Roots(ListRootsResult),
}

/// The answers to one round of questions, by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answers(BTreeMap<&'static str, Answer>);

impl Answers {
    pub(crate) fn elicitation(&self, key: &str) -> Option<&ElicitResult> {
        match self.0.get(key) {
            Some(Answer::Elicit(result)) => Some(result),
            _ => None,
        }
    }

    /// `content[field]` of an accepted elicitation, if it is a string.
    pub(crate) fn accepted_text(&self, key: &str, field: &str) -> Option<String> {
        self.elicitation(key)
            .filter(|result| result.action == ElicitationAction::Accept)
            .and_then(|result| result.content.as_ref())
            .and_then(|content| content.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The text of a sampled message, if its first block is text.
    pub(crate) fn sampled_text(&self, key: &str) -> Option<String> {
        match self.0.get(key) {
            Some(Answer::Sample(result)) => result
                .message
                .content
                .first()
                .and_then(|block| block.as_text())
                .map(|text| text.text.clone()),
            _ => None,
        }
    }

    /// The URIs of a `roots/list` answer.
    pub(crate) fn root_uris(&self, key: &str) -> Option<Vec<String>> {
        match self.0.get(key) {
            Some(Answer::Roots(result)) => {
                Some(result.roots.iter().map(|root| root.uri.clone()).collect())
            }
            _ => None,
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }
}

/// Why a handler stopped short of its result: the client must answer first, or it failed.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// End this call with an input-required result; the client retries with the answers.
    Ask(Box<InputRequiredResult>),
    Fail(ErrorData),
}

impl From<ErrorData> for Interrupt {
    fn from(error: ErrorData) -> Self {
        Self::Fail(error)
    }
}

impl Interrupt {
    /// Finish a handler: its result, the input-required result it stopped at, or its error.
    pub(crate) fn finish<R: From<InputRequiredResult>>(
        outcome: Result<R, Self>,
    ) -> Result<R, ErrorData> {
        match outcome {
            Ok(result) => Ok(result),
            Err(Self::Ask(input_required)) => Ok((*input_required).into()),
            Err(Self::Fail(error)) => Err(error),
        }
    }
}

/// Whether a stateless round binds its answers to a sealed `requestState`.
#[derive(Debug, Clone)]
pub(crate) enum StatePolicy {
    /// No `requestState`: answers are accepted whenever `inputResponses` has every key.
    Unsealed,
    /// Issue this state with the questions; answers count only if the client echoes it back.
    Sealed(RoundState),
}

impl StatePolicy {
    /// [`Self::Sealed`] at round `round`, carrying `carried` forward.
    pub(crate) fn sealed(round: u32, carried: Vec<String>) -> Self {
        Self::Sealed(RoundState { round, carried })
    }
}

/// The MRTR inputs of one request and what it needs to ask for more.
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    context: &'a RequestContext<RoleServer>,
    shared: &'a Shared,
    scope: &'a str,
    responses: Option<&'a InputResponses>,
    state: Option<&'a str>,
}

impl<'a> Exchange<'a> {
    /// `scope` (the tool or prompt name) binds sealed states to this caller.
    pub(crate) fn new(
        context: &'a RequestContext<RoleServer>,
        shared: &'a Shared,
        scope: &'a str,
        responses: Option<&'a InputResponses>,
        state: Option<&'a str>,
    ) -> Self {
        Self {
            context,
            shared,
            scope,
            responses,
            state,
        }
    }

    /// The state echoed back by the client, verified; `None` on a first call.
    pub(crate) fn prior(&self) -> Result<Option<RoundState>, ErrorData> {
        self.state
            .map(|sealed| self.shared.seal().open(self.scope, sealed))
            .transpose()
    }

    /// Whether the client declared the capability `question` needs, for this request.
    pub(crate) fn client_supports(&self, question: &Question) -> bool {
        let declared = self.context.client_capabilities().unwrap_or_default();
        Capability::of(&question.request).is_some_and(|needed| needed.declared_in(&declared))
    }

    /// Ask `questions`: in-band on a session, by MRTR on a stateless request.
    ///
    /// On a stateless request without (valid) answers yet, this stops with [`Interrupt::Ask`].
    pub(crate) async fn ask(
        &self,
        questions: Vec<Question>,
        policy: StatePolicy,
    ) -> Result<Answers, Interrupt> {
        // See: SEP-2575, a server MUST NOT rely on a capability the client did not declare.
        if let Some(missing) = questions.iter().find(|q| !self.client_supports(q)) {
            let required = Capability::of(&missing.request).map(Capability::required);
            return Err(ErrorData::missing_required_client_capability(
                required.unwrap_or_default(),
            )
            .into());
        }
        match Era::of(self.context) {
            Era::Session => Ok(self.ask_in_band(questions).await?),
            Era::Stateless => self.ask_by_retry(questions, policy),
        }
    }

    async fn ask_in_band(&self, questions: Vec<Question>) -> Result<Answers, ErrorData> {
        let peer = &self.context.peer;
        let mut answers = Answers::default();
        for question in questions {
            let answer = match question.request {
                InputRequest::Elicitation(request) => peer
                    .create_elicitation(request.params)
                    .await
                    .map(Answer::Elicit),
                InputRequest::CreateMessage(request) => peer
                    .create_message(request.params)
                    .await
                    .map(Answer::Sample),
                InputRequest::ListRoots(_) => peer.list_roots().await.map(Answer::Roots),
                _ => return Err(unsupported()),
            }
            .map_err(|error| client_failed(question.key, error))?;
            answers.0.insert(question.key, answer);
        }
        Ok(answers)
    }

    fn ask_by_retry(
        &self,
        questions: Vec<Question>,
        policy: StatePolicy,
    ) -> Result<Answers, Interrupt> {
        let (state_matches, next_state) = match &policy {
            StatePolicy::Unsealed => (true, None),
            StatePolicy::Sealed(next) => {
                // A state that fails to open is an error, not a reason to ask again: the client
                // tampered with it or replayed it from elsewhere.
                let matches = self.prior()?.as_ref() == Some(next);
                (matches, Some(self.shared.seal().seal(self.scope, next)?))
            }
        };
        if state_matches && let Some(answers) = self.parse_answers(&questions)? {
            return Ok(answers);
        }
        let requests: InputRequests = questions
            .into_iter()
            .map(|question| (question.key.to_owned(), question.request))
            .collect();
        Err(Interrupt::Ask(Box::new(InputRequiredResult::new(
            Some(requests),
            next_state,
        ))))
    }

    /// Every question's answer from `inputResponses`, or `None` if any is missing.
    ///
    /// Extra keys are ignored (SEP-2322: servers SHOULD ignore what they do not recognise); an
    /// answer of the wrong shape is an invalid-params error.
    fn parse_answers(&self, questions: &[Question]) -> Result<Option<Answers>, ErrorData> {
        let Some(responses) = self.responses else {
            return Ok(None);
        };
        let mut answers = Answers::default();
        for question in questions {
            let Some(value) = responses.get(question.key) else {
                return Ok(None);
            };
            let answer = match Capability::of(&question.request) {
                Some(Capability::Elicitation) => parse(question.key, value).map(Answer::Elicit),
                Some(Capability::Sampling) => parse(question.key, value).map(Answer::Sample),
                Some(Capability::Roots) => parse(question.key, value).map(Answer::Roots),
                None => Err(unsupported()),
            }?;
            answers.0.insert(question.key, answer);
        }
        Ok(Some(answers))
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &Value) -> Result<T, ErrorData> {
    serde_json::from_value(value.clone()).map_err(|error| {
        ErrorData::invalid_params(
            format!("inputResponses.`{key}` is not a valid result: {error}"),
            None,
        )
    })
}

fn unsupported() -> ErrorData {
    ErrorData::internal_error("unsupported input request", None)
}

/// Map a failed in-band request; a client-side MCP error keeps its code.
fn client_failed(key: &str, error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(
            format!("asking the client for `{key}` failed: {other}"),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elicitation_question_serializes_as_an_input_request() {
        let question = Question::elicit(
            "user_name",
            "What is your name?",
            serde_json::json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"]
            }),
        )
        .unwrap();
        let wire = serde_json::to_value(&question.request).unwrap();
        assert_eq!(wire["method"], "elicitation/create");
        assert_eq!(wire["params"]["requestedSchema"]["required"][0], "name");
    }

    #[test]
    fn a_number_is_not_an_elicitation_result() {
        assert!(parse::<ElicitResult>("user_name", &serde_json::json!(12345)).is_err());
    }
}
