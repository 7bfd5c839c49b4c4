//! One client message, parsed once at the edge into the value every later step reads.
//!
//! The body is strict JSON ([`crate::json`]) holding one JSON-RPC 2.0 message: a request, a
//! notification or (2025-11-25 sessions) a response to a request the server sent. The fields
//! the gateway decides on are checked here for their type, so that later steps read them
//! without a second parse and without a second opinion: a tool call's `name` is a string, its
//! `arguments` an object, `params` and `params._meta` objects, the id a string or an integer.

use serde_json::{Map, Value};

use crate::{
    json::{self, JsonError},
    method::{McpMethod, NotificationMethod, TargetField},
};

/// The `_meta` key carrying a 2026-07-28 request's protocol version.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// A JSON-RPC request id: a string or an integer, as MCP requires (never null).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Value);

impl RequestId {
    /// The id of `value`, if it is one MCP allows.
    pub fn new(value: Value) -> Option<Self> {
        match &value {
            Value::String(_) => Some(Self(value)),
            Value::Number(number) if number.is_i64() || number.is_u64() => Some(Self(value)),
            _ => None,
        }
    }

    /// The id as JSON.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The id as JSON text, to write into a message.
    pub fn to_json(&self) -> String {
        self.0.to_string()
    }
}

/// What a completion completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionRef<'a> {
    /// A prompt's argument, by the prompt's name.
    Prompt(&'a str),
    /// A resource template's argument, by the URI.
    Resource(&'a str),
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct McpRequest {
    /// Its id, which the answer carries back.
    pub id: RequestId,
    /// What it asks for.
    pub method: McpMethod,
    /// Its `params` (an empty object when it sent none).
    pub params: Map<String, Value>,
}

/// A notification from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct McpNotification {
    /// Which.
    pub method: NotificationMethod,
    /// Its `params` (an empty object when it sent none).
    pub params: Map<String, Value>,
}

/// A client's answer to a request the server sent it (2025-11-25 sessions).
#[derive(Debug, Clone, PartialEq)]
pub struct McpResponse {
    /// The id of the server's request.
    pub id: RequestId,
    /// `result`, or the `error` object.
    pub outcome: Result<Value, Value>,
}

/// One client message.
#[derive(Debug, Clone, PartialEq)]
pub enum McpMessage {
    /// A request, answered with a response.
    Request(McpRequest),
    /// A notification, answered with nothing.
    Notification(McpNotification),
    /// A response to the server.
    Response(McpResponse),
}

/// Why a body is not a message the gateway accepts. Every variant has a JSON-RPC code and a
/// fixed, safe text ([`MessageError::code`], [`MessageError::text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not strict JSON.
    Json(JsonError),
    /// JSON, but not one JSON-RPC 2.0 message object (a batch, `jsonrpc` other than "2.0", no
    /// method, an id MCP does not allow).
    Envelope {
        /// What is wrong, for logs.
        detail: &'static str,
        /// The id, if one could be read (the error answer carries it).
        id: Option<RequestId>,
    },
    /// A request whose `params` (or a member the gateway decides on) has the wrong type.
    Params {
        /// What is wrong, for logs.
        detail: &'static str,
        /// The request's id.
        id: RequestId,
    },
}

impl MessageError {
    /// The JSON-RPC error code: parse error, invalid request or invalid params.
    pub fn code(&self) -> i64 {
        match self {
            Self::Json(_) => -32700,
            Self::Envelope { .. } => -32600,
            Self::Params { .. } => -32602,
        }
    }

    /// The message of the error answer: fixed per kind, never quoting the body.
    pub fn text(&self) -> &'static str {
        match self {
            Self::Json(JsonError::DuplicateMember) => {
                "Parse error: an object names the same member twice"
            }
            Self::Json(JsonError::Syntax { .. }) => "Parse error: the body is not valid JSON",
            Self::Envelope { .. } => "Invalid Request: not a single JSON-RPC 2.0 message",
            Self::Params { .. } => "Invalid params",
        }
    }

    /// What is wrong, for the audit record and logs.
    pub fn detail(&self) -> String {
        match self {
            Self::Json(error) => error.to_string(),
            Self::Envelope { detail, .. } | Self::Params { detail, .. } => (*detail).to_owned(),
        }
    }

    /// The id the error answer carries (`null` when none could be read).
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Self::Json(_) => None,
            Self::Envelope { id, .. } => id.as_ref(),
            Self::Params { id, .. } => Some(id),
        }
    }
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.text(), self.detail())
    }
}

