//! Questions an upstream asks during a 2026-07-28 caller's call (elicitation, sampling, roots:
//! server-to-client requests, as a 2025-11-25 upstream asks them), asked the 2026-07-28 way.
//! The call answers `input_required` with the question; the upstream request waits, parked;
//! the caller's retry (the same call, decided again like any request, with `inputResponses`
//! and the `requestState` it was given) answers the question and resumes the request.
//!
//! SECURITY: a parked request belongs to the caller it was made for and to that exact call
//! (method, target and arguments): a `requestState` presented by anyone else, or with another
//! call, finds nothing. The state is a random handle of 256 bits; parked requests are bounded
//! in number, per caller and in time.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_core::{CallerId, McpRequest};
use serde_json::{Map, Value, json};

use crate::upstreams::Forwarded;

/// What a `requestState` of the bridge starts with.
const STATE_PREFIX: &str = "portcullis-bridge.";
/// The key of the one question in `inputRequests`.
const KEY: &str = "upstream";
/// How long a parked request waits for the caller's retry.
const PARKED_FOR: Duration = Duration::from_secs(120);
const MAX_PARKED: usize = 4096;
const MAX_PARKED_PER_CALLER: usize = 16;

/// A request upstream waiting on its caller's answer.
pub(crate) struct Parked {
    caller: CallerId,
    call: String,
    until: Instant,
    /// The upstream's own id for its question.
    pub(crate) question: Value,
    pub(crate) forwarded: Forwarded,
    /// The approval the call went upstream under, if it needed one: the retry resumes that
    /// approved call, it is no new call to approve.
    approval: Option<String>,
}

/// The parked requests.
#[derive(Default)]
pub(crate) struct Bridge {
    parked: Mutex<HashMap<String, Parked>>,
}

impl Bridge {
    /// Park `forwarded` (sent under `approval`, if any), whose upstream asked `question`, for
    /// `caller`'s retry of `request`; the `requestState` that finds it again, or `None` when
    /// too many wait already.
    pub(crate) fn park(
        &self,
        caller: &CallerId,
        request: &McpRequest,
        (question, forwarded): (Value, Forwarded),
        approval: Option<&str>,
    ) -> Option<String> {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Dropping one records it as cancelled and ends its upstream request.
        parked.retain(|_, waiting| waiting.until > now);
        let mine = parked.values().filter(|w| &w.caller == caller).count();
        if parked.len() >= MAX_PARKED || mine >= MAX_PARKED_PER_CALLER {
            return None;
        }
        let handle = portcullis_authn::signing::random_token();
        parked.insert(
            handle.clone(),
            Parked {
                caller: caller.clone(),
                call: call_of(request),
                until: now + PARKED_FOR,
                question,
                forwarded,
                approval: approval.map(str::to_owned),
            },
        );
        Some(format!("{STATE_PREFIX}{handle}"))
    }

    /// Let go of the requests whose caller did not come back in time (each records itself as
    /// cancelled and ends its upstream request, and its connection if it had its own).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, waiting| waiting.until > now);
    }

    /// The request `request` resumes, if it is `caller`'s and the same call.
    pub(crate) fn take(&self, caller: &CallerId, request: &McpRequest) -> Option<Parked> {
        let handle = state_of(request)?;
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        parked
            .get(handle)
            .is_some_and(|found| found.resumed_by(caller, request))
            .then(|| parked.remove(handle))
            .flatten()
    }

    /// The approval of the call `request` resumes, if it is `caller`'s, the same call, and
    /// went upstream approved.
    pub(crate) fn approval(&self, caller: &CallerId, request: &McpRequest) -> Option<String> {
        let handle = state_of(request)?;
        let parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        parked
            .get(handle)
            .filter(|found| found.resumed_by(caller, request))
            .and_then(|found| found.approval.clone())
    }
}

impl Parked {
    fn resumed_by(&self, caller: &CallerId, request: &McpRequest) -> bool {
        &self.caller == caller && self.call == call_of(request) && self.until > Instant::now()
    }
}

/// Whose a parked request is: the caller, or nobody in particular under
/// `[danger] unauthenticated` (where the random handle alone finds it).
pub(crate) fn owner(context: &super::serve::Context) -> CallerId {
    context
        .caller
        .id()
        .cloned()
        .unwrap_or_else(|| CallerId::new("", ""))
}

/// The handle in a bridge `requestState`, if the request carries one.
fn state_of(request: &McpRequest) -> Option<&str> {
    request
        .params
        .get("requestState")?
        .as_str()?
        .strip_prefix(STATE_PREFIX)
}

/// Whether the request resumes a parked one (whether or not it is still there).
pub(crate) fn resumes(request: &McpRequest) -> bool {
    state_of(request).is_some()
}

/// The caller's answer to the question, as the upstream takes it.
pub(crate) fn answer_of(request: &McpRequest) -> Option<Value> {
    request.params.get("inputResponses")?.get(KEY).cloned()
}

/// The call a parked request is for: its method, target and what it acts on.
fn call_of(request: &McpRequest) -> String {
    json!([
        request.method.as_str(),
        request.target(),
        request.bound_input()
    ])
    .to_string()
}

/// Whether the caller declared the capability `method` needs.
pub(crate) fn askable(request: &McpRequest, method: &str) -> bool {
    let capability = match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        _ => return false,
    };
    request
        .meta()
        .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
        .and_then(|declared| declared.get(capability))
        .is_some()
}

/// The client a 2026-07-28 request declares, if it declares anything an upstream could ask of
/// it (elicitation, sampling, roots).
pub(crate) fn identity(request: &McpRequest) -> Option<portcullis_mcp::ClientIdentity> {
    let meta = request.meta()?;
    let capabilities = meta
        .get("io.modelcontextprotocol/clientCapabilities")?
        .as_object()?;
    if !["elicitation", "sampling", "roots"]
        .iter()
        .any(|capability| capabilities.contains_key(*capability))
    {
        return None;
    }
    Some(portcullis_mcp::ClientIdentity {
        capabilities: capabilities.clone(),
        info: meta
            .get("io.modelcontextprotocol/clientInfo")
            .cloned()
            .unwrap_or_else(|| json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")})),
    })
}

/// The `input_required` result asking the caller `method` with `params`.
pub(crate) fn question(state: &str, method: &str, params: Map<String, Value>) -> Value {
    json!({
        "resultType": "input_required",
        "inputRequests": { KEY: { "method": method, "params": params } },
        "requestState": state,
    })
}
