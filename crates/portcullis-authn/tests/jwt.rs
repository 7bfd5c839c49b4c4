//! JWT verification against a JWKS served on a real loopback socket: the positive cases, and a
//! table of hostile and broken tokens, each with the answer it must get. None may pass.

#![expect(clippy::unwrap_used, reason = "test setup fails loudly")]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use portcullis_authn::{AuthnError, BearerToken, ClaimMapping, JwtConfig, JwtVerifier};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    rsa_public_pem: Vec<u8>,
    set: Arc<Mutex<Value>>,
}

fn keys() -> Keys {
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("keys/rs256.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!("keys/es256.pem")).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("rsa-1".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("ec-1".into());
    let set = json!({ "keys": [rsa_jwk, ec_jwk] });
    Keys {
        rsa,
        ec,
        rsa_public_pem: include_bytes!("keys/rs256.pub.pem").to_vec(),
        set: Arc::new(Mutex::new(set)),
    }
}

async fn serve_jwks(set: Arc<Mutex<Value>>) -> String {
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let set = set.lock().unwrap().clone();
            async move { Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/jwks")
}

fn verifier(jwks_uri: &str) -> JwtVerifier {
    JwtVerifier::new(
        JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_uri: Some(jwks_uri.parse().unwrap()),
            leeway: Duration::from_secs(5),
            refetch_interval: Duration::from_millis(0),
            mapping: ClaimMapping::standard(),
            token_types: vec!["at+jwt".into()],
            insecure_http: false,
        },
        reqwest::Client::new(),
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": [AUDIENCE, "other"], "sub": "user-42", "tenant": "tenant-a",
        "scope": "policies:read", "exp": now() + 300, "nbf": now() - 10, "iat": now() - 10,
    })
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn bearer(token: &str) -> BearerToken {
    BearerToken::from_authorization([format!("Bearer {token}").as_bytes()].into_iter())
        .unwrap()
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_yield_the_mapped_principal() {
    let keys = keys();
    let verifier = verifier(&serve_jwks(keys.set.clone()).await);
    let media_type = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.typ = Some("application/AT+JWT".into());
        jsonwebtoken::encode(&header, &claims(), &keys.rsa).unwrap()
    };
    for token in [
        sign(&keys.rsa, Algorithm::RS256, "rsa-1", &claims()),
        sign(&keys.ec, Algorithm::ES256, "ec-1", &claims()),
        media_type,
    ] {
        let principal = verifier.verify(&bearer(&token)).await.expect("valid token");
        assert_eq!(principal.subject(), "user-42");
        assert_eq!(principal.issuer(), ISSUER);
        assert_eq!(principal.tenant(), Some("tenant-a"));
        assert_eq!(principal.scopes(), ["policies:read"]);
    }
}

#[tokio::test]
async fn hostile_and_broken_tokens_are_refused_with_the_right_reason() {
    let keys = keys();
    let verifier = verifier(&serve_jwks(keys.set.clone()).await);
    let valid = sign(&keys.rsa, Algorithm::RS256, "rsa-1", &claims());
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims();
        edit(&mut c);
        sign(&keys.rsa, Algorithm::RS256, "rsa-1", &c)
    };
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut tampered_claims = claims();
    tampered_claims["sub"] = json!("admin");
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(tampered_claims.to_string().as_bytes())
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"rsa-1","typ":"at+jwt"}"#),
        b64(claims().to_string().as_bytes())
    );
    // The classic confusion attack: HMAC keyed with the RSA public key.
    let hs256 = sign(
        &EncodingKey::from_secret(&keys.rsa_public_pem),
        Algorithm::HS256,
        "rsa-1",
        &claims(),
    );
    // Validly signed, with a header jsonwebtoken's own type could not express.
    let signed_with_header = |header: &str, claims: &Value| {
        let message = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &keys.rsa, Algorithm::RS256).unwrap();
        format!("{message}.{signature}")
    };
    let mut id_token = claims();
    id_token["at_hash"] = json!("x1Yv7v8");
    let cases: Vec<(&str, String, AuthnError)> = vec![
        ("malformed", "not.a.jwt".into(), AuthnError::Malformed),
        (
            "crit names an extension (RFC 7515 §4.1.11)",
            signed_with_header(
                r#"{"alg":"RS256","kid":"rsa-1","typ":"at+jwt","crit":["exp2"],"exp2":1}"#,
                &claims(),
            ),
            AuthnError::Critical,
        ),
        (
            "typ JWT where the issuer's access tokens say at+jwt",
            signed_with_header(r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT"}"#, &claims()),
            AuthnError::TokenType,
        ),
        (
            "no typ",
            signed_with_header(r#"{"alg":"RS256","kid":"rsa-1"}"#, &claims()),
            AuthnError::TokenType,
        ),
        (
            "an ID token",
            sign(&keys.rsa, Algorithm::RS256, "rsa-1", &id_token),
            AuthnError::TokenType,
        ),
        (
            "alg none (not even an algorithm to this verifier)",
            none,
            AuthnError::Malformed,
        ),
        (
            "HS256 with the RSA public key",
            hs256,
            AuthnError::Algorithm,
        ),
        (
            "unknown kid",
            sign(&keys.rsa, Algorithm::RS256, "nope", &claims()),
            AuthnError::UnknownKey,
        ),
        (
            "no kid",
            {
                let mut h = Header::new(Algorithm::RS256);
                h.typ = Some("at+jwt".into());
                h.kid = None;
                jsonwebtoken::encode(&h, &claims(), &keys.rsa).unwrap()
            },
            AuthnError::UnknownKey,
        ),
        (
            "key of another algorithm",
            sign(&keys.rsa, Algorithm::RS256, "ec-1", &claims()),
            AuthnError::Algorithm,
        ),
        ("tampered payload", tampered, AuthnError::Signature),
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 60)),
            AuthnError::Expired,
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now() + 120)),
            AuthnError::NotYetValid,
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example")),
            AuthnError::Issuer,
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("https://other.example/mcp")),
            AuthnError::Audience,
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            AuthnError::MissingClaim { claim: "aud" },
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            AuthnError::MissingClaim { claim: "exp" },
        ),
        (
            "no sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            AuthnError::MissingClaim { claim: "sub" },
        ),
        (
            "15 KiB payload under a valid header",
            format!("{head}.{}.{signature}", "A".repeat(15 * 1024)),
            AuthnError::Signature,
        ),
    ];
    for (label, token, expected) in cases {
        let outcome = verifier.verify(&bearer(&token)).await;
        assert_eq!(outcome, Err(expected), "{label}");
    }
}

