//! What the gateway answers itself: refusals before a request is read, the session lifecycle
//! (`initialize`, the standalone stream, a session's life), `server/discover` and `ping`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use portcullis_audit::{AuditDecision, Durability};
use portcullis_authn::Challenge;
use portcullis_core::{McpMethod, McpRequest};
use portcullis_mcp::{ClientIdentity, Event};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{
    Endpoint,
    reply::Final,
    sessions::{Lookup, Session},
    wire,
};
use crate::access::{Access, Caller, Reason, Refused, record};

/// The answer to a request refused before it was read: 401 with the challenge, or 503.
pub(crate) fn refused(access: &Access, refused: Refused) -> Response {
    let metadata_url = access
        .authenticator()
        .map(|authenticator| authenticator.metadata_url.as_str())
        .unwrap_or_default();
    match refused {
        Refused::Challenge(challenge) => challenge_response(metadata_url, &challenge),
        Refused::Unavailable(correlation) => {
            let body = json!({
                "error": "temporarily_unavailable",
                "error_description": "the identity provider cannot be reached; try again shortly",
                "correlationId": correlation.as_str(),
            });
            wire::json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
        }
    }
}

/// 401 or 403 with `WWW-Authenticate` saying why.
pub(crate) fn challenge_response(metadata_url: &str, challenge: &Challenge) -> Response {
    let status = StatusCode::from_u16(challenge.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, status.canonical_reason().unwrap_or_default()).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge.header_value(metadata_url)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The session `id` names for `caller`, or the answer for one that does not exist (also for
/// another caller's, which is recorded).
pub(crate) async fn session(
    endpoint: &Endpoint,
    caller: &Caller,
    id: &str,
    verb: &str,
) -> Result<Arc<Session>, Response> {
    match endpoint.gateway.sessions.get(id, caller.id()) {
        Lookup::Found(session) => Ok(session),
        Lookup::Missing => Err(wire::session_not_found()),
        Lookup::NotOwned => {
            tracing::info!("session id presented by a caller who did not open it");
            endpoint
                .gateway
                .access
                .refused(
                    &caller.correlation,
                    (&format!("{verb} {}", endpoint.path), None),
                    (AuditDecision::Deny, 404),
                    Reason::SessionNotOwned,
                    caller.identity.as_ref().map(|identity| &identity.verified),
                )
                .await;
            Err(wire::session_not_found())
        }
    }
}

/// Answer a request the gateway answers itself.
pub(crate) async fn answer(
    endpoint: &Arc<Endpoint>,
    caller: &Caller,
    request: &McpRequest,
) -> Response {
    match &request.method {
        McpMethod::Initialize => initialize(endpoint, caller, request).await,
        McpMethod::Discover => {
            let mut result = server_description(endpoint);
            result.insert(
                "supportedVersions".to_owned(),
                json!(wire::STATELESS_VERSIONS),
            );
            result.insert("resultType".to_owned(), "complete".into());
            result.insert("ttlMs".to_owned(), 0.into());
            result.insert("cacheScope".to_owned(), "private".into());
            let mut meta = Map::new();
            meta.insert(
                "io.modelcontextprotocol/serverInfo".to_owned(),
                server_info(),
            );
            result.insert("_meta".to_owned(), Value::Object(meta));
            let message = portcullis_core::message::result_message(
                Some(&request.id),
                &Value::Object(result).to_string(),
            );
            one(endpoint, Final::ok(message))
        }
        _ => one(
            endpoint,
            Final::ok(portcullis_core::message::result_message(
                Some(&request.id),
                "{}",
            )),
        ),
    }
}

pub(crate) fn one(endpoint: &Endpoint, done: Final) -> Response {
    if endpoint.style.json || done.status != StatusCode::OK {
        return wire::json_response(done.status, done.message);
    }
    let mut response = Response::new(axum::body::Body::from(wire::sse_event(&done.message)));
    wire::sse_headers(&mut response);
    response
}

fn server_info() -> Value {
    json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")})
}

/// What the gateway can do (the union of what its upstreams can) and their instructions.
fn server_description(endpoint: &Endpoint) -> Map<String, Value> {
    let negotiated = endpoint.gateway.upstreams.negotiated();
    let mut capabilities = Value::Object(Map::new());
    for (_, upstream) in &negotiated {
        merge(
            &mut capabilities,
            Value::Object(upstream.capabilities.clone()),
        );
    }
    let mut description = Map::new();
    description.insert("capabilities".to_owned(), capabilities);
    let instructions: Vec<String> = match negotiated.as_slice() {
        [(_, only)] => only.instructions.clone().into_iter().collect(),
        several => several
            .iter()
            .filter_map(|(index, upstream)| {
                let text = upstream.instructions.as_ref()?;
                Some(format!(
                    "{}: {text}",
                    endpoint.gateway.upstreams.name(*index)
                ))
            })
            .collect(),
    };
    if !instructions.is_empty() {
        description.insert("instructions".to_owned(), instructions.join("\n\n").into());
    }
    description
}

/// Deep union: objects merge, `true` wins over `false`, the first value stays otherwise.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (Value::Bool(into), Value::Bool(from)) => *into |= from,
        (into, from) if into.is_null() => *into = from,
        _ => {}
    }
}

