//! The downstream MCP server: every operation routed to the upstream that owns it.

// resources/subscribe and sampling are deprecated by the newest revision but still relayed.
#![expect(deprecated)]

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientRequest,
        CompleteRequestParams, CompleteResult, ContentBlock, CustomRequest, CustomResult,
        ErrorCode, GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult,
        Implementation, InitializeRequestParams, InitializeResult, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ReadResourceRequestParams, ReadResourceResponse, Reference, Request, ServerCapabilities,
        ServerConfig, ServerResult, SetLevelRequestParams, SubscribeRequestParams,
        SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext, SubscriptionSendError},
};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{
    Gateway,
    forward::{forward, fulfil, max_input_rounds},
    guard,
    route::TaskRoute,
    session::Session,
};

/// The proxy as rmcp sees it: one per downstream session, or one per stateless request.
#[derive(Clone)]
pub struct GatewayHandler {
    pub(super) gateway: Arc<Gateway>,
    pub(super) session: Arc<Session>,
    // Cancelled when the last clone drops, which ends the session's change-forwarding task.
    _alive: Arc<tokio_util::sync::DropGuard>,
    alive: CancellationToken,
}

impl GatewayHandler {
    /// A handler for a new downstream session or stateless request.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let alive = CancellationToken::new();
        Self {
            gateway,
            session: Arc::new(Session::default()),
            _alive: Arc::new(alive.clone().drop_guard()),
            alive,
        }
    }

    pub(super) async fn send(
        &self,
        index: usize,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        let live = self.session.connection(&self.gateway, index).await?;
        let level = self.session.log_level();
        let assertion = self.gateway.assertion(index, context);
        forward(
            &live,
            request,
            context,
            self.gateway.request_timeout,
            level.as_deref(),
            assertion,
        )
        .await
    }

    /// Forward a call that may come back input-required. A stateless caller gets that result
    /// as it is; a session caller cannot read it, so the gateway asks it the questions itself
    /// (elicitation, sampling, roots) and retries with the answers.
    async fn send_bridged<P: Bridged>(
        &self,
        index: usize,
        mut params: P,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        for _ in 0..max_input_rounds() {
            let result = self
                .send(index, params.clone().into_request(), context)
                .await?;
            match result {
                ServerResult::InputRequiredResult(input) if self.session.is_session() => {
                    let (responses, state) = fulfil(input, context).await?;
                    params.answer(responses, state);
                }
                other => return Ok(other),
            }
        }
        Err(McpError::internal_error(
            "upstream kept asking for input",
            None,
        ))
    }

    fn not_found_tool() -> McpError {
        McpError::invalid_params("tool not found", None)
    }
}

fn not_found_prompt() -> McpError {
    McpError::invalid_params("prompt not found", None)
}

