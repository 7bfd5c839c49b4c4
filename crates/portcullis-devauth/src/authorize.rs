//! The authorization endpoint: validate the request, show the login page, issue a code.
//!
//! Until the client and its redirect URI are known good, errors are shown on a page, never
//! redirected (RFC 6749 §4.1.2.1: no open redirector). After that they go back to the client
//! with `state` and `iss` (RFC 9207), like a code does.

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::{HeaderValue, StatusCode, header};
use url::Url;

use crate::{
    CODE_SECONDS, Code, DevAuth, Grant, clients::Client, error::OAuthError, keys::random_token,
    now, params::Params,
};

// Bound on codes waiting to be redeemed; expired ones are dropped first.
const MAX_PENDING_CODES: usize = 10_000;

/// A request that passed every check: all that is left is who signs in.
struct Valid {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    scope: Option<String>,
    resource: String,
}

enum Refusal {
    /// The client or its redirect URI is not trusted: tell the person, not the client.
    Page(OAuthError),
    /// Tell the client, at its redirect URI.
    Redirect(Response),
}

/// The parameters in `raw` and the request they make, or the answer that refuses it.
async fn request(auth: &DevAuth, raw: &[u8]) -> Result<(Params, Valid), Response> {
    let params = Params::parse(raw).map_err(|error| error_page(&error))?;
    match validate(auth, &params).await {
        Ok(valid) => Ok((params, valid)),
        Err(Refusal::Page(error)) => Err(error_page(&error)),
        Err(Refusal::Redirect(response)) => Err(response),
    }
}

pub(crate) async fn page(State(auth): State<DevAuth>, RawQuery(query): RawQuery) -> Response {
    let (params, valid) = match request(&auth, query.unwrap_or_default().as_bytes()).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    // The headless shortcut: a known `login_hint` signs in without showing the page.
    if let Some(hint) = params.get("login_hint")
        && auth.directory().identity(hint).is_some()
    {
        return issue(&auth, &valid, hint);
    }
    login_page(&auth, &params, &valid)
}

pub(crate) async fn sign_in(State(auth): State<DevAuth>, body: Bytes) -> Response {
    // The form carries the original request back: check all of it again.
    let (params, valid) = match request(&auth, &body).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    match params.get("identity") {
        Some(subject) if auth.directory().identity(subject).is_some() => {
            issue(&auth, &valid, subject)
        }
        _ => error_page(&OAuthError::invalid_request(
            "choose one of the listed identities",
        )),
    }
}

async fn validate(auth: &DevAuth, params: &Params) -> Result<Valid, Refusal> {
    let client_id = params.require("client_id").map_err(Refusal::Page)?;
    let client = auth
        .0
        .clients
        .find(client_id)
        .await
        .map_err(Refusal::Page)?;
    let redirect_uri = params.require("redirect_uri").map_err(Refusal::Page)?;
    if !client.accepts_redirect(redirect_uri) {
        return Err(Refusal::Page(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        )));
    }
    let state = params.get("state").map(str::to_owned);
    let back = |error: OAuthError| {
        Refusal::Redirect(redirect(auth, redirect_uri, state.as_deref(), Err(&error)))
    };
    if params.get("response_type") != Some("code") {
        return Err(back(OAuthError::unsupported_response_type(
            "response_type must be `code`",
        )));
    }
    // OAuth 2.1 §4.1.1: PKCE is required; this server takes S256 only (no `plain`).
    let challenge = params.get("code_challenge").unwrap_or_default();
    if params.get("code_challenge_method") != Some("S256") || !is_s256_value(challenge) {
        return Err(back(OAuthError::invalid_request(
            "PKCE is required: code_challenge with code_challenge_method=S256",
        )));
    }
    let resource = auth.resource(&params.resources()).map_err(back)?;
    Ok(Valid {
        redirect_uri: redirect_uri.to_owned(),
        client,
        state,
        challenge: challenge.to_owned(),
        scope: params.get("scope").map(str::to_owned),
        resource,
    })
}

