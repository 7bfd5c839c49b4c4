//! A request, decided, answered: refused in the way its verdict says, or served with its proof.

use std::sync::Arc;

use axum::response::Response;
use portcullis_authn::{Challenge, Scopes};
use portcullis_core::{CorrelationId, Era, McpMethod, McpRequest, message};
use portcullis_mcp::RpcError;
use serde_json::{Value, json};

use super::{
    Endpoint, call, consent, lifecycle, list, listen,
    reply::{self, Final},
    sessions::{Outlet, Session},
    wire::{self, Lifecycle},
};
use crate::{
    access::{self, Authorized, Caller, Scene, Verdict},
    gateway::Gateway,
    turns::Turn,
    upstreams::{OnBehalf, Via},
};

/// JSON-RPC codes Portcullis defines, outside the range the spec reserves (-32768..-32000).
pub(crate) const DENIED_BY_POLICY: i64 = -31001;
pub(crate) const APPROVAL_REQUIRED: i64 = -31002;
/// The spec's "URL elicitation required" (2025-11-25): the client is to open a link first.
const URL_ELICITATION_REQUIRED: i64 = -32042;
/// The 2026-07-28 code for a request that needs a capability the client did not declare.
const MISSING_CLIENT_CAPABILITY: i64 = -32021;

/// Decide `request` and answer it.
pub(crate) async fn request(
    endpoint: Arc<Endpoint>,
    caller: Caller,
    lifecycle: Lifecycle,
    session: Option<Arc<Session>>,
    request: McpRequest,
    (turn, peer): (Turn, Option<crate::http::Peer>),
) -> Response {
    let era = wire::era_of(&lifecycle);
    let request = Arc::new(request);
    let verdict = {
        let scene = Scene {
            caller: &caller,
            era,
            session: session.as_deref().map(|s| s.id.as_str()),
        };
        let gateway = &endpoint.gateway;
        let deciding = tracing::error_span!(
            target: crate::trace::TARGET,
            "decide",
            outcome = tracing::field::Empty,
        );
        let decided = tracing::Instrument::instrument(
            access::decide(&gateway.access, &*gateway.upstreams, scene, request.clone()),
            deciding.clone(),
        );
        // Deciding may wait on a backend that resolves the object.
        let verdict = turn.away(decided).await;
        deciding.record("outcome", verdict.word());
        tracing::Span::current().record("outcome", verdict.word());
        verdict
    };
    match verdict {
        Verdict::Local => lifecycle::answer(&endpoint, &caller, &request).await,
        Verdict::RateLimited(over) => {
            // Held back a second, it waits on nothing the caller's other requests need.
            turn.give_back();
            super::held_back(&endpoint, peer.as_ref(), over).await
        }
        // A method this era does not have (`ping` or `initialize` in 2026-07-28, say).
        Verdict::NotInEra => lifecycle::one(&endpoint, method_not_found(&request, era)),
        Verdict::MissingTasksExtension => {
            lifecycle::one(&endpoint, missing_tasks_extension(&request))
        }
        Verdict::StepUp { scopes } => step_up(&endpoint, scopes),
        verdict => {
            let (style, stop) = (endpoint.style, endpoint.streams.clone());
            let long_lived = request.method == McpMethod::SubscriptionsListen;
            let resumable = session.as_ref().map(|session| session.streams.open());
            let mut response = reply::respond(style, stop, resumable, move |outlet| async move {
                let context = Context {
                    endpoint,
                    caller,
                    era,
                    session,
                    outlet,
                    turn,
                };
                context.handle(request, verdict).await
            })
            .await;
            if long_lived {
                response.extensions_mut().insert(crate::http::LongLived);
            }
            response
        }
    }
}

