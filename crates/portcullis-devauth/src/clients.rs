//! OAuth clients: registered at `/register` (RFC 7591), or named by the URL of their client ID
//! metadata document, which is fetched when they show up.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::{error::OAuthError, keys::random_token};

// A dev server on loopback, but registration is unauthenticated: bound what it can hold.
const MAX_CLIENTS: usize = 10_000;
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    None,
    Basic,
    Post,
}

impl AuthMethod {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::Basic),
            "client_secret_post" => Some(Self::Post),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic => "client_secret_basic",
            Self::Post => "client_secret_post",
        }
    }
}

#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) redirect_uris: Vec<String>,
    auth: AuthMethod,
    secret: Option<String>,
}

impl Client {
    /// RFC 8252 §7.3: a loopback redirect URI matches whatever port the app listens on today;
    /// every other redirect URI must match exactly.
    pub(crate) fn accepts_redirect(&self, redirect: &str) -> bool {
        self.redirect_uris.iter().any(|registered| {
            registered == redirect || same_except_loopback_port(registered, redirect)
        })
    }

    /// Whether the client authenticated with its registered method and secret; a public client
    /// presents none.
    pub(crate) fn authenticates(&self, method: AuthMethod, secret: Option<&str>) -> bool {
        if method != self.auth {
            return false;
        }
        match (&self.secret, secret) {
            (None, None) => true,
            (Some(expected), Some(given)) => aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                given.as_bytes(),
            )
            .is_ok(),
            _ => false,
        }
    }
}

fn same_except_loopback_port(registered: &str, redirect: &str) -> bool {
    let (Ok(mut a), Ok(mut b)) = (Url::parse(registered), Url::parse(redirect)) else {
        return false;
    };
    let loopback = |url: &Url| {
        url.scheme() == "http"
            && matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
    };
    if !loopback(&a) || !loopback(&b) {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

/// RFC 7591 §2: the request members this server reads; the rest is ignored, as the RFC allows.
#[derive(Debug, Deserialize)]
pub(crate) struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
}

pub(crate) struct Clients {
    registered: Mutex<HashMap<String, Client>>,
    http: reqwest::Client,
}

impl Clients {
    pub(crate) fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            registered: Mutex::new(HashMap::new()),
            http,
        }
    }

    /// RFC 7591 §3.2.1: the registered client's metadata, as the 201 body.
    pub(crate) fn register(&self, request: Registration) -> Result<Value, OAuthError> {
        let auth = match request.token_endpoint_auth_method.as_deref() {
            None => AuthMethod::Basic,
            Some(text) => AuthMethod::parse(text).ok_or_else(|| {
                OAuthError::metadata(format!(
                    "token_endpoint_auth_method `{text}` is not supported"
                ))
            })?,
        };
        let grant_types = request
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        for grant in &grant_types {
            if !matches!(grant.as_str(), "authorization_code" | "refresh_token") {
                return Err(OAuthError::metadata(format!(
                    "grant type `{grant}` cannot be registered here (client credentials are for the service accounts in identities.toml)"
                )));
            }
        }
        if let Some(types) = &request.response_types
            && types.iter().any(|t| t != "code")
        {
            return Err(OAuthError::metadata("only the `code` response type exists"));
        }
        if request.redirect_uris.is_empty() {
            return Err(OAuthError::redirect_uri(
                "at least one redirect URI is required",
            ));
        }
        for uri in &request.redirect_uris {
            check_redirect_uri(uri)?;
        }
        let client = Client {
            id: random_token(),
            name: request.client_name,
            redirect_uris: request.redirect_uris,
            auth,
            secret: (auth != AuthMethod::None).then(random_token),
        };
        let mut body = json!({
            "client_id": client.id,
            "client_id_issued_at": crate::now(),
            "redirect_uris": client.redirect_uris,
            "token_endpoint_auth_method": auth.as_str(),
            "grant_types": grant_types,
            "response_types": ["code"],
        });
        if let Some(name) = &client.name {
            body["client_name"] = json!(name);
        }
        if let Some(scope) = &request.scope {
            body["scope"] = json!(scope);
        }
        if let Some(secret) = &client.secret {
            body["client_secret"] = json!(secret);
            body["client_secret_expires_at"] = json!(0);
        }
        let mut registered = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if registered.len() >= MAX_CLIENTS {
            return Err(OAuthError::metadata(
                "this server holds no more clients; restart it",
            ));
        }
        registered.insert(client.id.clone(), client);
        Ok(body)
    }

    /// Whether `id` was registered here (and so is not a service account).
    pub(crate) fn is_registered(&self, id: &str) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// The client named `id`: registered here, or described by the document at URL `id`.
    pub(crate) async fn find(&self, id: &str) -> Result<Client, OAuthError> {
        let known = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        match known {
            Some(client) => Ok(client),
            None if id.starts_with("https://") || id.starts_with("http://") => {
                self.fetch_metadata_document(id).await
            }
            None => Err(OAuthError::invalid_client("unknown client_id")),
        }
    }

    /// Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): the
    /// client id is an https URL whose document names the same client id. Plain http is
    /// accepted for loopback hosts only, so that local tools can try it.
    async fn fetch_metadata_document(&self, id: &str) -> Result<Client, OAuthError> {
        let url =
            Url::parse(id).map_err(|_| OAuthError::invalid_client("client_id is not a URL"))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        if (url.scheme() != "https" && !loopback) || url.path() == "/" || url.fragment().is_some() {
            return Err(OAuthError::invalid_client(
                "a client ID metadata document URL must be https, with a path and no fragment",
            ));
        }
        let unreachable =
            |_| OAuthError::invalid_client("the client ID metadata document cannot be fetched");
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(OAuthError::invalid_client(
                "the client ID metadata document cannot be fetched",
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_METADATA_BYTES {
                return Err(OAuthError::invalid_client(
                    "the client ID metadata document is too large",
                ));
            }
        }
        #[derive(Deserialize)]
        struct Document {
            client_id: String,
            #[serde(default)]
            client_name: Option<String>,
            #[serde(default)]
            redirect_uris: Vec<String>,
            #[serde(default)]
            token_endpoint_auth_method: Option<String>,
        }
        let document: Document = serde_json::from_slice(&body).map_err(|_| {
            OAuthError::invalid_client("the client ID metadata document is not valid JSON metadata")
        })?;
        if document.client_id != id {
            return Err(OAuthError::invalid_client(
                "the client ID metadata document names another client_id",
            ));
        }
        if document
            .token_endpoint_auth_method
            .as_deref()
            .is_some_and(|m| m != "none")
        {
            return Err(OAuthError::invalid_client(
                "only public clients (token_endpoint_auth_method `none`) may use a metadata document here",
            ));
        }
        Ok(Client {
            id: document.client_id,
            name: document.client_name,
            redirect_uris: document.redirect_uris,
            auth: AuthMethod::None,
            secret: None,
        })
    }
}

