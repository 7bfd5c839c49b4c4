//! The fixture's tools: the suite's `test_*` contract, the tasks-extension fixtures (`greet`,
//! `slow_compute`, ...), and `fixture_*` tools for gateway tests.
//!
//! [`FixtureTool`] is the one place tool names are spelled; listing ([`catalog`]) and dispatch
//! ([`call`]) both go through it, so a tool cannot be listed without being callable.

mod catalog;
mod content;
mod diagnostics;
mod interactive;
mod mrtr;
mod tasks;

use rmcp::{
    ErrorData, RoleServer,
    model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Tool},
    service::RequestContext,
};

use crate::{
    exchange::{Exchange, Interrupt},
    logging::RequestLog,
    state::{ListChange, Session, Shared},
};

pub(crate) use catalog::catalog;

/// Every tool the fixture serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FixtureTool {
    SimpleText,
    ImageContent,
    AudioContent,
    EmbeddedResource,
    MultipleContentTypes,
    ErrorHandling,
    JsonSchema2020,
    ToolWithLogging,
    LoggingTool,
    ToolWithProgress,
    Reconnection,
    TriggerToolChange,
    TriggerPromptChange,
    MissingCapability,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    StreamingElicitation,
    InputElicitation,
    InputSampling,
    InputListRoots,
    InputRequestState,
    InputMultipleInputs,
    InputMultiRound,
    InputTamperedState,
    InputCapabilities,
    Greet,
    SlowCompute,
    FailingJob,
    ProtocolErrorJob,
    ConfirmDelete,
    MultiInput,
    ToolWithTask,
    Echo,
    Slow,
    Crash,
    HeaderEcho,
}

impl FixtureTool {
    /// Listing order of `tools/list`.
    pub(crate) const ALL: [Self; 38] = [
        Self::SimpleText,
        Self::ImageContent,
        Self::AudioContent,
        Self::EmbeddedResource,
        Self::MultipleContentTypes,
        Self::ErrorHandling,
        Self::JsonSchema2020,
        Self::ToolWithLogging,
        Self::LoggingTool,
        Self::ToolWithProgress,
        Self::Reconnection,
        Self::TriggerToolChange,
        Self::TriggerPromptChange,
        Self::MissingCapability,
        Self::Sampling,
        Self::Elicitation,
        Self::ElicitationDefaults,
        Self::ElicitationEnums,
        Self::StreamingElicitation,
        Self::InputElicitation,
        Self::InputSampling,
        Self::InputListRoots,
        Self::InputRequestState,
        Self::InputMultipleInputs,
        Self::InputMultiRound,
        Self::InputTamperedState,
        Self::InputCapabilities,
        Self::Greet,
        Self::SlowCompute,
        Self::FailingJob,
        Self::ProtocolErrorJob,
        Self::ConfirmDelete,
        Self::MultiInput,
        Self::ToolWithTask,
        Self::Echo,
        Self::Slow,
        Self::Crash,
        Self::HeaderEcho,
    ];

    /// The wire name, as the conformance suite spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::SimpleText => "test_simple_text",
            Self::ImageContent => "test_image_content",
            Self::AudioContent => "test_audio_content",
            Self::EmbeddedResource => "test_embedded_resource",
            Self::MultipleContentTypes => "test_multiple_content_types",
            Self::ErrorHandling => "test_error_handling",
            Self::JsonSchema2020 => "json_schema_2020_12_tool",
            Self::ToolWithLogging => "test_tool_with_logging",
            Self::LoggingTool => "test_logging_tool",
            Self::ToolWithProgress => "test_tool_with_progress",
            Self::Reconnection => "test_reconnection",
            Self::TriggerToolChange => "test_trigger_tool_change",
            Self::TriggerPromptChange => "test_trigger_prompt_change",
            Self::MissingCapability => "test_missing_capability",
            Self::Sampling => "test_sampling",
            Self::Elicitation => "test_elicitation",
            Self::ElicitationDefaults => "test_elicitation_sep1034_defaults",
            Self::ElicitationEnums => "test_elicitation_sep1330_enums",
            Self::StreamingElicitation => "test_streaming_elicitation",
            Self::InputElicitation => "test_input_required_result_elicitation",
            Self::InputSampling => "test_input_required_result_sampling",
            Self::InputListRoots => "test_input_required_result_list_roots",
            Self::InputRequestState => "test_input_required_result_request_state",
            Self::InputMultipleInputs => "test_input_required_result_multiple_inputs",
            Self::InputMultiRound => "test_input_required_result_multi_round",
            Self::InputTamperedState => "test_input_required_result_tampered_state",
            Self::InputCapabilities => "test_input_required_result_capabilities",
            Self::Greet => "greet",
            Self::SlowCompute => "slow_compute",
            Self::FailingJob => "failing_job",
            Self::ProtocolErrorJob => "protocol_error_job",
            Self::ConfirmDelete => "confirm_delete",
            Self::MultiInput => "multi_input",
            Self::ToolWithTask => "test_tool_with_task",
            Self::Echo => "fixture_echo",
            Self::Slow => "fixture_slow",
            Self::Crash => "fixture_crash",
            Self::HeaderEcho => "fixture_header_echo",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }
}

