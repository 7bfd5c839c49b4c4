//! A test signing key standing in for the gateway, and a raw JSON-RPC client over an in-memory
//! pipe, so tests see the exact bytes the backend answers.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_workspace::{Workspace, identity::IdentityVerifier, store::Store};
use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};

pub(crate) const ISSUER: &str = "https://gateway.test";
pub(crate) const AUDIENCE: &str = "workspace";
pub(crate) const META_KEY: &str = "io.portcullis/identity";

/// An ES256 key pair: the private half signs assertions, the public half is the backend's JWKS.
pub(crate) struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    pub(crate) fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = (&point[1..33], &point[33..65]);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der.as_ref()),
            jwk,
        }
    }

    pub(crate) fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// `claims` signed as the gateway signs assertions.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    pub(crate) fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    pub(crate) fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Valid assertions for `subject` of `tenant` with `roles`: a fresh one for each request,
    /// as the gateway mints them.
    pub(crate) fn assert<'k>(&'k self, subject: &str, tenant: &str, roles: &[&str]) -> Who<'k> {
        Who {
            key: self,
            claims: claims(subject, tenant, roles),
        }
    }
}

/// Someone the test speaks for: each request gets an assertion of its own.
pub(crate) struct Who<'k> {
    key: &'k TestKey,
    claims: Value,
}

impl Who<'_> {
    /// A fresh assertion (its own `jti`).
    pub(crate) fn fresh(&self) -> String {
        let mut claims = self.claims.clone();
        claims["jti"] = json!(unique_jti());
        self.key.sign(&claims)
    }
}

/// What a test sends as the identity assertion: a fixed text (a forged, expired or replayed
/// one), or a fresh one for someone.
pub(crate) trait Assertion {
    fn text(&self) -> String;
}

impl Assertion for str {
    fn text(&self) -> String {
        self.to_owned()
    }
}

impl Assertion for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl Assertion for Who<'_> {
    fn text(&self) -> String {
        self.fresh()
    }
}

fn unique_jti() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "jti-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims as the gateway mints them: one minute to live.
pub(crate) fn claims(subject: &str, tenant: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "tenant": tenant,
        "roles": roles,
        "scopes": ["policies:read"],
        "client_id": "test-client",
        "iat": now,
        "exp": now + 60,
        "jti": unique_jti(),
    })
}

/// A backend with a fresh in-memory database that trusts `key`.
pub(crate) fn workspace(key: &TestKey) -> Workspace {
    let store = Store::open(std::path::Path::new(":memory:")).unwrap();
    let verifier = IdentityVerifier::new(&key.jwks(), ISSUER, AUDIENCE).unwrap();
    Workspace::new(store, verifier)
}

/// A raw JSON-RPC client: one JSON object per line, as on stdio.
pub(crate) struct Client<R, W> {
    lines: Lines<BufReader<R>>,
    writer: W,
    next_id: u64,
}

pub(crate) type Pipe = tokio::io::DuplexStream;

impl Client<tokio::io::ReadHalf<Pipe>, tokio::io::WriteHalf<Pipe>> {
    /// Serve `workspace` on one end of an in-memory pipe and initialize a session on the other.
    pub(crate) async fn connect(workspace: Workspace) -> Self {
        let mut client = Self::unopened(workspace);
        client.initialize().await;
        client
    }

    /// Serve `workspace` on one end of an in-memory pipe; nothing sent yet.
    pub(crate) fn unopened(workspace: Workspace) -> Self {
        let (server, client) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            if let Ok(service) = workspace.serve(server).await {
                let _ = service.waiting().await;
            }
        });
        let (reader, writer) = tokio::io::split(client);
        Self::new(reader, writer)
    }
}

impl<R, W> Client<R, W>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(crate) fn new(reader: R, writer: W) -> Self {
        Self {
            lines: BufReader::new(reader).lines(),
            writer,
            next_id: 1,
        }
    }

    pub(crate) async fn initialize(&mut self) {
        let response = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "workspace-test", "version": "0"},
                }),
            )
            .await;
        assert!(response.get("result").is_some(), "{response}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// Send a request and return the whole response message.
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .unwrap()
                .expect("server hung up");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }

    /// `method` with `params` and, if given, the identity assertion in `_meta`.
    pub(crate) async fn as_caller(
        &mut self,
        assertion: Option<&dyn Assertion>,
        method: &str,
        params: Value,
    ) -> Value {
        let mut params = params;
        if let Some(assertion) = assertion {
            params["_meta"] = json!({ META_KEY: assertion.text() });
        }
        self.request(method, params).await
    }

    /// `tools/call` of `tool` as the holder of `assertion`; returns the whole response.
    pub(crate) async fn call(
        &mut self,
        assertion: &dyn Assertion,
        tool: &str,
        arguments: Value,
    ) -> Value {
        self.as_caller(
            Some(assertion),
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }

    async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.writer.write_all(&line).await.unwrap();
        self.writer.flush().await.unwrap();
    }
}

/// The structured content of a successful tool call.
pub(crate) fn structured(response: &Value) -> &Value {
    let result = &response["result"];
    assert_eq!(result["isError"], json!(false), "{response}");
    &result["structuredContent"]
}

/// Assert the response is the identity refusal, exactly.
pub(crate) fn assert_refused(response: &Value) {
    assert_eq!(
        response["error"],
        json!({"code": -31010, "message": "identity assertion missing or invalid"}),
        "{response}"
    );
    assert!(response.get("result").is_none());
}
