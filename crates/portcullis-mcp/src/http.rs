//! A lean streamable HTTP client transport for upstream connections.
//!
//! rmcp's own client transport routes every message through a worker task, a request queue and
//! a per-stream task before it reaches the service: on this machine that cost about 250 µs per
//! call, more than the rest of the gateway hop together. This transport does the protocol's HTTP
//! part directly: each outbound message is one POST from its own task, and whatever comes back
//! (a JSON body or an SSE stream of messages) goes straight to the service's inbound channel.
//!
//! It covers what the gateway needs of the transport: both eras' headers (`MCP-Protocol-Version`,
//! `Mcp-Session-Id`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` for tools that ask for them), the
//! session GET stream for server-initiated messages, DELETE on close, and turning HTTP failures
//! into JSON-RPC errors for the request that hit them, so no caller waits forever.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use reqwest::{
    StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use rmcp::{
    RoleClient,
    model::{
        ClientJsonRpcMessage, ErrorCode, ErrorData, GetExtensions, JsonRpcError, RequestId,
        ServerJsonRpcMessage,
    },
    service::InboundStreamOrigin,
    transport::Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Key in the `data` of the JSON-RPC errors this transport makes up when HTTP fails, so the
/// gateway can tell them from errors the upstream itself sent.
pub const TRANSPORT_FAILURE: &str = "portcullisTransportFailure";
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
// An upstream that streams more than this in one SSE event is misbehaving.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Why the transport failed to accept a message.
#[derive(Debug, thiserror::Error)]
pub enum HttpTransportError {
    /// The message could not be encoded.
    #[error("cannot encode message")]
    Encode(#[source] serde_json::Error),
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
}

/// Streamable HTTP to one upstream endpoint.
pub struct HttpTransport {
    inner: Arc<Inner>,
    inbound: mpsc::Receiver<ServerJsonRpcMessage>,
}

struct Inner {
    http: reqwest::Client,
    url: Url,
    inbound: mpsc::Sender<ServerJsonRpcMessage>,
    state: Mutex<State>,
    closed: CancellationToken,
}

#[derive(Default)]
struct State {
    session: Option<HeaderValue>,
    version: Option<String>,
    get_stream: bool,
    /// Per tool, the arguments to mirror into `Mcp-Param-<Name>` headers, learned from lists.
    param_headers: HashMap<String, Vec<(String, String)>>,
}

impl HttpTransport {
    /// A transport to `url` using `http` (which carries the gateway's own TLS and timeouts).
    pub fn new(http: reqwest::Client, url: Url) -> Self {
        let (inbound_tx, inbound) = mpsc::channel(256);
        let inner = Arc::new(Inner {
            http,
            url,
            inbound: inbound_tx,
            state: Mutex::new(State::default()),
            closed: CancellationToken::new(),
        });
        Self { inner, inbound }
    }
}

impl Transport<RoleClient> for HttpTransport {
    type Error = HttpTransportError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        // rmcp runs each send future as its own task, so the POST and the reading of its answer
        // happen right here, without another task hop.
        let prepared = self.inner.prepare(item);
        let inner = self.inner.clone();
        async move {
            let (headers, body, outbound) = prepared?;
            let start_get_stream = outbound.method.as_deref() == Some("notifications/initialized");
            inner.post(headers, body, &outbound).await;
            if start_get_stream {
                inner.open_get_stream();
            }
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.closed.cancel();
        let session = self.inner.state().session.clone();
        if let Some(session) = session {
            let request = self
                .inner
                .http
                .delete(self.inner.url.clone())
                .header(SESSION_HEADER, session);
            // Best effort: the upstream expires abandoned sessions anyway.
            let _ = tokio::time::timeout(Duration::from_secs(2), request.send()).await;
        }
        Ok(())
    }
}

/// What the gateway must remember about one POST to read its answer right.
struct Outbound {
    id: Option<RequestId>,
    method: Option<String>,
    tool: Option<String>,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encode one message and the headers that go with it.
    fn prepare(
        &self,
        item: ClientJsonRpcMessage,
    ) -> Result<(HeaderMap, Vec<u8>, Outbound), HttpTransportError> {
        if self.closed.is_cancelled() {
            return Err(HttpTransportError::Closed);
        }
        let value = serde_json::to_value(&item).map_err(HttpTransportError::Encode)?;
        let body = serde_json::to_vec(&value).map_err(HttpTransportError::Encode)?;
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let params = value.get("params");
        let name = method
            .as_deref()
            .and_then(|method| routing_name(method, params));
        let outbound = Outbound {
            id: match &item {
                ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
                _ => None,
            },
            tool: (method.as_deref() == Some("tools/call"))
                .then(|| name.unwrap_or_default().to_owned()),
            method: method.clone(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        {
            let state = self.state();
            if let Some(session) = &state.session {
                headers.insert(SESSION_HEADER, session.clone());
            }
            let inline = params
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(META_VERSION))
                .and_then(Value::as_str);
            if let Some(version) = inline.or(state.version.as_deref())
                && let Ok(value) = HeaderValue::from_str(version)
            {
                headers.insert(VERSION_HEADER, value);
            }
            if let (Some(tool), Some(arguments)) =
                (&outbound.tool, params.and_then(|p| p.get("arguments")))
            {
                for (argument, suffix) in state.param_headers.get(tool).into_iter().flatten() {
                    if let Some(header) = param_header(suffix, arguments.get(argument)) {
                        headers.insert(header.0, header.1);
                    }
                }
            }
        }
        if let Some(method) = &method {
            if let Ok(value) = HeaderValue::from_str(method) {
                headers.insert("mcp-method", value);
            }
            if let Some(value) = name.and_then(header_text) {
                headers.insert("mcp-name", value);
            }
        }
        Ok((headers, body, outbound))
    }

    async fn post(&self, headers: HeaderMap, body: Vec<u8>, outbound: &Outbound) {
        let sent = self
            .http
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send();
        let response = tokio::select! {
            () = self.closed.cancelled() => return,
            response = sent => response,
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(%error, "upstream POST failed");
                return self.fail(outbound, "upstream unreachable").await;
            }
        };
        let status = response.status();
        if outbound.method.as_deref() == Some("initialize") {
            let mut state = self.state();
            state.session = response.headers().get(SESSION_HEADER).cloned();
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return;
        }
        if status == StatusCode::NOT_FOUND && self.state().session.is_some() {
            // The upstream forgot the session: this connection is over; the owner reconnects.
            self.fail(outbound, "upstream session expired").await;
            self.closed.cancel();
            return;
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse && status.is_success() {
            self.read_events(response, outbound).await;
            return;
        }
        // A JSON body, success or not, may hold the JSON-RPC answer (errors often come as 400).
        let answered = match response.bytes().await {
            Ok(bytes) => match self.decode(&bytes, outbound) {
                Some(message) => self.deliver(message, outbound).await,
                None => false,
            },
            Err(_) => false,
        };
        if !answered {
            self.fail(
                outbound,
                &format!("upstream answered HTTP {}", status.as_u16()),
            )
            .await;
        }
    }

    async fn read_events(&self, response: reqwest::Response, outbound: &Outbound) {
        let mut stream = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut answered = false;
        loop {
            let chunk = tokio::select! {
                () = self.closed.cancelled() => return,
                chunk = stream.next() => chunk,
            };
            let Some(Ok(chunk)) = chunk else { break };
            buffer.extend_from_slice(&chunk);
            let mut consumed = 0;
            while let Some((event, rest)) = split_event(&buffer[consumed..]) {
                let next = buffer.len() - rest.len();
                let message = event_data(event).and_then(|d| self.decode(&d, outbound));
                consumed = next;
                if let Some(message) = message {
                    answered |= self.deliver(message, outbound).await;
                }
            }
            buffer.drain(..consumed);
            if buffer.len() > MAX_EVENT_BYTES {
                tracing::warn!("upstream SSE event too large; stream dropped");
                break;
            }
        }
        if !answered && outbound.id.is_some() {
            self.fail(outbound, "upstream stream ended without an answer")
                .await;
        }
    }

    /// Hand one message to the service; true if it answers the outbound request.
    async fn deliver(&self, mut message: ServerJsonRpcMessage, outbound: &Outbound) -> bool {
        // Tell the relay which call a server request or notification arrived with.
        if let Some(id) = &outbound.id {
            let origin = InboundStreamOrigin::OutboundRequest(id.clone());
            match &mut message {
                ServerJsonRpcMessage::Request(request) => {
                    request.request.extensions_mut().insert(origin);
                }
                ServerJsonRpcMessage::Notification(notification) => {
                    notification.notification.extensions_mut().insert(origin);
                }
                _ => {}
            }
        }
        let answers = match (&message, &outbound.id) {
            (ServerJsonRpcMessage::Response(response), Some(id)) => &response.id == id,
            (ServerJsonRpcMessage::Error(error), Some(id)) => error.id.as_ref() == Some(id),
            _ => false,
        };
        // The service is gone when nobody receives: nothing left to do either way.
        let _ = self.inbound.send(message).await;
        answers
    }

    /// Parse one message. Answers that later requests depend on (the negotiated version, which
    /// tool arguments the upstream wants mirrored into headers) are read on the way, from the
    /// same parse.
    fn decode(&self, bytes: &[u8], outbound: &Outbound) -> Option<ServerJsonRpcMessage> {
        let learns = matches!(
            outbound.method.as_deref(),
            Some("initialize" | "tools/list")
        );
        if !learns {
            return serde_json::from_slice(bytes).ok();
        }
        let value: Value = serde_json::from_slice(bytes).ok()?;
        if let Some(result) = value.get("result") {
            self.learn(result, outbound);
        }
        serde_json::from_value(value).ok()
    }

    fn learn(&self, result: &Value, outbound: &Outbound) {
        match outbound.method.as_deref() {
            Some("initialize") => {
                if let Some(version) = result.get("protocolVersion").and_then(Value::as_str) {
                    self.state().version = Some(version.to_owned());
                }
            }
            Some("tools/list") => {
                let mut state = self.state();
                for tool in result
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(name) = tool.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let properties = tool
                        .pointer("/inputSchema/properties")
                        .and_then(Value::as_object);
                    let mirrored: Vec<(String, String)> = properties
                        .into_iter()
                        .flatten()
                        .filter_map(|(argument, schema)| {
                            let suffix = schema.get("x-mcp-header")?.as_str()?;
                            Some((argument.clone(), suffix.to_owned()))
                        })
                        .collect();
                    if mirrored.is_empty() {
                        state.param_headers.remove(name);
                    } else {
                        state.param_headers.insert(name.to_owned(), mirrored);
                    }
                }
            }
            _ => {}
        }
    }

    /// Answer the outbound request with a JSON-RPC error, so its caller is not left waiting.
    async fn fail(&self, outbound: &Outbound, message: &str) {
        let Some(id) = outbound.id.clone() else {
            return;
        };
        let data = serde_json::json!({ TRANSPORT_FAILURE: message });
        let error = ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            "upstream unavailable",
            Some(data),
        );
        let _ = self
            .inbound
            .send(ServerJsonRpcMessage::Error(JsonRpcError::new(
                Some(id),
                error,
            )))
            .await;
    }

    /// The session's standalone stream, for requests and notifications the upstream sends on its
    /// own. Reopened while the transport lives; an upstream that offers none (405) is fine.
    fn open_get_stream(self: Arc<Self>) {
        {
            let mut state = self.state();
            if state.get_stream || state.session.is_none() {
                return;
            }
            state.get_stream = true;
        }
        tokio::spawn(async move {
            let none = Outbound {
                id: None,
                method: None,
                tool: None,
            };
            while !self.closed.is_cancelled() {
                let (session, version) = {
                    let state = self.state();
                    (state.session.clone(), state.version.clone())
                };
                let mut request = self
                    .http
                    .get(self.url.clone())
                    .header(ACCEPT, "text/event-stream");
                if let Some(session) = session {
                    request = request.header(SESSION_HEADER, session);
                }
                if let Some(version) = version {
                    request = request.header(VERSION_HEADER, version);
                }
                let response = tokio::select! {
                    () = self.closed.cancelled() => return,
                    response = request.send() => response,
                };
                match response {
                    Ok(response) if response.status().is_success() => {
                        self.read_events(response, &none).await;
                    }
                    Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                    Ok(_) | Err(_) => {}
                }
                tokio::select! {
                    () = self.closed.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

/// The `Mcp-Name` of a request (SEP-2243): which params field names its target.
fn routing_name<'a>(method: &str, params: Option<&'a Value>) -> Option<&'a str> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params?.get(key)?.as_str()
}

/// `Mcp-Param-<suffix>: value` for a primitive argument.
fn param_header(suffix: &str, value: Option<&Value>) -> Option<(HeaderName, HeaderValue)> {
    let text = match value? {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => return None,
    };
    let name = format!("mcp-param-{suffix}").to_ascii_lowercase();
    Some((
        HeaderName::from_bytes(name.as_bytes()).ok()?,
        header_text(&text)?,
    ))
}

/// A header value carrying `text`, base64-wrapped (`=?base64?...?=`) when it is not plain
/// visible ASCII without surrounding space, or could be mistaken for a wrapped value.
fn header_text(text: &str) -> Option<HeaderValue> {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && text.trim() == text
        && !text.starts_with("=?base64?");
    if plain {
        HeaderValue::from_str(text).ok()
    } else {
        HeaderValue::from_str(&format!("=?base64?{}?=", base64_encode(text.as_bytes()))).ok()
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// The first complete event in `buffer` and what follows it.
fn split_event(buffer: &[u8]) -> Option<(&[u8], &[u8])> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let (at, len) = match (lf, crlf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    Some((&buffer[..at], &buffer[at + len..]))
}

/// The joined `data:` lines of one event, if it has any content.
fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    (!data.iter().all(u8::is_ascii_whitespace)).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        let (event, rest) = split_event(b"data: a\n\ndata: b\r\n\r\n").unwrap();
        assert_eq!(event, b"data: a");
        let (event, rest) = split_event(rest).unwrap();
        assert_eq!(event, b"data: b");
        assert!(split_event(rest).is_none());
        assert!(split_event(b"data: partial\n").is_none());
    }

    #[test]
    fn event_data_joins_lines_and_skips_priming_events() {
        assert_eq!(
            event_data(b"id: 1\ndata: {\"a\":\ndata: 1}").unwrap(),
            b"{\"a\":\n1}"
        );
        assert!(event_data(b"data: \nid: 0\nretry: 3000").is_none());
        assert!(event_data(b": keep-alive").is_none());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b"Hello"), "SGVsbG8=");
        assert_eq!(base64_encode(b"Hi"), "SGk=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        assert_eq!(base64_encode("été".as_bytes()), "w6l0w6k=");
    }

    #[test]
    fn param_headers_wrap_what_is_not_plain_ascii() {
        let (name, value) = param_header("Region", Some(&Value::from("eu-west"))).unwrap();
        assert_eq!(name.as_str(), "mcp-param-region");
        assert_eq!(value, "eu-west");
        let (_, value) = param_header("Region", Some(&Value::from("été"))).unwrap();
        assert_eq!(value, "=?base64?w6l0w6k=?=");
        assert!(param_header("Region", Some(&serde_json::json!({"x": 1}))).is_none());
    }
}
