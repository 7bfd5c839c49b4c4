//! The JSON-RPC envelope of one request, parsed once at the edge.
//!
//! Only what the gateway decides on is decoded: the method, the id, and the name the request
//! targets (`params.name`, `params.uri` or `params.taskId`, as `Mcp-Name` defines it). `params`
//! stays raw, so a request relayed unchanged keeps its bytes.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One JSON-RPC request, borrowed from the body it was parsed from.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// `method`.
    pub method: &'a str,
    /// `id`, as written; absent for a notification.
    pub id: Option<&'a RawValue>,
    /// The target the request names, per SEP-2243's `Mcp-Name` rules; `None` if the method names
    /// none or the field is missing.
    pub name: Option<String>,
    /// The protocol version the request declares in `params._meta`, if any.
    pub declared_version: Option<String>,
    /// `params.arguments` of a call, as written.
    pub arguments: Option<&'a RawValue>,
}

/// Why a body is not a single JSON-RPC request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not JSON, or not an object of the JSON-RPC shape.
    #[error("not a JSON-RPC request")]
    Malformed,
}

#[derive(Deserialize)]
struct Wire<'a> {
    jsonrpc: &'a str,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Targets<'a> {
    name: Option<String>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    uri: Option<String>,
    #[serde(rename = "taskId")]
    task_id: Option<String>,
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<String>,
}

impl<'a> Envelope<'a> {
    /// Parse `body`. Never panics, whatever the bytes.
    pub fn parse(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        let wire: Wire<'a> = serde_json::from_slice(body).map_err(|_| EnvelopeError::Malformed)?;
        if wire.jsonrpc != "2.0" {
            return Err(EnvelopeError::Malformed);
        }
        let targets: Targets<'a> = match wire.params {
            Some(params) => {
                serde_json::from_str(params.get()).map_err(|_| EnvelopeError::Malformed)?
            }
            None => Targets::default(),
        };
        let name = match wire.method {
            "tools/call" | "prompts/get" => targets.name,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => targets.uri,
            "tasks/get" | "tasks/update" | "tasks/cancel" => targets.task_id,
            _ => None,
        };
        Ok(Self {
            method: wire.method,
            id: wire.id,
            name,
            declared_version: targets.meta.and_then(|meta| meta.protocol_version),
            arguments: targets.arguments,
        })
    }
}

#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a fuzz entry point reports a broken invariant by panicking"
)]
pub mod fuzzing {
    //! Entry points for fuzzers and property tests.

    /// Parse arbitrary bytes. Whatever parses must agree with a generic JSON parse of the same
    /// bytes on the method and the target name.
    pub fn parse(bytes: &[u8]) {
        let Ok(envelope) = super::Envelope::parse(bytes) else {
            return;
        };
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(error) => panic!("envelope parsed what JSON rejects: {error}"),
        };
        assert_eq!(value["method"].as_str(), Some(envelope.method));
        if let Some(name) = &envelope.name {
            let params = &value["params"];
            let found = ["name", "uri", "taskId"]
                .iter()
                .any(|key| params[key].as_str() == Some(name));
            assert!(found, "name `{name}` is not in params");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_names_its_tool_and_keeps_its_id_raw() {
        let body = br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"x":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let envelope = Envelope::parse(body).unwrap();
        assert_eq!(envelope.method, "tools/call");
        assert_eq!(envelope.id.map(RawValue::get), Some("\"a-1\""));
        assert_eq!(envelope.name.as_deref(), Some("echo"));
        assert_eq!(envelope.declared_version.as_deref(), Some("2026-07-28"));
        fuzzing::parse(body);
    }

    #[test]
    fn targets_follow_the_mcp_name_rules() {
        let read = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://x","name":"no"}}"#).unwrap();
        assert_eq!(read.name.as_deref(), Some("test://x"));
        let task = Envelope::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t1"}}"#,
        )
        .unwrap();
        assert_eq!(task.name.as_deref(), Some("t1"));
        let list = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(list.name, None);
    }

    #[test]
    fn garbage_and_wrong_shapes_are_malformed() {
        for body in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"jsonrpc":"1.0","method":"x"}"#,
            br#"{"jsonrpc":"2.0"}"#,
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":7}}"#,
            br#"[{"jsonrpc":"2.0","method":"ping","id":1}]"#,
        ] {
            assert_eq!(
                Envelope::parse(body).unwrap_err(),
                EnvelopeError::Malformed,
                "{body:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_a_json_parse() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for length in 0..2000 {
            let bytes: Vec<u8> = (0..length % 97)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"{}[]\":,0123456789abcdefjsonrpcmethodparamsname \\"[(seed % 47) as usize]
                })
                .collect();
            fuzzing::parse(&bytes);
        }
    }
}
