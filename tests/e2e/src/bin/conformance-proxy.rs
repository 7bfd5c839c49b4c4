//! `conformance-proxy`: lets the official MCP conformance suite, which sends no token, run
//! against a gateway with authentication on.
//!
//! It is two things on loopback: a minimal token issuer (a JWKS with one ES256 key, and one
//! token minted at start for `--resource`), and a reverse proxy that adds `Authorization:
//! Bearer <token>` to every request it forwards to `--gateway`, changing nothing else (Host and
//! Origin pass through, so the suite's DNS-rebinding checks still reach the gateway's own
//! checks). Test tooling only; the key is the test key checked in beside the authn tests.
//!
//! Two modes, two processes (the gateway's config needs the issuer before the proxy can know the
//! gateway): `issuer --resource URL` prints `issuer`, `jwks` and `token` lines and serves the
//! JWKS; `forward --gateway URL --token TOKEN` prints `listening URL` and proxies.

#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test tooling: report and stop on setup failure"
)]

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    response::Response,
    routing::get,
};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::json;

struct Proxy {
    gateway: String,
    authorization: String,
    client: Client<HttpConnector, Body>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next();
    let mut options = std::collections::HashMap::new();
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        options.insert(flag, value);
    }
    match mode.as_deref() {
        Some("issuer") => issuer(options.get("--resource").expect("--resource URL")).await,
        Some("forward") => {
            let gateway = options.get("--gateway").expect("--gateway URL").clone();
            let token = options.get("--token").expect("--token TOKEN");
            proxy(gateway, format!("Bearer {token}")).await;
        }
        _ => panic!(
            "usage: conformance-proxy issuer --resource URL | forward --gateway URL --token TOKEN"
        ),
    }
}

/// Serve a JWKS and print `issuer`, `jwks` and `token` lines; the token is for `resource`.
async fn issuer(resource: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind issuer");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let key = EncodingKey::from_ec_pem(include_bytes!(
        "../../../../crates/portcullis-authn/tests/keys/es256.pem"
    ))
    .expect("test key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some("conformance".into());
    let jwks = json!({ "keys": [jwk] });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "iss": issuer, "sub": "conformance-suite", "aud": resource,
        "iat": now, "exp": now + 6 * 3600, "scope": "mcp", "client_id": "conformance",
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("conformance".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("token");
    println!("issuer {issuer}");
    println!("jwks {issuer}/jwks");
    println!("token {token}");
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let jwks = jwks.clone();
            async move { Json(jwks) }
        }),
    );
    axum::serve(listener, app).await.expect("serve issuer");
}

/// Forward everything to `gateway`, adding `authorization`; print `listening URL`.
async fn proxy(gateway: String, authorization: String) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let proxy = Arc::new(Proxy {
        gateway,
        authorization,
        client: Client::builder(TokioExecutor::new()).build(connector),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let address: SocketAddr = listener.local_addr().expect("address");
    println!("listening http://{address}/mcp");
    let app = Router::new().fallback(forward).with_state(proxy);
    axum::serve(listener, app).await.expect("serve");
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // The suite talks to `<proxy>/mcp`; the gateway's endpoint has the same path.
    let base = proxy.gateway.trim_end_matches("/mcp");
    parts.uri = format!("{base}{path}").parse().expect("upstream uri");
    parts.headers.insert(
        http::header::AUTHORIZATION,
        proxy.authorization.parse().expect("header"),
    );
    let upstream = http::Request::from_parts(parts, body);
    match proxy.client.request(upstream).await {
        Ok(response) => response.map(|body| Body::new(body.map_err(axum::Error::new))),
        Err(error) => Response::builder()
            .status(502)
            .body(Body::from(format!("conformance-proxy: {error}")))
            .expect("response"),
    }
}