/// The definition of the tool called `name`, if the fixture serves one.
pub(crate) fn find(name: &str) -> Option<Tool> {
    FixtureTool::from_name(name).map(catalog::definition)
}

/// One `tools/call` and everything a tool may need to answer it.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) params: &'a CallToolRequestParams,
    pub(crate) context: &'a RequestContext<RoleServer>,
    pub(crate) shared: &'a Shared,
    pub(crate) session: &'a Session,
}

impl Call<'_> {
    /// The MRTR inputs of this call, with state sealed to the tool's name.
    fn exchange(&self) -> Exchange<'_> {
        Exchange::new(
            self.context,
            self.shared,
            &self.params.name,
            self.params.input_responses.as_ref(),
            self.params.request_state.as_deref(),
        )
    }

    fn log(&self) -> RequestLog<'_> {
        RequestLog::new(self.context, self.session)
    }

    /// The string argument `name`, which the tool's schema requires.
    fn string_argument(&self, name: &str) -> Result<&str, ErrorData> {
        self.params
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get(name))
            .and_then(|value| value.as_str())
            .ok_or_else(|| {
                ErrorData::invalid_params(format!("missing string argument `{name}`"), None)
            })
    }
}

/// Run the tool `call` names.
pub(crate) async fn call(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let Some(tool) = FixtureTool::from_name(&call.params.name) else {
        // See: MCP 2025-11-25 server/tools, an unknown tool is a -32602 protocol error.
        return Err(ErrorData::invalid_params(
            format!("unknown tool `{}`", call.params.name),
            None,
        ));
    };
    match tool {
        FixtureTool::SimpleText => Ok(content::simple_text()),
        FixtureTool::ImageContent => Ok(content::image()),
        FixtureTool::AudioContent => Ok(content::audio()),
        FixtureTool::EmbeddedResource => Ok(content::embedded_resource()),
        FixtureTool::MultipleContentTypes => Ok(content::multiple_content_types()),
        FixtureTool::ErrorHandling => Ok(content::error_handling()),
        FixtureTool::JsonSchema2020 => content::json_schema_2020(call),
        FixtureTool::ToolWithLogging | FixtureTool::LoggingTool => {
            diagnostics::with_logging(call).await
        }
        FixtureTool::ToolWithProgress => diagnostics::with_progress(call).await,
        FixtureTool::Reconnection => diagnostics::reconnection(call).await,
        FixtureTool::TriggerToolChange => diagnostics::trigger(call, ListChange::Tools).await,
        FixtureTool::TriggerPromptChange => diagnostics::trigger(call, ListChange::Prompts).await,
        FixtureTool::MissingCapability => diagnostics::missing_capability(call),
        FixtureTool::Sampling => Interrupt::finish(interactive::sampling(call).await),
        FixtureTool::Elicitation => Interrupt::finish(interactive::elicitation(call).await),
        FixtureTool::ElicitationDefaults => {
            Interrupt::finish(interactive::elicitation_defaults(call).await)
        }
        FixtureTool::ElicitationEnums => {
            Interrupt::finish(interactive::elicitation_enums(call).await)
        }
        FixtureTool::StreamingElicitation => {
            Interrupt::finish(interactive::streaming_elicitation(call).await)
        }
        FixtureTool::InputElicitation => Interrupt::finish(mrtr::elicitation(call).await),
        FixtureTool::InputSampling => Interrupt::finish(mrtr::sampling(call).await),
        FixtureTool::InputListRoots => Interrupt::finish(mrtr::list_roots(call).await),
        FixtureTool::InputRequestState | FixtureTool::InputTamperedState => {
            Interrupt::finish(mrtr::request_state(call).await)
        }
        FixtureTool::InputMultipleInputs => Interrupt::finish(mrtr::multiple_inputs(call).await),
        FixtureTool::InputMultiRound => Interrupt::finish(mrtr::multi_round(call).await),
        FixtureTool::InputCapabilities => Interrupt::finish(mrtr::capabilities(call).await),
        FixtureTool::Greet => tasks::greet(call),
        FixtureTool::SlowCompute => tasks::slow_compute(call).await,
        FixtureTool::FailingJob => tasks::failing_job(call),
        FixtureTool::ProtocolErrorJob => tasks::protocol_error_job(call),
        FixtureTool::ConfirmDelete => tasks::confirm_delete(call),
        FixtureTool::MultiInput => tasks::multi_input(call),
        FixtureTool::ToolWithTask => Interrupt::finish(tasks::tool_with_task(call).await),
        FixtureTool::Echo => diagnostics::echo(call),
        FixtureTool::Slow => diagnostics::slow(call).await,
        FixtureTool::Crash => diagnostics::crash(),
        FixtureTool::HeaderEcho => diagnostics::header_echo(call),
    }
}

/// A successful result with one text block.
fn text(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_name_round_trips() {
        for tool in FixtureTool::ALL {
            assert_eq!(FixtureTool::from_name(tool.name()), Some(tool));
        }
    }

    #[test]
    fn tool_names_are_unique() {
        let mut names: Vec<_> = FixtureTool::ALL.iter().map(|tool| tool.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FixtureTool::ALL.len());
    }
}
