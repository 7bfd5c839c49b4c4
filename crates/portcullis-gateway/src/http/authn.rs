//! Authentication of every MCP request, and the metadata that tells clients how to get a token.
//!
//! Runs on the MCP route only (`route_layer`), before the relay and rmcp: nothing reads a body,
//! opens a session or reaches an upstream for a caller without a verified token. Every request is
//! verified anew: a session id is never a credential (SECURITY: it travels in a header a
//! compromised client or proxy can replay), and a session belongs to the caller who opened it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use portcullis_authn::{
    BearerToken, Challenge, IntrospectionConfig, Introspector, JwtConfig, JwtVerifier,
    ProtectedResourceMetadata, VerifiedPrincipal,
};
use portcullis_core::CorrelationId;

use portcullis_audit::{AuditDecision, Durability};

use crate::{
    config::Auth,
    trail::{self, Trail},
};

const SESSION_HEADER: &str = "mcp-session-id";
// Bound on remembered session owners. Owners idle longer than the session timeout are forgotten
// first; a session that cannot be bound cannot be used (it answers 404), never the reverse.
const MAX_BOUND_SESSIONS: usize = 100_000;

struct Binding {
    owner: (String, String),
    last_seen: Instant,
    /// The opaque token the session last used, kept (in memory only, never logged) so that
    /// its owner's introspection answer can be asked again while the session lives.
    token: Option<BearerToken>,
}

pub(super) struct Authn {
    verifiers: Vec<(String, JwtVerifier)>,
    /// Live entitlements, which can disable a subject whose token is still valid.
    entitlements: Option<std::sync::Arc<crate::entitlements::Entitlements>>,
    // Opaque tokens carry no issuer; the first issuer that introspects checks them.
    introspector: Option<Introspector>,
    challenge_scopes: portcullis_authn::Scopes,
    metadata_url: String,
    metadata: ProtectedResourceMetadata,
    owners: Mutex<HashMap<String, Binding>>,
    session_idle_timeout: Duration,
    trail: Trail,
    path: String,
}

impl Authn {
    pub(super) fn new(
        auth: &Auth,
        session_idle_timeout: Duration,
        (trail, entitlements): (
            Trail,
            Option<std::sync::Arc<crate::entitlements::Entitlements>>,
        ),
        path: String,
    ) -> Self {
        let http = portcullis_mcp::http_client();
        let verifiers = auth
            .issuers
            .iter()
            .map(|issuer| {
                let config = JwtConfig {
                    issuer: issuer.issuer.clone(),
                    audience: auth.resource.identifier().to_owned(),
                    jwks_uri: issuer.jwks_uri.clone(),
                    leeway: auth.leeway,
                    refetch_interval: Duration::from_secs(10),
                    mapping: issuer.mapping.clone(),
                };
                (
                    issuer.issuer.clone(),
                    JwtVerifier::new(config, http.clone()),
                )
            })
            .collect();
        let introspector = auth.issuers.iter().find_map(|issuer| {
            let introspection = issuer.introspection.as_ref()?;
            let config = IntrospectionConfig {
                issuer: issuer.issuer.clone(),
                endpoint: introspection.endpoint.clone(),
                client: introspection.client.clone(),
                audience: auth.resource.identifier().to_owned(),
                cache_ttl: introspection.cache_ttl,
                leeway: auth.leeway,
                mapping: issuer.mapping.clone(),
            };
            Some(Introspector::new(config, http.clone()))
        });
        let metadata = ProtectedResourceMetadata::new(
            &auth.resource,
            auth.issuers
                .iter()
                .map(|issuer| issuer.issuer.clone())
                .collect(),
            &auth.scopes,
            &auth.resource_name,
        );
        Self {
            verifiers,
            entitlements,
            introspector,
            challenge_scopes: auth.scopes.clone(),
            metadata_url: auth.resource.metadata_url(),
            metadata,
            owners: Mutex::new(HashMap::new()),
            session_idle_timeout,
            trail,
            path,
        }
    }

    /// The principal `token` proves, for the approval page's sign-in; `None` for any refusal.
    pub(super) async fn verified(&self, token: &BearerToken) -> Option<VerifiedPrincipal> {
        self.verify(token).await.ok()
    }

