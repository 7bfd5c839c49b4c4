//! The embedded authorization server on a loopback socket, as tests' token issuer.

use std::path::PathBuf;

use portcullis_devauth::{DevAuth, DevAuthConfig};

/// A running `portcullis-devauth` with its own data dir (removed on drop).
pub struct DevIssuer {
    /// The server: `mint` tokens, read its identities.
    pub auth: DevAuth,
    /// Its issuer URL.
    pub issuer: String,
    dir: PathBuf,
}

impl DevIssuer {
    /// Start one that issues tokens for `resource`; `label` keeps data dirs of tests apart.
    pub async fn start(label: &str, resource: &str, default_scopes: &[&str]) -> Self {
        Self::start_with(label, resource, default_scopes, None).await
    }

    /// As [`DevIssuer::start`], with `identities` (the `identities.toml` text) instead of the
    /// sample identities.
    pub async fn start_with(
        label: &str,
        resource: &str,
        default_scopes: &[&str],
        identities: Option<&str>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("devissuer-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("issuer data dir");
        if let Some(text) = identities {
            std::fs::write(DevAuth::identities_path(&dir), text).expect("identities file");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let auth = DevAuth::open(
            &dir,
            DevAuthConfig {
                issuer: issuer.clone(),
                resources: vec![resource.to_owned()],
                default_scopes: default_scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        )
        .expect("authorization server opens");
        let router = auth.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { auth, issuer, dir }
    }

    /// Its data dir, for files tests put beside it.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The JSON-RPC message of an HTTP answer: the body itself, or its last SSE `data:` line.
pub fn last_message(text: &str) -> String {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .rfind(|data| !data.trim().is_empty())
        .unwrap_or(text)
        .to_owned()
}

/// One stateless (2026-07-28) request with `token`, its headers agreeing with its body, and
/// `capabilities` declared; the status and the JSON-RPC message of the answer.
pub async fn stateless_rpc(
    url: &str,
    token: Option<&str>,
    method: &str,
    params: serde_json::Value,
    capabilities: serde_json::Value,
) -> (reqwest::StatusCode, String) {
    let mut params = params;
    let mut meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    });
    if let (Some(meta), Some(extra)) = (
        meta.as_object_mut(),
        params.get("_meta").and_then(serde_json::Value::as_object),
    ) {
        meta.extend(extra.clone());
    }
    params["_meta"] = meta;
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    let name = ["name", "uri", "taskId"]
        .iter()
        .find_map(|key| params.get(*key).and_then(serde_json::Value::as_str));
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body read");
    (status, last_message(&text))
}