/// `initialize`: a new session, owned by the caller, with the version agreed.
/// Open a session (2025-11-25), recorded: a session is what the caller's later requests, and
/// the upstream connections opened on its behalf, belong to.
async fn initialize(endpoint: &Arc<Endpoint>, caller: &Caller, request: &McpRequest) -> Response {
    let asked = request
        .params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = if wire::SESSION_VERSIONS.contains(&asked) {
        asked
    } else {
        wire::SESSION_VERSIONS[0]
    };
    let identity = ClientIdentity {
        capabilities: request
            .params
            .get("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        info: request
            .params
            .get("clientInfo")
            .cloned()
            .unwrap_or(Value::Null),
    };
    let identity_of_caller = caller.identity.as_ref();
    let opened = endpoint.gateway.sessions.open(
        caller.id().cloned(),
        identity,
        (
            identity_of_caller.map(|identity| identity.token.clone()),
            identity_of_caller.and_then(|identity| identity.opaque.clone()),
        ),
    );
    let access = &endpoint.gateway.access;
    let Ok((session, unattributed)) = opened else {
        tracing::warn!("too many sessions; a new one is refused");
        let mut record = record::of_caller(caller, "initialize", AuditDecision::Deny);
        record.reasons = vec![Reason::TooManySessions.as_str().to_owned()];
        record.status = Some(503);
        let _ = access.record(record, Durability::Queued).await;
        return wire::rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&request.id),
            -32603,
            "too many sessions; try again later",
            None,
        );
    };
    let mut record = record::of_caller(caller, "initialize", AuditDecision::Allow);
    record.session = Some(session.id.clone());
    record.reasons = vec![Reason::SessionOpened.as_str().to_owned()];
    let _ = access.record(record, Durability::Queued).await;
    tokio::spawn(live_session(
        endpoint.clone(),
        session.clone(),
        unattributed,
    ));
    let mut result = server_description(endpoint);
    result.insert("protocolVersion".to_owned(), version.into());
    result.insert("serverInfo".to_owned(), server_info());
    let message = portcullis_core::message::result_message(
        Some(&request.id),
        &Value::Object(result).to_string(),
    );
    let mut response = one(endpoint, Final::ok(message));
    if let Ok(id) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(wire::SESSION_HEADER, id);
    }
    response
}

