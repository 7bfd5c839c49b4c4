//! The streamable HTTP rules of both eras, read from a request's headers and its parsed body:
//! the era it speaks, the session it names, and whether its `MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers say what its body says (a header that
//! contradicts the body is refused: an intermediary may route on one and the upstream act on
//! the other). This is the only reader of those headers.

use axum::{body::Body, response::Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_core::{Era, McpMessage, McpMethod, McpRequest, RequestId};
use serde_json::{Value, json};

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// Session-era versions a client may ask for (newest first).
pub(crate) const SESSION_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Stateless versions the gateway serves.
pub(crate) const STATELESS_VERSIONS: [&str; 1] = ["2026-07-28"];

// Error codes the 2026-07-28 revision defines.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
const UNSUPPORTED_VERSION: i64 = -32022;

/// Which lifecycle a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// `initialize`: a new session.
    Opening,
    /// A message of the session this id names.
    Session(String),
    /// A 2026-07-28 request, or notification.
    Stateless,
}

/// Why a message is refused before anything else happens to it.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The answer.
    pub(crate) response: Box<Response>,
    /// Whether it is a header that contradicts the body (recorded as such).
    pub(crate) mismatch: bool,
}

/// The lifecycle of `message` as its headers and body say, checking every header the era
/// requires against the body. `tool_schema` gives a tool's input schema, for `Mcp-Param-*`.
pub(crate) fn lifecycle(
    headers: &HeaderMap,
    message: &McpMessage,
    tool: impl Fn(&str) -> Option<std::sync::Arc<Value>>,
) -> Result<Lifecycle, Refusal> {
    let request = match message {
        McpMessage::Request(request) => Some(request),
        _ => None,
    };
    let header_version = single(headers, VERSION_HEADER);
    // The same rule the parser applied to the body (`declares_stateless`), and the headers.
    let stateless = request.is_some_and(McpRequest::declares_stateless)
        || header_version.is_some_and(|v| v.as_bytes() >= Era::Stateless.as_str().as_bytes())
        || request.is_some_and(|r| r.method == McpMethod::Discover);
    if stateless {
        // A method this era does not have (`initialize`, `tasks/result`, ...), and a tasks
        // method without the tasks extension, are answered as such before anything else is
        // checked; nothing of them is forwarded.
        let refused_first = request
            .is_some_and(|r| !r.method.exists_in(Era::Stateless) || r.lacks_tasks_extension());
        if !refused_first {
            check_stateless(headers, message, tool)?;
        }
        return Ok(Lifecycle::Stateless);
    }
    if let Some(request) = request.filter(|r| r.method == McpMethod::Initialize) {
        check_initialize(headers, request)?;
        return Ok(Lifecycle::Opening);
    }
    if let Some(version) = header_version {
        let known = version
            .to_str()
            .is_ok_and(|v| SESSION_VERSIONS.contains(&v));
        if !known {
            return Err(plain(
                StatusCode::BAD_REQUEST,
                "Bad Request: Unsupported MCP-Protocol-Version",
            ));
        }
    }
    match single(headers, SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(session) => Ok(Lifecycle::Session(session.to_owned())),
        None => Err(plain(
            StatusCode::BAD_REQUEST,
            "Bad Request: Session ID is required",
        )),
    }
}

/// The one value of header `name`; `None` if absent or given more than once.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

fn check_initialize(headers: &HeaderMap, request: &McpRequest) -> Result<(), Refusal> {
    let id = Some(&request.id);
    if let Some(version) = headers.get(VERSION_HEADER) {
        let asked = request
            .params
            .get("protocolVersion")
            .and_then(Value::as_str);
        if version.to_str().ok() != asked {
            return Err(rpc_refusal(
                StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Invalid Request: MCP-Protocol-Version header does not match params.protocolVersion",
                false,
            ));
        }
    }
    // The handshake may omit Mcp-Method, but one that contradicts the body is refused.
    let mut methods = headers.get_all(METHOD_HEADER).iter();
    if let Some(first) = methods.next()
        && (methods.next().is_some() || first != "initialize")
    {
        return Err(mismatch(id, "Mcp-Method header does not match the body"));
    }
    Ok(())
}