#[tokio::test]
async fn a_new_key_is_found_by_refetching_and_an_unreachable_issuer_is_a_malfunction() {
    let keys = keys();
    // Start with only the EC key published; the RSA key appears later (rotation).
    let rsa_key = keys.set.lock().unwrap()["keys"][0].clone();
    keys.set.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let verifier = verifier(&serve_jwks(keys.set.clone()).await);
    let ec = sign(&keys.ec, Algorithm::ES256, "ec-1", &claims());
    verifier.verify(&bearer(&ec)).await.expect("published key");
    let rsa = sign(&keys.rsa, Algorithm::RS256, "rsa-1", &claims());
    assert_eq!(
        verifier.verify(&bearer(&rsa)).await,
        Err(AuthnError::UnknownKey)
    );
    keys.set.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(rsa_key);
    verifier
        .verify(&bearer(&rsa))
        .await
        .expect("rotated-in key found by refetch");

    let down = self::verifier("http://127.0.0.1:9/jwks");
    let outcome = down.verify(&bearer(&ec)).await;
    assert_eq!(outcome, Err(AuthnError::Unavailable));
    assert!(
        outcome.unwrap_err().is_malfunction(),
        "an unreachable issuer is never a 401"
    );
}

#[tokio::test]
async fn keys_are_found_through_the_issuers_metadata_and_a_foreign_document_is_ignored() {
    let keys = keys();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let set = keys.set.clone();
    let honest = json!({ "issuer": base, "jwks_uri": format!("{base}/keys") });
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || {
                let honest = honest.clone();
                async move { Json(honest) }
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server/liar",
            get(|| async { Json(json!({ "issuer": "https://someone.else", "jwks_uri": "http://127.0.0.1:9/keys" })) }),
        )
        .route(
            "/keys",
            get(move || {
                let set = set.lock().unwrap().clone();
                async move { Json(set) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let discovering = |issuer: &str| {
        JwtVerifier::new(
            JwtConfig {
                issuer: issuer.into(),
                audience: AUDIENCE.into(),
                jwks_uri: None,
                leeway: Duration::from_secs(5),
                refetch_interval: Duration::from_millis(0),
                mapping: ClaimMapping::standard(),
                token_types: vec!["at+jwt".into()],
                insecure_http: false,
            },
            reqwest::Client::new(),
        )
    };
    let mut c = claims();
    c["iss"] = json!(base);
    let token = sign(&keys.ec, Algorithm::ES256, "ec-1", &c);
    let principal = discovering(&base)
        .verify(&bearer(&token))
        .await
        .expect("discovered keys");
    assert_eq!(principal.issuer(), base);

    let liar = format!("{base}/liar");
    c["iss"] = json!(liar);
    let token = sign(&keys.ec, Algorithm::ES256, "ec-1", &c);
    assert_eq!(
        discovering(&liar).verify(&bearer(&token)).await,
        Err(AuthnError::Unavailable)
    );
}

/// A verified token is remembered by its hash, never past its `exp`: an expired token is
/// refused even though it verified before.
#[tokio::test]
async fn a_remembered_token_still_expires() {
    let keys = keys();
    let uri = serve_jwks(keys.set.clone()).await;
    let verifier = JwtVerifier::new(
        JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_uri: Some(uri.parse().unwrap()),
            leeway: Duration::ZERO,
            refetch_interval: Duration::from_millis(0),
            mapping: ClaimMapping::standard(),
            token_types: vec!["at+jwt".into()],
            insecure_http: false,
        },
        reqwest::Client::new(),
    );
    let mut short = claims();
    short["exp"] = json!(now() + 1);
    let token = sign(&keys.ec, Algorithm::ES256, "ec-1", &short);
    assert!(verifier.verify(&bearer(&token)).await.is_ok());
    assert!(verifier.verify(&bearer(&token)).await.is_ok(), "remembered");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(verifier.verify(&bearer(&token)).await.is_err(), "expired");
}
