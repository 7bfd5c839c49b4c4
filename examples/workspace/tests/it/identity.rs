use jsonwebtoken::{Algorithm, Header};
use serde_json::json;

use crate::support::{
    Assertion, Client, TestKey, assert_refused, claims, now, structured, workspace,
};

async fn search_with(key: &TestKey, assertion: Option<&dyn Assertion>) -> serde_json::Value {
    let mut client = Client::connect(workspace(key)).await;
    client
        .as_caller(
            assertion,
            "tools/call",
            json!({"name": "search_policies", "arguments": {"query": ""}}),
        )
        .await
}

#[tokio::test]
async fn a_valid_assertion_is_served() {
    let key = TestKey::generate("gw-1");
    let response = search_with(&key, Some(&key.assert("user-42", "tenant-a", &["viewer"]))).await;
    assert!(structured(&response)["policies"].is_array());
}

#[tokio::test]
async fn a_request_without_an_assertion_is_refused() {
    let key = TestKey::generate("gw-1");
    assert_refused(&search_with(&key, None).await);
}

#[tokio::test]
async fn an_assertion_that_is_not_a_string_is_refused() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let response = client
        .request(
            "tools/call",
            json!({
                "name": "search_policies",
                "arguments": {"query": ""},
                "_meta": {"io.portcullis/identity": {"sub": "user-42", "tenant": "tenant-a"}},
            }),
        )
        .await;
    assert_refused(&response);
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    let key = TestKey::generate("gw-1");
    let mut expired = claims("user-42", "tenant-a", &["viewer"]);
    expired["iat"] = json!(now() - 120);
    expired["exp"] = json!(now() - 60);
    assert_refused(&search_with(&key, Some(&key.sign(&expired))).await);
}

#[tokio::test]
async fn an_assertion_just_past_expiry_is_within_the_leeway() {
    let key = TestKey::generate("gw-1");
    let mut late = claims("user-42", "tenant-a", &["viewer"]);
    late["exp"] = json!(now() - 2);
    let response = search_with(&key, Some(&key.sign(&late))).await;
    assert!(structured(&response)["policies"].is_array());
}

#[tokio::test]
async fn an_assertion_for_another_audience_is_refused() {
    let key = TestKey::generate("gw-1");
    let mut other = claims("user-42", "tenant-a", &["viewer"]);
    other["aud"] = json!("billing");
    assert_refused(&search_with(&key, Some(&key.sign(&other))).await);
}

#[tokio::test]
async fn an_assertion_from_another_issuer_is_refused() {
    let key = TestKey::generate("gw-1");
    let mut other = claims("user-42", "tenant-a", &["viewer"]);
    other["iss"] = json!("https://someone-else.test");
    assert_refused(&search_with(&key, Some(&key.sign(&other))).await);
}

#[tokio::test]
async fn a_tampered_assertion_is_refused() {
    let key = TestKey::generate("gw-1");
    let genuine = key.assert("user-42", "tenant-a", &["viewer"]).fresh();
    // Swap in claims naming another tenant and the hr role, keeping the original signature.
    let forged_claims = claims("user-42", "tenant-b", &["hr"]);
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        forged_claims.to_string(),
    );
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_refused(&search_with(&key, Some(&forged)).await);
}

#[tokio::test]
async fn an_assertion_signed_by_an_untrusted_key_is_refused() {
    let trusted = TestKey::generate("gw-1");
    // Same kid, different key: an attacker guessing the kid gains nothing.
    let impostor = TestKey::generate("gw-1");
    let assertion = impostor.assert("user-42", "tenant-a", &["viewer"]).fresh();
    assert_refused(&search_with(&trusted, Some(&assertion)).await);
    let unknown = TestKey::generate("gw-2");
    let assertion = unknown.assert("user-42", "tenant-a", &["viewer"]).fresh();
    assert_refused(&search_with(&trusted, Some(&assertion)).await);
}

#[tokio::test]
async fn an_assertion_of_another_type_or_algorithm_is_refused() {
    let key = TestKey::generate("gw-1");
    let valid = claims("user-42", "tenant-a", &["viewer"]);
    let mut access_token = key.header();
    access_token.typ = Some("at+jwt".to_owned());
    assert_refused(&search_with(&key, Some(&key.sign_with(access_token, &valid))).await);
    let mut untyped = key.header();
    untyped.typ = None;
    assert_refused(&search_with(&key, Some(&key.sign_with(untyped, &valid))).await);
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.typ = Some("JWT".to_owned());
    hs256.kid = Some("gw-1".to_owned());
    let hmac = jsonwebtoken::encode(
        &hs256,
        &valid,
        &jsonwebtoken::EncodingKey::from_secret(key.jwks().as_bytes()),
    )
    .unwrap();
    assert_refused(&search_with(&key, Some(&hmac)).await);
}

