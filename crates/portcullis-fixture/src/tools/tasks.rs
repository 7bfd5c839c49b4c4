//! The tools the suite's tasks-extension scenarios call (SEP-2663, `io.modelcontextprotocol/tasks`).
//!
//! rmcp's `TaskManager` keeps the tasks and answers `tasks/get`, `tasks/update` and
//! `tasks/cancel`; these tools decide when to create one. A task is created only for a request
//! whose client declared the extension; without it, optional-task tools run synchronously and
//! required-task tools fail with -32021.

use std::time::Duration;

use rmcp::{
    ErrorData,
    model::{
        CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, CreateTaskResult,
        ElicitResult, ElicitationAction,
    },
    task_manager::{TaskContext, TaskExit, TaskOptions},
};
use serde_json::{Value, json};

use super::{Call, text};
use crate::exchange::{Interrupt, Question, StatePolicy};

/// Suggested `tasks/get` polling interval; the suite's own poll loop runs every 200 ms.
const POLL_INTERVAL_MS: u64 = 200;

/// Upper bound for `slow_compute`, so a typo cannot park a task for hours.
const MAX_SECONDS: f64 = 600.0;

/// How long `failing_job` works before reporting its tool error.
const FAILING_JOB_DELAY: Duration = Duration::from_millis(300);

/// Sync-only: never creates a task, even if a legacy `task` hint is present.
pub(super) fn greet(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    Ok(text(format!("Hello, {}!", call.string_argument("name")?)))
}

/// Optional task: sleeps `seconds`, as a task when the client declared the extension.
pub(super) async fn slow_compute(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let arguments = call.params.arguments.as_ref();
    let seconds = arguments
        .and_then(|arguments| arguments.get("seconds"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(ErrorData::invalid_params(
            format!("`seconds` must be between 0 and {MAX_SECONDS}"),
            None,
        ));
    }
    let label = arguments
        .and_then(|arguments| arguments.get("label"))
        .and_then(Value::as_str)
        .unwrap_or("unlabelled")
        .to_owned();
    let duration = Duration::from_secs_f64(seconds);
    let done = move || -> CallToolResult {
        let message = format!("Computed `{label}` after {seconds} s");
        CallToolResult::success(vec![ContentBlock::text(message)])
    };
    if !declares_tasks(call) {
        return tokio::select! {
            () = tokio::time::sleep(duration) => Ok(done().into()),
            () = call.context.ct.cancelled() => {
                Err(ErrorData::internal_error("request cancelled", None))
            }
        };
    }
    Ok(spawn(call, move |task| async move {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(done()),
            () = task.cancelled() => Err(TaskExit::Cancelled),
        }
    }))
}

/// Required task: completes with a tool error, which is `completed` + `isError`, not `failed`.
pub(super) fn failing_job(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    require_tasks(call)?;
    Ok(spawn(call, |_task| async {
        tokio::time::sleep(FAILING_JOB_DELAY).await;
        Ok(CallToolResult::error(vec![ContentBlock::text(
            "The job ran and reported a failure",
        )]))
    }))
}

/// Optional task: fails at the protocol level, which a task reports as `failed` + `error`.
pub(super) fn protocol_error_job(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let error = || ErrorData::internal_error("the job hit an internal error", None);
    if !declares_tasks(call) {
        return Err(error());
    }
    Ok(spawn(call, move |_task| async move {
        Err(TaskExit::Error(error()))
    }))
}

/// Required task: parks on one elicitation until `tasks/update` answers it.
pub(super) fn confirm_delete(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    require_tasks(call)?;
    let filename = call
        .params
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get("filename"))
        .and_then(Value::as_str)
        .unwrap_or("the file")
        .to_owned();
    let question = confirmation("confirm", format!("Delete {filename}?"))?;
    Ok(spawn(call, move |task| async move {
        let answer = task.request_input("confirm", question).await?;
        let verdict = if confirmed(&answer) {
            "Deleted"
        } else {
            "Kept"
        };
        Ok(success(format!("{verdict} {filename}")))
    }))
}

/// Required task: parks on two elicitations at once, answerable one `tasks/update` at a time.
pub(super) fn multi_input(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    require_tasks(call)?;
    let first = confirmation("first", "First input: confirm?")?;
    let second = confirmation("second", "Second input: confirm?")?;
    Ok(spawn(call, move |task| async move {
        let (first, second) = tokio::join!(
            task.request_input("first", first),
            task.request_input("second", second)
        );
        let (first, second) = (first?, second?);
        Ok(success(format!(
            "Received both inputs: first confirmed={}, second confirmed={}",
            confirmed(&first),
            confirmed(&second)
        )))
    }))
}

/// Required task: asks for a name by MRTR first, then finishes the work as a task whose result
/// carries that name (SEP-2663 MRTR-to-task composition).
pub(super) async fn tool_with_task(call: &Call<'_>) -> Result<CallToolResponse, Interrupt> {
    require_tasks(call)?;
    let schema = json!({
        "type": "object",
        "properties": { "name": { "type": "string" } },
        "required": ["name"]
    });
    let question = Question::elicit("user_name", "What is your name?", schema)?;
    let answers = call
        .exchange()
        .ask(vec![question], StatePolicy::Unsealed)
        .await?;
    let name = answers
        .accepted_text("user_name", "name")
        .unwrap_or_else(|| "stranger".to_owned());
    Ok(spawn(call, move |_task| async move {
        Ok(success(format!("Hello, {name}! The task is complete.")))
    }))
}

fn declares_tasks(call: &Call<'_>) -> bool {
    call.context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// See: SEP-2663 §Required Capabilities, a tool that cannot run without a task fails with
/// -32021 naming the extension.
fn require_tasks(call: &Call<'_>) -> Result<(), ErrorData> {
    if declares_tasks(call) {
        return Ok(());
    }
    Err(ErrorData::missing_required_client_capability(
        ClientCapabilities::builder().enable_tasks().build(),
    ))
}

/// Run `work` as a task and answer the call with its `CreateTaskResult`.
///
/// The manager records the task before `spawn` returns, so a `tasks/get` sent right after the
/// result arrives finds it (SEP-2663: no `CreateTaskResult` before the task is durable).
fn spawn<F, W>(call: &Call<'_>, work: W) -> CallToolResponse
where
    W: FnOnce(TaskContext) -> F,
    F: Future<Output = Result<CallToolResult, TaskExit>> + Send + 'static,
{
    let options = TaskOptions::new().with_poll_interval_ms(POLL_INTERVAL_MS);
    let task = call
        .shared
        .tasks()
        .spawn(options, move |context| Box::pin(work(context)));
    CreateTaskResult::new(task).into()
}

/// A one-field boolean confirmation form.
fn confirmation(
    key: &'static str,
    message: impl Into<String>,
) -> Result<rmcp::model::InputRequest, ErrorData> {
    let schema = json!({
        "type": "object",
        "properties": { "confirm": { "type": "boolean" } },
        "required": ["confirm"]
    });
    Ok(Question::elicit(key, message, schema)?.into_request())
}

/// Whether an elicitation answer accepted with `confirm: true`; anything malformed is a no.
fn confirmed(answer: &Value) -> bool {
    serde_json::from_value::<ElicitResult>(answer.clone()).is_ok_and(|result| {
        result.action == ElicitationAction::Accept
            && result
                .content
                .as_ref()
                .and_then(|content| content.get("confirm"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
    })
}

fn success(message: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(message)])
}