impl std::error::Error for MessageError {}

fn envelope(detail: &'static str, id: Option<RequestId>) -> MessageError {
    MessageError::Envelope { detail, id }
}

impl McpMessage {
    /// Parse one message from `body`. Never panics, whatever the bytes.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        let value = json::parse(body).map_err(MessageError::Json)?;
        let Value::Object(mut object) = value else {
            return Err(envelope(
                "not a JSON object (batches are not accepted)",
                None,
            ));
        };
        let id = match object.remove("id") {
            None => None,
            Some(value) => Some(
                RequestId::new(value)
                    .ok_or_else(|| envelope("an id must be a string or an integer", None))?,
            ),
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(envelope("`jsonrpc` must be \"2.0\"", id));
        }
        match (object.remove("method"), id) {
            (Some(Value::String(method)), id) => {
                let params = match object.remove("params") {
                    None => Map::new(),
                    Some(Value::Object(params)) => params,
                    Some(_) => {
                        return Err(match id {
                            Some(id) => MessageError::Params {
                                detail: "`params` must be an object",
                                id,
                            },
                            None => envelope("`params` must be an object", None),
                        });
                    }
                };
                match id {
                    Some(id) => {
                        McpRequest::new(id, McpMethod::parse(&method), params).map(Self::Request)
                    }
                    None => Ok(Self::Notification(McpNotification {
                        method: NotificationMethod::parse(&method),
                        params,
                    })),
                }
            }
            (Some(_), id) => Err(envelope("`method` must be a string", id)),
            (None, Some(id)) => {
                let outcome = match (object.remove("result"), object.remove("error")) {
                    (Some(result), None) => Ok(result),
                    (None, Some(error @ Value::Object(_))) => Err(error),
                    _ => return Err(envelope("a response holds `result` or `error`", Some(id))),
                };
                Ok(Self::Response(McpResponse { id, outcome }))
            }
            (None, None) => Err(envelope("no method and no id", None)),
        }
    }
}

impl McpRequest {
    /// A request, its decided-on members checked.
    pub fn new(
        id: RequestId,
        method: McpMethod,
        params: Map<String, Value>,
    ) -> Result<Self, MessageError> {
        let wrong = |detail| MessageError::Params {
            detail,
            id: id.clone(),
        };
        if params.get("_meta").is_some_and(|meta| !meta.is_object()) {
            return Err(wrong("`_meta` must be an object"));
        }
        // A method the request's era does not have is answered "Method not found" whatever its
        // params; what its target would be is nobody's business.
        let era = if declares_version(&params) {
            crate::Era::Stateless
        } else {
            crate::Era::Sessions
        };
        if let Some(field) = method.target_field().filter(|_| method.exists_in(era)) {
            match params.get(field.as_str()) {
                Some(Value::String(_)) => {}
                None => return Err(wrong("the target is missing")),
                Some(_) => return Err(wrong("the target must be a string")),
            }
        }
        if method == McpMethod::ToolsCall || method == McpMethod::PromptsGet {
            match params.get("arguments") {
                None | Some(Value::Object(_)) => {}
                Some(_) => return Err(wrong("`arguments` must be an object")),
            }
        }
        Ok(Self { id, method, params })
    }

    /// What the request targets (a tool or prompt name, a resource URI, a task id), if its
    /// method names one (parsing made sure it is there).
    pub fn target(&self) -> Option<&str> {
        let field = self.method.target_field()?;
        self.params.get(field.as_str())?.as_str()
    }

    /// Which member names the target, if the method has one.
    pub fn target_field(&self) -> Option<TargetField> {
        self.method.target_field()
    }