/// A base64url SHA-256 digest: 43 characters of the URL-safe alphabet.
fn is_s256_value(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn issue(auth: &DevAuth, valid: &Valid, subject: &str) -> Response {
    let Some(identity) = auth.directory().identity(subject) else {
        return error_page(&OAuthError::access_denied("unknown identity"));
    };
    let code = random_token();
    let now = now();
    {
        let mut codes = auth
            .0
            .codes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        codes.retain(|_, pending| pending.expires > now);
        if codes.len() >= MAX_PENDING_CODES {
            let error = OAuthError::temporarily_unavailable("too many sign-ins in progress");
            return redirect(
                auth,
                &valid.redirect_uri,
                valid.state.as_deref(),
                Err(&error),
            );
        }
        codes.insert(
            code.clone(),
            Code {
                client_id: valid.client.id.clone(),
                redirect_uri: valid.redirect_uri.clone(),
                challenge: valid.challenge.clone(),
                grant: Grant {
                    subject: subject.to_owned(),
                    scopes: auth.grantable(valid.scope.as_deref(), &identity.scopes),
                    resource: valid.resource.clone(),
                },
                expires: now + CODE_SECONDS,
            },
        );
    }
    tracing::info!(subject, client = %valid.client.id, "authorization code issued");
    redirect(auth, &valid.redirect_uri, valid.state.as_deref(), Ok(&code))
}

/// Back to the client: `code` or `error`, with `state` and `iss` (RFC 9207 §2).
fn redirect(
    auth: &DevAuth,
    redirect_uri: &str,
    state: Option<&str>,
    outcome: Result<&str, &OAuthError>,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(&OAuthError::invalid_request("redirect_uri is not a URL"));
    };
    {
        let mut query = url.query_pairs_mut();
        match outcome {
            Ok(code) => {
                query.append_pair("code", code);
            }
            Err(error) => {
                query.append_pair("error", error.code);
                query.append_pair("error_description", &error.description);
            }
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", auth.issuer());
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    *response.status_mut() = StatusCode::FOUND;
    response
}

fn login_page(auth: &DevAuth, params: &Params, valid: &Valid) -> Response {
    let hidden: String = params
        .pairs()
        .filter(|(name, _)| *name != "identity")
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let buttons: String = auth
        .directory()
        .identities
        .iter()
        .map(|identity| {
            let granted = auth.grantable(valid.scope.as_deref(), &identity.scopes);
            format!(
                "<li><button type=\"submit\" name=\"identity\" value=\"{subject}\">{label}</button>\
                 <small>tenant {tenant}; roles {roles}; would get: {granted}</small></li>\n",
                subject = escape(&identity.subject),
                label = escape(identity.name.as_deref().unwrap_or(&identity.subject)),
                tenant = escape(identity.tenant.as_deref().unwrap_or("none")),
                roles = escape(&identity.roles.join(", ")),
                granted = escape(&if granted.is_empty() {
                    "no scopes".to_owned()
                } else {
                    granted.join(" ")
                }),
            )
        })
        .collect();
    let client = valid.client.name.as_deref().unwrap_or(&valid.client.id);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign in: Portcullis demo</title>{STYLE}</head><body><main>\n\
         <h1>Sign in</h1>\n<p><b>{client}</b> asks for access to <code>{resource}</code>.</p>\n\
         <p class=\"warn\">Development sign-in: pick any sample identity, no password. \
         Identities come from <code>identities.toml</code> in the demo's data directory.</p>\n\
         <form method=\"post\" action=\"/authorize\">\n{hidden}<ul>\n{buttons}</ul>\n</form>\n\
         </main></body></html>\n",
        client = escape(client),
        resource = escape(&valid.resource),
    );
    page_response(StatusCode::OK, body)
}

fn error_page(error: &OAuthError) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign-in error</title>{STYLE}</head><body><main>\n<h1>This sign-in request \
         cannot continue</h1>\n<p><code>{code}</code>: {description}</p>\n</main></body></html>\n",
        code = escape(error.code),
        description = escape(&error.description),
    );
    page_response(StatusCode::BAD_REQUEST, body)
}

fn page_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the form's POST, which the
    // gateway's Origin check rightly refuses. `same-origin` still keeps the URL (with its
    // state and code challenge) from other sites.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const STYLE: &str = "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;\
padding:0 1rem}ul{list-style:none;padding:0}li{margin:.6rem 0}button{min-width:16rem;\
padding:.4rem;margin-right:.6rem}.warn{background:#fff4d6;padding:.5rem}small{color:#555}</style>";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
