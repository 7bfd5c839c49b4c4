//! The approval page, for the tiers a client must not be able to approve by itself: the person
//! signs in through the authorization server (the page is an OAuth client of its own), sees
//! every request of theirs waiting for an answer in plain language, and approves some, all or
//! none in one form. Each form carries a one-time token; a request of another person, an
//! expired request and a replayed form are refused, and every answer and refusal is audited.

mod connect;
mod page;
mod sign_in;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use portcullis_audit::{AuditDecision, AuditRecord, Durability};
use portcullis_policy::Principal;
use serde::Deserialize;

use crate::{
    consent::{Answer, Consent, PageRefusal},
    trail::Trail,
};

const COOKIE: &str = "portcullis_approval";
/// The cookie binding a sign-in in progress to the browser that started it.
const SIGN_IN_COOKIE: &str = "portcullis_sign_in";
/// How long a sign-in on the page lasts.
const SIGNED_IN: Duration = Duration::from_secs(3600);
/// Signed-in browsers kept at most (oldest dropped).
const MAX_SESSIONS: usize = 10_000;
/// A form's body at most, and the time to send it.
const FORM_BYTES: usize = 16 * 1024;
const FORM_TIME: Duration = Duration::from_secs(10);

/// A signed-in browser: who, and the form tokens it was given and has not used.
struct Web {
    principal: Principal,
    /// Oldest first, at most `crate::consent::MAX_FORMS_PER_BROWSER`: a page reloaded in a
    /// loop does not grow it.
    forms: VecDeque<String>,
    at: Instant,
}

pub(super) struct Approvals {
    consent: Arc<Consent>,
    access: Arc<crate::access::Access>,
    trail: Trail,
    sign_in: sign_in::SignIn,
    sessions: Mutex<HashMap<String, Web>>,
    secure: bool,
    /// The page's path as browsers reach it: `/approvals` under the public URL's prefix.
    page: String,
    /// People's connections to upstreams that want their own tokens, if any upstream does.
    connections: Option<Arc<crate::connections::Connections>>,
}

impl Approvals {
    /// The page for a gateway whose MCP endpoint is `resource` (served at `endpoint` here),
    /// signing people in with `issuer` as OAuth client `client_id` (default: the page's own
    /// metadata document); one address may have `per_address` sign-ins in progress.
    pub(super) fn new(
        consent: Arc<Consent>,
        access: Arc<crate::access::Access>,
        trail: Trail,
        (resource, endpoint, issuer, client_id): (&str, &str, &str, Option<&str>),
        (scope, per_address): (Option<String>, usize),
        connections: Option<Arc<crate::connections::Connections>>,
    ) -> Self {
        let (origin, page) = page_of(resource, endpoint);
        consent.set_page(format!("{origin}{page}"));
        if let Some(connections) = &connections {
            connections.set_page(format!("{origin}{page}"));
        }
        let client_id =
            client_id.map_or_else(|| format!("{origin}{page}/client.json"), str::to_owned);
        let sign_in = sign_in::SignIn::new(
            issuer.to_owned(),
            client_id,
            format!("{origin}{page}/callback"),
            (resource.to_owned(), scope),
            per_address,
            consent.shared().cloned(),
        );
        Self {
            consent,
            access,
            trail,
            sign_in,
            sessions: Mutex::new(HashMap::new()),
            secure: origin.starts_with("https://"),
            page,
            connections,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Web>> {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, web| web.at.elapsed() < SIGNED_IN);
        sessions
    }

    /// Who this browser signed in as, if it did (and the shared state, if any, answers).
    async fn signed_in(&self, headers: &HeaderMap) -> Option<(String, Principal)> {
        let cookie = cookie(headers)?;
        let principal = match self.consent.shared() {
            Some(shared) => shared.signed_in(&cookie).await.ok().flatten()?,
            None => self.sessions().get(&cookie)?.principal.clone(),
        };
        Some((cookie, principal))
    }

    /// A fresh one-time form token for this browser.
    async fn form_token(&self, cookie: &str) -> String {
        let token = portcullis_authn::signing::random_token();
        match self.consent.shared() {
            // Unwritten, the form is refused as used when sent: nothing is approved by it.
            Some(shared) => {
                let _ = shared.give_form(cookie, &token, SIGNED_IN).await;
            }
            None => {
                if let Some(web) = self.sessions().get_mut(cookie) {
                    if web.forms.len() >= crate::consent::MAX_FORMS_PER_BROWSER {
                        web.forms.pop_front();
                    }
                    web.forms.push_back(token.clone());
                }
            }
        }
        token
    }

    /// Use this browser's form `token`: whether it was given to it and not used yet.
    async fn take_form(&self, cookie: &str, token: &str) -> bool {
        match self.consent.shared() {
            Some(shared) => shared.take_form(cookie, token).await.unwrap_or(false),
            None => self
                .sessions()
                .get_mut(cookie)
                .and_then(|web| {
                    let at = web.forms.iter().position(|form| form == token)?;
                    web.forms.remove(at)
                })
                .is_some(),
        }
    }

    /// Remember this browser's sign-in as `principal`.
    async fn remember(&self, cookie: &str, principal: Principal) -> bool {
        if let Some(shared) = self.consent.shared() {
            return shared.remember(cookie, &principal, SIGNED_IN).await.is_ok();
        }
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, web)| web.at)
                .map(|(key, _)| key.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            cookie.to_owned(),
            Web {
                principal,
                forms: VecDeque::new(),
                at: Instant::now(),
            },
        );
        true
    }

    async fn record(
        &self,
        principal: &Principal,
        decision: AuditDecision,
        reason: &str,
        id: Option<&str>,
    ) {
        let correlation = portcullis_core::CorrelationId::fresh();
        let mut record = AuditRecord::new(correlation.as_str(), "approvals/page", decision);
        record.issuer = Some(principal.issuer.clone());
        record.subject = Some(principal.subject.clone());
        record.tenant.clone_from(&principal.tenant);
        record.reasons = vec![reason.to_owned()];
        record.consent = id.map(str::to_owned);
        // An approval lets a state-changing call run: it is on disk before the page says so.
        let durability = if decision == AuditDecision::Approved {
            Durability::Durable
        } else {
            Durability::Queued
        };
        let _ = self.trail.record(record, durability).await;
    }
}

