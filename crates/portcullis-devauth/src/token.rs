//! The token endpoint: authorization code (with PKCE), refresh token (rotated), and client
//! credentials for the service accounts.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::{
    ACCESS_TOKEN_SECONDS, DevAuth, Grant, REFRESH_TOKEN_SECONDS, Refresh,
    clients::AuthMethod,
    error::{OAuthError, no_store},
    keys::{random_token, s256},
    now,
    params::Params,
};

// Bound on live refresh tokens; expired ones are dropped first.
const MAX_REFRESH_TOKENS: usize = 100_000;

pub(crate) async fn exchange(
    State(auth): State<DevAuth>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match answer(&auth, &headers, &body).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(error) => {
            tracing::info!(error = error.code, reason = %error.description, "token request refused");
            error.into_response()
        }
    }
}

async fn answer(auth: &DevAuth, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let params = Params::parse(body)?;
    let credentials = Credentials::from_request(headers, &params)?;
    match params.require("grant_type")? {
        "authorization_code" => authorization_code(auth, &credentials, &params).await,
        "refresh_token" => refresh_token(auth, &credentials, &params).await,
        "client_credentials" => client_credentials(auth, &credentials, &params),
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant type `{other}` is not supported"
        ))),
    }
}

/// Who the client says it is (RFC 6749 §2.3.1): HTTP Basic, or the body, never both.
struct Credentials {
    client_id: String,
    method: AuthMethod,
    secret: Option<String>,
}

impl Credentials {
    fn from_request(headers: &HeaderMap, params: &Params) -> Result<Self, OAuthError> {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "));
        match (basic, params.get("client_secret")) {
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            )),
            (Some(encoded), None) => {
                let bad = || OAuthError::invalid_client("malformed Basic credentials");
                let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
                let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
                // Both halves are form-urlencoded (RFC 6749 §2.3.1).
                let unescape = |text: &str| {
                    url::form_urlencoded::parse(format!("x={text}").as_bytes())
                        .next()
                        .map(|(_, value)| value.into_owned())
                };
                let client_id = unescape(id).ok_or_else(bad)?;
                if params
                    .get("client_id")
                    .is_some_and(|body_id| body_id != client_id)
                {
                    return Err(bad());
                }
                Ok(Self {
                    client_id,
                    method: AuthMethod::Basic,
                    secret: Some(unescape(secret).ok_or_else(bad)?),
                })
            }
            (None, secret) => Ok(Self {
                client_id: params.require("client_id")?.to_owned(),
                method: if secret.is_some() {
                    AuthMethod::Post
                } else {
                    AuthMethod::None
                },
                secret: secret.map(str::to_owned),
            }),
        }
    }
}

/// The registered (or metadata-document) client the credentials authenticate.
async fn authenticated(
    auth: &DevAuth,
    credentials: &Credentials,
) -> Result<crate::clients::Client, OAuthError> {
    let client = auth.0.clients.find(&credentials.client_id).await?;
    if client.authenticates(credentials.method, credentials.secret.as_deref()) {
        Ok(client)
    } else {
        Err(OAuthError::invalid_client("client authentication failed"))
    }
}

