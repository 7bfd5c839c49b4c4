//! Opaque tokens through a real RFC 7662 endpoint on a loopback socket: who is active, for which
//! resource, how long an answer is reused, and that an unreachable endpoint is a malfunction.

#![expect(clippy::unwrap_used, reason = "test setup fails loudly")]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use portcullis_authn::{
    AuthnError, BearerToken, ClaimMapping, ClientAuth, ClientSecret, IntrospectionConfig,
    Introspector,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

#[derive(Clone, Default)]
struct Endpoint {
    answers: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<AtomicUsize>,
}

async fn introspect(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: String,
) -> Json<Value> {
    endpoint.calls.fetch_add(1, Ordering::SeqCst);
    // "gateway:s3cret" in HTTP Basic; anything else is not a client of this server.
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some("Basic Z2F0ZXdheTpzM2NyZXQ=");
    let token = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .unwrap_or_default()
        .to_owned();
    let answer = match authorized {
        true => endpoint
            .answers
            .lock()
            .unwrap()
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false})),
        false => json!({"active": false}),
    };
    Json(answer)
}

async fn serve(endpoint: Endpoint) -> String {
    let app = Router::new()
        .route("/introspect", post(introspect))
        .with_state(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/introspect")
}

fn introspector(url: &str, secret: &str, ttl: Duration) -> Introspector {
    Introspector::new(
        IntrospectionConfig {
            issuer: "https://issuer.example".into(),
            endpoint: url.parse().unwrap(),
            client: ClientAuth::Basic {
                id: "gateway".into(),
                secret: ClientSecret::new(secret.into()),
            },
            audience: AUDIENCE.into(),
            cache_ttl: ttl,
            leeway: Duration::from_secs(5),
            mapping: ClaimMapping::standard(),
        },
        reqwest::Client::new(),
    )
}

fn bearer(token: &str) -> BearerToken {
    BearerToken::from_authorization([format!("Bearer {token}").as_bytes()].into_iter())
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn active_tokens_for_this_resource_pass_and_everything_else_is_refused() {
    let endpoint = Endpoint::default();
    {
        let mut answers = endpoint.answers.lock().unwrap();
        answers.insert("good".into(), json!({"active": true, "iss": "https://issuer.example", "aud": [AUDIENCE], "sub": "user-42", "scope": "policies:read", "tenant": "tenant-a"}));
        answers.insert(
            "elsewhere".into(),
            json!({"active": true, "aud": "https://other.example/mcp", "sub": "user-42"}),
        );
        answers.insert("no-aud".into(), json!({"active": true, "sub": "user-42"}));
        answers.insert(
            "foreign-iss".into(),
            json!({"active": true, "iss": "https://evil.example", "aud": AUDIENCE, "sub": "x"}),
        );
        answers.insert(
            "expired".into(),
            json!({"active": true, "aud": AUDIENCE, "sub": "x", "exp": 1}),
        );
        answers.insert("no-sub".into(), json!({"active": true, "aud": AUDIENCE}));
        answers.insert(
            "service".into(),
            json!({"active": true, "aud": AUDIENCE, "client_id": "svc-7"}),
        );
    }
    let url = serve(endpoint.clone()).await;
    let introspector = introspector(&url, "s3cret", Duration::from_secs(60));
    let principal = introspector.verify(&bearer("good")).await.unwrap();
    assert_eq!(
        (principal.subject(), principal.tenant()),
        ("user-42", Some("tenant-a"))
    );
    for (token, expected) in [
        ("revoked", AuthnError::Inactive),
        ("elsewhere", AuthnError::Audience),
        ("no-aud", AuthnError::Audience),
        ("foreign-iss", AuthnError::Issuer),
        ("expired", AuthnError::Expired),
        ("no-sub", AuthnError::MissingClaim { claim: "sub" }),
    ] {
        assert_eq!(
            introspector.verify(&bearer(token)).await,
            Err(expected),
            "{token}"
        );
    }
    let wrong_secret = self::introspector(&url, "guess", Duration::from_secs(60));
    assert_eq!(
        wrong_secret.verify(&bearer("good")).await,
        Err(AuthnError::Inactive),
        "the endpoint refuses unknown clients"
    );
}

#[tokio::test]
async fn answers_are_reused_until_the_cache_lifetime_then_revocation_takes_effect() {
    let endpoint = Endpoint::default();
    endpoint.answers.lock().unwrap().insert(
        "t".into(),
        json!({"active": true, "aud": AUDIENCE, "sub": "u"}),
    );
    let url = serve(endpoint.clone()).await;
    let introspector = introspector(&url, "s3cret", Duration::from_millis(300));
    for _ in 0..5 {
        introspector.verify(&bearer("t")).await.unwrap();
    }
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        1,
        "one call serves repeated requests"
    );
    endpoint
        .answers
        .lock()
        .unwrap()
        .insert("t".into(), json!({"active": false}));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        introspector.verify(&bearer("t")).await,
        Err(AuthnError::Inactive),
        "revoked after the cache lifetime"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_malfunction_and_is_not_cached() {
    let introspector = introspector(
        "http://127.0.0.1:9/introspect",
        "s3cret",
        Duration::from_secs(60),
    );
    let outcome = introspector.verify(&bearer("t")).await;
    assert_eq!(outcome, Err(AuthnError::Unavailable));
    assert!(outcome.unwrap_err().is_malfunction());
}

/// An endpoint answering `status` to every request.
async fn answering(status: u16) -> String {
    let app = Router::new().route(
        "/introspect",
        post(move || async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                Json(json!({"error": "invalid_request"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/introspect")
}

// See: issue 14. A token the server cannot read is a refused token (401), not an outage (503).
#[tokio::test]
async fn a_token_the_endpoint_calls_malformed_is_refused_and_only_failures_are_malfunctions() {
    for (status, expected) in [
        (400, AuthnError::Inactive),
        (401, AuthnError::Unavailable),
        (429, AuthnError::Unavailable),
        (503, AuthnError::Unavailable),
    ] {
        let url = answering(status).await;
        let introspector = introspector(&url, "s3cret", Duration::from_secs(60));
        let outcome = introspector.verify(&bearer("a.b.c.d.e")).await;
        assert_eq!(outcome, Err(expected), "HTTP {status}");
    }
}

// See: issue 15. Random opaque tokens cost one introspection call each, with no bound on the
// rate: the authorization server took whatever a flood sent.
#[tokio::test]
async fn made_up_tokens_cost_a_bounded_number_of_calls_and_cached_answers_keep_serving() {
    use portcullis_authn::MAX_INTROSPECTIONS_PER_SECOND as BUDGET;
    let endpoint = Endpoint::default();
    endpoint.answers.lock().unwrap().insert(
        "good".into(),
        json!({"active": true, "iss": "https://issuer.example", "aud": AUDIENCE, "sub": "user-42"}),
    );
    let url = serve(endpoint.clone()).await;
    let introspector = introspector(&url, "s3cret", Duration::from_secs(60));
    assert!(introspector.verify(&bearer("good")).await.is_ok());
    let started = std::time::Instant::now();
    let mut refused = 0;
    let flood = 3 * BUDGET as usize;
    for n in 0..flood {
        if introspector.verify(&bearer(&format!("made-up-{n}"))).await
            == Err(AuthnError::Unavailable)
        {
            refused += 1;
        }
    }
    let seconds = started.elapsed().as_secs() as usize + 1;
    let calls = endpoint.calls.load(Ordering::SeqCst);
    assert!(
        calls <= 1 + seconds * BUDGET as usize,
        "{calls} calls in {seconds} s"
    );
    assert!(refused > 0 || seconds > 2, "the flood was not throttled");
    assert!(
        introspector.verify(&bearer("good")).await.is_ok(),
        "a cached answer keeps serving"
    );
    // A token that passed before, checked again (not cached here: "again" was never asked),
    // has a budget of its own: made-up tokens cannot hold signed-in callers back.
    endpoint.answers.lock().unwrap().insert(
        "again".into(),
        json!({"active": true, "iss": "https://issuer.example", "aud": AUDIENCE, "sub": "user-7"}),
    );
    let mut spent = false;
    for n in 0..2 * BUDGET as usize {
        let made_up = bearer(&format!("more-made-up-{n}"));
        if introspector.verify(&made_up).await == Err(AuthnError::Unavailable) {
            spent = true;
            break;
        }
    }
    assert!(spent, "the budget for new tokens is spent");
    assert!(
        introspector.verify_known(&bearer("again")).await.is_ok(),
        "a known token is still checked"
    );
}