/// The 403 `insufficient_scope` challenge naming every scope the request needs.
fn step_up(endpoint: &Endpoint, scopes: Vec<String>) -> Response {
    let metadata_url = endpoint
        .gateway
        .access
        .authenticator()
        .map(|authenticator| authenticator.metadata_url.clone())
        .unwrap_or_default();
    match Scopes::new(scopes) {
        Ok(scopes) => {
            lifecycle::challenge_response(&metadata_url, &Challenge::InsufficientScope { scopes })
        }
        // Configuration checked every scope; an unwritable one cannot get here.
        Err(_) => wire::text_response(http::StatusCode::FORBIDDEN, "Forbidden\n"),
    }
}

/// Everything the work of answering one request needs.
pub(crate) struct Context {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) caller: Caller,
    pub(crate) era: Era,
    pub(crate) session: Option<Arc<Session>>,
    /// Where messages before the answer go (the request's own stream).
    pub(crate) outlet: Outlet,
    /// Its turn among the caller's requests: given back while it waits outside the gateway.
    pub(crate) turn: Turn,
}

impl Context {
    pub(crate) fn gateway(&self) -> &Gateway {
        &self.endpoint.gateway
    }

    pub(crate) fn scene(&self) -> Scene<'_> {
        Scene {
            caller: &self.caller,
            era: self.era,
            session: self.session.as_deref().map(|s| s.id.as_str()),
        }
    }

    /// Who a request is sent for: the principal as policies see it, and what a token on its
    /// behalf is asked with.
    pub(crate) fn on_behalf(&self) -> Option<(&portcullis_policy::Principal, OnBehalf<'_>)> {
        let generation = self.gateway().access.generation();
        self.caller.identity.as_ref().map(|identity| {
            let on_behalf = OnBehalf {
                id: &identity.id,
                token: &identity.presented,
                generation,
            };
            (&identity.principal, on_behalf)
        })
    }

    /// The connection a request of this caller travels on.
    pub(crate) fn via(&self) -> Via<'_> {
        match &self.session {
            Some(session) => Via::Session(&session.links),
            None => Via::Shared,
        }
    }

    async fn handle(self, request: Arc<McpRequest>, verdict: Verdict) -> Final {
        // A session client may cancel a request it sent (`notifications/cancelled`).
        let cancelled = self
            .session
            .as_ref()
            .map(|session| session.started(&request.id));
        let answer = async {
            match verdict {
                Verdict::Allow(proof) => self.serve(proof).await,
                Verdict::Ask(pending) => {
                    let asking = tracing::error_span!(
                        target: crate::trace::TARGET,
                        "consent",
                        outcome = tracing::field::Empty,
                    );
                    let settled = tracing::Instrument::instrument(
                        consent::settle(&self, pending),
                        asking.clone(),
                    );
                    let settled = self.turn.away(settled).await;
                    asking.record(
                        "outcome",
                        if settled.is_ok() {
                            "approved"
                        } else {
                            "not-approved"
                        },
                    );
                    match settled {
                        Ok(proof) => self.serve(proof).await,
                        Err(answer) => answer,
                    }
                }
                // Only a tool answers in the capability's own words; a resource or prompt
                // whose object is hidden answers as one that does not exist.
                Verdict::Hidden => not_found(&request, self.era),
                Verdict::ObjectHidden(_) if request.method != McpMethod::ToolsCall => {
                    not_found(&request, self.era)
                }
                Verdict::ObjectHidden(text) => {
                    let result =
                        json!({"content": [{"type": "text", "text": text}], "isError": true});
                    Final::ok(message::result_message(
                        Some(&request.id),
                        &super::shape::complete(self.era, result).to_string(),
                    ))
                }
                Verdict::Denied(correlation) => denied(&request, &correlation),
                Verdict::Malfunction(correlation) => internal(&request, &correlation),
                Verdict::Local
                | Verdict::StepUp { .. }
                | Verdict::RateLimited(_)
                | Verdict::NotInEra
                | Verdict::MissingTasksExtension => internal(&request, &self.caller.correlation),
            }
        };
        let done = match &cancelled {
            Some(cancelled) => tokio::select! {
                done = answer => done,
                () = cancelled.cancelled() => error(&request, -32603, "request cancelled", None),
            },
            None => answer.await,
        };
        if let Some(session) = &self.session {
            session.finished(&request.id);
        }
        done
    }

    async fn serve(&self, proof: Authorized) -> Final {
        match &proof.request().method {
            McpMethod::ToolsCall => call::tool(self, &proof).await,
            McpMethod::PromptsGet => call::prompt(self, &proof).await,
            McpMethod::ResourcesRead => call::read(self, &proof).await,
            McpMethod::ResourcesSubscribe | McpMethod::ResourcesUnsubscribe => {
                call::subscription(self, &proof).await
            }
            McpMethod::ToolsList
            | McpMethod::PromptsList
            | McpMethod::ResourcesList
            | McpMethod::ResourceTemplatesList => list::list(self, &proof).await,
            McpMethod::Complete => call::complete(self, &proof).await,
            McpMethod::SetLogLevel => call::set_level(self, proof).await,
            McpMethod::SubscriptionsListen => self.turn.away(listen::listen(self, &proof)).await,
            McpMethod::TasksGet
            | McpMethod::TasksResult
            | McpMethod::TasksCancel
            | McpMethod::TasksUpdate => call::task(self, &proof).await,
            McpMethod::TasksList => call::tasks(self, &proof).await,
            McpMethod::Other(_) => call::other(self, &proof).await,
            McpMethod::Initialize | McpMethod::Ping | McpMethod::Discover => {
                internal(proof.request(), proof.correlation())
            }
        }
    }
}