pub(super) fn router(approvals: Arc<Approvals>) -> Router {
    Router::new()
        .route("/approvals", get(show).post(answer))
        .route("/approvals/callback", get(callback))
        .route("/approvals/client.json", get(client_document))
        .route("/approvals/connect", get(connect::start))
        .route(
            "/approvals/connect/{upstream}/callback",
            get(connect::callback),
        )
        .route(
            "/approvals/connect/client.json",
            get(connect::client_document),
        )
        .route(
            "/approvals/connections",
            get(connect::list).post(connect::disconnect),
        )
        .layer(axum::middleware::from_fn_with_state(
            approvals.trail.clone(),
            whole_form,
        ))
        .with_state(approvals)
}

/// The request's body, read whole before anything else reads it: at most [`FORM_BYTES`]
/// within [`FORM_TIME`]. SECURITY: the page's forms are read before their sender is known
/// (the handler looks at the cookie after), so nobody may make the gateway hold a large body,
/// or hold a request open sending one slowly, on these routes.
async fn whole_form(
    State(trail): State<Trail>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(FORM_TIME, axum::body::to_bytes(body, FORM_BYTES)).await;
    let (status, reason) = match read {
        Ok(Ok(bytes)) => {
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            return next.run(request).await;
        }
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|inner| inner.is::<http_body_util::LengthLimitError>());
            // A body that ended badly (its client gone): nothing was refused.
            if !too_large {
                return (StatusCode::BAD_REQUEST, "Bad Request\n").into_response();
            }
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::access::Reason::BodyTooLarge,
            )
        }
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            crate::access::Reason::BodyTooSlow,
        ),
    };
    let line = format!("{} {}", parts.method, parts.uri.path());
    let mut record = crate::access::record::refused_early(
        portcullis_core::CorrelationId::fresh().as_str(),
        &line,
        AuditDecision::Deny,
        status.as_u16(),
        reason,
        None,
    );
    record.source = parts
        .extensions
        .get::<crate::http::Peer>()
        .map(|peer| peer.source.to_string());
    trail.refused_counted(record);
    (
        status,
        format!("{}\n", status.canonical_reason().unwrap_or("Refused")),
    )
        .into_response()
}

/// A page with the headers every approval page carries: no framing, no caching, no scripts.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // `no-referrer` would make browsers send `Origin: null` on the form's POST, which the
        // Origin check refuses.
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => html(
            StatusCode::BAD_REQUEST,
            page::notice("Bad link", "This link is not valid."),
        ),
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

