//! Asking an authorization server's token endpoint for a token: on a caller's behalf (RFC 8693
//! token exchange, the caller's token as `subject_token`), as the gateway itself (client
//! credentials), for a person who signed in (authorization code with PKCE) or again for them
//! (refresh). The protocol only; what is kept and for whom is the gateway's.

use std::{fmt, time::Duration};

use serde::Deserialize;
use url::Url;

use crate::{BearerToken, ClientAuth, introspect};

const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// A token endpoint's answer is a few kilobytes; anything much larger is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest lifetime believed: a server's `expires_in` of years keeps no token that long.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A client of one token endpoint.
#[derive(Debug, Clone)]
pub struct TokenClient {
    /// The token endpoint.
    pub endpoint: Url,
    /// The gateway's credentials there.
    pub client: ClientAuth,
}

/// What to ask a token for.
#[derive(Debug, Clone, Default)]
pub struct TokenTarget {
    /// `audience` (RFC 8693 §2.1): the logical name of the service.
    pub audience: Option<String>,
    /// `resource` (RFC 8707): the service's URI.
    pub resource: Option<String>,
    /// `scope`, space-separated on the wire.
    pub scopes: Vec<String>,
}

/// A token the authorization server issued. Its `Debug` never shows a token.
pub struct IssuedToken {
    token: String,
    refresh: Option<String>,
    /// How long it is valid for, as the server said (`expires_in`).
    pub expires_in: Option<Duration>,
}

impl IssuedToken {
    /// A token as issued, valid for `expires_in` if known.
    pub fn new(token: String, expires_in: Option<Duration>) -> Self {
        Self {
            token,
            refresh: None,
            expires_in,
        }
    }

    /// The token itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// The refresh token issued with it, if any.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh.as_deref()
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("refresh", &self.refresh.as_ref().map(|_| "<redacted>"))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why no token was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The server refused this request (RFC 6749 §5.2 `error`, e.g. `invalid_grant`,
    /// `invalid_target`, `invalid_scope`, `unauthorized_client`): for a caller, a denial.
    #[error("the authorization server refused: {error}")]
    Refused {
        /// The OAuth error code (only the characters RFC 6749 allows in one are kept).
        error: String,
    },
    /// The server could not be asked, or did not answer as one does (unreachable, 5xx, the
    /// gateway's own client refused, an answer that is no token).
    #[error("no token: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    token_type: Option<String>,
    issued_token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
}

impl TokenClient {
    /// A token for `target` on behalf of the holder of `subject` (RFC 8693 §2.1).
    pub async fn exchange(
        &self,
        http: &reqwest::Client,
        subject: &BearerToken,
        target: &TokenTarget,
    ) -> Result<IssuedToken, TokenError> {
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE.to_owned()),
            ("subject_token", subject.expose().to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ];
        target.add_to(&mut form);
        self.ask(http, form).await
    }

    /// A token for `target` for the gateway itself (RFC 6749 §4.4).
    pub async fn client_credentials(
        &self,
        http: &reqwest::Client,
        target: &TokenTarget,
    ) -> Result<IssuedToken, TokenError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        target.add_to(&mut form);
        self.ask(http, form).await
    }

    /// The tokens for an authorization `code` this client's sign-in at `redirect_uri` got,
    /// proven with the PKCE `verifier`, for `resource` (RFC 6749 §4.1.3, RFC 8707).
    pub async fn authorization_code(
        &self,
        http: &reqwest::Client,
        (code, verifier, redirect_uri): (&str, &str, &str),
        resource: &str,
    ) -> Result<IssuedToken, TokenError> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("resource", resource.to_owned()),
        ];
        self.ask(http, form).await
    }

    /// Fresh tokens for a refresh token (RFC 6749 §6), for the same `resource`. A server that
    /// rotates refresh tokens answers with a new one; one that does not, with none (the old one
    /// stays good).
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
        resource: &str,
    ) -> Result<IssuedToken, TokenError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
            ("resource", resource.to_owned()),
        ];
        self.ask(http, form).await
    }

    async fn ask(
        &self,
        http: &reqwest::Client,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<IssuedToken, TokenError> {
        let mut request = http.post(self.endpoint.clone()).timeout(TIMEOUT);
        match &self.client {
            // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined.
            ClientAuth::Basic { id, secret } => {
                request = request.basic_auth(
                    introspect::form_encode(id),
                    Some(introspect::form_encode(secret.expose())),
                );
            }
            ClientAuth::Post { id, secret } => {
                form.push(("client_id", id.clone()));
                form.push(("client_secret", secret.expose().to_owned()));
            }
            ClientAuth::Public { id } => form.push(("client_id", id.clone())),
        }
        let body = introspect::form_body(&form);
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                TokenError::Unavailable(format!(
                    "the token endpoint cannot be reached: {}",
                    portcullis_core::error_chain(&error)
                ))
            })?;
        let status = response.status();
        let body = introspect::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .ok_or_else(|| {
                TokenError::Unavailable("the answer is too large or broke off".into())
            })?;
        if status.is_success() {
            return issued(&body);
        }
        let error = serde_json::from_slice::<ErrorAnswer>(&body)
            .ok()
            .and_then(|answer| answer.error)
            .map(|code| error_code(&code));
        match (status.as_u16(), error) {
            // Whose fault it is decides the answer: the subject's token or what it may reach is
            // the caller's refusal; the grant or client not allowed is the gateway's setup.
            (400 | 403, Some(code)) if REFUSALS.contains(&code.as_str()) => {
                Err(TokenError::Refused { error: code })
            }
            (status, Some(code)) => Err(TokenError::Unavailable(format!(
                "the token endpoint answered HTTP {status}, `{code}`"
            ))),
            (status, None) => Err(TokenError::Unavailable(format!(
                "the token endpoint answered HTTP {status}"
            ))),
        }
    }
}

