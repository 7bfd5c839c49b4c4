//! Connecting a person's own account at an upstream that wants it (`credentials =
//! "user-oauth"`), on the gateway's page: the person signs in to the gateway first (as for
//! approvals), then to the upstream's authorization server; the tokens it issues are kept for
//! that person alone. The page also lists their connections and disconnects them. Every
//! connection, disconnection and refusal is audited.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use portcullis_audit::{AuditDecision, AuditRecord, Durability};
use portcullis_policy::Principal;
use serde::Deserialize;

use super::{Approvals, html, page, redirect, sign_in_first, urlencode};
use crate::connections::{Connections, Key, NotFinished};

#[derive(Deserialize)]
pub(super) struct Connect {
    upstream: Option<String>,
}

fn connections(approvals: &Approvals) -> Option<&Arc<Connections>> {
    approvals.connections.as_ref()
}

/// No upstream takes people's own tokens: these pages do not exist.
fn not_served() -> Response {
    html(
        StatusCode::NOT_FOUND,
        page::notice("Not found", "This gateway connects no services."),
    )
}

fn not_valid() -> Response {
    html(
        StatusCode::BAD_REQUEST,
        page::notice("Bad link", "This link is not valid."),
    )
}

/// `GET {page}/connect?upstream=NAME`: sign the person in here, then send them to the
/// upstream's authorization server.
pub(super) async fn start(
    State(approvals): State<Arc<Approvals>>,
    Query(query): Query<Connect>,
    peer: Option<axum::Extension<crate::http::Peer>>,
    headers: HeaderMap,
) -> Response {
    let Some(connections) = connections(&approvals) else {
        return not_served();
    };
    // SECURITY: only a configured upstream's name is kept with a sign-in (anyone can start one).
    let Some(upstream) = query.upstream.filter(|name| connections.handles(name)) else {
        return not_valid();
    };
    let here = format!(
        "{}/connect?upstream={}",
        approvals.page,
        urlencode(&upstream)
    );
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        let source = peer.map(|axum::Extension(peer)| peer.source);
        return sign_in_first(&approvals, &here, source).await;
    };
    match connections
        .start((&principal.issuer, &principal.subject), &upstream, &cookie)
        .await
    {
        Ok(to) => redirect(&to),
        Err(error) => {
            tracing::warn!(%upstream, %error, "cannot start a sign-in at the upstream's authorization server");
            record(
                &approvals,
                &principal,
                (AuditDecision::Error, "upstream_sign_in_unavailable"),
                &upstream,
            )
            .await;
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                page::notice(
                    "Sign-in unavailable",
                    "The service's sign-in cannot be reached right now. Try again shortly.",
                ),
            )
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET {page}/connect/{upstream}/callback`: the upstream's server sends the person back with
/// a code.
pub(super) async fn callback(
    State(approvals): State<Arc<Approvals>>,
    Path(upstream): Path<String>,
    Query(query): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let Some(connections) = connections(&approvals) else {
        return not_served();
    };
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        // Who it was is not known; that a sign-in came back to no signed-in browser is.
        let mut record = AuditRecord::new(
            portcullis_core::CorrelationId::fresh().as_str(),
            "connections/page",
            AuditDecision::Deny,
        );
        record.status = Some(401);
        record.reasons = vec!["upstream_sign_in_signed_out".to_owned()];
        record.upstream = connections.handles(&upstream).then(|| upstream.clone());
        let _ = approvals.trail.record(record, Durability::Queued).await;
        return html(
            StatusCode::UNAUTHORIZED,
            page::notice(
                "Signed out",
                "Your sign-in on this page has ended. Open the link your client gave you again.",
            ),
        );
    };
    // Only a configured upstream's name is written in a record.
    let named = if connections.handles(&upstream) {
        upstream.as_str()
    } else {
        ""
    };
    let (Some(code), Some(state)) = (query.code, query.state) else {
        tracing::info!(error = ?query.error, "a sign-in at an upstream's authorization server was refused");
        record(
            &approvals,
            &principal,
            (AuditDecision::Deny, "upstream_sign_in_refused"),
            named,
        )
        .await;
        return html(
            StatusCode::FORBIDDEN,
            page::notice(
                "Not connected",
                "The service's sign-in did not complete, so nothing was connected. Open the link again to retry.",
            ),
        );
    };
    let finished = connections
        .finish(
            ((&principal.issuer, &principal.subject), &upstream),
            (&code, &state, query.iss.as_deref()),
            &cookie,
        )
        .await;
    match finished {
        Ok(upstream) => {
            record(
                &approvals,
                &principal,
                (AuditDecision::Allow, "upstream_connected"),
                &upstream,
            )
            .await;
            html(
                StatusCode::OK,
                page::connected(&upstream, &format!("{}/connections", approvals.page)),
            )
        }
        Err(error) => {
            tracing::info!(%error, "a sign-in at an upstream's authorization server did not connect it");
            let (decision, reason, status) = match error {
                NotFinished::Invalid(_) => (
                    AuditDecision::Deny,
                    "upstream_sign_in_invalid",
                    StatusCode::FORBIDDEN,
                ),
                NotFinished::Refused(_) => (
                    AuditDecision::Deny,
                    "upstream_sign_in_refused",
                    StatusCode::FORBIDDEN,
                ),
                NotFinished::Unavailable(_) => (
                    AuditDecision::Error,
                    "upstream_sign_in_unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            };
            record(&approvals, &principal, (decision, reason), named).await;
            html(
                status,
                page::notice(
                    "Not connected",
                    "This sign-in could not connect the service (it was started elsewhere, by someone else, expired, or was refused). Open the link your client gave you again.",
                ),
            )
        }
    }
}

/// `GET {page}/connections`: the person's connections, each with a button to disconnect it.
pub(super) async fn list(
    State(approvals): State<Arc<Approvals>>,
    peer: Option<axum::Extension<crate::http::Peer>>,
    headers: HeaderMap,
) -> Response {
    let Some(connections) = connections(&approvals) else {
        return not_served();
    };
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        let source = peer.map(|axum::Extension(peer)| peer.source);
        let here = format!("{}/connections", approvals.page);
        return sign_in_first(&approvals, &here, source).await;
    };
    let Ok(listed) = connections
        .list(Some((&principal.issuer, &principal.subject)))
        .await
    else {
        return super::unavailable();
    };
    let names: Vec<(String, i64)> = listed
        .into_iter()
        .map(|listed| (listed.key.upstream, listed.connected))
        .collect();
    let token = approvals.form_token(&cookie).await;
    html(
        StatusCode::OK,
        page::connections(
            (
                &principal.subject,
                &format!("{}/connections", approvals.page),
            ),
            &names,
            &token,
        ),
    )
}

/// `POST {page}/connections`: disconnect one (`upstream`), with the page's one-time form.
pub(super) async fn disconnect(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let Some(connections) = connections(&approvals) else {
        return not_served();
    };
    let Some((cookie, principal)) = approvals.signed_in(&headers).await else {
        return html(
            StatusCode::UNAUTHORIZED,
            page::notice("Signed out", "Your sign-in has ended. Open the page again."),
        );
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if !approvals
        .take_form(&cookie, field("form").unwrap_or_default())
        .await
    {
        record(
            &approvals,
            &principal,
            (AuditDecision::Deny, "connections_form_replayed"),
            "",
        )
        .await;
        return html(
            StatusCode::FORBIDDEN,
            page::notice(
                "Form already used",
                "This form was already sent, or did not come from this page. Open the page again.",
            ),
        );
    }
    let Some(upstream) = field("upstream").filter(|name| connections.handles(name)) else {
        return not_valid();
    };
    let key = Key {
        iss: principal.issuer.clone(),
        sub: principal.subject.clone(),
        upstream: upstream.to_owned(),
    };
    match connections.revoke(&key).await {
        Ok(false) => {
            record(
                &approvals,
                &principal,
                (AuditDecision::Deny, "upstream_not_connected"),
                upstream,
            )
            .await;
            html(
                StatusCode::OK,
                page::notice(
                    "Not connected",
                    &format!("{upstream} was not connected: there was nothing to forget."),
                ),
            )
        }
        Ok(true) => {
            record(
                &approvals,
                &principal,
                (AuditDecision::Allow, "upstream_disconnected"),
                upstream,
            )
            .await;
            html(
                StatusCode::OK,
                page::notice(
                    "Disconnected",
                    &format!(
                        "{upstream} is no longer connected: the gateway has forgotten your tokens there. Your next call to it asks you to connect again."
                    ),
                ),
            )
        }
        Err(_) => super::unavailable(),
    }
}

/// `GET {page}/connect/client.json`: the gateway's client ID metadata document, for servers
/// that take one.
pub(super) async fn client_document(State(approvals): State<Arc<Approvals>>) -> Response {
    match connections(&approvals) {
        Some(connections) => axum::Json(connections.client_document()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn record(
    approvals: &Approvals,
    principal: &Principal,
    (decision, reason): (AuditDecision, &str),
    upstream: &str,
) {
    let correlation = portcullis_core::CorrelationId::fresh();
    let mut record = AuditRecord::new(correlation.as_str(), "connections/page", decision);
    record.issuer = Some(principal.issuer.clone());
    record.subject = Some(principal.subject.clone());
    record.tenant.clone_from(&principal.tenant);
    record.reasons = vec![reason.to_owned()];
    if !upstream.is_empty() {
        record.upstream = Some(upstream.to_owned());
    }
    let _ = approvals.trail.record(record, Durability::Queued).await;
}
