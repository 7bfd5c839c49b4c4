//! Serving an authorized request: routed to its upstream, sent with its proof, what the
//! upstream sends meanwhile relayed on the request's own stream (progress, log lines, and its
//! questions for a session client, whose answers go back), the answer shaped for the caller's
//! era. A session caller of an upstream that answers input-required is asked the questions by
//! the gateway, and the request is made again with the answers.

use std::sync::Arc;

use portcullis_core::{CompletionRef, Era, McpMethod, McpRequest, message};
use portcullis_mcp::{Event, Outcome, RpcError, UpstreamError};
use serde_json::{Map, Value, json};

use super::{
    bridge,
    reply::Final,
    serve::{self, Context},
    shape,
};
use crate::{
    access::{Authorized, TaskRoute, record},
    upstreams::{Forward, Forwarded, Via},
};

/// Rounds of input-required a bridged request may take before it is abandoned.
const MAX_INPUT_ROUNDS: usize = 10;
/// What came back for a forwarded request, with its record still to finish.
pub(super) struct Answer {
    pub(super) outcome: Outcome,
    pub(super) forwarded: Forwarded,
}

/// `tools/call`.
pub(crate) async fn tool(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let name = request.target().unwrap_or_default();
    let upstreams = &context.gateway().upstreams;
    // With policies on, the gateway answers unknown names itself: a hidden tool and one that
    // does not exist must get the same answer.
    if context.caller.policy.is_some()
        && !upstreams
            .tool_exists(name, context.caller.principal())
            .await
    {
        return serve::not_found(request, context.era);
    }
    let Some((index, _)) = upstreams.route_name(name) else {
        return serve::not_found(request, context.era);
    };
    if context.session.is_none() && context.era == Era::Stateless {
        return stateless_tool(context, proof, index).await;
    }
    let bridged = match bridged(context, proof, index, |_| {}).await {
        Ok(answer) => answer,
        Err(done) => return done,
    };
    if let Outcome::Result(raw) = &bridged.outcome {
        learn_task(context, raw, bridged.forwarded.index());
    }
    finish(context, request, bridged)
}

/// `tools/call` of a 2026-07-28 caller: the upstream's questions during the call become
/// `input_required` results (see `bridge`); a retry carrying the answer resumes the call.
async fn stateless_tool(context: &Context, proof: &Authorized, index: usize) -> Final {
    let request = proof.request();
    let gateway = context.gateway();
    let forwarded = if bridge::resumes(request) {
        let parked = gateway.bridge.take(&bridge::owner(context), request);
        let (Some(parked), Some(answer)) = (parked, bridge::answer_of(request)) else {
            return serve::error(
                request,
                -32602,
                "the question this answers is no longer waiting (answered, expired or not yours)",
                None,
            );
        };
        let replied = parked.forwarded.reply(&parked.question, Ok(answer));
        let replied = context.turn.away(replied).await;
        if let Err(error) = replied {
            return unavailable(context, request, &error);
        }
        let mut forwarded = parked.forwarded;
        forwarded.set_progress(request.meta().and_then(|m| m.get("progressToken")).cloned());
        forwarded
    } else {
        // A caller that can be asked gets a connection of its own where only that tells whose
        // a question is.
        let via = match bridge::identity(request) {
            Some(identity) => {
                let opened = gateway
                    .upstreams
                    .dedicated(index, identity, context.caller.id());
                context
                    .turn
                    .away(opened)
                    .await
                    .map_or(Via::Shared, Via::Dedicated)
            }
            None => Via::Shared,
        };
        let forward = gateway.upstreams.prepare(proof, index);
        match send_via(context, proof, forward, via).await {
            Ok(forwarded) => forwarded,
            Err(error) => return unavailable(context, request, &error),
        }
    };
    drive(context, proof, forwarded).await
}