    /// What a `completion/complete` completes (its `ref`), if it names a prompt or a resource.
    pub fn completion_ref(&self) -> Option<CompletionRef<'_>> {
        if self.method != McpMethod::Complete {
            return None;
        }
        let reference = self.params.get("ref")?;
        let text = |key: &str| reference.get(key).and_then(Value::as_str);
        match text("type")? {
            "ref/prompt" => text("name").map(CompletionRef::Prompt),
            "ref/resource" => text("uri").map(CompletionRef::Resource),
            _ => None,
        }
    }

    /// A call's `arguments`.
    pub fn arguments(&self) -> Option<&Map<String, Value>> {
        self.params.get("arguments")?.as_object()
    }

    /// What an approval of this request binds besides its method and target: a call's or a
    /// prompt's `arguments`; for any other method its params, without the target, `_meta`, and
    /// the members a 2026-07-28 retry adds (`inputResponses`, `requestState`).
    pub fn bound_input(&self) -> Value {
        if matches!(self.method, McpMethod::ToolsCall | McpMethod::PromptsGet) {
            return Value::Object(self.arguments().cloned().unwrap_or_default());
        }
        let target = self.method.target_field().map(|field| field.as_str());
        let kept = self.params.iter().filter(|(key, _)| {
            let key = key.as_str();
            Some(key) != target && !matches!(key, "_meta" | "inputResponses" | "requestState")
        });
        Value::Object(kept.map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// `params._meta`.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.params.get("_meta")?.as_object()
    }

    /// The protocol version the request declares in `_meta` (2026-07-28 requests do).
    pub fn declared_version(&self) -> Option<&str> {
        self.meta()?.get(PROTOCOL_VERSION_KEY)?.as_str()
    }

    /// Whether a 2026-07-28 request's client declares extension `id`
    /// (`_meta.io.modelcontextprotocol/clientCapabilities.extensions`).
    pub fn declares_extension(&self, id: &str) -> bool {
        self.meta()
            .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
            .and_then(|capabilities| capabilities.get("extensions"))
            .and_then(|extensions| extensions.get(id))
            .is_some()
    }

    /// A 2026-07-28 `tasks/get`, `tasks/update` or `tasks/cancel` from a client that did not
    /// negotiate the tasks extension: refused with -32021 before anything else (SEP-2663).
    pub fn lacks_tasks_extension(&self) -> bool {
        matches!(
            self.method,
            McpMethod::TasksGet | McpMethod::TasksUpdate | McpMethod::TasksCancel
        ) && self.declares_stateless()
            && !self.declares_extension(TASKS_EXTENSION)
    }

    /// Whether the request declares a protocol version in `_meta`, as only 2026-07-28 requests
    /// do: it is then a stateless request, whatever its headers say.
    pub fn declares_stateless(&self) -> bool {
        declares_version(&self.params)
    }
}

/// The tasks extension's identifier (SEP-2663).
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

fn declares_version(params: &Map<String, Value>) -> bool {
    params
        .get("_meta")
        .and_then(|meta| meta.get(PROTOCOL_VERSION_KEY))
        .is_some()
}

/// The text of a JSON-RPC request (`id` given) or notification, as relayed to a client. Empty
/// params are left out: the upstream's frame does not say whether it sent `{}` or nothing,
/// and nothing is what servers send most.
pub fn outgoing_message(id: Option<Value>, method: &str, params: Map<String, Value>) -> String {
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), "2.0".into());
    if let Some(id) = id {
        message.insert("id".to_owned(), id);
    }
    message.insert("method".to_owned(), method.into());
    if !params.is_empty() {
        message.insert("params".to_owned(), Value::Object(params));
    }
    Value::Object(message).to_string()
}

/// The text of a JSON-RPC success answer to `id`, with `result` as JSON text.
pub fn result_message(id: Option<&RequestId>, result: &str) -> String {
    let id = id.map_or_else(|| "null".to_owned(), RequestId::to_json);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// The text of a JSON-RPC error answer to `id` (`null` when unknown).
pub fn error_message(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> String {
    let mut error = Map::new();
    error.insert("code".to_owned(), code.into());
    error.insert("message".to_owned(), message.into());
    if let Some(data) = data {
        error.insert("data".to_owned(), data.clone());
    }
    let id = id.map_or(Value::Null, |id| id.as_value().clone());
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), "2.0".into());
    message.insert("id".to_owned(), id);
    message.insert("error".to_owned(), Value::Object(error));
    Value::Object(message).to_string()
}

