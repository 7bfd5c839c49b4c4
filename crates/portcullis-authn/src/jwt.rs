//! JWT access tokens (RFC 9068) verified against the issuer's JWKS.
//!
//! The algorithm comes from the key, never from the token: the `kid` picks a key from the set,
//! the key says how it verifies (RS256, PS256, ES256, EdDSA), and a token whose header names
//! anything else is rejected. `none` and HMAC are never accepted: there is no shared secret.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::{BearerToken, ClaimMapping, VerifiedPrincipal};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// Not a JWT, or its parts do not decode.
    #[error("token is malformed")]
    Malformed,
    /// No key of the issuer has the token's `kid`, even after refetching the set.
    #[error("token is signed with an unknown key")]
    UnknownKey,
    /// The header names an algorithm the key does not use.
    #[error("token algorithm does not match its key")]
    Algorithm,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token is from another issuer")]
    Issuer,
    /// `aud` does not contain this resource.
    #[error("token is for another resource")]
    Audience,
    /// A required claim is missing.
    #[error("token lacks the `{claim}` claim")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },
    /// The header lists `crit` extensions; the gateway implements none (RFC 7515 §4.1.11).
    #[error("token names critical header parameters the gateway does not implement")]
    Critical,
    /// The header's `typ` is not one this issuer's access tokens carry, or the token is an
    /// OpenID Connect ID token.
    #[error("token is not an access token of this issuer")]
    TokenType,
    /// Introspection says the token is not active (revoked, expired, unknown).
    #[error("token is not active")]
    Inactive,
    /// The issuer's keys cannot be fetched and none are cached: a malfunction, not a denial.
    #[error("issuer keys are unavailable")]
    Unavailable,
}

impl AuthnError {
    /// Whether this is a malfunction (answer 503) rather than a bad token (answer 401).
    pub fn is_malfunction(&self) -> bool {
        matches!(self, Self::Unavailable)
    }
}

/// How a JWT issuer is trusted.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// The resource identifier `aud` must contain.
    pub audience: String,
    /// Where the issuer publishes its keys; `None` discovers it from the issuer's metadata.
    pub jwks_uri: Option<Url>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Shortest time between two key refetches, so unknown-`kid` tokens cannot hammer the issuer.
    pub refetch_interval: Duration,
    /// Where the claims keep subject, tenant, roles, scopes and client id.
    pub mapping: ClaimMapping,
    /// The header `typ` values this issuer's access tokens carry, lower case, without an
    /// `application/` prefix: `at+jwt` (RFC 9068), and `jwt` for issuers that use it.
    pub token_types: Vec<String>,
    /// Whether a discovered `jwks_uri` may be plain http off loopback
    /// (`[danger] insecure_issuers`).
    pub insecure_http: bool,
}

/// Verifies JWT access tokens of one issuer.
pub struct JwtVerifier {
    config: JwtConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<JwkSet>>,
    discovered: RwLock<Option<Url>>,
    // Held while fetching: concurrent misses wait for one fetch instead of each making one.
    fetch: Mutex<Option<Instant>>,
    // Tokens already verified, by SHA-256 (never the token), until the earlier of their `exp`
    // and `VERIFIED_TTL`: the same bytes verify the same way, and an ES256 check per request
    // was a large part of a call's cost. Failures are never kept.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Instant, VerifiedPrincipal)>>,
}

/// Longest reuse of one verification: bounds how long a token signed by a key the issuer has
/// since withdrawn keeps working.
const VERIFIED_TTL: Duration = Duration::from_secs(30);
// Tokens remembered at once.
const MAX_VERIFIED: usize = 10_000;

impl JwtVerifier {
    /// A verifier; keys are fetched on first use.
    pub fn new(config: JwtConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            discovered: RwLock::new(None),
            fetch: Mutex::new(None),
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The principal of `token` if this verifier verified it recently (and its reuse has not
    /// run out): what [`JwtVerifier::verify`] would answer without verifying again.
    pub fn remembered_principal(&self, token: &BearerToken) -> Option<VerifiedPrincipal> {
        let digest = crate::introspect::digest(token.expose());
        self.remembered()
            .get(&digest)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, principal)| principal.clone())
    }

    /// Verify `token` and map its claims to a principal.
    pub async fn verify(&self, token: &BearerToken) -> Result<VerifiedPrincipal, AuthnError> {
        let digest = crate::introspect::digest(token.expose());
        if let Some((until, principal)) = self.remembered().get(&digest)
            && Instant::now() < *until
        {
            return Ok(principal.clone());
        }
        let (principal, exp) = self.verify_fully(token).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let left = Duration::from_secs(exp.saturating_sub(now)).min(VERIFIED_TTL);
        let mut remembered = self.remembered();
        // SECURITY: a full memory lets expired entries go, then stops remembering new tokens
        // (they are verified each time) rather than forget anyone else's. Each entry is bounded
        // by `MAX_TOKEN_BYTES`, so the memory is bounded in bytes as well.
        if remembered.len() >= MAX_VERIFIED {
            let now = Instant::now();
            remembered.retain(|_, (until, _)| now < *until);
        }
        if remembered.len() < MAX_VERIFIED {
            remembered.insert(digest, (Instant::now() + left, principal.clone()));
        }
        Ok(principal)
    }