/// Relay `forwarded` to its answer, or park it on the upstream's question and ask the caller.
async fn drive(context: &Context, proof: &Authorized, mut forwarded: Forwarded) -> Final {
    let request = proof.request();
    match relay_bridged(context, &mut forwarded, Some(request)).await {
        Ok(Relayed::Answer(outcome)) => {
            if let Outcome::Result(raw) = &outcome {
                learn_task(context, raw, forwarded.index());
            }
            finish(context, request, Answer { outcome, forwarded })
        }
        Ok(Relayed::Question { id, method, params }) => {
            let owner = bridge::owner(context);
            let parked =
                context
                    .gateway()
                    .bridge
                    .park(&owner, request, (id, forwarded), proof.consent());
            let Some(state) = parked else {
                return serve::error(
                    request,
                    -32603,
                    "too many calls are waiting for input; answer or abandon one first",
                    None,
                );
            };
            let result = bridge::question(&state, &method, params);
            Final::ok(message::result_message(
                Some(&request.id),
                &result.to_string(),
            ))
        }
        Err(Failure::Upstream(error)) => {
            forwarded.finish("error");
            unavailable(context, request, &error)
        }
        Err(Failure::Timeout) => {
            forwarded.finish("timeout");
            let correlation = &context.caller.correlation;
            tracing::warn!(%correlation, "upstream timed out");
            serve::error(
                request,
                -32603,
                "upstream timed out",
                Some(&json!({ "correlationId": correlation.as_str() })),
            )
        }
    }
}

/// `prompts/get`.
pub(crate) async fn prompt(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let routed = request
        .target()
        .and_then(|name| context.gateway().upstreams.route_name(name));
    let Some((index, _)) = routed else {
        return serve::not_found(request, context.era);
    };
    match bridged(context, proof, index, |_| {}).await {
        Ok(answer) => finish(context, request, answer),
        Err(done) => done,
    }
}

/// `resources/read`: on the upstream that owns the URI (`Upstreams::owner_of`).
pub(crate) async fn read(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let Some(index) = owner(context, request.target().unwrap_or_default()).await else {
        return serve::resource_not_found(request, context.era);
    };
    match bridged(context, proof, index, |_| {}).await {
        Ok(answer) => finish(context, request, answer),
        Err(done) => done,
    }
}

/// The upstream that owns `uri`, the lists learned again first when none is known to.
async fn owner(context: &Context, uri: &str) -> Option<usize> {
    let upstreams = &context.gateway().upstreams;
    upstreams.owner_of(uri, context.caller.principal()).await
}

/// `resources/subscribe` and `resources/unsubscribe`.
pub(crate) async fn subscription(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let Some(index) = owner(context, request.target().unwrap_or_default()).await else {
        return serve::resource_not_found(request, context.era);
    };
    once(context, proof, index, |_| {}).await
}

/// `completion/complete`, on the upstream its reference names.
pub(crate) async fn complete(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let upstreams = &context.gateway().upstreams;
    let routed = match request.completion_ref() {
        Some(CompletionRef::Prompt(name)) => upstreams.route_name(name),
        Some(CompletionRef::Resource(uri)) => owner(context, uri)
            .await
            .map(|index| (index, String::new())),
        None => None,
    };
    let Some((index, upstream_name)) = routed else {
        return serve::not_found(request, context.era);
    };
    once(context, proof, index, |forward| {
        if !upstream_name.is_empty() {
            forward.rename_reference(&upstream_name);
        }
    })
    .await
}

/// `logging/setLevel`: remembered for the session (stateless upstreams get it with each
/// request) and passed to the session-era upstreams the caller has used; one it uses later is
/// told on first use. SECURITY: an upstream the caller never used learns nothing of it (the
/// request carries the caller's signed identity).
pub(crate) async fn set_level(context: &Context, proof: Authorized) -> Final {
    let proof = Arc::new(proof);
    let request = proof.request();
    let used = match (
        &context.session,
        request.params.get("level").and_then(Value::as_str),
    ) {
        (Some(session), Some(level)) => {
            session.set_log_level(level.to_owned());
            session.set_level_for_used(proof.clone())
        }
        _ => Vec::new(),
    };
    for index in used {
        tell_level(context, &proof, index).await;
    }
    Final::ok(message::result_message(
        Some(&request.id),
        &shape::complete(context.era, json!({})).to_string(),
    ))
}