/// A JSON-RPC error answer.
pub(crate) fn error(request: &McpRequest, code: i64, text: &str, data: Option<&Value>) -> Final {
    Final::ok(message::error_message(Some(&request.id), code, text, data))
}

/// An upstream's error, passed on in the caller's era. An upstream does not speak in the
/// gateway's voice (its refusal codes, its approval links); a 2026-07-28 caller gets the HTTP
/// status the revision gives the code.
pub(crate) fn upstream_error(request: &McpRequest, era: Era, failure: &RpcError) -> Final {
    // SECURITY: -31001 or -31002 from an upstream would read as the gateway's denial or
    // approval request.
    if [DENIED_BY_POLICY, APPROVAL_REQUIRED].contains(&failure.code) {
        return error(request, -32603, "upstream error", None);
    }
    let mut answer = error(
        request,
        failure.code,
        &failure.message,
        failure.data.as_ref(),
    );
    if era == Era::Stateless {
        answer.status = match failure.code {
            -32601 => http::StatusCode::NOT_FOUND,
            -32700 | -32600 | wire::HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY => {
                http::StatusCode::BAD_REQUEST
            }
            _ => http::StatusCode::OK,
        };
    }
    answer
}

/// A tasks method from a 2026-07-28 client that did not negotiate the tasks extension.
pub(crate) fn missing_tasks_extension(request: &McpRequest) -> Final {
    let required = json!({ "requiredCapabilities": { "extensions": {
        portcullis_core::message::TASKS_EXTENSION: {}
    } } });
    let mut answer = error(
        request,
        MISSING_CLIENT_CAPABILITY,
        "Missing required client capability",
        Some(&required),
    );
    answer.status = http::StatusCode::BAD_REQUEST;
    answer
}

/// Exactly the answer for something that does not exist, per method.
pub(crate) fn not_found(request: &McpRequest, era: Era) -> Final {
    match &request.method {
        McpMethod::ToolsCall => error(request, -32602, "tool not found", None),
        McpMethod::PromptsGet => error(request, -32602, "prompt not found", None),
        McpMethod::ResourcesRead
        | McpMethod::ResourcesSubscribe
        | McpMethod::ResourcesUnsubscribe => resource_not_found(request, era),
        McpMethod::TasksGet
        | McpMethod::TasksResult
        | McpMethod::TasksCancel
        | McpMethod::TasksUpdate => error(request, -32602, "task not found", None),
        McpMethod::Complete => {
            if matches!(
                request.completion_ref(),
                Some(portcullis_core::CompletionRef::Prompt(_))
            ) {
                error(request, -32602, "prompt not found", None)
            } else {
                resource_not_found(request, era)
            }
        }
        _ => method_not_found(request, era),
    }
}