    async fn verify(&self, token: &BearerToken) -> Result<VerifiedPrincipal, Refusal> {
        // The unverified `iss` only picks which issuer's keys to try; that issuer's verifier
        // then checks `iss` again along with the signature.
        let claimed = unverified_issuer(token.expose());
        let jwt = self
            .verifiers
            .iter()
            .find(|(issuer, _)| Some(issuer.as_str()) == claimed.as_deref())
            .map(|(_, verifier)| verifier);
        let outcome = match (jwt, &self.introspector) {
            (Some(verifier), _) => verifier.verify(token).await,
            // Not a JWT of a known issuer: only introspection can vouch for it.
            (None, Some(introspector)) if claimed.is_none() => introspector.verify(token).await,
            (None, _) => return Err(Refusal::Challenge(Challenge::InvalidToken)),
        };
        outcome.map_err(|error| {
            if error.is_malfunction() {
                Refusal::Unavailable
            } else {
                tracing::info!(reason = %error, "token refused");
                Refusal::Challenge(Challenge::InvalidToken)
            }
        })
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Binding>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Refusal {
    Challenge(Challenge),
    Unavailable,
}

pub(super) async fn authenticate(
    State(authn): State<Arc<Authn>>,
    mut request: Request,
    next: Next,
) -> Response {
    let values = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes);
    let bearer = BearerToken::from_authorization(values);
    let principal = match &bearer {
        Ok(None) => Err(Refusal::Challenge(Challenge::Missing {
            scopes: authn.challenge_scopes.clone(),
        })),
        Err(error) => {
            tracing::info!(reason = %error, "authorization header refused");
            Err(Refusal::Challenge(Challenge::InvalidToken))
        }
        Ok(Some(token)) => authn.verify(token).await,
    };
    // Only an opaque token's answer can change while it lives (a JWT's claims cannot).
    let opaque = match bearer {
        Ok(Some(token)) if unverified_issuer(token.expose()).is_none() => Some(token),
        _ => None,
    };
    let request_line = format!("{} {}", request.method(), authn.path);
    let principal = match principal {
        // A subject its entitlements disable is refused at once, whatever its token says.
        Ok(principal)
            if authn
                .entitlements
                .as_ref()
                .is_some_and(|e| e.apply(super::authz::principal(&principal)).is_err()) =>
        {
            authn
                .refused(
                    &request_line,
                    AuditDecision::Deny,
                    401,
                    "subject_disabled",
                    Some(&principal),
                )
                .await;
            tracing::info!(subject = %principal.subject(), "token of a disabled subject refused");
            return challenge_response(&authn.metadata_url, &Challenge::InvalidToken);
        }
        Ok(principal) => principal,
        Err(Refusal::Challenge(challenge)) => {
            let reason = match challenge {
                Challenge::Missing { .. } => "missing_token",
                _ => "invalid_token",
            };
            authn
                .refused(&request_line, AuditDecision::Deny, 401, reason, None)
                .await;
            return challenge_response(&authn.metadata_url, &challenge);
        }
        Err(Refusal::Unavailable) => {
            let correlation = authn
                .refused(
                    &request_line,
                    AuditDecision::Error,
                    503,
                    "identity_provider_unavailable",
                    None,
                )
                .await;
            return unavailable(&correlation);
        }
    };
    let owner = (
        principal.issuer().to_owned(),
        principal.subject().to_owned(),
    );
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        let owned = match authn.owners().get_mut(session) {
            Some(binding) if binding.owner == owner => {
                binding.last_seen = Instant::now();
                binding.token.clone_from(&opaque);
                true
            }
            _ => false,
        };
        // SECURITY: another caller's session, or one the gateway does not know the owner of,
        // answers exactly like a session that does not exist: a stolen id neither works nor
        // confirms that it is live.
        if !owned {
            tracing::info!("session id presented by a caller who did not open it");
            authn
                .refused(
                    &request_line,
                    AuditDecision::Deny,
                    404,
                    "session_not_owned",
                    Some(&principal),
                )
                .await;
            return session_not_found();
        }
    }
    let deleting = request.method() == http::Method::DELETE;
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    match (
        &session,
        response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    ) {
        (None, Some(created)) => authn.bind(created, owner, opaque),
        (Some(ended), _) if deleting && response.status().is_success() => {
            authn.owners().remove(ended);
        }
        _ => {}
    }
    response
}

