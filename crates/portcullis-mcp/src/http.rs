//! Streamable HTTP to an upstream, both eras: one POST per message, its answer a JSON body or an
//! SSE stream of messages that end with it; a session's GET stream for what the upstream says
//! on its own; DELETE when a session ends.
//!
//! Plain hyper (with rustls for https), not a higher-level client: a POST's answer is read
//! straight into the exchange that sent it, with no task or queue in between.

use std::{
    sync::{Mutex, PoisonError, Weak},
    time::Duration,
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, StatusCode, Uri,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE},
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use portcullis_core::McpMethod;
use serde_json::Value;

use crate::{
    ClientIdentity, UpstreamError,
    connection::{Attribution, Connection, Event, Inner, Outbound, Wire},
    frame::{Frame, Outcome},
    sse::{EventReader, header_text},
};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
// An upstream that sends more than this in one answer or one event is misbehaving.
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The HTTP client for one upstream's connections (pooled; TLS for https).
pub type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client, no Nagle delay, bounded connect time, no overall timeout (SSE answers and
/// listen streams legitimately stay open; each request's time is bounded by its caller).
pub fn http_client() -> HttpClient {
    let mut plain = HttpConnector::new();
    plain.set_nodelay(true);
    plain.set_connect_timeout(Some(Duration::from_secs(10)));
    plain.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    // The platform's roots; a machine without any still reaches plain-http upstreams.
    let builder = match builder.try_with_platform_verifier() {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "no TLS roots: https upstreams will fail");
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(rustls_config_without_roots())
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(plain);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

fn rustls_config_without_roots() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// One upstream endpoint, and the session the gateway holds there (session era).
pub(crate) struct Endpoint {
    client: HttpClient,
    url: Uri,
    credential: Option<crate::Credential>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<HeaderValue>,
    version: Option<HeaderValue>,
    get_stream: bool,
}

/// Open a connection to `url`.
pub(crate) fn open(
    name: &str,
    client: HttpClient,
    url: &url::Url,
    credential: Option<crate::Credential>,
    identity: ClientIdentity,
    attribution: Attribution,
) -> Result<(Connection, tokio::sync::mpsc::Receiver<Event>), UpstreamError> {
    let url: Uri = url.as_str().parse().map_err(|_| UpstreamError::Transport {
        upstream: name.to_owned(),
        reason: "the URL is not usable".to_owned(),
    })?;
    let endpoint = Endpoint {
        client,
        url,
        credential,
        state: Mutex::new(State::default()),
    };
    Ok(Connection::new(
        name,
        Wire::Http(Box::new(endpoint)),
        identity,
        attribution,
    ))
}

impl Endpoint {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The headers of a POST (of `outbound`, or of a one-way message), with `authorization`
    /// if given, else the gateway's own credential; `Err` when that cannot be had.
    async fn headers(
        &self,
        outbound: Option<&Outbound>,
        authorization: Option<&HeaderValue>,
    ) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        match (authorization, &self.credential) {
            (Some(authorization), _) => {
                headers.insert(AUTHORIZATION, authorization.clone());
            }
            (None, Some(credential)) => {
                headers.insert(AUTHORIZATION, credential.current().await?);
            }
            (None, None) => {}
        }
        let inline = outbound
            .and_then(|o| o.params.get("_meta"))
            .and_then(|meta| meta.get(META_VERSION))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok());
        {
            let state = self.state();
            if let Some(session) = &state.session {
                headers.insert(SESSION_HEADER, session.clone());
            }
            if let Some(version) = inline.or_else(|| state.version.clone()) {
                headers.insert(VERSION_HEADER, version);
            }
        }
        if let Some(outbound) = outbound {
            if let Ok(method) = HeaderValue::from_str(&outbound.method) {
                headers.insert("mcp-method", method);
            }
            let target = McpMethod::parse(&outbound.method)
                .target_field()
                .and_then(|field| outbound.params.get(field.as_str()))
                .and_then(Value::as_str)
                .and_then(header_text);
            if let Some(name) = target {
                headers.insert("mcp-name", name);
            }
            for (name, value) in &outbound.param_headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        Ok(headers)
    }

    async fn post(
        &self,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<http::Response<Incoming>, String> {
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url.clone();
        *request.headers_mut() = headers;
        self.client
            .request(request)
            .await
            .map_err(|error| portcullis_core::error_chain(&error))
    }

    /// POST a request; its answer is read by the exchange.
    pub(crate) async fn request(
        &self,
        connection: &Connection,
        outbound: &Outbound,
        body: Vec<u8>,
    ) -> Result<HttpBody, UpstreamError> {
        let headers = self
            .headers(Some(outbound), outbound.authorization.as_ref())
            .await
            .map_err(|reason| credential_missing(connection, &reason))?;
        let response = tokio::select! {
            response = self.post(headers, body) => response,
            () = connection.closed() => return Err(unavailable(connection)),
        }
        .map_err(|reason| transport(connection, reason))?;
        let status = response.status();
        // A caller's own token refused: its owner (the gateway) decides what that means for the
        // caller; the gateway's own credential refused is the connection's failure, as before.
        if status == StatusCode::UNAUTHORIZED && outbound.authorization.is_some() {
            return Err(UpstreamError::CredentialRejected {
                upstream: connection.upstream().to_owned(),
            });
        }
        if outbound.method == "initialize" {
            let mut state = self.state();
            state.session = response.headers().get(SESSION_HEADER).cloned();
        }
        if status == StatusCode::NOT_FOUND && self.state().session.is_some() {
            // The upstream forgot the session: this connection is over; its owner reconnects.
            connection.close();
            return Err(transport(
                connection,
                "the upstream session expired".to_owned(),
            ));
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Err(transport(
                connection,
                format!(
                    "the upstream answered a request with HTTP {}",
                    status.as_u16()
                ),
            ));
        }
        let sse = status.is_success()
            && response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        Ok(HttpBody {
            status,
            body: response.into_body(),
            reader: sse.then(EventReader::default),
            done: false,
        })
    }

    /// POST a notification or an answer; nothing comes back but a status.
    pub(crate) async fn send_one_way(
        &self,
        connection: &Connection,
        body: Vec<u8>,
        method: Option<&str>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), UpstreamError> {
        let mut headers = self
            .headers(None, authorization)
            .await
            .map_err(|reason| credential_missing(connection, &reason))?;
        if let Some(method) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
            headers.insert("mcp-method", method);
        }
        let response = self
            .post(headers, body)
            .await
            .map_err(|reason| transport(connection, reason))?;
        let status = response.status();
        // The body (usually empty) is not needed; read it so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status == StatusCode::NOT_FOUND && self.state().session.is_some() {
            connection.close();
            return Err(transport(
                connection,
                "the upstream session expired".to_owned(),
            ));
        }
        if !status.is_success() {
            return Err(transport(
                connection,
                format!("the upstream answered HTTP {}", status.as_u16()),
            ));
        }
        if method == Some("notifications/initialized") {
            self.open_get_stream(connection);
        }
        Ok(())
    }

    /// The version to name in `MCP-Protocol-Version` once a session agreed it.
    pub(crate) fn set_version(&self, version: &str) {
        self.state().version = HeaderValue::from_str(version).ok();
    }

    /// The session's own stream, for what the upstream says outside any request. Reopened
    /// while the connection lives; an upstream that offers none (405) is fine.
    fn open_get_stream(&self, connection: &Connection) {
        {
            let mut state = self.state();
            if state.get_stream || state.session.is_none() {
                return;
            }
            state.get_stream = true;
        }
        let weak = std::sync::Arc::downgrade(&connection.0);
        tokio::spawn(get_stream(weak));
    }

    /// Tell the upstream the session is over (best effort: it expires idle sessions anyway).
    pub(crate) fn end_session(&self) {
        let Some(session) = self.state().session.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = self.url.clone();
        request.headers_mut().insert(SESSION_HEADER, session);
        let credential = self.credential.clone();
        let client = self.client.clone();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), async move {
                if let Some(credential) = credential {
                    let Ok(value) = credential.current().await else {
                        return;
                    };
                    request.headers_mut().insert(AUTHORIZATION, value);
                }
                let _ = client.request(request).await;
            })
            .await;
        });
    }
}