fn cookie_named(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == wanted).then(|| value.to_owned())
        })
}

/// Forget this browser's sign-in (its form proved it came from the page) and its cookie.
async fn sign_out(approvals: &Approvals, cookie: &str, principal: &Principal) -> Response {
    match approvals.consent.shared() {
        Some(shared) => {
            if shared.sign_out(cookie).await.is_err() {
                return unavailable();
            }
        }
        None => {
            approvals.sessions().remove(cookie);
        }
    }
    approvals
        .record(principal, AuditDecision::Allow, "signed_out", None)
        .await;
    let mut response = html(
        StatusCode::OK,
        page::notice(
            "Signed out",
            "You are signed out of the approval page. An approval link signs you in again.",
        ),
    );
    if let Some(value) = set_cookie(
        (COOKIE, ""),
        &approvals.page,
        Duration::ZERO,
        approvals.secure,
    ) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The origin of the public URL `resource` and the approval page's path under it: a gateway
/// behind a proxy at `https://example.com/tools/mcp` (serving `endpoint` `/mcp` itself) has
/// its page at `/tools/approvals`, and every link, form, cookie and redirect says so.
fn page_of(resource: &str, endpoint: &str) -> (String, String) {
    let Ok(url) = reqwest::Url::parse(resource) else {
        return (String::new(), "/approvals".to_owned());
    };
    let path = url.path();
    let prefix = path
        .strip_suffix(endpoint)
        .unwrap_or_else(|| path.rsplit_once('/').map_or("", |(parent, _)| parent))
        .trim_end_matches('/');
    (
        url.origin().ascii_serialization(),
        format!("{prefix}/approvals"),
    )
}

/// A `Set-Cookie` for the approval page's path `page`.
fn set_cookie(
    (name, value): (&str, &str),
    page: &str,
    max_age: Duration,
    secure: bool,
) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={page}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .ok()
}

#[derive(Deserialize)]
struct Shown {
    request: Option<String>,
}

async fn show(
    State(approvals): State<Arc<Approvals>>,
    Query(query): Query<Shown>,
    peer: Option<axum::Extension<crate::http::Peer>>,
    headers: HeaderMap,
) -> Response {
    // SECURITY: the link's request id is kept with a sign-in (anyone can start one): only an
    // id of the gateway's own shape is.
    if query
        .request
        .as_deref()
        .is_some_and(|id| !crate::consent::looks_like_request(id))
    {
        return html(
            StatusCode::BAD_REQUEST,
            page::notice("Bad link", "This link is not valid."),
        );
    }
    let here = match &query.request {
        Some(id) => format!("{}?request={}", approvals.page, urlencode(id)),
        None => approvals.page.clone(),
    };
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        let source = peer.map(|axum::Extension(peer)| peer.source);
        return sign_in_first(&approvals, &here, source).await;
    };
    if let Some(id) = &query.request {
        let ledger = &approvals.consent.ledger;
        match ledger
            .check(id, &principal.issuer, &principal.subject)
            .await
        {
            Err(PageRefusal::Unavailable) => return unavailable(),
            Err(PageRefusal::NotYours) => {
                approvals
                    .record(
                        &principal,
                        AuditDecision::Deny,
                        "approval_page_not_yours",
                        Some(id),
                    )
                    .await;
                return html(
                    StatusCode::FORBIDDEN,
                    page::notice(
                        "Not your request",
                        "This approval request belongs to someone else. Only the person who asked can approve it: sign in as them.",
                    ),
                );
            }
            Err(_) => {
                approvals
                    .record(
                        &principal,
                        AuditDecision::Deny,
                        "approval_page_expired",
                        Some(id),
                    )
                    .await;
                return html(
                    StatusCode::GONE,
                    page::notice(
                        "Request expired",
                        "This approval request has expired or no longer exists. Make the call again to ask anew.",
                    ),
                );
            }
            Ok(()) => match ledger.answer(id).await {
                Ok(Some(Answer::Waiting)) => {}
                Err(_) => return unavailable(),
                Ok(_) => {
                    return html(
                        StatusCode::OK,
                        page::notice(
                            "Already answered",
                            "This approval request has already been answered.",
                        ),
                    );
                }
            },
        }
    }
    let Ok(shown) = approvals
        .consent
        .ledger
        .waiting_for(&principal.issuer, &principal.subject)
        .await
    else {
        return unavailable();
    };
    let token = approvals.form_token(&cookie).await;
    html(
        StatusCode::OK,
        page::requests(
            (&principal.subject, &approvals.page),
            &shown,
            &token,
            query.request.as_deref(),
        ),
    )
}