/// Send the session's `logging/setLevel` (`proof`) to upstream `index`, if it speaks the
/// session era.
async fn tell_level(context: &Context, proof: &Authorized, index: usize) {
    let upstreams = &context.gateway().upstreams;
    // The session's own connection, in the session era even where the upstream also speaks
    // the stateless one (which takes the level with each request instead).
    let era = match &context.session {
        Some(session) => session
            .links
            .connection(upstreams, index)
            .await
            .ok()
            .map(|connection| connection.era()),
        None => upstreams.era(index),
    };
    if era != Some(Era::Sessions) {
        return;
    }
    match send_via(
        context,
        proof,
        upstreams.prepare(proof, index),
        context.via(),
    )
    .await
    {
        Ok(mut forwarded) => {
            let answer = relay_within(context, &mut forwarded).await;
            // An upstream without logging simply does not log; the others still do.
            forwarded.finish(if answer.is_ok_and(|o| !o.is_error()) {
                "ok"
            } else {
                "error"
            });
        }
        Err(error) => {
            tracing::debug!(upstream = %upstreams.name(index), %error, "set level not sent")
        }
    }
}

/// `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/update`: on the upstream that made the
/// task, for the caller it was made for only (the decision checked).
pub(crate) async fn task(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let task = request.target().unwrap_or_default();
    let TaskRoute::Owned(index) = context
        .gateway()
        .upstreams
        .route_task(task, context.caller.id())
    else {
        return serve::not_found(request, context.era);
    };
    once(context, proof, index, |_| {}).await
}

/// `tasks/list` (2025-11-25): the caller's own tasks, from every upstream.
pub(crate) async fn tasks(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let upstreams = &context.gateway().upstreams;
    let mut listed = Vec::new();
    for index in 0..upstreams.count() {
        let answer = match exchange(context, proof, upstreams.prepare(proof, index)).await {
            Ok(answer) => answer,
            Err(done) => return done,
        };
        let Answer { outcome, forwarded } = answer;
        let Ok(Value::Object(mut result)) = outcome.into_value() else {
            forwarded.finish("error");
            continue;
        };
        forwarded.finish("ok");
        let owned = upstreams.tasks_of(index, context.caller.id());
        if let Some(Value::Array(found)) = result.remove("tasks") {
            // SECURITY: an upstream shared by many callers lists all of their tasks.
            listed.extend(found.into_iter().filter(|task| {
                task.get("taskId")
                    .and_then(Value::as_str)
                    .is_some_and(|id| owned.iter().any(|own| own == id))
            }));
        }
    }
    let result = shape::complete(context.era, json!({ "tasks": listed }));
    Final::ok(message::result_message(
        Some(&request.id),
        &result.to_string(),
    ))
}

/// A method the gateway does not know, on the one upstream (the decision checked there is one).
pub(crate) async fn other(context: &Context, proof: &Authorized) -> Final {
    once(context, proof, 0, |_| {}).await
}