impl Authn {
    /// Record a request refused before any decision; the correlation id its answer may quote.
    async fn refused(
        &self,
        request_line: &str,
        decision: AuditDecision,
        status: u16,
        reason: &str,
        principal: Option<&VerifiedPrincipal>,
    ) -> CorrelationId {
        let correlation = CorrelationId::fresh();
        let record = trail::refusal(
            correlation.as_str(),
            request_line,
            decision,
            status,
            reason,
            principal,
        );
        let _ = self.trail.record(record, Durability::Queued).await;
        correlation
    }

    fn bind(&self, session: &str, owner: (String, String), token: Option<BearerToken>) {
        let mut owners = self.owners();
        if owners.len() >= MAX_BOUND_SESSIONS {
            let idle = self.session_idle_timeout;
            owners.retain(|_, binding| binding.last_seen.elapsed() < idle);
        }
        if owners.len() >= MAX_BOUND_SESSIONS {
            tracing::warn!("too many live sessions; the new one is refused on first use");
            return;
        }
        owners.insert(
            session.to_owned(),
            Binding {
                owner,
                last_seen: Instant::now(),
                token,
            },
        );
    }
}

/// Exactly what rmcp answers for a session it does not know: same status, same body, no
/// content type. Any difference would tell a thief that the stolen session is alive.
fn session_not_found() -> Response {
    let mut response = Response::new(axum::body::Body::from("Not Found: Session not found"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

pub(super) fn challenge_response(metadata_url: &str, challenge: &Challenge) -> Response {
    let status = StatusCode::from_u16(challenge.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, status.canonical_reason().unwrap_or_default()).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge.header_value(metadata_url)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn unavailable(correlation: &CorrelationId) -> Response {
    tracing::warn!(%correlation, "token could not be verified: issuer keys unavailable");
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "the identity provider cannot be reached; try again shortly",
        "correlationId": correlation.as_str(),
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub(super) async fn metadata(State(authn): State<Arc<Authn>>) -> Response {
    Json(authn.metadata.clone()).into_response()
}

/// The `iss` claim of a JWT, read without verifying anything: only to choose a verifier.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

impl Authn {
    /// While sessions live, ask again every `every` what their opaque tokens' owners hold now,
    /// and hand each answer (`None`: the token is no longer active) to the gateway, which
    /// recomputes those callers' views.
    pub(super) async fn reintrospect(
        self: Arc<Self>,
        gateway: Arc<crate::proxy::Gateway>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(introspector) = &self.introspector else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let idle = self.session_idle_timeout;
            let mut tokens: HashMap<(String, String), BearerToken> = HashMap::new();
            for binding in self.owners().values() {
                if let Some(token) = &binding.token
                    && binding.last_seen.elapsed() < idle
                {
                    tokens.insert(binding.owner.clone(), token.clone());
                }
            }
            // Callers whose sessions ended are forgotten, so the answers kept stay bounded.
            gateway.forget_reintrospected_except(&tokens);
            for (owner, token) in tokens {
                let answer = match introspector.verify(&token).await {
                    Ok(principal) => Some(super::authz::principal(&principal)),
                    // Unreachable introspection proves nothing: keep the last answer.
                    Err(error) if error.is_malfunction() => continue,
                    Err(_) => None,
                };
                gateway.reintrospected(owner, answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_read_from_the_payload_without_trusting_it() {
        // {"alg":"none"} . {"iss":"https://as.example","sub":"x"} . (no signature)
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUiLCJzdWIiOiJ4In0.";
        assert_eq!(
            unverified_issuer(token).as_deref(),
            Some("https://as.example")
        );
        assert_eq!(unverified_issuer("garbage"), None);
        assert_eq!(unverified_issuer("a.!!!.c"), None);
    }
}