/// How long an upstream's question waits for the session's client to open its standalone
/// stream.
const STANDALONE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A session's life: what its own upstream connections say on their own goes to its
/// standalone stream; its caller's view is followed; when it ends, its connections close.
async fn live_session(
    endpoint: Arc<Endpoint>,
    session: Arc<Session>,
    mut unattributed: mpsc::Receiver<(usize, Event)>,
) {
    if let Some(principal) = session.token_principal.clone() {
        let follower = session.clone();
        tokio::spawn(super::live::follow(
            endpoint.gateway.clone(),
            principal,
            session.shown.clone(),
            session.alive.clone(),
            move |method| {
                let session = follower.clone();
                async move {
                    // Nobody listening (no standalone stream) is no reason to stop following.
                    let _ = session.notify(method, Map::new());
                    true
                }
            },
        ));
    }
    // The session's own upstream sessions start with it, as they would for a client that
    // connected directly: what an upstream says as its session starts reaches the client.
    for index in 0..endpoint.gateway.upstreams.count() {
        let starting = session.clone();
        let upstreams = endpoint.gateway.upstreams.clone();
        tokio::spawn(async move {
            if let Err(error) = starting.links.connection(&upstreams, index).await {
                tracing::debug!(upstream = %upstreams.name(index), %error, "a session's upstream connection did not open");
            }
        });
    }
    // What its upstreams announce is coalesced: one in a loop reaches the client twice a second
    // at most, not once per message.
    let announcer = {
        let session = Arc::downgrade(&session);
        portcullis_mcp::Announcer::new(move |kind| {
            if let Some(session) = session.upgrade() {
                let (method, params) = kind.notification();
                let _ = session.notify(method, params);
            }
        })
    };
    loop {
        let (index, event) = tokio::select! {
            () = session.alive.cancelled() => break,
            received = unattributed.recv() => match received {
                Some(received) => received,
                None => break,
            },
        };
        match event {
            Event::Notification { method, params } => {
                match portcullis_mcp::ChangeKind::of(&method, &params) {
                    Some(change) => announcer.announce(change),
                    None => {
                        let _ = session.notify(&method, params);
                    }
                }
            }
            Event::Request {
                id,
                method,
                mut params,
            } => {
                super::call::narrow_context(&method, &mut params);
                // Asked of the session's client on its standalone stream, once it opens one
                // (shortly after `initialize`, for the SDK clients); meanwhile the session
                // goes on.
                let session = session.clone();
                let wait = endpoint.consent_wait;
                let room = session.questions.clone().try_acquire_owned();
                tokio::spawn(async move {
                    let outlet = match (method.as_str(), &room) {
                        ("ping", _) | (_, Err(_)) => None,
                        _ => session.standalone_within(STANDALONE_WAIT).await,
                    };
                    let answer = match outlet {
                        _ if method == "ping" => Ok(json!({})),
                        Some(outlet) => session.ask(&outlet, &method, params, wait).await,
                        None if room.is_err() => Err(
                            json!({"code": -32603, "message": "too many questions are waiting on this client"}),
                        ),
                        None => Err(
                            json!({"code": -32603, "message": "no client is waiting on this request"}),
                        ),
                    };
                    drop(room);
                    let connection = session
                        .links
                        .open()
                        .await
                        .into_iter()
                        .find(|(at, _)| *at == index)
                        .map(|(_, connection)| connection);
                    if let Some(connection) = connection {
                        let answer = answer.map_err(super::call::rpc_error_of);
                        let _ = connection.reply(&id, answer).await;
                    }
                });
            }
            Event::Response(_) => {}
        }
    }
    session.links.close().await;
}

/// `GET`: the session's standalone stream.
pub(crate) fn standalone(endpoint: &Endpoint, session: &Arc<Session>) -> Response {
    let mut messages = session.open_standalone();
    let (chunks, body) = mpsc::channel(16);
    let alive = session.alive.clone();
    let stop = endpoint.streams.clone();
    let keep_alive = endpoint.style.keep_alive;
    let held = session.clone();
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        loop {
            let chunk = tokio::select! {
                message = messages.recv() => match message {
                    Some(message) => wire::sse_event(&message),
                    None => return,
                },
                _ = tick.tick() => {
                    // A client listening on its stream is using its session.
                    held.touch();
                    bytes::Bytes::from_static(b": keep-alive\n\n")
                }
                () = alive.cancelled() => return,
                () = stop.cancelled() => return,
            };
            if chunks.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    super::reply::stream(body)
}
