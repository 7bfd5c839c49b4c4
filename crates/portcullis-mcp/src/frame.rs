//! JSON-RPC messages between the gateway and an upstream, both ways.
//!
//! What an upstream sends is read strictly, like what a caller sends: a duplicate member
//! name anywhere in a frame refuses the frame. A result is kept as the upstream wrote it
//! ([`RawValue`]), so an answer the gateway does not need to change is passed on byte for byte.

use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

/// One message from an upstream.
#[derive(Debug)]
pub enum Frame {
    /// The answer to a request the gateway sent (`id` is `None` when the upstream wrote null).
    Response {
        /// The id it answers.
        id: Option<Value>,
        /// What it says.
        outcome: Outcome,
    },
    /// A request of the upstream's own (elicitation, sampling, roots, ping).
    Request {
        /// Its id, as the upstream wrote it; the answer carries it back.
        id: Value,
        /// Its method.
        method: String,
        /// Its params (empty when none).
        params: Map<String, Value>,
    },
    /// A notification (progress, a log line, a list change).
    Notification {
        /// Its method.
        method: String,
        /// Its params (empty when none).
        params: Map<String, Value>,
    },
}

/// What a response says.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `result`, as written.
    Result(Box<RawValue>),
    /// `error`.
    Error(RpcError),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct RpcError {
    /// `code`.
    pub code: i64,
    /// `message`.
    pub message: String,
    /// `data`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Why bytes from an upstream are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not strict JSON.
    #[error("not strict JSON: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC message: {0}")]
    Shape(&'static str),
}

#[derive(Deserialize)]
struct Wire<'a> {
    jsonrpc: &'a str,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcError>,
}

impl Frame {
    /// Parse one message.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        portcullis_core::json::validate(bytes).map_err(|e| FrameError::Json(e.to_string()))?;
        let wire: Wire<'_> = serde_json::from_slice(bytes)
            .map_err(|_| FrameError::Shape("not a JSON-RPC message object"))?;
        if wire.jsonrpc != "2.0" {
            return Err(FrameError::Shape("`jsonrpc` is not \"2.0\""));
        }
        let params = match wire.params {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => return Err(FrameError::Shape("`params` is not an object")),
        };
        match (wire.method, wire.id, wire.result, wire.error) {
            (Some(method), Some(id), None, None) => Ok(Self::Request { id, method, params }),
            (Some(method), None, None, None) => Ok(Self::Notification { method, params }),
            (None, id, Some(result), None) => Ok(Self::Response {
                id,
                outcome: Outcome::Result(result.to_owned()),
            }),
            (None, id, None, Some(error)) => Ok(Self::Response {
                id,
                outcome: Outcome::Error(error),
            }),
            _ => Err(FrameError::Shape(
                "neither a request, a notification nor a response",
            )),
        }
    }
}

impl Outcome {
    /// The result parsed strictly into a value (for answers the gateway reads or changes).
    pub fn into_value(self) -> Result<Value, RpcError> {
        match self {
            Self::Result(raw) => {
                portcullis_core::json::parse(raw.get().as_bytes()).map_err(|_| RpcError {
                    code: -32603,
                    message: "upstream answered with invalid JSON".to_owned(),
                    data: None,
                })
            }
            Self::Error(error) => Err(error),
        }
    }
}

/// A request to an upstream, as JSON text.
pub fn request(id: u64, method: &str, params: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + method.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(br#","method":"#);
    // INVARIANT: serialising a string or a map of JSON values cannot fail.
    let _ = serde_json::to_writer(&mut out, method);
    out.extend_from_slice(br#","params":"#);
    let _ = serde_json::to_writer(&mut out, params);
    out.push(b'}');
    out
}

/// A notification to an upstream, as JSON text.
pub fn notification(method: &str, params: &Map<String, Value>) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), "2.0".into());
    message.insert("method".to_owned(), method.into());
    message.insert("params".to_owned(), Value::Object(params.clone()));
    Value::Object(message).to_string().into_bytes()
}

/// The gateway's answer to a request an upstream sent, as JSON text.
pub fn response(id: &Value, outcome: Result<Value, RpcError>) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), "2.0".into());
    message.insert("id".to_owned(), id.clone());
    match outcome {
        Ok(result) => {
            message.insert("result".to_owned(), result);
        }
        Err(error) => {
            message.insert(
                "error".to_owned(),
                serde_json::to_value(error).unwrap_or(Value::Null),
            );
        }
    }
    Value::Object(message).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_keep_their_result_as_written() {
        let frame = Frame::parse(br#"{"jsonrpc":"2.0","id":4,"result":{"b":1, "a":0.7}}"#);
        let Ok(Frame::Response {
            id,
            outcome: Outcome::Result(raw),
        }) = frame
        else {
            panic!("not a response: {frame:?}");
        };
        assert_eq!(id, Some(Value::from(4)));
        assert_eq!(raw.get(), r#"{"b":1, "a":0.7}"#);
    }

    #[test]
    fn requests_notifications_and_errors_are_told_apart() {
        assert!(matches!(
            Frame::parse(
                br#"{"jsonrpc":"2.0","id":"s1","method":"elicitation/create","params":{}}"#
            ),
            Ok(Frame::Request { .. })
        ));
        assert!(matches!(
            Frame::parse(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
            Ok(Frame::Notification { .. })
        ));
        assert!(matches!(
            Frame::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no"}}"#),
            Ok(Frame::Response {
                id: None,
                outcome: Outcome::Error(_)
            })
        ));
    }

    #[test]
    fn an_upstream_frame_with_a_duplicate_member_is_refused() {
        let frame =
            Frame::parse(br#"{"jsonrpc":"2.0","id":1,"result":{"isError":false,"isError":true}}"#);
        assert!(matches!(frame, Err(FrameError::Json(_))));
    }

    #[test]
    fn what_the_gateway_writes_reads_back() {
        let mut params = Map::new();
        params.insert("name".to_owned(), "a\"b".into());
        let text = request(9, "tools/call", &params);
        let back: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(back["id"], 9);
        assert_eq!(back["params"]["name"], "a\"b");
        let text = response(
            &Value::from("x"),
            Err(RpcError {
                code: -1,
                message: "m".into(),
                data: None,
            }),
        );
        let back: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(back["error"]["code"], -1);
    }
}