/// Forward once, relay, finish.
async fn once(
    context: &Context,
    proof: &Authorized,
    index: usize,
    edit: impl FnOnce(&mut Forward<'_>),
) -> Final {
    let mut forward = context.gateway().upstreams.prepare(proof, index);
    edit(&mut forward);
    match exchange(context, proof, forward).await {
        Ok(answer) => finish(context, proof.request(), answer),
        Err(done) => done,
    }
}

/// Forward to upstream `index` and relay until its answer; a session caller's input-required
/// answers are asked of the client and the request made again with them.
async fn bridged(
    context: &Context,
    proof: &Authorized,
    index: usize,
    edit: impl Fn(&mut Forward<'_>),
) -> Result<Answer, Final> {
    let request = proof.request();
    let mut answers: Option<(Value, Option<Value>)> = None;
    for _ in 0..MAX_INPUT_ROUNDS {
        let mut forward = context.gateway().upstreams.prepare(proof, index);
        edit(&mut forward);
        if let Some((responses, state)) = answers.take() {
            forward.answer_input(responses, state);
        }
        let answer = exchange(context, proof, forward).await?;
        let input_required = matches!(&answer.outcome, Outcome::Result(raw)
            if shape::glance(raw).result_type.as_deref() == Some("input_required"));
        if !input_required || context.era == Era::Stateless || context.session.is_none() {
            return Ok(answer);
        }
        let Answer { outcome, forwarded } = answer;
        forwarded.finish("input-required");
        let Ok(Value::Object(mut result)) = outcome.into_value() else {
            return Err(serve::internal(request, &context.caller.correlation));
        };
        answers = Some(fulfil(context, request, &mut result).await?);
    }
    Err(serve::error(
        request,
        -32603,
        "upstream kept asking for input",
        None,
    ))
}

/// Ask the session client each question of an input-required result; the answers, and the
/// state to carry back.
async fn fulfil(
    context: &Context,
    request: &McpRequest,
    result: &mut Map<String, Value>,
) -> Result<(Value, Option<Value>), Final> {
    let mut responses = Map::new();
    let questions = match result.remove("inputRequests") {
        Some(Value::Object(questions)) => questions,
        _ => Map::new(),
    };
    for (key, question) in questions {
        let method = question
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !matches!(
            method.as_str(),
            "elicitation/create" | "sampling/createMessage" | "roots/list"
        ) {
            return Err(serve::error(
                request,
                -32600,
                "unsupported input request",
                None,
            ));
        }
        let params = question
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match ask_client(context, &method, params).await {
            Ok(answer) => {
                responses.insert(key, answer);
            }
            Err(error) => {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("client did not answer");
                return Err(serve::error(request, -32603, message, None));
            }
        }
    }
    Ok((Value::Object(responses), result.remove("requestState")))
}

/// Send `forward`, relay what comes back, and return the answer.
pub(super) async fn exchange(
    context: &Context,
    proof: &Authorized,
    forward: Forward<'_>,
) -> Result<Answer, Final> {
    let request = proof.request();
    let mut forwarded = send(context, proof, forward)
        .await
        .map_err(|error| unavailable(context, request, &error))?;
    match relay_within(context, &mut forwarded).await {
        Ok(outcome) => Ok(Answer { outcome, forwarded }),
        Err(Failure::Upstream(error)) => {
            forwarded.finish("error");
            Err(unavailable(context, request, &error))
        }
        Err(Failure::Timeout) => {
            forwarded.finish("timeout");
            let correlation = &context.caller.correlation;
            tracing::warn!(%correlation, "upstream timed out");
            Err(serve::error(
                request,
                -32603,
                "upstream timed out",
                Some(&json!({ "correlationId": correlation.as_str() })),
            ))
        }
    }
}

/// Send `forward` on the caller's connection, its outcome to be recorded.
async fn send(
    context: &Context,
    proof: &Authorized,
    forward: Forward<'_>,
) -> Result<Forwarded, UpstreamError> {
    send_via(context, proof, forward, context.via()).await
}

/// Send `forward` on `via`, its outcome to be recorded.
async fn send_via(
    context: &Context,
    proof: &Authorized,
    mut forward: Forward<'_>,
    via: crate::upstreams::Via<'_>,
) -> Result<Forwarded, UpstreamError> {
    let gateway = context.gateway();
    if let Some(session) = &context.session {
        forward.session_client(session.links.identity(), &session.log_level());
        // Lists gather from every upstream: using one is asking it for something else.
        let method = &proof.request().method;
        if *method != McpMethod::SetLogLevel
            && !method.is_list()
            && let Some(set_level) = session.use_upstream(forward.index())
        {
            Box::pin(tell_level(context, &set_level, forward.index())).await;
        }
    }
    let template = record::outcome(context.scene(), proof);
    let sent = gateway.upstreams.send(
        forward,
        via,
        context.on_behalf(),
        (template, gateway.access.trail()),
    );
    context.turn.away(sent).await
}

enum Failure {
    Upstream(UpstreamError),
    Timeout,
}

/// Relay until the answer, within the request timeout.
async fn relay_within(context: &Context, forwarded: &mut Forwarded) -> Result<Outcome, Failure> {
    match relay_bridged(context, forwarded, None).await? {
        Relayed::Answer(outcome) => Ok(outcome),
        // Not asked for: `relay` answers every question itself.
        Relayed::Question { .. } => Err(Failure::Timeout),
    }
}

/// How relaying a request ended: its answer, or (bridging for a 2026-07-28 caller) a question
/// the upstream asked that only the caller can answer.
enum Relayed {
    Answer(Outcome),
    Question {
        id: Value,
        method: String,
        params: Map<String, Value>,
    },
}

/// Relay within the request timeout; with `stateless` (the 2026-07-28 request relayed), a
/// question its caller declared it can answer ends the relay instead of being refused.
async fn relay_bridged(
    context: &Context,
    forwarded: &mut Forwarded,
    stateless: Option<&McpRequest>,
) -> Result<Relayed, Failure> {
    let timeout = context.gateway().upstreams.request_timeout;
    match tokio::time::timeout(timeout, relay(context, forwarded, stateless)).await {
        Ok(relayed) => relayed.map_err(Failure::Upstream),
        Err(_) => Err(Failure::Timeout),
    }
}

/// What the upstream sends about the request goes to the caller's stream; its questions are
/// asked of a session caller and answered with the caller's answer.
async fn relay(
    context: &Context,
    forwarded: &mut Forwarded,
    stateless: Option<&McpRequest>,
) -> Result<Relayed, UpstreamError> {
    loop {
        match context.turn.away(forwarded.next()).await? {
            Event::Response(outcome) => return Ok(Relayed::Answer(outcome)),
            Event::Notification { method, params } => {
                if method == "notifications/progress" && !forwarded.wants_progress() {
                    continue;
                }
                // An upstream withdrawing a question of its own: a 2026-07-28 caller was asked
                // it in a result, if at all, and has no request of the upstream's to cancel.
                if method == "notifications/cancelled" && stateless.is_some() {
                    continue;
                }
                let message = portcullis_core::message::outgoing_message(None, &method, params);
                let _ = context.turn.away(context.outlet.send(message)).await;
            }
            Event::Request {
                id,
                method,
                mut params,
            } if context.session.is_none()
                && stateless.is_some_and(|request| bridge::askable(request, &method)) =>
            {
                narrow_context(&method, &mut params);
                return Ok(Relayed::Question { id, method, params });
            }
            Event::Request {
                id,
                method,
                mut params,
            } => {
                narrow_context(&method, &mut params);
                let answer = ask_client(context, &method, params).await;
                let _ = forwarded.reply(&id, answer.map_err(rpc_error_of)).await;
            }
        }
    }
}

/// SECURITY: behind a gateway, a sampling request's `includeContext: "allServers"` would have
/// the client's model read what every upstream said; it is narrowed to the asking server's.
pub(crate) fn narrow_context(method: &str, params: &mut Map<String, Value>) {
    if method == "sampling/createMessage"
        && params.get("includeContext").and_then(Value::as_str) == Some("allServers")
    {
        params.insert("includeContext".to_owned(), "thisServer".into());
    }
}

/// Ask the caller's client `method` on this request's stream; only a session client can be
/// asked (a stateless one is asked in results, by its upstream).
pub(crate) async fn ask_client(
    context: &Context,
    method: &str,
    params: Map<String, Value>,
) -> Result<Value, Value> {
    if method == "ping" {
        return Ok(json!({}));
    }
    match &context.session {
        Some(session) => {
            let asked = session.ask(
                &context.outlet,
                method,
                params,
                context.endpoint.consent_wait,
            );
            context.turn.away(asked).await
        }
        None => Err(json!({"code": -32603, "message": "no client is waiting on this request"})),
    }
}

/// A JSON-RPC error object as the upstream side takes it.
pub(crate) fn rpc_error_of(error: Value) -> RpcError {
    RpcError {
        code: error.get("code").and_then(Value::as_i64).unwrap_or(-32603),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the client answered with an error")
            .to_owned(),
        data: error.get("data").cloned(),
    }
}

/// The answer for the caller, and the outcome recorded.
fn finish(context: &Context, request: &McpRequest, answer: Answer) -> Final {
    let Answer { outcome, forwarded } = answer;
    match outcome {
        Outcome::Result(raw) => {
            let glance = shape::glance(&raw);
            let word = match (glance.is_error, glance.result_type.as_deref()) {
                (Some(true), _) => "tool-error",
                (_, Some("input_required")) => "input-required",
                _ => "ok",
            };
            let text = shape::raw_for(context.era, &raw, &glance).into_owned();
            forwarded.finish(word);
            Final::ok(message::result_message(Some(&request.id), &text))
        }
        Outcome::Error(error) => {
            forwarded.finish("error");
            serve::upstream_error(request, context.era, &error)
        }
    }
}

/// The upstream could not be reached or broke off: a malfunction with a correlation id, never
/// a denial and never "not found"; unless its authorization server refused the caller a token
/// there, which is a denial.
fn unavailable(context: &Context, request: &McpRequest, error: &UpstreamError) -> Final {
    if let UpstreamError::NotConnected { upstream } = error {
        let link = context
            .gateway()
            .upstreams
            .connections
            .as_ref()
            .and_then(|connections| connections.link(upstream));
        let by_url = super::consent::client_declares(context, request, "url");
        return serve::connect_first(request, &context.caller.correlation, link, by_url);
    }
    if let UpstreamError::Credential { refused, .. } = error {
        // The reference is the request's own: its records say what was refused.
        let correlation = &context.caller.correlation;
        return serve::no_credential(request, context.era, correlation, *refused);
    }
    let correlation = portcullis_core::CorrelationId::fresh();
    tracing::warn!(%correlation, error = %portcullis_core::error_chain(error), "upstream unavailable");
    serve::error(
        request,
        -32603,
        "upstream unavailable",
        Some(&json!({ "correlationId": correlation.as_str() })),
    )
}

/// A task the caller's call started: its id is learned for the caller (2026-07-28 results
/// carry `resultType: task` and `taskId`; 2025-11-25 ones `task.taskId`).
fn learn_task(context: &Context, raw: &serde_json::value::RawValue, index: usize) {
    if !raw.get().contains("task") {
        return;
    }
    let Ok(result) = serde_json::from_str::<Value>(raw.get()) else {
        return;
    };
    let task = if result.get("resultType").is_some_and(|t| t == "task") {
        result.get("taskId")
    } else {
        result.get("task").and_then(|task| task.get("taskId"))
    };
    if let Some(task) = task.and_then(Value::as_str) {
        context
            .gateway()
            .upstreams
            .learn_task(task, index, context.caller.id().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: issue 19. An upstream's sampling request asked the client's model to include what
    // every server said; behind a gateway, "every server" is every upstream.
    #[test]
    fn a_sampling_request_sees_only_its_own_servers_context() {
        let mut params = json!({"includeContext": "allServers", "messages": []})
            .as_object()
            .cloned()
            .unwrap_or_default();
        narrow_context("sampling/createMessage", &mut params);
        assert_eq!(params["includeContext"], "thisServer");
        let mut other = params.clone();
        other.insert("includeContext".to_owned(), "allServers".into());
        narrow_context("elicitation/create", &mut other);
        assert_eq!(other["includeContext"], "allServers");
    }
}
