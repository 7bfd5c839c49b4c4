//! Opaque tokens, checked with the issuer's RFC 7662 introspection endpoint.
//!
//! Answers are cached by a SHA-256 of the token (never the token itself) until the earlier of
//! the token's `exp` and the cache lifetime, so a revoked token stops working within that
//! lifetime and the issuer is not asked on every request.

use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use url::Url;

use crate::{AuthnError, BearerToken, ClaimMapping, VerifiedPrincipal};

// Refusals kept at once; past it they start over. Kept apart from accepted tokens, so that
// anyone spraying made-up tokens forgets only refusals, never a signed-in caller's answer.
const MAX_REFUSALS: usize = 10_000;
// Bytes of accepted answers kept (each weighs its introspection answer); past it, expired
// answers go, and a new answer is used without being kept rather than push another out.
const MAX_ACCEPTED_BYTES: usize = 16 * 1024 * 1024;
// The largest introspection answer read; a larger one is a malfunction.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
// A refusal is remembered briefly: long enough to absorb a retry storm, short enough that a
// token issued a moment ago is not refused for long.
const REFUSAL_TTL: Duration = Duration::from_secs(5);

/// Answers by token digest, each with the instant it stops being reused.
#[derive(Default)]
struct Cache {
    /// Accepted tokens, each with what its answer weighed.
    accepted: HashMap<[u8; 32], (Instant, VerifiedPrincipal, usize)>,
    accepted_bytes: usize,
    refused: HashMap<[u8; 32], (Instant, AuthnError)>,
}

impl Cache {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Result<VerifiedPrincipal, AuthnError>> {
        if let Some((until, principal, _)) = self.accepted.get(key)
            && now < *until
        {
            return Some(Ok(principal.clone()));
        }
        match self.refused.get(key) {
            Some((until, error)) if now < *until => Some(Err(error.clone())),
            _ => None,
        }
    }

    fn keep(
        &mut self,
        key: [u8; 32],
        until: Instant,
        answer: Result<(VerifiedPrincipal, usize), AuthnError>,
    ) {
        match answer {
            Err(error) => {
                if self.refused.len() >= MAX_REFUSALS {
                    self.refused.clear();
                }
                self.refused.insert(key, (until, error));
            }
            Ok((principal, weight)) => {
                if self.accepted_bytes + weight > MAX_ACCEPTED_BYTES {
                    let now = Instant::now();
                    let mut freed = 0;
                    self.accepted.retain(|_, (until, _, weight)| {
                        let keep = now < *until;
                        if !keep {
                            freed += *weight;
                        }
                        keep
                    });
                    self.accepted_bytes -= freed;
                }
                if self.accepted_bytes + weight <= MAX_ACCEPTED_BYTES {
                    self.accepted_bytes += weight;
                    if let Some((_, _, old)) = self.accepted.insert(key, (until, principal, weight))
                    {
                        self.accepted_bytes -= old;
                    }
                }
            }
        }
    }
}

/// A client secret for the introspection endpoint. Never printed.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wrap a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, to authenticate with.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How the gateway authenticates to the introspection endpoint (RFC 7662 §2.1 requires it).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    Basic {
        /// Client id.
        id: String,
        /// Client secret.
        secret: ClientSecret,
    },
    /// Id and secret in the form body (`client_secret_post`).
    Post {
        /// Client id.
        id: String,
        /// Client secret.
        secret: ClientSecret,
    },
    /// A public client: its id in the form body, no secret (`none`; OAuth 2.1 §2.1). Only for
    /// a person's own sign-in, where PKCE binds the code to the one who started it.
    Public {
        /// Client id.
        id: String,
    },
}

impl ClientAuth {
    /// The client id.
    pub fn id(&self) -> &str {
        match self {
            Self::Basic { id, .. } | Self::Post { id, .. } | Self::Public { id } => id,
        }
    }
}

/// How an introspecting issuer is trusted.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The issuer; an `iss` in the answer must equal it.
    pub issuer: String,
    /// The introspection endpoint.
    pub endpoint: Url,
    /// The gateway's credentials there.
    pub client: ClientAuth,
    /// The resource identifier `aud` must contain.
    pub audience: String,
    /// Longest time an answer is reused.
    pub cache_ttl: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Where the answer keeps subject, tenant, roles, scopes and client id.
    pub mapping: ClaimMapping,
}

/// Verifies opaque tokens through introspection.
pub struct Introspector {
    config: IntrospectionConfig,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    /// Calls made in the current second: (when it began, how many).
    calls: Mutex<(Instant, u32)>,
    /// The same for tokens that passed before (see [`Introspector::verify_known`]).
    known_calls: Mutex<(Instant, u32)>,
}

/// Calls per second to the introspection endpoint. SECURITY: every token nobody has seen costs
/// a call, and anyone can make up tokens; past the bound a new token is a malfunction (503)
/// until the next second, while answers already cached keep serving.
pub const MAX_INTROSPECTIONS_PER_SECOND: u32 = 50;