fn not_found_resource() -> McpError {
    McpError::resource_not_found("resource not found", None)
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> ServerConfig {
        let lives: Vec<_> = self
            .gateway
            .upstreams
            .iter()
            .filter_map(|u| u.shared.live().ok())
            .collect();
        let capabilities = match lives.as_slice() {
            [only] => (*only.capabilities).clone(),
            several => several
                .iter()
                .fold(ServerCapabilities::default(), |mut union, live| {
                    merge(&mut union, &live.capabilities);
                    union
                }),
        };
        let mut info = ServerConfig::default();
        info.capabilities = capabilities;
        info.server_info = Implementation::new("portcullis", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        self.session.begin(context.peer.clone(), request.clone());
        tokio::spawn(forward_changes(
            self.gateway.clone(),
            context.peer.clone(),
            self.alive.clone(),
        ));
        if let Some(principal) = token_principal(&context) {
            let peer = context.peer.clone();
            tokio::spawn(super::live::follow(
                self.gateway.clone(),
                principal,
                self.session.shown.clone(),
                self.alive.clone(),
                move |notification| {
                    let peer = peer.clone();
                    async move { peer.send_notification(notification).await.is_ok() }
                },
            ));
        }
        self.negotiate_initialize(&request)
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        guard::admit_reference(&self.gateway, &context, &request.r#ref).await?;
        let index = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let (index, name) = self
                    .gateway
                    .route_name(&prompt.name)
                    .ok_or_else(not_found_prompt)?;
                prompt.name = name;
                index
            }
            Reference::Resource(resource) => self.gateway.route_uri(&resource.uri)[0],
            _ => {
                return Err(McpError::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        let result = self
            .send(
                index,
                ClientRequest::CompleteRequest(Request::new(request)),
                &context,
            )
            .await?;
        reshape(result, |r| match r {
            ServerResult::CompleteResult(r) => Some(r),
            _ => None,
        })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(serde_json::Value::String(level)) = serde_json::to_value(request.level) {
            self.session.set_log_level(level);
        }
        for index in 0..self.gateway.upstream_count() {
            let request = ClientRequest::SetLevelRequest(Request::new(request.clone()));
            if let Err(error) = self.send(index, request, &context).await {
                // An upstream without logging simply does not log; the others still do.
                tracing::debug!(upstream = %self.gateway.upstream_name(index), code = ?error.code, "set level refused");
            }
        }
        Ok(())
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        guard::admit(&self.gateway, &context, not_found_prompt)?;
        let (index, name) = self
            .gateway
            .route_name(&request.name)
            .ok_or_else(not_found_prompt)?;
        request.name = name;
        match self.send_bridged(index, request, &context).await? {
            ServerResult::InputRequiredResult(input) => Ok(GetPromptResponse::InputRequired(input)),
            other => reshape(other, |r| match r {
                ServerResult::GetPromptResult(r) => Some(r),
                _ => None,
            })
            .map(GetPromptResponse::Complete),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.list(request, context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.list(request, context).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.list(request, context).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        guard::admit(&self.gateway, &context, not_found_resource)?;
        let candidates = self.gateway.route_uri(&request.uri);
        let mut last = not_found_resource();
        for index in candidates {
            match self.send_bridged(index, request.clone(), &context).await {
                Ok(ServerResult::InputRequiredResult(input)) => {
                    return Ok(ReadResourceResponse::InputRequired(input));
                }
                Ok(other) => {
                    self.gateway.learn_resource(&request.uri, index);
                    return reshape(other, |r| match r {
                        ServerResult::ReadResourceResult(r) => Some(r),
                        _ => None,
                    })
                    .map(ReadResourceResponse::Complete);
                }
                // Another upstream may own it; "not found" from this one is not the answer yet.
                Err(error) if is_not_found(&error) => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        // This stream's caller hears of its own view changing, and only it, while the stream
        // lasts (the guard lives as long as this function).
        let stop = CancellationToken::new();
        let _stop_with_stream = stop.clone().drop_guard();
        if let Some(principal) = token_principal(context.request_context()) {
            let sink = context.sink().clone();
            tokio::spawn(super::live::follow(
                self.gateway.clone(),
                principal,
                super::live::Shown::default(),
                stop,
                move |notification| {
                    let sink = sink.clone();
                    // A notification this stream did not ask for is not sent; the stream goes on.
                    async move {
                        !matches!(
                            sink.send(notification).await,
                            Err(SubscriptionSendError::SubscriptionClosed)
                        )
                    }
                },
            ));
        }
        let mut changes = self.gateway.changes.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    // The sink drops what the subscription did not ask for.
                    Ok(notification) => { let _ = context.sink().send(notification).await; }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        guard::admit(&self.gateway, &context, not_found_resource)?;
        let index = self.gateway.route_uri(&request.uri)[0];
        self.send(
            index,
            ClientRequest::SubscribeRequest(Request::new(request)),
            &context,
        )
        .await?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        guard::admit(&self.gateway, &context, not_found_resource)?;
        let index = self.gateway.route_uri(&request.uri)[0];
        self.send(
            index,
            ClientRequest::UnsubscribeRequest(Request::new(request)),
            &context,
        )
        .await?;
        Ok(())
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Some(text) = guard::hidden_object(&context) {
            return Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(text),
            ])));
        }
        if let Some(question) = self.seek_approval(&mut request, &mut context).await? {
            return Ok(question);
        }
        guard::admit(&self.gateway, &context, Self::not_found_tool)?;
        if self.gateway.policy().is_some() && !self.knows_tool(&request.name, &context).await {
            return Err(Self::not_found_tool());
        }
        let (index, name) = self
            .gateway
            .route_name(&request.name)
            .ok_or_else(Self::not_found_tool)?;
        let capability = request.name.to_string();
        request.name = name.into();
        let started = std::time::Instant::now();
        let answer = self.send_bridged(index, request, &context).await;
        let outcome = match &answer {
            Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => {
                "tool-error"
            }
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.record_outcome(
            &context,
            ("tools/call", &capability),
            index,
            started,
            outcome,
        )
        .await;
        match answer? {
            ServerResult::InputRequiredResult(input) => Ok(CallToolResponse::InputRequired(input)),
            ServerResult::CreateTaskResult(task) => {
                self.gateway
                    .learn_task(&task.task.task_id, index, caller(&context));
                Ok(CallToolResponse::Task(task))
            }
            other => reshape(other, |r| match r {
                ServerResult::CallToolResult(r) => Some(r),
                _ => None,
            })
            .map(CallToolResponse::Complete),
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let principal = token_principal(&context);
        let listed = self.list(request, context).await?;
        // What this caller now sees is the baseline its list_changed is judged against.
        if let Some(principal) = principal {
            *self
                .session
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                self.gateway.visible_tools(&principal);
        }
        Ok(listed)
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.gateway.tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if self.gateway.upstream_count() != 1 {
            return Err(McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                request.method,
                None,
            ));
        }
        let result = self
            .send(0, ClientRequest::CustomRequest(request), &context)
            .await?;
        reshape(result, |r| match r {
            ServerResult::CustomResult(r) => Some(r),
            _ => None,
        })
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let index = self.task_owner(&request.task_id, &context)?;
        let result = self
            .send(
                index,
                ClientRequest::GetTaskRequest(Request::new(request)),
                &context,
            )
            .await?;
        reshape(result, |r| match r {
            ServerResult::GetTaskResult(r) => Some(r),
            _ => None,
        })
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let index = self.task_owner(&request.task_id, &context)?;
        self.send(
            index,
            ClientRequest::UpdateTaskRequest(Request::new(request)),
            &context,
        )
        .await?;
        Ok(())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let index = self.task_owner(&request.task_id, &context)?;
        self.send(
            index,
            ClientRequest::CancelTaskRequest(Request::new(request)),
            &context,
        )
        .await?;
        Ok(())
    }
}

impl GatewayHandler {
    fn task_owner(
        &self,
        task_id: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<usize, McpError> {
        let caller = caller(context);
        match self.gateway.route_task(task_id, caller.as_ref()) {
            TaskRoute::Owned(index) => Ok(index),
            // An open gateway does not bind tasks to callers: with one upstream, it is there.
            // An authenticated caller reaches only tasks it was seen to start (on either path),
            // so a task id of someone else's answers exactly like one that never existed.
            TaskRoute::Unknown if caller.is_none() && self.gateway.upstream_count() == 1 => Ok(0),
            TaskRoute::Unknown | TaskRoute::Foreign => {
                Err(McpError::invalid_params("task not found", None))
            }
        }
    }
}

/// The authenticated caller of `context` as (issuer, subject); `None` on an open gateway.
fn caller(context: &RequestContext<RoleServer>) -> Option<(String, String)> {
    let principal = context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<portcullis_policy::Principal>()?;
    Some((principal.issuer.clone(), principal.subject.clone()))
}

/// Request parameters that can carry answers to an input-required result.
trait Bridged: Clone {
    fn into_request(self) -> ClientRequest;
    fn answer(&mut self, responses: Option<rmcp::model::InputResponses>, state: Option<String>);
}

impl Bridged for CallToolRequestParams {
    fn into_request(self) -> ClientRequest {
        ClientRequest::CallToolRequest(Request::new(self))
    }
    fn answer(&mut self, responses: Option<rmcp::model::InputResponses>, state: Option<String>) {
        self.input_responses = responses;
        self.request_state = state;
    }
}

impl Bridged for GetPromptRequestParams {
    fn into_request(self) -> ClientRequest {
        ClientRequest::GetPromptRequest(Request::new(self))
    }
    fn answer(&mut self, responses: Option<rmcp::model::InputResponses>, state: Option<String>) {
        self.input_responses = responses;
        self.request_state = state;
    }
}

impl Bridged for ReadResourceRequestParams {
    fn into_request(self) -> ClientRequest {
        ClientRequest::ReadResourceRequest(Request::new(self))
    }
    fn answer(&mut self, responses: Option<rmcp::model::InputResponses>, state: Option<String>) {
        self.input_responses = responses;
        self.request_state = state;
    }
}

/// Take the expected result kind out of an upstream answer. The wire union is untagged, so a
/// result can decode as a look-alike kind (a tool result with no content reads as an empty
/// result); such an answer is re-read as the kind the request asked for.
pub(super) fn reshape<T: DeserializeOwned>(
    result: ServerResult,
    pick: impl Fn(ServerResult) -> Option<T>,
) -> Result<T, McpError> {
    let value = serde_json::to_value(&result);
    if let Some(picked) = pick(result) {
        return Ok(picked);
    }
    value.and_then(serde_json::from_value).map_err(|_| {
        McpError::internal_error("upstream answered with the wrong kind of result", None)
    })
}

fn is_not_found(error: &McpError) -> bool {
    error.code == ErrorCode::RESOURCE_NOT_FOUND || error.code == ErrorCode::INVALID_PARAMS
}

/// Union of what the upstreams can do, as the gateway announces it.
fn merge(into: &mut ServerCapabilities, from: &ServerCapabilities) {
    let mut merged = serde_json::to_value(&*into).unwrap_or_default();
    let other = serde_json::to_value(from).unwrap_or_default();
    deep_merge(&mut merged, other);
    if let Ok(capabilities) = serde_json::from_value(merged) {
        *into = capabilities;
    }
}

fn deep_merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (key, value) in from {
                deep_merge(into.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (serde_json::Value::Bool(into), serde_json::Value::Bool(from)) => *into |= from,
        (into, from) if into.is_null() => *into = from,
        _ => {}
    }
}

/// The caller as its token says (before entitlements), on an authenticated gateway.
fn token_principal(context: &RequestContext<RoleServer>) -> Option<portcullis_policy::Principal> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<super::live::TokenPrincipal>()
        .map(|token| token.0.clone())
}

/// List changes seen on shared connections reach this session until it ends.
async fn forward_changes(
    gateway: Arc<Gateway>,
    peer: rmcp::service::Peer<RoleServer>,
    alive: CancellationToken,
) {
    let mut changes = gateway.changes.subscribe();
    loop {
        let change = tokio::select! {
            () = alive.cancelled() => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(
                notification @ (rmcp::model::ServerNotification::ToolListChangedNotification(_)
                | rmcp::model::ServerNotification::PromptListChangedNotification(_)
                | rmcp::model::ServerNotification::ResourceListChangedNotification(_)),
            ) => {
                if peer.send_notification(notification).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