    fn remembered(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], (Instant, VerifiedPrincipal)>>
    {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every check, and the token's `exp`.
    async fn verify_fully(
        &self,
        token: &BearerToken,
    ) -> Result<(VerifiedPrincipal, u64), AuthnError> {
        let header =
            jsonwebtoken::decode_header(token.expose()).map_err(|_| AuthnError::Malformed)?;
        // jsonwebtoken's header type keeps neither `crit` nor unknown members: read them here.
        check_header(token.expose(), &self.config.token_types)?;
        let kid = header.kid.ok_or(AuthnError::UnknownKey)?;
        let jwk = self.key(&kid).await?;
        let algorithm = algorithm_of(&jwk).ok_or(AuthnError::UnknownKey)?;
        if header.alg != algorithm {
            return Err(AuthnError::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthnError::UnknownKey)?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token.expose(), &key, &validation)
            .map_err(|error| classify(error.kind()))?;
        if is_id_token(&data.claims) {
            return Err(AuthnError::TokenType);
        }
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let principal =
            VerifiedPrincipal::from_claims(&self.config.issuer, &data.claims, &self.config.mapping)
                .ok_or(AuthnError::MissingClaim { claim: "sub" })?;
        Ok((principal, exp))
    }

    async fn key(&self, kid: &str) -> Result<Jwk, AuthnError> {
        if let Some(jwk) = self.keys.read().await.find(kid) {
            return Ok(jwk.clone());
        }
        let mut last_fetch = self.fetch.lock().await;
        // Another caller may have fetched while this one waited for the lock.
        if let Some(jwk) = self.keys.read().await.find(kid) {
            return Ok(jwk.clone());
        }
        let cached = !self.keys.read().await.keys.is_empty();
        if cached && last_fetch.is_some_and(|at| at.elapsed() < self.config.refetch_interval) {
            return Err(AuthnError::UnknownKey);
        }
        *last_fetch = Some(Instant::now());
        match self.fetch_keys().await {
            Some(set) => *self.keys.write().await = Arc::new(set),
            // The last good set stays; with none at all, this is a malfunction.
            None if cached => return Err(AuthnError::UnknownKey),
            None => return Err(AuthnError::Unavailable),
        }
        self.keys
            .read()
            .await
            .find(kid)
            .cloned()
            .ok_or(AuthnError::UnknownKey)
    }

    async fn fetch_keys(&self) -> Option<JwkSet> {
        let uri = self.jwks_uri().await?;
        let response = self
            .http
            .get(uri.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let set = match response {
            Ok(response) if response.status().is_success() => response.json::<JwkSet>().await.ok(),
            Ok(response) => {
                tracing::warn!(status = %response.status(), %uri, "JWKS fetch refused");
                None
            }
            Err(error) => {
                tracing::warn!(%error, %uri, "JWKS unreachable");
                None
            }
        };
        set.filter(|set| !set.keys.is_empty())
    }

    /// The configured key set URL, or the one the issuer's metadata names (found once).
    async fn jwks_uri(&self) -> Option<Url> {
        if let Some(uri) = &self.config.jwks_uri {
            return Some(uri.clone());
        }
        if let Some(uri) = self.discovered.read().await.clone() {
            return Some(uri);
        }
        let uri =
            crate::discovery::jwks_uri(&self.http, &self.config.issuer, self.config.insecure_http)
                .await;
        if uri.is_none() {
            tracing::warn!(issuer = %self.config.issuer, "issuer metadata names no usable jwks_uri");
        }
        self.discovered.write().await.clone_from(&uri);
        uri
    }
}

/// Refuses a header with `crit` (no extension is implemented, and an empty list is invalid
/// too) or with a `typ` this issuer's access tokens do not carry.
fn check_header(token: &str, accepted: &[String]) -> Result<(), AuthnError> {
    let encoded = token.split('.').next().ok_or(AuthnError::Malformed)?;
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, encoded)
        .map_err(|_| AuthnError::Malformed)?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthnError::Malformed)?;
    if header.contains_key("crit") {
        return Err(AuthnError::Critical);
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(typ)) => Some(typ.to_ascii_lowercase()),
        Some(_) => return Err(AuthnError::Malformed),
    };
    // RFC 7515 §4.1.9: a media type, case-insensitive, `application/` may be left out.
    let typ = typ.map(|typ| typ.strip_prefix("application/").unwrap_or(&typ).to_owned());
    match typ {
        Some(typ) if accepted.contains(&typ) => Ok(()),
        _ => Err(AuthnError::TokenType),
    }
}

/// Whether `claims` are an OpenID Connect ID token's: it proves a sign-in to a client, and is
/// never an access token, whatever its `typ` and audience. (`nonce` is no sign: Keycloak puts
/// it in access tokens too.)
fn is_id_token(claims: &Value) -> bool {
    ["at_hash", "c_hash"]
        .iter()
        .any(|claim| claims.get(claim).is_some())
        // Keycloak marks its ID tokens in a claim of their own.
        || claims.get("typ").and_then(Value::as_str) == Some("ID")
}

/// The one algorithm a key verifies with. An RSA key that does not say is RS256, the RFC 9068
/// default; HMAC keys are never used.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm;
    match (&jwk.algorithm, declared) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Some(Algorithm::RS256),
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Some(Algorithm::PS256),
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

fn classify(kind: &ErrorKind) -> AuthnError {
    match kind {
        ErrorKind::ExpiredSignature => AuthnError::Expired,
        ErrorKind::ImmatureSignature => AuthnError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthnError::Issuer,
        ErrorKind::InvalidAudience => AuthnError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthnError::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthnError::MissingClaim {
            claim: match claim.as_str() {
                "exp" => "exp",
                "iss" => "iss",
                "aud" => "aud",
                _ => "sub",
            },
        },
        ErrorKind::InvalidSignature => AuthnError::Signature,
        _ => AuthnError::Malformed,
    }
}