/// Send a browser that is not signed in to the authorization server, to come back to `here`.
async fn sign_in_first(
    approvals: &Approvals,
    here: &str,
    source: Option<std::net::IpAddr>,
) -> Response {
    match approvals.sign_in.start(here, source).await {
        Ok(started) => {
            let mut response = redirect(&started.to);
            if let Some(value) = set_cookie(
                (SIGN_IN_COOKIE, &started.browser),
                &approvals.page,
                sign_in::SIGN_IN_TIME,
                approvals.secure,
            ) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(sign_in::NotStarted::Busy) => {
            // The page asked for (the approval page, or its connections parts), path only.
            let path = url::Url::parse(here)
                .map_or_else(|_| "/approvals".to_owned(), |url| url.path().to_owned());
            let mut record = AuditRecord::new(
                portcullis_core::CorrelationId::fresh().as_str(),
                &format!("GET {path}"),
                AuditDecision::Deny,
            );
            record.status = Some(429);
            record.reasons = vec!["approval_sign_in_busy".to_owned()];
            record.source = source.map(|source| source.to_string());
            approvals.trail.refused_counted(record);
            html(
                StatusCode::TOO_MANY_REQUESTS,
                page::notice(
                    "Too many sign-ins",
                    "Too many sign-ins are in progress. Try again in a few minutes.",
                ),
            )
        }
        Err(sign_in::NotStarted::Unreachable(error)) => {
            tracing::warn!(%error, "approval page cannot reach the authorization server");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                page::notice(
                    "Sign-in unavailable",
                    "The sign-in service cannot be reached. Try again shortly.",
                ),
            )
        }
    }
}

/// The shared approval state cannot be reached: nothing is shown or answered.
fn unavailable() -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        page::notice(
            "Approvals unavailable",
            "Approvals cannot be reached right now. Try again shortly.",
        ),
    )
}

