//! Bearer tokens to verified principals: JWTs against their issuer's keys, anything else
//! through the issuer's RFC 7662 introspection endpoint.

use std::time::Duration;

use portcullis_authn::{
    BearerToken, Challenge, IntrospectionConfig, Introspector, JwtConfig, JwtVerifier,
    ProtectedResourceMetadata, VerifiedPrincipal,
};

use crate::config::Auth;

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unauthenticated {
    /// No token, or a token refused: 401 with this challenge.
    Challenge(Challenge),
    /// The issuer's keys or introspection endpoint cannot be reached: 503.
    Unavailable,
}

/// Verifies the tokens of every trusted issuer.
pub(crate) struct Authenticator {
    verifiers: Vec<(String, JwtVerifier)>,
    // Opaque tokens carry no issuer; the first issuer that introspects checks them.
    introspector: Option<Introspector>,
    pub(crate) challenge_scopes: portcullis_authn::Scopes,
    pub(crate) metadata_url: String,
    pub(crate) metadata: ProtectedResourceMetadata,
    /// How often live callers' opaque tokens are introspected again.
    pub(crate) reintrospect_every: Option<Duration>,
    /// Digests of tokens that passed, with when they did (see `recognizes`).
    known: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
}

/// How long a token that passed is let past an address's spent allowance of failures.
const KNOWN_FOR: Duration = Duration::from_secs(3600);
/// Token digests kept for that (about 5 MB).
const MAX_KNOWN: usize = 100_000;

/// The HTTP client for issuers (keys, introspection): pooled, bounded connect time, and no
/// redirect to plain http unless `insecure` (`[danger] insecure_issuers`).
pub(crate) fn issuer_client(insecure: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(portcullis_authn::redirect_policy(insecure))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        // Building fails only when the TLS backend cannot initialise; the default client then
        // reports that failure on each request instead of at start.
        .unwrap_or_default()
}

