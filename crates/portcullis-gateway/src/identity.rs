//! Identity propagation: upstreams never see the caller's token; each request they get carries
//! a short-lived statement, signed by the gateway, of who the caller is, addressed to that
//! upstream alone, so that a backend can check again in its own data layer.
//!
//! The assertion is a compact JWT (ES256, header `typ: JWT`, so it cannot pass for an access
//! token) in the request's `params._meta["io.portcullis/identity"]`, with `iss` (the gateway's
//! public URL), `aud` (the upstream's name), `sub`, `tenant`, `roles`, `scopes`, `client_id`,
//! `iat`, `exp`, `jti`, and the request it goes with: `method`, and `target` (the tool or
//! prompt name as the upstream knows it, or the resource URI) where the method names one, so
//! that an assertion taken from one request does not vouch for another. Backends verify it
//! with the public key set the gateway writes to `[identity] jwks_file`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use portcullis_authn::signing::{SigningKey, random_token};
use portcullis_policy::Principal;
use serde_json::json;

/// Resolved `[identity]`.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The gateway's assertion signing key.
    pub key: Arc<SigningKey>,
    /// `iss` of the assertions.
    pub issuer: String,
    /// How long an assertion is valid.
    pub lifetime: Duration,
    /// Files to write when the gateway starts (see [`crate::config::Config::write_files`]): a
    /// key made now for a key file that does not exist yet, and the public key set.
    pub(crate) files: Vec<crate::config::PendingFile>,
}

/// Signs assertions.
#[derive(Debug, Clone)]
pub(crate) struct Asserter {
    config: IdentityConfig,
}

impl Asserter {
    pub(crate) fn new(config: IdentityConfig) -> Self {
        Self { config }
    }

    /// The assertion that `principal` is calling, for upstream `audience`, in the request
    /// `(method, target)`; `None` if signing fails (logged; the upstream then refuses the
    /// request, which fails closed).
    pub(crate) fn assert(
        &self,
        principal: &Principal,
        audience: &str,
        (method, target): (&str, Option<&str>),
    ) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut claims = json!({
            "iss": self.config.issuer,
            "aud": audience,
            "sub": principal.subject,
            "roles": principal.roles,
            "scopes": principal.scopes,
            "iat": now,
            "exp": now + self.config.lifetime.as_secs(),
            "jti": random_token(),
            "method": method,
        });
        if let Some(target) = target {
            claims["target"] = json!(target);
        }
        if let Some(tenant) = &principal.tenant {
            claims["tenant"] = json!(tenant);
        }
        if let Some(client) = &principal.client_id {
            claims["client_id"] = json!(client);
        }
        match self.config.key.sign("JWT", &claims) {
            Ok(assertion) => Some(assertion),
            Err(error) => {
                tracing::error!(%error, "cannot sign an identity assertion");
                None
            }
        }
    }
}