impl Introspector {
    /// An introspector for `config`.
    pub fn new(config: IntrospectionConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cache: Mutex::new(Cache::default()),
            calls: Mutex::new((Instant::now(), 0)),
            known_calls: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Whether one more call fits this second's `budget` (and counts it).
    fn may_call(budget: &Mutex<(Instant, u32)>) -> bool {
        let mut calls = budget.lock().unwrap_or_else(PoisonError::into_inner);
        if calls.0.elapsed() >= Duration::from_secs(1) {
            *calls = (Instant::now(), 0);
        }
        if calls.1 >= MAX_INTROSPECTIONS_PER_SECOND {
            return false;
        }
        calls.1 += 1;
        true
    }

    /// Verify `token`, from the cache when a fresh answer is there.
    pub async fn verify(&self, token: &BearerToken) -> Result<VerifiedPrincipal, AuthnError> {
        self.verify_within(token, &self.calls).await
    }

    /// [`Introspector::verify`] for a token the caller knows passed before (a signed-in
    /// caller's, checked again): its calls have a budget of their own, so that made-up tokens
    /// spending theirs cannot hold back the callers already signed in.
    pub async fn verify_known(&self, token: &BearerToken) -> Result<VerifiedPrincipal, AuthnError> {
        self.verify_within(token, &self.known_calls).await
    }

    async fn verify_within(
        &self,
        token: &BearerToken,
        budget: &Mutex<(Instant, u32)>,
    ) -> Result<VerifiedPrincipal, AuthnError> {
        let key = digest(token.expose());
        if let Some(answer) = self.cache().get(&key, Instant::now()) {
            return answer;
        }
        if !Self::may_call(budget) {
            tracing::warn!("introspection budget for this second spent; a new token is refused");
            return Err(AuthnError::Unavailable);
        }
        let answer = self.introspect(token).await;
        let lifetime = match &answer {
            // Malfunctions are not cached: the next request asks again.
            Err(AuthnError::Unavailable) => return Err(AuthnError::Unavailable),
            Err(_) => REFUSAL_TTL,
            Ok((_, exp, _)) => {
                let left = exp.map_or(self.config.cache_ttl, |exp| {
                    Duration::from_secs(exp.saturating_sub(unix_now()))
                });
                left.min(self.config.cache_ttl)
            }
        };
        let until = Instant::now() + lifetime;
        let result = answer.clone().map(|(principal, _, _)| principal);
        let kept = answer.map(|(principal, _, weight)| (principal, weight));
        self.cache().keep(key, until, kept);
        result
    }

    async fn introspect(
        &self,
        token: &BearerToken,
    ) -> Result<(VerifiedPrincipal, Option<u64>, usize), AuthnError> {
        let mut form = vec![
            ("token", token.expose().to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let mut request = self
            .http
            .post(self.config.endpoint.clone())
            .timeout(Duration::from_secs(5));
        match &self.config.client {
            ClientAuth::Basic { id, secret } => request = request.basic_auth(id, Some(&secret.0)),
            ClientAuth::Post { id, secret } => {
                form.push(("client_id", id.clone()));
                form.push(("client_secret", secret.0.clone()));
            }
            ClientAuth::Public { id } => form.push(("client_id", id.clone())),
        }
        let body = form_body(&form);
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await;
        let (answer, weight): (Value, usize) = match response {
            Ok(response) if response.status().is_success() => {
                let body = read_bounded(response, MAX_ANSWER_BYTES)
                    .await
                    .ok_or(AuthnError::Unavailable)?;
                let answer = serde_json::from_slice(&body).map_err(|_| AuthnError::Unavailable)?;
                (answer, body.len() + 128)
            }
            // RFC 7662 §2.3 answers a token it cannot read with 200 `active: false`, but some
            // servers answer 400: that refuses the token, it is no malfunction. Refusing the
            // gateway itself (401, 403), throttling (429) or failing (5xx) is one.
            Ok(response) if response.status() == reqwest::StatusCode::BAD_REQUEST => {
                tracing::info!("introspection answered 400 for a token: not active");
                return Err(AuthnError::Inactive);
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "introspection refused the gateway");
                return Err(AuthnError::Unavailable);
            }
            Err(error) => {
                tracing::warn!(%error, "introspection endpoint unreachable");
                return Err(AuthnError::Unavailable);
            }
        };
        let (principal, exp) = self.judge(&answer)?;
        Ok((principal, exp, weight))
    }

    fn judge(&self, answer: &Value) -> Result<(VerifiedPrincipal, Option<u64>), AuthnError> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthnError::Inactive);
        }
        if let Some(issuer) = answer.get("iss")
            && issuer.as_str() != Some(self.config.issuer.as_str())
        {
            return Err(AuthnError::Issuer);
        }
        // SECURITY: a token the server cannot see is meant for it is refused; accepting tokens
        // minted for another resource is the confused-deputy hole RFC 8707 closes.
        let audience_ok = match answer.get("aud") {
            Some(Value::String(aud)) => *aud == self.config.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(&self.config.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthnError::Audience);
        }
        let now = unix_now();
        let leeway = self.config.leeway.as_secs();
        let exp = answer.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|exp| exp.saturating_add(leeway) < now) {
            return Err(AuthnError::Expired);
        }
        if answer
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(AuthnError::NotYetValid);
        }
        // A client-credentials token speaks for the client itself: RFC 7662 answers often carry
        // only `client_id` then, which is the subject (as `sub` is in RFC 9068 JWTs).
        let mut answer = answer.clone();
        if answer.get("sub").is_none()
            && let Some(client) = answer.get("client_id").cloned()
        {
            answer["sub"] = client;
        }
        let principal =
            VerifiedPrincipal::from_claims(&self.config.issuer, &answer, &self.config.mapping)
                .ok_or(AuthnError::MissingClaim { claim: "sub" })?;
        Ok((principal, exp))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A response body up to `most` bytes; `None` past it or on a read error.
pub async fn read_bounded(mut response: reqwest::Response, most: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > most {
            tracing::warn!(
                most,
                "an authorization server's answer is too large; treated as a malfunction"
            );
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `application/x-www-form-urlencoded` for one value.
/// `application/x-www-form-urlencoded` pairs.
pub(crate) fn form_body(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