fn check_stateless(
    headers: &HeaderMap,
    message: &McpMessage,
    tool: impl Fn(&str) -> Option<std::sync::Arc<Value>>,
) -> Result<(), Refusal> {
    let (id, method, request) = match message {
        McpMessage::Request(request) => (Some(&request.id), request.method.as_str(), Some(request)),
        McpMessage::Notification(notification) => (None, notification.method.as_str(), None),
        McpMessage::Response(_) => {
            return Err(rpc_refusal(
                StatusCode::BAD_REQUEST,
                None,
                -32600,
                "Invalid Request: a stateless server takes no responses",
                false,
            ));
        }
    };
    let header_version = single(headers, VERSION_HEADER).and_then(|v| v.to_str().ok());
    if let Some(request) = request {
        let meta = request.meta();
        let declared = request.declared_version();
        let capabilities = meta.and_then(|meta| meta.get(CAPABILITIES_KEY));
        if declared.is_none() || !capabilities.is_some_and(Value::is_object) {
            return Err(rpc_refusal(
                StatusCode::BAD_REQUEST,
                id,
                -32602,
                "Invalid params: request _meta is missing or has malformed required fields: \
                 io.modelcontextprotocol/protocolVersion, io.modelcontextprotocol/clientCapabilities",
                false,
            ));
        }
        if header_version != declared {
            return Err(mismatch(
                id,
                "MCP-Protocol-Version header does not match the request's _meta protocolVersion",
            ));
        }
        let declared = declared.unwrap_or_default();
        if !STATELESS_VERSIONS.contains(&declared) {
            let data = json!({"supported": STATELESS_VERSIONS, "requested": declared});
            return Err(Refusal {
                response: Box::new(rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    UNSUPPORTED_VERSION,
                    "Unsupported protocol version",
                    Some(&data),
                )),
                mismatch: false,
            });
        }
    } else if header_version.is_none() {
        return Err(mismatch(id, "MCP-Protocol-Version header is missing"));
    }
    if single(headers, METHOD_HEADER).and_then(|v| v.to_str().ok()) != Some(method) {
        return Err(mismatch(id, "Mcp-Method header does not match the body"));
    }
    let Some(request) = request else {
        return Ok(());
    };
    if let Some(target) = request.target() {
        let named = single(headers, NAME_HEADER).and_then(portcullis_mcp::header_value_text);
        if named.as_deref() != Some(target) {
            return Err(mismatch(id, "Mcp-Name header does not match the body"));
        }
    }
    if request.method == McpMethod::ToolsCall
        && let Some(tool) = request.target().and_then(&tool)
        && let Some(schema) = tool.get("inputSchema")
    {
        for (name, expected) in portcullis_mcp::param_headers(schema, request.arguments()) {
            let given = single(headers, name.as_str()).and_then(portcullis_mcp::header_value_text);
            let wanted = portcullis_mcp::header_value_text(&expected);
            if given != wanted {
                return Err(mismatch(id, "an Mcp-Param header does not match the body"));
            }
        }
    }
    Ok(())
}

fn mismatch(id: Option<&RequestId>, message: &str) -> Refusal {
    rpc_refusal(
        StatusCode::BAD_REQUEST,
        id,
        HEADER_MISMATCH,
        &format!("Header mismatch: {message}"),
        true,
    )
}

fn rpc_refusal(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    mismatch: bool,
) -> Refusal {
    Refusal {
        response: Box::new(rpc_error(status, id, code, message, None)),
        mismatch,
    }
}

fn plain(status: StatusCode, text: &'static str) -> Refusal {
    Refusal {
        response: Box::new(text_response(status, text)),
        mismatch: false,
    }
}

/// The refusal of a POST whose client does not accept what the gateway may answer with (both
/// JSON and SSE), or that did not send JSON; `None` when it is fine.
/// Whether the headers say the body is a request (`Mcp-Method` naming one, 2026-07-28): a
/// notification's method starts `notifications/`, and an answer has none.
pub(crate) fn declares_request(headers: &HeaderMap) -> bool {
    headers
        .get(METHOD_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|method| !method.is_empty() && !method.starts_with("notifications/"))
}

pub(crate) fn refuse_post(headers: &HeaderMap) -> Option<Response> {
    let (mut json, mut sse) = (false, false);
    for accepted in accepted(headers) {
        json |= accepted.eq_ignore_ascii_case("application/json") || accepted == "*/*";
        sse |= accepted.eq_ignore_ascii_case("text/event-stream") || accepted == "*/*";
    }
    if !json || !sse {
        return Some(text_response(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if !content_type.is_some_and(|v| v.eq_ignore_ascii_case("application/json")) {
        return Some(text_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    None
}

/// Whether the client accepts an event stream (GET).
pub(crate) fn accepts_events(headers: &HeaderMap) -> bool {
    accepted(headers).any(|a| a.eq_ignore_ascii_case("text/event-stream") || a == "*/*")
}

/// The media types of `Accept`, without parameters, leaving out those weighted zero.
fn accepted(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            (!zero && !essence.is_empty()).then_some(essence)
        })
}

/// The session id a request names, if any (GET and DELETE).
pub(crate) fn session_id(headers: &HeaderMap) -> Option<&str> {
    single(headers, SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// A JSON-RPC error as a plain JSON answer.
pub(crate) fn rpc_error(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> Response {
    json_response(
        status,
        portcullis_core::message::error_message(id, code, message, data),
    )
}

/// `body` as a JSON answer.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text answer.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

/// 202 with no body: a notification or a client's answer taken.
pub(crate) fn accepted_response() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// Exactly what is answered for a session that does not exist, also for another caller's: any
/// difference would tell a thief that a stolen session is alive.
pub(crate) fn session_not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "Not Found: Session not found")
}

/// One SSE event carrying `message`.
pub(crate) fn sse_event(message: &str) -> bytes::Bytes {
    let mut event = String::with_capacity(message.len() + 8);
    event.push_str("data: ");
    event.push_str(message);
    event.push_str("\n\n");
    bytes::Bytes::from(event)
}

/// The headers of an SSE answer.
pub(crate) fn sse_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The era of a lifecycle.
pub(crate) fn era_of(lifecycle: &Lifecycle) -> Era {
    match lifecycle {
        Lifecycle::Stateless => Era::Stateless,
        Lifecycle::Opening | Lifecycle::Session(_) => Era::Sessions,
    }
}
