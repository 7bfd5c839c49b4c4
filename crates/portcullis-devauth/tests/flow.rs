//! The embedded authorization server over a real socket: registration, the login page, PKCE,
//! resource indicators, refresh rotation, client credentials, and the refusals in between.
//! Tokens are checked by the gateway's own verifier, found through RFC 8414 discovery.
#![expect(clippy::unwrap_used, reason = "test setup fails loudly")]

use std::time::Duration;

use portcullis_authn::{BearerToken, ClaimMapping, JwtConfig, JwtVerifier};
use portcullis_devauth::{DevAuth, DevAuthConfig};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};
use url::Url;

const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const REDIRECT: &str = "http://127.0.0.1:3000/callback";
// The challenge computed by Python's hashlib, not by the code under test.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r2W9EfLKjuLF1M";
const CHALLENGE: &str = "Yi8VR69_ufk_E7zYUjd6bYqsC0X20jIiCU9DfGdyJyE";

struct Server {
    issuer: String,
    auth: DevAuth,
    http: reqwest::Client,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> Server {
    let dir = std::env::temp_dir().join(format!(
        "devauth-flow-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let auth = DevAuth::open(
        &dir,
        DevAuthConfig {
            issuer: issuer.clone(),
            resources: vec![RESOURCE.to_owned()],
            default_scopes: vec!["policies:read".to_owned()],
        },
    )
    .unwrap();
    let router = auth.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    Server {
        issuer,
        auth,
        http,
        _dir: TempDir(dir),
    }
}

impl Server {
    async fn register(&self, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn public_client(&self) -> String {
        let (status, client) = self
            .register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "<flow test>"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        client["client_id"].as_str().unwrap().to_owned()
    }

    fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> Url {
        let mut url = Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz")
            .append_pair("resource", RESOURCE);
        for (name, value) in extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        url
    }

    /// Follow the authorization endpoint to the client's redirect: its query parameters.
    async fn redirected(&self, response: reqwest::Response) -> Vec<(String, String)> {
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response.headers()["location"].to_str().unwrap();
        let url = Url::parse(location).unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        url.query_pairs().into_owned().collect()
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store");
        (response.status(), response.json().await.unwrap())
    }

    fn verifier(&self) -> JwtVerifier {
        JwtVerifier::new(
            JwtConfig {
                issuer: self.issuer.clone(),
                audience: RESOURCE.to_owned(),
                jwks_uri: None,
                leeway: Duration::from_secs(5),
                refetch_interval: Duration::from_secs(10),
                mapping: ClaimMapping::standard(),
                token_types: vec!["at+jwt".into()],
                insecure_http: false,
            },
            reqwest::Client::new(),
        )
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn code_for(server: &Server, client_id: &str, subject: &str, scope: &str) -> String {
    let url = server.authorize_url(client_id, &[("login_hint", subject), ("scope", scope)]);
    let params = server
        .redirected(server.http.get(url).send().await.unwrap())
        .await;
    assert_eq!(param(&params, "state"), Some("xyz"));
    assert_eq!(param(&params, "iss"), Some(server.issuer.as_str()));
    param(&params, "code").unwrap().to_owned()
}

#[tokio::test]
async fn the_metadata_advertises_what_mcp_clients_need() {
    let server = start().await;
    let metadata: Value = server
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], server.issuer.as_str());
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/register", server.issuer)
    );
}

#[tokio::test]
async fn the_login_page_lists_the_identities_and_signs_in_by_form() {
    let server = start().await;
    let client = server.public_client().await;
    let url = server.authorize_url(&client, &[("scope", "policies:read policies:write")]);
    let page = server.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    for subject in ["user-42", "admin-a", "editor-a", "hr-a"] {
        assert!(
            html.contains(&format!("name=\"identity\" value=\"{subject}\"")),
            "{subject}"
        );
    }
    // The client's name is escaped, never markup.
    assert!(html.contains("&lt;flow test&gt;") && !html.contains("<flow test>"));
    // Post the form back as a browser would: every hidden field, plus the chosen identity.
    let mut form: Vec<(String, String)> = html
        .match_indices("<input type=\"hidden\" name=\"")
        .map(|(at, _)| {
            let rest = &html[at..];
            let field = |key: &str| {
                let start = rest.find(key).unwrap() + key.len();
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end].replace("&amp;", "&")
            };
            (field("name=\""), field("value=\""))
        })
        .collect();
    form.push(("identity".into(), "editor-a".into()));
    let response = server
        .http
        .post(format!("{}/authorize", server.issuer))
        .form(&form)
        .send()
        .await
        .unwrap();
    let params = server.redirected(response).await;
    let code = param(&params, "code").unwrap();
    let (status, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "policies:read policies:write");
    let header = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let token = BearerToken::from_authorization(std::iter::once(header.as_bytes()))
        .unwrap()
        .unwrap();
    let principal = server.verifier().verify(&token).await.unwrap();
    assert_eq!(principal.subject(), "editor-a");
    assert_eq!(principal.tenant(), Some("tenant-a"));
    assert_eq!(principal.roles(), ["editor"]);
    assert_eq!(principal.scopes(), ["policies:read", "policies:write"]);
}

#[tokio::test]
async fn a_code_is_single_use_and_bound_to_its_client_verifier_and_redirect() {
    let server = start().await;
    let client = server.public_client().await;
    let other = server.public_client().await;
    let code = code_for(&server, &client, "user-42", "policies:read").await;
    let exchange =
        |code: String, client: String, verifier: &'static str, redirect: &'static str| {
            let server = &server;
            async move {
                server
                    .token(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", redirect),
                        ("client_id", &client),
                        ("code_verifier", verifier),
                    ])
                    .await
            }
        };
    let wrong_verifier = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (label, client_id, verifier, redirect) in [
        ("another client", other.clone(), VERIFIER, REDIRECT),
        ("wrong verifier", client.clone(), wrong_verifier, REDIRECT),
        (
            "another redirect",
            client.clone(),
            VERIFIER,
            "http://127.0.0.1:3000/other",
        ),
    ] {
        // Each failure burns the code: mint a fresh one per case.
        let code = code_for(&server, &client, "user-42", "policies:read").await;
        let (status, body) = exchange(code, client_id, verifier, redirect).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{label}");
    }
    let (status, first) = exchange(code.clone(), client.clone(), VERIFIER, REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = exchange(code, client, VERIFIER, REDIRECT).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn bad_authorization_requests_never_redirect_to_untrusted_places() {
    let server = start().await;
    let client = server.public_client().await;
    // Unknown client or unregistered redirect: an error page, no redirect at all.
    for url in [server.authorize_url("no-such-client", &[]), {
        let mut url = server.authorize_url(&client, &[]);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(k, v)| {
                let v = if k == "redirect_uri" {
                    "https://evil.example/cb".to_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url
    }] {
        let response = server.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("location").is_none());
    }
    // A trusted redirect carries the error back, with state and iss.
    let mut plain = server.authorize_url(&client, &[]);
    let pairs: Vec<(String, String)> = plain
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "code_challenge_method" {
                (k, "plain".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    plain.query_pairs_mut().clear().extend_pairs(pairs);
    let params = server
        .redirected(server.http.get(plain).send().await.unwrap())
        .await;
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert_eq!(param(&params, "iss"), Some(server.issuer.as_str()));
    assert_eq!(param(&params, "state"), Some("xyz"));
    assert!(param(&params, "code").is_none());
}

#[tokio::test]
async fn tokens_are_only_issued_for_known_resources() {
    let server = start().await;
    let client = server.public_client().await;
    let mut url = Url::parse(&format!("{}/authorize", server.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", "https://other.example/mcp")
        .append_pair("login_hint", "user-42");
    let params = server
        .redirected(server.http.get(url).send().await.unwrap())
        .await;
    assert_eq!(param(&params, "error"), Some("invalid_target"));
    let (status, body) = server
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-reporting"),
            ("client_secret", &service_secret(&server)),
            ("resource", "https://other.example/mcp"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );
}

fn service_secret(server: &Server) -> String {
    server
        .auth
        .directory()
        .services
        .iter()
        .find(|s| s.client_id == "svc-reporting")
        .unwrap()
        .client_secret
        .clone()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_never_widen_scope() {
    let server = start().await;
    let client = server.public_client().await;
    let code = code_for(&server, &client, "editor-a", "policies:read").await;
    let (_, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client),
            ("code_verifier", VERIFIER),
        ])
        .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, wider) = server
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
            ("scope", "policies:write"),
        ])
        .await;
    assert_eq!(
        (status, wider["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    // The failed attempt used the token up: rotation means one use, whatever the outcome.
    let (status, _) = server
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let code = code_for(&server, &client, "editor-a", "policies:read").await;
    let (_, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client),
            ("code_verifier", VERIFIER),
        ])
        .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, renewed) = server
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["scope"], "policies:read");
    assert_ne!(renewed["refresh_token"].as_str(), Some(refresh.as_str()));
}

#[tokio::test]
async fn client_credentials_are_for_service_accounts_with_their_secret() {
    let server = start().await;
    let secret = service_secret(&server);
    let (status, tokens) = server
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-reporting"),
            ("client_secret", &secret),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none());
    let (status, body) = server
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-reporting"),
            ("client_secret", "wrong"),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (_, confidential) = server.register(json!({"redirect_uris": [REDIRECT]})).await;
    let response = server
        .http
        .post(format!("{}/token", server.issuer))
        .basic_auth(
            confidential["client_id"].as_str().unwrap(),
            confidential["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
}

#[tokio::test]
async fn a_client_id_metadata_document_is_fetched_and_must_name_itself() {
    let server = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let good = json!({"client_id": format!("{base}/client.json"), "client_name": "CIMD app", "redirect_uris": [REDIRECT]});
    let liar =
        json!({"client_id": "https://someone.else/client.json", "redirect_uris": [REDIRECT]});
    let app = axum::Router::new()
        .route(
            "/client.json",
            axum::routing::get(move || async move { axum::Json(good) }),
        )
        .route(
            "/liar.json",
            axum::routing::get(move || async move { axum::Json(liar) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let page = server
        .http
        .get(server.authorize_url(&format!("{base}/client.json"), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("CIMD app"));
    let page = server
        .http
        .get(server.authorize_url(&format!("{base}/liar.json"), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
}
