//! Sending a caller's request upstream: only with its proof, only as it was decided.
//!
//! [`Upstreams::prepare`] makes a [`Forward`] from an [`Authorized`] proof: the request's own
//! method and params, with its target renamed as routed (a prefixed tool name loses its
//! prefix). The few changes a forward may still get are its own methods: another page of a
//! list, the answers to an input-required round, the session client's identity and log level,
//! the gateway's signed identity assertion. [`Upstreams::send`] then returns a [`Forwarded`],
//! which writes the request's outcome record when it ends, however it ends.

use std::time::Instant;

use portcullis_audit::{AuditDecision, AuditRecord};
use portcullis_mcp::{ClientIdentity, Connection, Event, Outbound, UpstreamError};
use portcullis_policy::Principal;
use serde_json::{Map, Value};

use super::{OnBehalf, SessionLinks, Upstreams};
use crate::{access::Authorized, trail::Trail};

/// Where the gateway's signed identity assertion travels (see `crate::identity`).
pub(crate) const IDENTITY_KEY: &str = "io.portcullis/identity";
const PROGRESS_TOKEN_KEY: &str = "progressToken";
const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";

/// Which connection a request travels on.
pub(crate) enum Via<'a> {
    /// The upstream's shared connection (stateless callers).
    Shared,
    /// The session's own connection where the upstream speaks the session era.
    Session(&'a SessionLinks),
    /// A connection of this one request's own (see [`Upstreams::dedicated`]).
    Dedicated(Lease),
}

/// A connection opened for one request, and its place among the connections held for callers.
pub(crate) struct Lease {
    connection: Connection,
    /// What the connection says about no request in particular: it can only be this one's.
    unattributed: tokio::sync::mpsc::Receiver<Event>,
    _permit: super::permits::Permit,
}

/// A caller's request on its way to one upstream.
pub(crate) struct Forward<'p> {
    proof: &'p Authorized,
    index: usize,
    params: Map<String, Value>,
    /// `params._meta`, apart until the request is sent.
    meta: Map<String, Value>,
    /// The caller's own progress token, if it asked for progress.
    progress: Option<Value>,
}

