//! Tools that return fixed content of each type.

use rmcp::{
    ErrorData,
    model::{CallToolResponse, CallToolResult, ContentBlock, ResourceContents},
};

use super::{Call, text};
use crate::assets::{RED_PIXEL_PNG, SILENCE_WAV};

pub(super) fn simple_text() -> CallToolResponse {
    text("This is a simple text response for testing.")
}

pub(super) fn image() -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::image(RED_PIXEL_PNG, "image/png")]).into()
}

pub(super) fn audio() -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::audio(SILENCE_WAV, "audio/wav")]).into()
}

pub(super) fn embedded_resource() -> CallToolResponse {
    let resource = ResourceContents::text(
        "This is an embedded resource content.",
        "test://embedded-resource",
    );
    CallToolResult::success(vec![ContentBlock::resource(resource)]).into()
}

pub(super) fn multiple_content_types() -> CallToolResponse {
    let resource = ResourceContents::text(
        r#"{"test":"data","value":123}"#,
        "test://mixed-content-resource",
    )
    .with_mime_type("application/json");
    CallToolResult::success(vec![
        ContentBlock::text("Multiple content types test:"),
        ContentBlock::image(RED_PIXEL_PNG, "image/png"),
        ContentBlock::resource(resource),
    ])
    .into()
}

/// A tool-level failure: the call succeeds at the protocol level and carries `isError: true`.
pub(super) fn error_handling() -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(
        "This tool intentionally returns an error for testing",
    )])
    .into()
}

/// Echo the arguments back, so a caller can see what survived the schema round trip.
pub(super) fn json_schema_2020(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let arguments = call.params.arguments.clone().unwrap_or_default();
    let json = serde_json::to_string(&arguments)
        .map_err(|error| ErrorData::internal_error(format!("cannot encode: {error}"), None))?;
    Ok(text(format!("Received arguments: {json}")))
}