async fn get_stream(connection: Weak<Inner>) {
    loop {
        let request = {
            let Some(inner) = connection.upgrade() else {
                return;
            };
            if inner.closed.is_cancelled() {
                return;
            }
            let Wire::Http(endpoint) = &inner.wire else {
                return;
            };
            match endpoint.headers(None, None).await {
                Ok(mut headers) => {
                    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
                    headers.remove(CONTENT_TYPE);
                    let mut request = http::Request::new(Full::new(Bytes::new()));
                    *request.method_mut() = Method::GET;
                    *request.uri_mut() = endpoint.url.clone();
                    *request.headers_mut() = headers;
                    Some((endpoint.client.clone(), request, inner.closed.clone()))
                }
                // No credential now: try again in a moment, as after a failed GET.
                Err(_) => None,
            }
        };
        let Some((client, request, closed)) = request else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let response = tokio::select! {
            response = client.request(request) => response,
            () = closed.cancelled() => return,
        };
        match response {
            Ok(response) if response.status().is_success() => {
                let mut body = response.into_body();
                let mut reader = EventReader::default();
                loop {
                    let frame = tokio::select! {
                        frame = body.frame() => frame,
                        () = closed.cancelled() => return,
                    };
                    let Some(Ok(frame)) = frame else { break };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    reader.push(&data);
                    while let Some(message) = reader.next_data() {
                        let Some(inner) = connection.upgrade() else {
                            return;
                        };
                        if let Ok(frame) = Frame::parse(&message) {
                            Connection(inner).dispatch(frame);
                        }
                    }
                    if reader.pending() > MAX_MESSAGE_BYTES {
                        break;
                    }
                }
            }
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND
                ) =>
            {
                return;
            }
            Ok(_) | Err(_) => {}
        }
        tokio::select! {
            () = closed.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The answer to one POST, read as the exchange asks for it.
pub(crate) struct HttpBody {
    status: StatusCode,
    body: Incoming,
    /// Some for an SSE answer.
    reader: Option<EventReader>,
    done: bool,
}

impl HttpBody {
    pub(crate) async fn next(&mut self, connection: &Connection) -> Result<Event, UpstreamError> {
        if self.done {
            return Err(transport(
                connection,
                "the answer was already read".to_owned(),
            ));
        }
        let Some(reader) = &mut self.reader else {
            self.done = true;
            let bytes = read_bounded(&mut self.body, connection).await?;
            return match Frame::parse(&bytes) {
                Ok(frame) => Ok(event_of(frame)),
                Err(_) if !self.status.is_success() => Err(transport(
                    connection,
                    format!("the upstream answered HTTP {}", self.status.as_u16()),
                )),
                Err(error) => Err(transport(connection, error.to_string())),
            };
        };
        loop {
            while let Some(message) = reader.next_data() {
                match Frame::parse(&message) {
                    Ok(frame) => return Ok(event_of(frame)),
                    Err(error) => {
                        tracing::warn!(upstream = %connection.upstream(), %error, "upstream sent something that is not an MCP message; ignored");
                    }
                }
            }
            let frame = tokio::select! {
                frame = self.body.frame() => frame,
                () = connection.closed() => return Err(unavailable(connection)),
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        reader.push(&data);
                    }
                    if reader.pending() > MAX_MESSAGE_BYTES {
                        self.done = true;
                        return Err(transport(
                            connection,
                            "an event over the size limit".to_owned(),
                        ));
                    }
                }
                Some(Err(error)) => {
                    self.done = true;
                    return Err(transport(connection, error.to_string()));
                }
                None => {
                    self.done = true;
                    return Err(transport(
                        connection,
                        "the stream ended without an answer".to_owned(),
                    ));
                }
            }
        }
    }
}