async fn answer(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        return html(
            StatusCode::UNAUTHORIZED,
            page::notice(
                "Signed out",
                "Your sign-in has ended. Open the approval link again.",
            ),
        );
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let token = field("form").unwrap_or_default();
    let fresh = approvals.take_form(&cookie, token).await;
    if !fresh {
        approvals
            .record(
                &principal,
                AuditDecision::Deny,
                "approval_form_replayed",
                None,
            )
            .await;
        return html(
            StatusCode::FORBIDDEN,
            page::notice(
                "Form already used",
                "This form was already sent, or did not come from this page. Open the approval page again.",
            ),
        );
    }
    let approve = match field("decision") {
        Some("approve") => true,
        Some("decline") => false,
        Some("sign_out") => return sign_out(&approvals, &cookie, &principal).await,
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                page::notice("No decision", "Choose approve or decline."),
            );
        }
    };
    // A person has at most so many requests waiting; a form naming more is not the page's.
    if fields.iter().filter(|(key, _)| key == "request").count() > crate::consent::MAX_WAITING {
        return html(
            StatusCode::BAD_REQUEST,
            page::notice(
                "Too many",
                "This form names more requests than can be waiting.",
            ),
        );
    }
    let (mut approved, mut declined, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for (_, id) in fields.iter().filter(|(key, _)| key == "request") {
        match approvals
            .consent
            .ledger
            .decide(id, &principal, approve)
            .await
        {
            Ok(_) if approve => {
                approvals
                    .record(
                        &principal,
                        AuditDecision::Approved,
                        "approved_on_page",
                        Some(id),
                    )
                    .await;
                approved.push(id.clone());
            }
            Ok(_) => {
                approvals
                    .record(
                        &principal,
                        AuditDecision::Declined,
                        "declined_on_page",
                        Some(id),
                    )
                    .await;
                declined.push(id.clone());
            }
            Err(refusal) => {
                let reason = match refusal {
                    PageRefusal::NotYours => "approval_page_not_yours",
                    PageRefusal::Gone => "approval_page_expired",
                    PageRefusal::Answered => "approval_page_answered",
                    PageRefusal::Unavailable => "approval_state_unavailable",
                };
                approvals
                    .record(&principal, AuditDecision::Deny, reason, Some(id))
                    .await;
                refused.push(id.clone());
            }
        }
    }
    html(
        StatusCode::OK,
        page::answered(&approved, &declined, &refused),
    )
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(approvals): State<Arc<Approvals>>,
    Query(query): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    // Who failed to sign in is not known; that a sign-in on the page failed is recorded.
    let failed = |reason: &'static str, text: &'static str| {
        let correlation = portcullis_core::CorrelationId::fresh();
        let mut record = AuditRecord::new(
            correlation.as_str(),
            "GET /approvals/callback",
            AuditDecision::Deny,
        );
        record.status = Some(403);
        record.reasons = vec![reason.to_owned()];
        let trail = approvals.trail.clone();
        async move {
            let _ = trail.record(record, Durability::Queued).await;
            html(StatusCode::FORBIDDEN, page::notice("Sign-in failed", text))
        }
    };
    const AGAIN: &str = "The sign-in did not complete. Open the approval link again.";
    let (Some(code), Some(state)) = (query.code, query.state) else {
        tracing::info!(error = ?query.error, "approval sign-in refused by the authorization server");
        return failed("approval_sign_in_refused", AGAIN).await;
    };
    let browser = cookie_named(&headers, SIGN_IN_COOKIE);
    let (token, return_to) = match approvals
        .sign_in
        .finish(&code, &state, browser.as_deref())
        .await
    {
        Ok(done) => done,
        Err(error) => {
            tracing::info!(%error, "approval sign-in failed");
            return failed("approval_sign_in_failed", AGAIN).await;
        }
    };
    let bearer = format!("Bearer {token}");
    let verified =
        match portcullis_authn::BearerToken::from_authorization(std::iter::once(bearer.as_bytes()))
        {
            Ok(Some(token)) => match approvals.access.authenticator() {
                Some(authenticator) => authenticator.verify(&token).await.ok(),
                None => None,
            },
            _ => None,
        };
    let Some(verified) = verified else {
        return failed(
            "approval_sign_in_invalid_token",
            "The sign-in did not give a valid token for this service.",
        )
        .await;
    };
    let principal = crate::access::principal(&verified);
    let cookie = portcullis_authn::signing::random_token();
    if !approvals.remember(&cookie, principal).await {
        return unavailable();
    }
    // Only back to the page or its connections parts: the sign-in cannot be turned into an
    // open redirect.
    let page = &approvals.page;
    let ours = [
        format!("{page}?"),
        format!("{page}/connect?"),
        format!("{page}/connections"),
    ];
    let to = if return_to == *page
        || ours
            .iter()
            .any(|prefix| return_to.starts_with(prefix.as_str()))
    {
        return_to
    } else {
        page.clone()
    };
    let mut response = redirect(&to);
    let cookies = [
        set_cookie((COOKIE, &cookie), page, SIGNED_IN, approvals.secure),
        // The sign-in is over: its binding cookie goes.
        set_cookie((SIGN_IN_COOKIE, ""), page, Duration::ZERO, approvals.secure),
    ];
    for value in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The page's OAuth client ID metadata document: its `client_id` is its own URL.
async fn client_document(State(approvals): State<Arc<Approvals>>) -> Response {
    Json(serde_json::json!({
        "client_id": approvals.sign_in.client_id,
        "client_name": "Portcullis approvals",
        "redirect_uris": [approvals.sign_in.redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }))
    .into_response()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: issue 19. A public URL with a path prefix lost it in the page's links, its
    // `redirect_uri` and its `client_id`.
    #[test]
    fn the_page_lives_under_the_public_urls_prefix() {
        let page = |resource, endpoint| page_of(resource, endpoint);
        assert_eq!(
            page("https://example.com/tools/mcp", "/mcp"),
            (
                "https://example.com".to_owned(),
                "/tools/approvals".to_owned()
            )
        );
        assert_eq!(
            page("https://example.com/mcp", "/mcp"),
            ("https://example.com".to_owned(), "/approvals".to_owned())
        );
        // A proxy that renames the endpoint: the page sits beside it.
        assert_eq!(
            page("https://example.com/a/b/gateway", "/mcp").1,
            "/a/b/approvals"
        );
        assert_eq!(page("http://127.0.0.1:8080/", "/").1, "/approvals");
    }
}
