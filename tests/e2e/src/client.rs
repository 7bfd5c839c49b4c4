// Sampling and logging are deprecated by the newest revision; the gateway still relays them.
#![expect(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::{
    ClientHandler, ErrorData as McpError, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, Implementation, LoggingMessageNotificationParam,
        ProgressNotificationParam, ProtocolVersion,
    },
    service::{
        ClientLifecycleMode, NotificationContext, RequestContext, RunningService,
        serve_client_with_lifecycle,
    },
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

/// Which protocol era a test client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: initialize and a session.
    Sessions,
    /// 2026-07-28: server/discover, stateless.
    Stateless,
}

/// A client that answers elicitation with `{"confirmed": true}`, sampling with a fixed text, and
/// records the progress and log notifications it receives.
#[derive(Clone, Default)]
pub struct TestClient {
    /// Progress notifications received.
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    /// Log messages received.
    pub logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    /// Elicitation messages received.
    pub elicitations: Arc<Mutex<Vec<String>>>,
    /// How an approval request is answered: `Some(true)` approves, `Some(false)` declines;
    /// `None` answers every form with the fixed content above (which approves nothing).
    pub approves: Option<bool>,
    /// Whether it declares URL-mode elicitation; the URLs it was sent to are in `visits`.
    pub opens_urls: bool,
    /// URLs of URL-mode elicitations received (opened by the test, as a person would).
    pub visits: Arc<Mutex<Vec<String>>>,
    /// When each `notifications/tools/list_changed` arrived.
    pub tools_changed: Arc<Mutex<Vec<std::time::Instant>>>,
    /// When each `notifications/prompts/list_changed` arrived.
    pub prompts_changed: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let elicitation = if self.opens_urls {
            serde_json::json!({ "form": {}, "url": {} })
        } else {
            serde_json::json!({ "form": {} })
        };
        let capabilities: ClientCapabilities = serde_json::from_value(serde_json::json!({
            "elicitation": elicitation,
            "sampling": {},
        }))
        .expect("capabilities");
        ClientConfig::new(capabilities, Implementation::new("portcullis-e2e", "0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let message = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_default();
        self.elicitations.lock().expect("lock").push(message);
        let url = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(str::to_owned));
        if let Some(url) = url {
            self.visits.lock().expect("lock").push(url);
            let action = if self.approves == Some(false) {
                "decline"
            } else {
                "accept"
            };
            return serde_json::from_value(serde_json::json!({ "action": action }))
                .map_err(|e| McpError::internal_error(e.to_string(), None));
        }
        let answer = match self.approves {
            Some(true) => serde_json::json!({"action": "accept", "content": {"approve": true}}),
            Some(false) => serde_json::json!({"action": "decline"}),
            None => serde_json::json!({
                "action": "accept",
                "content": { "confirmed": true, "username": "e2e", "email": "e2e@example.com" }
            }),
        };
        serde_json::from_value(answer).map_err(|e| McpError::internal_error(e.to_string(), None))
    }

    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let answer = serde_json::json!({
            "role": "assistant",
            "content": { "type": "text", "text": "sampled by e2e" },
            "model": "e2e-model",
            "stopReason": "endTurn"
        });
        serde_json::from_value(answer).map_err(|e| McpError::internal_error(e.to_string(), None))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().expect("lock").push(params);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed
            .lock()
            .expect("lock")
            .push(std::time::Instant::now());
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.prompts_changed
            .lock()
            .expect("lock")
            .push(std::time::Instant::now());
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().expect("lock").push(params);
    }
}

/// Connect an rmcp client of `era` to `url`.
pub async fn connect(
    url: &str,
    era: Era,
    client: TestClient,
) -> RunningService<RoleClient, TestClient> {
    connect_as(url, era, client, None).await
}

/// Connect an rmcp client of `era` to `url`, sending `token` as its bearer token.
pub async fn connect_as(
    url: &str,
    era: Era,
    client: TestClient,
    token: Option<&str>,
) -> RunningService<RoleClient, TestClient> {
    let lifecycle = match era {
        Era::Sessions => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    };
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    serve_client_with_lifecycle(client, transport, lifecycle)
        .await
        .expect("client connects through the gateway")
}