impl Upstreams {
    /// `proof`'s request as upstream `index` takes it: its tool or prompt name as that upstream
    /// knows it; no progress token and no identity claim of the caller's own.
    pub(crate) fn prepare<'p>(&self, proof: &'p Authorized, index: usize) -> Forward<'p> {
        let request = proof.request();
        let mut params = request.params.clone();
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        let progress = meta.remove(PROGRESS_TOKEN_KEY);
        // The trace context upstream is the gateway's own (added when sending, if traced),
        // never the caller's as it came.
        for key in ["traceparent", "tracestate", "baggage"] {
            meta.remove(key);
        }
        // SECURITY: only the gateway speaks for who the caller is.
        meta.remove(IDENTITY_KEY);
        // SECURITY: an approval the caller brought back was redeemed by the gateway; it is not
        // the upstream's to see (and the upstream did not ask for the answer beside it).
        if crate::consent::is_sealed(params.get("requestState")) {
            params.remove("requestState");
            params.remove("inputResponses");
        }
        if matches!(
            request.method,
            portcullis_core::McpMethod::ToolsCall | portcullis_core::McpMethod::PromptsGet
        ) && let Some((_, upstream_name)) =
            request.target().and_then(|name| self.route_name(name))
        {
            params.insert("name".to_owned(), Value::String(upstream_name));
        }
        Forward {
            proof,
            index,
            params,
            meta,
            progress,
        }
    }

    /// Send `forward` on `via`, for `caller` (its principal as policies see it, and what a
    /// token on its behalf is asked with). `outcome` is the template of the request's outcome
    /// record, written (to `trail`) when the returned [`Forwarded`] ends; if no credential can
    /// be had for the caller there, it is written now, as a denial or an error.
    pub(crate) async fn send(
        &self,
        forward: Forward<'_>,
        via: Via<'_>,
        caller: Option<(&Principal, OnBehalf<'_>)>,
        record: (AuditRecord, &Trail),
    ) -> Result<Forwarded, UpstreamError> {
        let span = tracing::error_span!(
            target: crate::trace::TARGET,
            "forward",
            upstream = self.name(forward.index),
            outcome = tracing::field::Empty,
        );
        // Boxed: sending (credentials, discovery, refresh) is a large future awaited deep inside
        // every call's; on the stack, debug builds overflowed a worker's.
        let sent = tracing::Instrument::instrument(
            Box::pin(self.send_in_span(forward, via, caller, record)),
            span.clone(),
        )
        .await;
        span.record("outcome", if sent.is_ok() { "sent" } else { "not-sent" });
        sent
    }

    async fn send_in_span(
        &self,
        mut forward: Forward<'_>,
        via: Via<'_>,
        caller: Option<(&Principal, OnBehalf<'_>)>,
        (mut outcome, trail): (AuditRecord, &Trail),
    ) -> Result<Forwarded, UpstreamError> {
        let index = forward.index;
        outcome.upstream = Some(self.name(index).to_owned());
        let method = forward.proof.request().method.as_str();
        let authorization = match self
            .caller_credential(index, method, caller.as_ref().map(|(_, c)| c))
            .await
        {
            Ok((authorization, kind)) => {
                outcome.credential = kind.map(str::to_owned);
                authorization
            }
            Err(error) => {
                outcome.credential = self.upstreams[index].credential.map(str::to_owned);
                let (decision, reason, word) = match &error {
                    UpstreamError::NotConnected { .. } => (
                        AuditDecision::Deny,
                        "upstream_connection_required",
                        "connection-required",
                    ),
                    UpstreamError::Credential { refused: true, .. } => {
                        (AuditDecision::Deny, "upstream_credential_refused", "denied")
                    }
                    _ => (
                        AuditDecision::Error,
                        "upstream_credential_unavailable",
                        "error",
                    ),
                };
                outcome.decision = decision;
                outcome.reasons = vec![reason.to_owned()];
                outcome.outcome = Some(word.to_owned());
                // The policies permitted the call; they are not why it was refused.
                outcome.policies.clear();
                trail.record_later(outcome);
                return Err(error);
            }
        };
        let principal = caller.as_ref().map(|(principal, _)| *principal);
        let (connection, lease) = match via {
            Via::Shared => (self.shared(index).await?, None),
            Via::Session(links) => (links.connection(self, index).await?, None),
            Via::Dedicated(lease) => (lease.connection.clone(), Some(lease)),
        };
        // The request the assertion vouches for: its method and what it names, as sent.
        let method = forward.proof.request().method.as_str();
        let target = ["name", "uri"]
            .iter()
            .find_map(|key| forward.params.get(*key).and_then(Value::as_str))
            .filter(|_| {
                matches!(
                    method,
                    "tools/call"
                        | "prompts/get"
                        | "resources/read"
                        | "resources/subscribe"
                        | "resources/unsubscribe"
                )
            });
        if let Some(assertion) = principal.and_then(|p| self.assertion(p, index, (method, target)))
        {
            forward
                .meta
                .insert(IDENTITY_KEY.to_owned(), assertion.into());
        }
        // The trace continues upstream, as the caller's era carries it: in `_meta`, and in
        // the header an HTTP upstream reads.
        let traceparent = crate::trace::traceparent();
        if let Some(traceparent) = &traceparent {
            forward
                .meta
                .insert("traceparent".to_owned(), traceparent.clone().into());
        }
        if !forward.meta.is_empty() {
            let meta = std::mem::take(&mut forward.meta);
            forward
                .params
                .insert("_meta".to_owned(), Value::Object(meta));
        }
        let method = forward.proof.request().method.as_str().to_owned();
        let param_headers = match (method.as_str(), forward.proof.request().target()) {
            ("tools/call", Some(name)) => self
                .tool(name)
                .map(|tool| match tool.get("inputSchema") {
                    Some(schema) => portcullis_mcp::param_headers(
                        schema,
                        forward.params.get("arguments").and_then(Value::as_object),
                    ),
                    None => Vec::new(),
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut param_headers = param_headers;
        if let Some(value) = traceparent.and_then(|t| http::HeaderValue::from_str(&t).ok()) {
            param_headers.push((http::HeaderName::from_static("traceparent"), value));
        }
        let sent_with = authorization.clone();
        let outbound = Outbound {
            method,
            params: forward.params,
            progress: forward.progress.is_some(),
            param_headers,
            authorization,
        };
        let exchange = match connection.send(outbound).await {
            Ok(exchange) => exchange,
            // The service no longer takes the person's own token (revoked there): that
            // connection ends, and the person is asked to connect again, as one never
            // connected is.
            Err(UpstreamError::CredentialRejected { upstream })
                if self.upstreams[index].credential == Some("user-oauth") =>
            {
                if let (Some(connections), Some((_, on_behalf)), Some(sent)) =
                    (&self.connections, caller.as_ref(), sent_with.as_ref())
                {
                    Box::pin(connections.forget_token(on_behalf.id, &upstream, sent)).await;
                }
                outcome.decision = AuditDecision::Deny;
                outcome.reasons = vec!["upstream_connection_rejected".to_owned()];
                outcome.outcome = Some("connection-required".to_owned());
                outcome.policies.clear();
                trail.record_later(outcome);
                return Err(UpstreamError::NotConnected { upstream });
            }
            Err(error) => return Err(error),
        };
        Ok(Forwarded {
            exchange,
            index,
            progress: forward.progress,
            record: Some((outcome, trail.clone())),
            started: Instant::now(),
            lease,
        })
    }
}

impl Upstreams {
    /// The `Authorization` a caller's request (of `method`) carries to upstream `index`
    /// instead of the gateway's own, and the credential kind it travels with (for records): a
    /// token exchanged for the caller, or the caller's own from its connection there, where
    /// the upstream is configured so.
    async fn caller_credential(
        &self,
        index: usize,
        method: &str,
        caller: Option<&OnBehalf<'_>>,
    ) -> Result<(Option<http::HeaderValue>, Option<&'static str>), UpstreamError> {
        let upstream = &self.upstreams[index];
        let failed = |refused, reason: String| UpstreamError::Credential {
            upstream: self.name(index).to_owned(),
            refused,
            reason,
        };
        if upstream.credential == Some("user-oauth") {
            // What the upstream offers is one list for everyone, learned with the gateway's
            // own credential: a person's own view would otherwise become everyone's (routes,
            // pins, parameter headers).
            if is_definitions(method) {
                return Ok((None, upstream.gateway_credential.then_some("gateway")));
            }
            // SECURITY: without a caller there is nobody's connection to use.
            let caller = caller.ok_or_else(|| failed(false, "no caller".into()))?;
            let Some(connections) = &self.connections else {
                return Err(failed(false, "people's connections cannot be used".into()));
            };
            // Boxed: discovery, registration and refresh make a large future, and this one is
            // awaited deep inside every call's (debug builds overflowed a worker's stack).
            let authorization = Box::pin(connections.authorization(caller.id, self.name(index)));
            return match authorization.await {
                Ok(header) => Ok((Some(header), Some("user-oauth"))),
                Err(crate::connections::Missing::NotConnected) => {
                    Err(UpstreamError::NotConnected {
                        upstream: self.name(index).to_owned(),
                    })
                }
                Err(crate::connections::Missing::Unavailable(reason)) => Err(failed(false, reason)),
            };
        }
        let Some(exchanger) = &upstream.exchanger else {
            return Ok((None, upstream.credential));
        };
        // SECURITY: without a caller there is no subject to ask for; the gateway's own token
        // is not a caller's.
        let caller = caller.ok_or_else(|| failed(false, "no caller to ask a token for".into()))?;
        match exchanger.for_caller(caller).await {
            Ok(header) => Ok((Some(header), upstream.credential)),
            Err(portcullis_authn::TokenError::Refused { error }) => Err(failed(
                true,
                format!("the token exchange was refused: {error}"),
            )),
            Err(portcullis_authn::TokenError::Unavailable(reason)) => Err(failed(false, reason)),
        }
    }

    /// A connection for one request of a 2026-07-28 caller to upstream `index`, announcing the
    /// caller's own capabilities, for an upstream that speaks only the session era: a session
    /// of the request's own, so that what the upstream asks during it (and at its start, as
    /// servers that want the client's roots do) is asked of this caller and no other, and what
    /// it keeps per session is nobody else's. `None` when the upstream speaks the stateless era,
    /// or the connections held for callers are all in use.
    pub(crate) async fn dedicated(
        &self,
        index: usize,
        identity: ClientIdentity,
        caller: Option<&portcullis_core::CallerId>,
    ) -> Option<Lease> {
        let upstream = self.upstreams.get(index)?;
        let spec = upstream.shared.spec();
        if self.era(index) != Some(portcullis_core::Era::Sessions) {
            return None;
        }
        let permit = self.session_connections.take(caller)?;
        let opened = portcullis_mcp::connect(
            spec,
            portcullis_mcp::EraPreference::Sessions,
            identity,
            portcullis_mcp::Attribution::Owned,
            upstream.shared.http(),
        )
        .await;
        match opened {
            Ok((connection, unattributed)) => Some(Lease {
                connection,
                unattributed,
                _permit: permit,
            }),
            Err(error) => {
                tracing::warn!(upstream = %self.name(index), %error, "no connection of its own for a request; it shares");
                None
            }
        }
    }
}

impl Forward<'_> {
    /// Ask for the page at `cursor` (`None`: the first) instead of the caller's.
    pub(crate) fn page(&mut self, cursor: Option<Value>) {
        match cursor {
            Some(cursor) => {
                self.params.insert("cursor".to_owned(), cursor);
            }
            None => {
                self.params.remove("cursor");
            }
        }
    }

    /// Ask a `subscriptions/listen` for `filter` instead of the caller's whole one (the part
    /// this upstream owns, and the caller may have).
    pub(crate) fn listen_filter(&mut self, filter: Value) {
        self.params.insert("notifications".to_owned(), filter);
    }

    /// Name the prompt a completion refers to as its upstream knows it.
    pub(crate) fn rename_reference(&mut self, upstream_name: &str) {
        if let Some(Value::Object(reference)) = self.params.get_mut("ref") {
            reference.insert("name".to_owned(), upstream_name.into());
        }
    }

    /// Carry the answers to an input-required round (and the state it came with).
    pub(crate) fn answer_input(&mut self, responses: Value, state: Option<Value>) {
        self.params.insert("inputResponses".to_owned(), responses);
        match state {
            Some(state) => {
                self.params.insert("requestState".to_owned(), state);
            }
            None => {
                self.params.remove("requestState");
            }
        }
    }

    /// The upstream it goes to.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Say, for a stateless upstream, what the session client declared and which log level it
    /// chose; a stateless caller's own `_meta` already says so.
    pub(crate) fn session_client(
        &mut self,
        identity: &portcullis_mcp::ClientIdentity,
        log_level: &str,
    ) {
        let meta = &mut self.meta;
        meta.insert(
            CAPABILITIES_KEY.to_owned(),
            Value::Object(identity.capabilities.clone()),
        );
        meta.insert(CLIENT_INFO_KEY.to_owned(), identity.info.clone());
        meta.insert(LOG_LEVEL_KEY.to_owned(), log_level.into());
    }
}

/// A request in flight upstream. Its outcome is recorded when it ends: `finish` says how;
/// dropped unfinished (the caller went away, a timeout), it is recorded as `cancelled`.
pub(crate) struct Forwarded {
    exchange: portcullis_mcp::Exchange,
    index: usize,
    progress: Option<Value>,
    record: Option<(AuditRecord, Trail)>,
    started: Instant,
    /// The request's own connection, if it has one: closed when the request ends.
    lease: Option<Lease>,
}

impl Forwarded {
    /// The next thing the upstream sent about this request; progress carries the caller's own
    /// token again.
    pub(crate) async fn next(&mut self) -> Result<Event, UpstreamError> {
        let mut event = match &mut self.lease {
            // On the request's own connection, what names no request (a question the upstream
            // asks as its session starts, say) is this request's too.
            Some(lease) => tokio::select! {
                event = self.exchange.next() => event?,
                Some(event) = lease.unattributed.recv() => event,
            },
            None => self.exchange.next().await?,
        };
        if let Event::Notification { method, params } = &mut event
            && method == "notifications/progress"
        {
            match &self.progress {
                Some(token) => {
                    params.insert(PROGRESS_TOKEN_KEY.to_owned(), token.clone());
                }
                // The caller asked for no progress: the upstream sends some anyway.
                None => {
                    params.remove(PROGRESS_TOKEN_KEY);
                }
            }
        }
        Ok(event)
    }

    /// Answer a question the upstream asked about this request (carrying the caller's own
    /// credential there, if the request did).
    pub(crate) async fn reply(
        &self,
        id: &Value,
        outcome: Result<Value, portcullis_mcp::RpcError>,
    ) -> Result<(), UpstreamError> {
        self.exchange.reply(id, outcome).await
    }

    /// The upstream's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Progress goes to `token` from now on: a resumed request's caller names its own anew.
    pub(crate) fn set_progress(&mut self, token: Option<Value>) {
        self.progress = token;
    }

    /// Whether the caller asked for progress.
    pub(crate) fn wants_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// Record how it ended: `ok`, `tool-error`, `error`, `input-required`.
    pub(crate) fn finish(mut self, outcome: &str) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: &str) {
        if let Some((mut record, trail)) = self.record.take() {
            record.outcome = Some(outcome.to_owned());
            record.latency_ms =
                Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
            trail.record_later(record);
        }
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

/// The lists of what an upstream offers (not of the data it holds: `resources/list` names a
/// person's documents, and is theirs to ask for).
fn is_definitions(method: &str) -> bool {
    matches!(
        method,
        "tools/list" | "prompts/list" | "resources/templates/list"
    )
}