#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a fuzz entry point reports a broken invariant by panicking"
)]
pub mod fuzzing {
    //! Entry points for fuzzers and property tests.

    use serde_json::Value;

    /// Parse arbitrary bytes. Whatever parses must agree with serde_json on the method and the
    /// target, and must have had no duplicate member (serde_json would keep the last).
    pub fn parse(bytes: &[u8]) {
        let Ok(message) = super::McpMessage::parse(bytes) else {
            return;
        };
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(error) => panic!("parsed what serde_json rejects: {error}"),
        };
        if let super::McpMessage::Request(request) = message {
            assert_eq!(value["method"].as_str(), Some(request.method.as_str()));
            if let Some(target) = request.target() {
                let field = request.target_field().map_or("", |f| f.as_str());
                assert_eq!(value["params"][field].as_str(), Some(target));
            }
            assert_eq!(
                &Value::Object(request.params.clone()),
                value
                    .get("params")
                    .unwrap_or(&Value::Object(Default::default()))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> McpRequest {
        match McpMessage::parse(body.as_bytes()) {
            Ok(McpMessage::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn a_call_names_its_tool_and_arguments() {
        let call = request(
            r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"x":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(call.method, McpMethod::ToolsCall);
        assert_eq!(call.id.to_json(), "\"a-1\"");
        assert_eq!(call.target(), Some("echo"));
        assert_eq!(call.arguments().map(Map::len), Some(1));
        assert_eq!(call.declared_version(), Some("2026-07-28"));
        fuzzing::parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"x://y"}}"#,
        );
    }

    #[test]
    fn an_approval_binds_what_the_method_acts_on() {
        let call = request(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":1},"requestState":"s"}}"#,
        );
        assert_eq!(call.bound_input(), serde_json::json!({"x": 1}));
        let other = request(
            r#"{"jsonrpc":"2.0","id":1,"method":"acme/wipe","params":{"scope":"all","_meta":{"k":1},"inputResponses":{}}}"#,
        );
        assert_eq!(other.bound_input(), serde_json::json!({"scope": "all"}));
        let read = request(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://y"}}"#,
        );
        assert_eq!(read.bound_input(), serde_json::json!({}));
    }

    // See: issue 12. The bypass: `name` twice; the gateway must not pick one of them.
    #[test]
    fn a_call_naming_its_tool_twice_is_refused() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_record","name":"delete_record","arguments":{"id":"REC-A2"}}}"#;
        let error = McpMessage::parse(body).unwrap_err();
        assert_eq!(error, MessageError::Json(JsonError::DuplicateMember));
        assert_eq!(error.code(), -32700);
    }

    #[test]
    fn shapes_the_gateway_decides_on_are_checked() {
        for (body, code) in [
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
                -32602,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get"}"#, -32602),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"y"}}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":{}}}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":1}}"#,
                -32602,
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
        ] {
            let error = McpMessage::parse(body.as_bytes()).unwrap_err();
            assert_eq!(error.code(), code, "{body}");
        }
    }

    #[test]
    fn notifications_and_responses_are_told_apart() {
        assert!(matches!(
            McpMessage::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(McpMessage::Notification(McpNotification {
                method: NotificationMethod::Initialized,
                ..
            }))
        ));
        assert!(matches!(
            McpMessage::parse(br#"{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}"#),
            Ok(McpMessage::Response(McpResponse { outcome: Ok(_), .. }))
        ));
        assert!(matches!(
            McpMessage::parse(br#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"no"}}"#),
            Ok(McpMessage::Response(McpResponse {
                outcome: Err(_),
                ..
            }))
        ));
    }

    #[test]
    fn answers_are_well_formed() {
        let id = RequestId::new(Value::from("x\"y")).unwrap();
        let text = error_message(Some(&id), -32601, "Method not found", None);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["id"], "x\"y");
        assert_eq!(back["error"]["code"], -32601);
        let text = result_message(None, "{}");
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":null,"result":{}}"#);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for length in 0..4000 {
            let bytes: Vec<u8> = (0..length % 131)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"{}[]\":,0123456789abcdefjsonrpcmethodparamsnameid/tools \\u"
                        [(seed % 56) as usize]
                })
                .collect();
            fuzzing::parse(&bytes);
        }
    }
}
