//! The gateway's signed identity assertion: who the caller is, which tenant it acts in, its roles.
//!
//! The gateway signs a short-lived ES256 JWT per request and puts it in the request's
//! `params._meta["io.portcullis/identity"]`. This backend trusts nothing else about the caller: it
//! never sees the caller's own token, and a request whose assertion does not verify is refused
//! before any data is touched.

mod error;
mod keys;

use std::{collections::BTreeSet, time::Duration};

use jsonwebtoken::Validation;
use rmcp::{
    ErrorData as McpError,
    model::{ErrorCode, JsonObject},
};
use serde::Deserialize;

pub use error::IdentityError;
use keys::Keys;
pub use keys::KeysError;

/// The `_meta` key the assertion travels under.
pub const META_KEY: &str = "io.portcullis/identity";
/// The JSON-RPC error code of a refused request. Outside the range JSON-RPC reserves.
pub const REFUSED_CODE: i32 = -31010;
/// The message of a refused request: one fixed text whatever the reason, so a caller probing the
/// backend learns nothing about keys, clocks or claims.
pub const REFUSED_MESSAGE: &str = "identity assertion missing or invalid";

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(5);
/// The longest an assertion may still be valid for. The gateway mints one per request with about a
/// minute to live; anything longer-lived is not one of its assertions, or is a leak being replayed.
const MAX_REMAINING_LIFETIME: Duration = Duration::from_secs(300);
/// The only `typ` accepted, so a token meant for something else (an `at+jwt` access token signed
/// by a key this backend happens to trust) is not taken for an assertion (RFC 8725 §3.11).
const ASSERTION_TYPE: &str = "JWT";

/// A caller whose assertion verified: the evidence every data-layer operation requires.
///
/// Only [`IdentityVerifier::verify`] makes one, so code holding a `Caller` has checked a signature.
#[derive(Debug, Clone)]
pub struct Caller {
    subject: String,
    tenant: String,
    roles: BTreeSet<String>,
    scopes: BTreeSet<String>,
    client_id: Option<String>,
}

impl Caller {
    /// The `sub` claim.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The tenant every query of this caller is constrained to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Whether the assertion grants `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// The scopes the gateway verified; informational here, as the gateway enforces them.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
    }

    /// The OAuth client the caller used, if the gateway said.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// Checks assertions against the gateway's public keys, issuer and this backend's audience.
pub struct IdentityVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    /// The `jti` of each assertion accepted and not expired yet, with its `exp`.
    seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// Assertions remembered at once for replay checks; past it, expired ones are let go, and if
/// none is, new assertions are refused until some expire (fail closed).
const MAX_REMEMBERED: usize = 100_000;

impl IdentityVerifier {
    /// A verifier trusting the ES256 keys of `jwks` (a JWK Set document) for assertions from
    /// `issuer` addressed to `audience`.
    pub fn new(jwks: &str, issuer: &str, audience: &str) -> Result<Self, KeysError> {
        Ok(Self {
            keys: Keys::from_jwks(jwks)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The caller a request's `_meta` asserts, if its assertion verifies and was made for
    /// this request: `(method, target)`, the target being the tool name or resource URI the
    /// request names.
    pub fn verify_meta(
        &self,
        meta: &JsonObject,
        request: (&str, Option<&str>),
    ) -> Result<Caller, IdentityError> {
        let assertion = meta.get(META_KEY).ok_or(IdentityError::Missing)?;
        let assertion = assertion.as_str().ok_or(IdentityError::Malformed)?;
        self.verify(assertion, request)
    }

    /// The caller `assertion` (a compact JWT) asserts for the request `(method, target)`, if it
    /// verifies.
    pub fn verify(
        &self,
        assertion: &str,
        (method, target): (&str, Option<&str>),
    ) -> Result<Caller, IdentityError> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|error| IdentityError::from_jwt(error.kind()))?;
        if header.typ.as_deref() != Some(ASSERTION_TYPE) {
            return Err(IdentityError::Type);
        }
        let kid = header.kid.ok_or(IdentityError::UnknownKey)?;
        let key = self.keys.find(&kid).ok_or(IdentityError::UnknownKey)?;
        // SECURITY: the algorithm comes from the trusted key, never from the token, so a token
        // cannot downgrade verification (alg confusion, `none`).
        if header.alg != key.algorithm {
            return Err(IdentityError::Algorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(assertion, &key.decoding, &validation)
            .map_err(|error| IdentityError::from_jwt(error.kind()))?;
        let claims = data.claims;
        if claims.exp > now().saturating_add(MAX_REMAINING_LIFETIME.as_secs()) {
            return Err(IdentityError::Lifetime);
        }
        // SECURITY: the gateway says which request an assertion goes with; one taken from
        // another request (another tool, another resource, a list) vouches for nothing here.
        // (Assertions of gateways that name no request are taken as before.)
        let bound = claims.method.is_some() || claims.target.is_some();
        if bound && (claims.method.as_deref() != Some(method) || claims.target.as_deref() != target)
        {
            return Err(IdentityError::OtherRequest);
        }
        // SECURITY: each assertion is good for one request: the gateway mints one per request,
        // so one seen before is a replay.
        {
            let jti = claims
                .jti
                .as_ref()
                .filter(|jti| !jti.is_empty())
                .ok_or(IdentityError::MissingClaim { claim: "jti" })?;
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.len() >= MAX_REMEMBERED {
                let now = now();
                seen.retain(|_, exp| exp.saturating_add(LEEWAY.as_secs()) >= now);
                if seen.len() >= MAX_REMEMBERED {
                    return Err(IdentityError::TooMany);
                }
            }
            if seen.insert(jti.clone(), claims.exp).is_some() {
                return Err(IdentityError::Replayed);
            }
        }
        let subject = claims
            .sub
            .filter(|sub| !sub.is_empty())
            .ok_or(IdentityError::MissingClaim { claim: "sub" })?;
        let tenant = claims
            .tenant
            .filter(|tenant| !tenant.is_empty())
            .ok_or(IdentityError::MissingClaim { claim: "tenant" })?;
        Ok(Caller {
            subject,
            tenant,
            roles: claims.roles.into_iter().collect(),
            scopes: claims.scopes.into_iter().collect(),
            client_id: claims.client_id,
        })
    }
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The answer to a request whose assertion did not verify. The reason goes to the log only.
pub fn refusal(error: &IdentityError) -> McpError {
    tracing::warn!(reason = %error, "request refused");
    McpError::new(ErrorCode(REFUSED_CODE), REFUSED_MESSAGE, None)
}

/// The claims this backend reads; `iss`, `aud` and `nbf` are checked by the JWT library.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    sub: Option<String>,
    tenant: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    client_id: Option<String>,
    /// The assertion's id: each is accepted once.
    jti: Option<String>,
    /// The request the assertion goes with (gateways that say so).
    method: Option<String>,
    target: Option<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