/// Error codes that refuse this subject (RFC 6749 §5.2, RFC 8693 §2.2.2), not the gateway.
const REFUSALS: &[&str] = &[
    "invalid_grant",
    "invalid_target",
    "invalid_scope",
    "access_denied",
];

impl TokenTarget {
    fn add_to(&self, form: &mut Vec<(&'static str, String)>) {
        if let Some(audience) = &self.audience {
            form.push(("audience", audience.clone()));
        }
        if let Some(resource) = &self.resource {
            form.push(("resource", resource.clone()));
        }
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
    }
}

fn issued(body: &[u8]) -> Result<IssuedToken, TokenError> {
    let malformed = |what: &str| TokenError::Unavailable(format!("the answer {what}"));
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| malformed("is not a token response"))?;
    let token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| malformed("has no access_token"))?;
    // SECURITY: the token goes into a header as it is; one that cannot (a line break) could
    // smuggle another header.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("holds a token a header cannot carry"));
    }
    // RFC 8693 §2.2.1: `N_A` says the token is no access token; only a bearer token is sent.
    if !answer
        .token_type
        .is_some_and(|kind| kind.eq_ignore_ascii_case("bearer"))
    {
        return Err(malformed("is not a bearer token"));
    }
    if let Some(kind) = &answer.issued_token_type
        && kind != ACCESS_TOKEN_TYPE
        && kind != JWT_TOKEN_TYPE
    {
        return Err(malformed("is not an access token"));
    }
    // Seconds, as a number; some servers write `3600.0` or `"3600"`.
    let expires_in = match answer.expires_in {
        None => None,
        Some(value) => {
            let seconds = match &value {
                serde_json::Value::Number(number) => number.as_f64(),
                serde_json::Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .ok_or_else(|| malformed("has an expires_in that is not a number of seconds"))?;
            // Clamped: a lifetime of a day is more than any token should be kept for.
            Some(Duration::from_secs_f64(
                seconds.min(MAX_LIFETIME.as_secs_f64()),
            ))
        }
    };
    let refresh = answer
        .refresh_token
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    Ok(IssuedToken {
        token,
        refresh,
        expires_in,
    })
}

/// An OAuth error code as RFC 6749 §5.2 allows it (printable ASCII but `"` and `\`), at most
/// 64 characters: what a server writes there reaches logs and records.
fn error_code(code: &str) -> String {
    code.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_must_be_a_bearer_access_token_a_header_can_carry() {
        let ok = issued(br#"{"access_token":"abc.def","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":300}"#).unwrap();
        assert_eq!(ok.expose(), "abc.def");
        assert_eq!(ok.expires_in, Some(Duration::from_secs(300)));
        assert!(!format!("{ok:?}").contains("abc"));
        let lifetime = |expires_in: &str| {
            issued(
                format!(
                    r#"{{"access_token":"a","token_type":"bearer","expires_in":{expires_in}}}"#
                )
                .as_bytes(),
            )
            .unwrap()
            .expires_in
        };
        assert_eq!(lifetime("3600.0"), Some(Duration::from_secs(3600)));
        assert_eq!(lifetime("\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(lifetime("18446744073709551615"), Some(MAX_LIFETIME));
        for refused in [
            br#"{"access_token":"abc","token_type":"N_A"}"#.as_slice(),
            br#"{"access_token":"abc"}"#,
            br#"{"access_token":"","token_type":"bearer"}"#,
            br#"{"access_token":"a\r\nX-Evil: 1","token_type":"bearer"}"#,
            br#"{"access_token":"abc","token_type":"bearer","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token"}"#,
            br#"{"access_token":"abc","token_type":"bearer","expires_in":"soon"}"#,
            br#"{"access_token":"abc","token_type":"bearer","expires_in":-1}"#,
            b"not json",
        ] {
            assert!(
                matches!(issued(refused), Err(TokenError::Unavailable(_))),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn an_error_code_keeps_only_what_rfc_6749_allows() {
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("bad\"\\\n\u{7f}é"), "bad");
        assert_eq!(error_code(&"x".repeat(100)).len(), 64);
    }
}