/// "Method not found": HTTP 404 for a stateless caller, as the era says.
pub(crate) fn method_not_found(request: &McpRequest, era: Era) -> Final {
    Final {
        status: if era == Era::Stateless {
            http::StatusCode::NOT_FOUND
        } else {
            http::StatusCode::OK
        },
        message: message::error_message(Some(&request.id), -32601, "Method not found", None),
    }
}

/// A resource that does not exist: -32002 before 2026-07-28, -32602 since.
pub(crate) fn resource_not_found(request: &McpRequest, era: Era) -> Final {
    let code = if era == Era::Stateless {
        -32602
    } else {
        -32002
    };
    error(request, code, "resource not found", None)
}

/// Denied by policy, on something the caller can see: a fixed text with a reference.
fn denied(request: &McpRequest, correlation: &CorrelationId) -> Final {
    let text = format!(
        "This request was denied by policy. If you need this access, ask your administrator \
         and quote reference {correlation}."
    );
    error(
        request,
        DENIED_BY_POLICY,
        &text,
        Some(&json!({ "correlationId": correlation.as_str() })),
    )
}

/// No token for the caller at an upstream that wants its own: its authorization server refused
/// one (`refused`: a denial, the caller may ask for access), or could not be asked (503 for a
/// 2026-07-28 caller: try again later).
pub(crate) fn no_credential(
    request: &McpRequest,
    era: Era,
    correlation: &CorrelationId,
    refused: bool,
) -> Final {
    if refused {
        let text = format!(
            "This request was denied: the service behind it would not accept a token for you. \
             If you need this access, ask your administrator and quote reference {correlation}."
        );
        return error(
            request,
            DENIED_BY_POLICY,
            &text,
            Some(&json!({ "correlationId": correlation.as_str() })),
        );
    }
    let mut answer = error(
        request,
        -32603,
        &format!("the service behind this request cannot be reached now; reference {correlation}"),
        Some(&json!({ "correlationId": correlation.as_str() })),
    );
    if era == Era::Stateless {
        answer.status = http::StatusCode::SERVICE_UNAVAILABLE;
    }
    answer
}

/// The caller has not connected its own account at the service behind the request: where
/// its client takes URL-mode elicitation, the spec's "URL elicitation required" (-32042) with
/// the link to the gateway's page; otherwise the same link in an error a person can read.
/// The link names the service, never the caller: whoever opens it signs in as themselves, and
/// connects only their own account.
pub(crate) fn connect_first(
    request: &McpRequest,
    correlation: &CorrelationId,
    link: Option<String>,
    by_url: bool,
) -> Final {
    let Some(link) = link else {
        return error(
            request,
            DENIED_BY_POLICY,
            &format!(
                "The service behind this request needs you to connect your own account, and this gateway serves no page to do it on. Reference {correlation}."
            ),
            Some(&json!({ "correlationId": correlation.as_str() })),
        );
    };
    let text = "The service behind this tool needs your own account: open the link, sign in \
                there, then make the same call again.";
    if by_url {
        return error(
            request,
            URL_ELICITATION_REQUIRED,
            text,
            Some(&json!({
                "elicitations": [{
                    "mode": "url",
                    "elicitationId": correlation.as_str(),
                    "url": link,
                    "message": text,
                }],
                "correlationId": correlation.as_str(),
            })),
        );
    }
    error(
        request,
        APPROVAL_REQUIRED,
        &format!("{text} Open {link} . Reference {correlation}."),
        Some(&json!({
            "correlationId": correlation.as_str(),
            "connection": "required",
            "url": link,
        })),
    )
}

/// Something the gateway depends on failed: never a denial, never an allow.
pub(crate) fn internal(request: &McpRequest, correlation: &CorrelationId) -> Final {
    error(
        request,
        -32603,
        &format!("internal error; reference {correlation}"),
        Some(&json!({ "correlationId": correlation.as_str() })),
    )
}
