//! An MCP upstream that records every message it receives: streamable HTTP on loopback, both
//! eras (sessions with ids of its own), JSON answers. Tests compare what reached it with what
//! the gateway decided.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// One message the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its method.
    pub method: String,
    /// Its params.
    pub params: Value,
    /// The session it came in, if any (one this upstream opened).
    pub session: Option<String>,
}

/// A recording upstream on an ephemeral loopback port.
pub struct Recorder {
    /// Its MCP endpoint.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    sessions: Arc<AtomicU64>,
}

impl Recorder {
    /// Start one.
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            received: received.clone(),
            sessions: Arc::new(AtomicU64::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
        let app = Router::new().route("/mcp", post(answer)).with_state(shared);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn answer(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.received.lock().expect("lock").push(Received {
        method: method.clone(),
        params: params.clone(),
        session,
    });
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let stateless = params["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28";
    let capabilities = json!({
        "tools": {"listChanged": true}, "prompts": {}, "resources": {},
        "completions": {}, "logging": {},
    });
    let mut new_session = None;
    let mut result = match method.as_str() {
        "initialize" => {
            let number = shared.sessions.fetch_add(1, Ordering::Relaxed);
            new_session = Some(format!("recorded-{number}"));
            json!({"protocolVersion": "2025-11-25", "capabilities": capabilities,
                   "serverInfo": {"name": "recorder", "version": "0"}})
        }
        "server/discover" => json!({
            "supportedVersions": ["2026-07-28"], "capabilities": capabilities,
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "recorder", "version": "0"}},
            "ttlMs": 0, "cacheScope": "public",
        }),
        "subscriptions/listen" => {
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            return json_answer(&error, None);
        }
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "wipe", "inputSchema": {"type": "object"}},
            {"name": "secret", "inputSchema": {"type": "object"}},
        ]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "done"}], "isError": false}),
        "prompts/list" => json!({"prompts": [{"name": "hello"}]}),
        "prompts/get" => json!({"messages": []}),
        "resources/list" => json!({"resources": [{"uri": "note://one", "name": "one"}]}),
        "resources/read" => json!({"contents": [{"uri": "note://one", "text": "one"}]}),
        "completion/complete" => json!({"completion": {"values": []}}),
        _ => json!({}),
    };
    if stateless {
        result["resultType"] = json!("complete");
    }
    json_answer(
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        new_session,
    )
}

fn json_answer(message: &Value, session: Option<String>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        message.to_string(),
    )
        .into_response();
    if let Some(session) = session
        && let Ok(value) = session.parse()
    {
        response.headers_mut().insert("mcp-session-id", value);
    }
    response
}