async fn authorization_code(
    auth: &DevAuth,
    credentials: &Credentials,
    params: &Params,
) -> Result<Value, OAuthError> {
    let client = authenticated(auth, credentials).await?;
    let code = params.require("code")?;
    // Single use: the code is gone whether or not what follows succeeds.
    let pending = auth
        .0
        .codes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(code);
    let pending = pending
        .filter(|pending| pending.expires > now())
        .ok_or_else(|| OAuthError::invalid_grant("the code is unknown, used or expired"))?;
    if pending.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if params.get("redirect_uri") != Some(pending.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let verifier = params.require("code_verifier")?;
    // RFC 7636 §4.1: 43 to 128 unreserved characters.
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed || s256(verifier) != pending.challenge {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    same_resource(&params.resources(), &pending.grant.resource)?;
    issue(auth, &pending.grant, &client.id, true)
}

async fn refresh_token(
    auth: &DevAuth,
    credentials: &Credentials,
    params: &Params,
) -> Result<Value, OAuthError> {
    let client = authenticated(auth, credentials).await?;
    let presented = s256(params.require("refresh_token")?);
    // Rotation: a refresh token is used once; the answer carries its successor.
    let refresh = auth
        .0
        .refresh
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&presented);
    let refresh = refresh
        .filter(|refresh| refresh.expires > now() && refresh.client_id == client.id)
        .ok_or_else(|| {
            OAuthError::invalid_grant("the refresh token is unknown, used or expired")
        })?;
    same_resource(&params.resources(), &refresh.grant.resource)?;
    let Some(identity) = auth.directory().identity(&refresh.grant.subject) else {
        return Err(OAuthError::invalid_grant("the subject no longer exists"));
    };
    let mut scopes: Vec<String> = refresh.grant.scopes.clone();
    if let Some(asked) = params.get("scope") {
        let asked: Vec<&str> = asked.split_whitespace().collect();
        if let Some(extra) = asked.iter().find(|s| !scopes.iter().any(|g| g == *s)) {
            return Err(OAuthError::invalid_scope(format!(
                "`{extra}` was not granted; authorize again to get it"
            )));
        }
        scopes.retain(|s| asked.contains(&s.as_str()));
    }
    // The identity file may have changed since: never grant more than it allows today.
    scopes.retain(|s| identity.scopes.contains(s));
    let grant = Grant {
        scopes,
        ..refresh.grant
    };
    issue(auth, &grant, &client.id, true)
}

fn client_credentials(
    auth: &DevAuth,
    credentials: &Credentials,
    params: &Params,
) -> Result<Value, OAuthError> {
    if auth.0.clients.is_registered(&credentials.client_id) {
        return Err(OAuthError::unauthorized_client(
            "client credentials are for the service accounts in identities.toml",
        ));
    }
    let service = auth
        .0
        .directory
        .service(&credentials.client_id)
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    let authenticated = credentials.secret.as_deref().is_some_and(|secret| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            secret.as_bytes(),
            service.client_secret.as_bytes(),
        )
        .is_ok()
    });
    if !authenticated {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    let grant = Grant {
        subject: service.client_id.clone(),
        scopes: auth.grantable(params.get("scope"), &service.scopes),
        resource: auth.resource(&params.resources())?,
    };
    issue(auth, &grant, &service.client_id, false)
}

/// RFC 8707 §2.2: at the token endpoint the resource may be omitted, or repeated as granted.
fn same_resource(asked: &[&str], granted: &str) -> Result<(), OAuthError> {
    match asked {
        [] => Ok(()),
        [one] if *one == granted => Ok(()),
        _ => Err(OAuthError::invalid_target(
            "the resource differs from the one authorized",
        )),
    }
}

fn issue(
    auth: &DevAuth,
    grant: &Grant,
    client_id: &str,
    refreshable: bool,
) -> Result<Value, OAuthError> {
    let token = auth
        .access_token(grant, client_id)
        .map_err(|error| OAuthError::invalid_grant(error.to_string()))?;
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": grant.scopes.join(" "),
    });
    if refreshable {
        let refresh = random_token();
        let now = now();
        let mut store = auth
            .0
            .refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.retain(|_, live| live.expires > now);
        if store.len() < MAX_REFRESH_TOKENS {
            store.insert(
                s256(&refresh),
                Refresh {
                    client_id: client_id.to_owned(),
                    grant: grant.clone(),
                    expires: now + REFRESH_TOKEN_SECONDS,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
    }
    tracing::info!(subject = %grant.subject, client = client_id, scope = %grant.scopes.join(" "), "access token issued");
    Ok(body)
}