#[tokio::test]
async fn an_assertion_without_subject_or_tenant_is_refused() {
    let key = TestKey::generate("gw-1");
    for claim in ["sub", "tenant"] {
        let mut partial = claims("user-42", "tenant-a", &["viewer"]);
        partial.as_object_mut().unwrap().remove(claim);
        assert_refused(&search_with(&key, Some(&key.sign(&partial))).await);
        partial[claim] = json!("");
        assert_refused(&search_with(&key, Some(&key.sign(&partial))).await);
    }
}

#[tokio::test]
async fn a_long_lived_assertion_is_refused() {
    let key = TestKey::generate("gw-1");
    let mut long = claims("user-42", "tenant-a", &["viewer"]);
    long["exp"] = json!(now() + 3600);
    assert_refused(&search_with(&key, Some(&key.sign(&long))).await);
}

#[tokio::test]
async fn every_data_request_needs_an_assertion_but_ping_does_not() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let requests = [
        ("tools/list", json!({})),
        (
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        ),
        ("resources/list", json!({})),
        ("resources/templates/list", json!({})),
        ("resources/read", json!({"uri": "policy://tenant-a/POL-A1"})),
    ];
    for (method, params) in requests {
        assert_refused(&client.as_caller(None, method, params).await);
    }
    let pong = client.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

#[tokio::test]
async fn the_stateless_era_carries_the_assertion_beside_the_protocol_metadata() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::unopened(workspace(&key));
    let protocol = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "gateway", "version": "0"},
    });
    let discovered = client
        .request("server/discover", json!({"_meta": protocol}))
        .await;
    assert!(discovered.get("result").is_some(), "{discovered}");
    let mut meta = protocol.clone();
    meta["io.portcullis/identity"] = json!(key.assert("user-42", "tenant-a", &["viewer"]).fresh());
    let params = json!({
        "name": "search_policies",
        "arguments": {"query": ""},
        "_meta": meta,
    });
    let response = client.request("tools/call", params.clone()).await;
    assert!(structured(&response)["policies"].is_array());
    let mut anonymous = params;
    anonymous["_meta"] = protocol;
    assert_refused(&client.request("tools/call", anonymous).await);
}

// See: issue 19. An assertion taken from one request was accepted for another. The gateway
// now says which request each goes with (`method`, `target`), and the backend holds it to that.
#[tokio::test]
async fn an_assertion_made_for_another_request_is_refused() {
    let key = TestKey::generate("gw-1");
    let bound = |method: &str, target: Option<&str>| {
        let mut claims = claims("user-42", "tenant-a", &["viewer"]);
        claims["method"] = json!(method);
        if let Some(target) = target {
            claims["target"] = json!(target);
        }
        key.sign(&claims)
    };
    let own = bound("tools/call", Some("search_policies"));
    let response = search_with(&key, Some(&own)).await;
    assert!(structured(&response)["policies"].is_array(), "{response}");
    for other in [
        bound("tools/call", Some("read_policy")),
        bound("tools/list", None),
        bound("resources/read", Some("policy://tenant-a/POL-A1")),
        bound("tools/call", None),
    ] {
        assert_refused(&search_with(&key, Some(&other)).await);
    }
    let mut client = Client::connect(workspace(&key)).await;
    let read = client
        .as_caller(
            Some(&bound("resources/read", Some("policy://tenant-a/POL-A2"))),
            "resources/read",
            json!({"uri": "policy://tenant-a/POL-A1"}),
        )
        .await;
    assert_refused(&read);
}

// See: issue 19. The same assertion was accepted again and again. Each is good for one
// request (the gateway mints one per request).
#[tokio::test]
async fn an_assertion_is_accepted_once() {
    let key = TestKey::generate("gw-1");
    let once = key.assert("user-42", "tenant-a", &["viewer"]).fresh();
    let mut client = Client::connect(workspace(&key)).await;
    let search = json!({"name": "search_policies", "arguments": {"query": ""}});
    let first = client
        .as_caller(Some(&once), "tools/call", search.clone())
        .await;
    assert!(structured(&first)["policies"].is_array(), "{first}");
    let again = client.as_caller(Some(&once), "tools/call", search).await;
    assert_refused(&again);
    let mut no_id = claims("user-42", "tenant-a", &["viewer"]);
    no_id.as_object_mut().unwrap().remove("jti");
    assert_refused(&search_with(&key, Some(&key.sign(&no_id))).await);
}