fn event_of(frame: Frame) -> Event {
    match frame {
        // Attribution is by stream: whatever answer comes on this POST's answer is its answer.
        Frame::Response { outcome, .. } => Event::Response(outcome),
        Frame::Request { id, method, params } => Event::Request { id, method, params },
        Frame::Notification { method, params } => Event::Notification { method, params },
    }
}

async fn read_bounded(
    body: &mut Incoming,
    connection: &Connection,
) -> Result<Vec<u8>, UpstreamError> {
    let mut bytes = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = connection.closed() => return Err(unavailable(connection)),
        };
        match frame {
            None => return Ok(bytes),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > MAX_MESSAGE_BYTES {
                        return Err(transport(
                            connection,
                            "an answer over the size limit".to_owned(),
                        ));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => return Err(transport(connection, error.to_string())),
        }
    }
}

fn transport(connection: &Connection, reason: String) -> UpstreamError {
    UpstreamError::Transport {
        upstream: connection.upstream().to_owned(),
        reason,
    }
}

fn credential_missing(connection: &Connection, reason: &str) -> UpstreamError {
    UpstreamError::Credential {
        upstream: connection.upstream().to_owned(),
        refused: false,
        reason: reason.to_owned(),
    }
}

fn unavailable(connection: &Connection) -> UpstreamError {
    UpstreamError::Unavailable {
        upstream: connection.upstream().to_owned(),
    }
}

impl Outcome {
    /// Whether this is an error answer.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}