impl Authenticator {
    pub(crate) fn new(auth: &Auth) -> Self {
        let http = issuer_client(auth.insecure_issuers);
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
                    token_types: issuer.token_types.clone(),
                    insecure_http: auth.insecure_issuers,
                };
                (
                    issuer.issuer.clone(),
                    JwtVerifier::new(config, http.clone()),
                )
            })
            .collect();
        let introspection = auth
            .issuers
            .iter()
            .find_map(|issuer| Some((issuer, issuer.introspection.as_ref()?)));
        let introspector = introspection.map(|(issuer, introspection)| {
            let config = IntrospectionConfig {
                issuer: issuer.issuer.clone(),
                endpoint: introspection.endpoint.clone(),
                client: introspection.client.clone(),
                audience: auth.resource.identifier().to_owned(),
                cache_ttl: introspection.cache_ttl,
                leeway: auth.leeway,
                mapping: issuer.mapping.clone(),
            };
            Introspector::new(config, http.clone())
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
            introspector,
            challenge_scopes: auth.scopes.clone(),
            metadata_url: auth.resource.metadata_url(),
            metadata,
            reintrospect_every: introspection
                .map(|(_, introspection)| introspection.cache_ttl.max(Duration::from_millis(100))),
            known: std::sync::Mutex::default(),
        }
    }

    /// The principal of the `Authorization` header values, or why there is none; with the
    /// token, and whether it is opaque (only an opaque token's answer can change while it
    /// lives).
    pub(crate) async fn authenticate<'a>(
        &self,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(VerifiedPrincipal, BearerToken, bool), Unauthenticated> {
        let token = match BearerToken::from_authorization(values) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(Unauthenticated::Challenge(Challenge::Missing {
                    scopes: self.challenge_scopes.clone(),
                }));
            }
            Err(error) => {
                tracing::info!(reason = %error, "authorization header refused");
                return Err(Unauthenticated::Challenge(Challenge::InvalidToken));
            }
        };
        let (principal, opaque) = self.verify_token(&token).await?;
        self.passed(&token);
        Ok((principal, token, opaque))
    }

    fn passed(&self, token: &BearerToken) {
        let now = std::time::Instant::now();
        let digest = token.digest();
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(since) = known.get_mut(&digest) {
            *since = now;
            return;
        }
        if known.len() >= MAX_KNOWN {
            known.retain(|_, since| now.duration_since(*since) < KNOWN_FOR);
        }
        if known.len() < MAX_KNOWN {
            known.insert(digest, now);
        }
    }

    /// Whether the `Authorization` header values carry a token that passed within the last
    /// hour: such a token may be verified even from an address whose failed attempts hold new
    /// tokens back, so that others behind the same address (a NAT, a proxy) are not locked out
    /// by one client's made-up tokens. It is verified in full as always: this only lets it try.
    pub(crate) fn recognizes<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        BearerToken::from_authorization(values)
            .ok()
            .flatten()
            .is_some_and(|token| self.knows(&token))
    }

    /// Whether `token` passed within the last hour.
    fn knows(&self, token: &BearerToken) -> bool {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&token.digest())
            .is_some_and(|since| since.elapsed() < KNOWN_FOR)
    }

    /// Verify `token`.
    pub(crate) async fn verify(
        &self,
        token: &BearerToken,
    ) -> Result<VerifiedPrincipal, Unauthenticated> {
        self.verify_token(token)
            .await
            .map(|(principal, _)| principal)
    }

    /// Verify `token`; and whether it is opaque (introspected).
    async fn verify_token(
        &self,
        token: &BearerToken,
    ) -> Result<(VerifiedPrincipal, bool), Unauthenticated> {
        // A JWT verified moments ago answers as it did, without even decoding it again.
        if let Some(principal) = self
            .verifiers
            .iter()
            .find_map(|(_, verifier)| verifier.remembered_principal(token))
        {
            return Ok((principal, false));
        }
        // The unverified `iss` only picks which issuer's keys to try; that issuer's verifier
        // then checks `iss` again along with the signature.
        let claimed = unverified_issuer(token.expose());
        let jwt = self
            .verifiers
            .iter()
            .find(|(issuer, _)| Some(issuer.as_str()) == claimed.as_deref())
            .map(|(_, verifier)| verifier);
        let (outcome, opaque) = match (jwt, &self.introspector) {
            (Some(verifier), _) => (verifier.verify(token).await, false),
            // Not a JWT of a known issuer: only introspection can vouch for it.
            (None, Some(introspector)) if claimed.is_none() => {
                let answer = if self.knows(token) {
                    introspector.verify_known(token).await
                } else {
                    introspector.verify(token).await
                };
                (answer, true)
            }
            (None, _) => return Err(Unauthenticated::Challenge(Challenge::InvalidToken)),
        };
        outcome
            .map(|principal| (principal, opaque))
            .map_err(|error| {
                if error.is_malfunction() {
                    Unauthenticated::Unavailable
                } else {
                    tracing::info!(reason = %error, "token refused");
                    Unauthenticated::Challenge(Challenge::InvalidToken)
                }
            })
    }

    /// Introspect `token` again, bypassing nothing the introspector caches: `Ok(None)` when it
    /// is no longer active, `Err` when the endpoint cannot say.
    pub(crate) async fn reintrospect(
        &self,
        token: &BearerToken,
    ) -> Result<Option<VerifiedPrincipal>, ()> {
        let Some(introspector) = &self.introspector else {
            return Err(());
        };
        match introspector.verify_known(token).await {
            Ok(principal) => Ok(Some(principal)),
            // Unreachable introspection proves nothing: keep the last answer.
            Err(error) if error.is_malfunction() => Err(()),
            Err(_) => Ok(None),
        }
    }
}

/// The `iss` claim of a JWT, read without verifying anything: only to choose a verifier.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
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
