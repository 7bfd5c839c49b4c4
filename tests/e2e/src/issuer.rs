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
        let dir = std::env::temp_dir().join(format!("devissuer-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("issuer data dir");
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