fn check_redirect_uri(uri: &str) -> Result<(), OAuthError> {
    let url = Url::parse(uri)
        .map_err(|_| OAuthError::redirect_uri(format!("`{uri}` is not an absolute URI")))?;
    if url.fragment().is_some() {
        return Err(OAuthError::redirect_uri(
            "a redirect URI has no fragment (RFC 6749 §3.1.2)",
        ));
    }
    if matches!(url.scheme(), "javascript" | "data" | "file") {
        return Err(OAuthError::redirect_uri(format!(
            "scheme `{}` is not allowed",
            url.scheme()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> Client {
        Client {
            id: "c".into(),
            name: None,
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            auth: AuthMethod::None,
            secret: None,
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port_and_nothing_else_does() {
        let c = client(&["http://127.0.0.1:3000/callback", "https://app.example/cb"]);
        assert!(c.accepts_redirect("http://127.0.0.1:49152/callback"));
        assert!(c.accepts_redirect("https://app.example/cb"));
        for other in [
            "http://127.0.0.1:3000/other",
            "https://app.example:444/cb",
            "https://app.example/cb?x=1",
            "http://evil.example:3000/callback",
        ] {
            assert!(!c.accepts_redirect(other), "{other}");
        }
    }

    #[test]
    fn registration_refuses_what_it_cannot_honour() {
        let clients = Clients::new();
        let register = |body: Value| clients.register(serde_json::from_value(body).unwrap());
        assert!(register(json!({})).is_err());
        assert!(register(json!({"redirect_uris": ["javascript:alert(1)"]})).is_err());
        assert!(register(json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"]})).is_err());
        assert!(register(json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "private_key_jwt"})).is_err());
        let public = register(
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}),
        )
        .unwrap();
        assert!(public.get("client_secret").is_none());
        let confidential = register(json!({"redirect_uris": ["http://127.0.0.1/cb"]})).unwrap();
        assert_eq!(
            confidential["token_endpoint_auth_method"],
            "client_secret_basic"
        );
        assert!(confidential["client_secret"].is_string());
    }
}
