use std::{path::PathBuf, process::Stdio};

use serde_json::json;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::{AUDIENCE, Client, ISSUER, TestKey, structured};

const BINARY: &str = env!("CARGO_BIN_EXE_portcullis-workspace");

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let unique = format!(
            "portcullis-workspace-{name}-{}-{}",
            std::process::id(),
            crate::support::now()
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(scratch: &Scratch, jwks: &str) -> Command {
    let jwks_path = scratch.0.join("gateway.jwks.json");
    std::fs::write(&jwks_path, jwks).unwrap();
    let mut command = Command::new(BINARY);
    command
        .arg("--db")
        .arg(scratch.0.join("workspace.db"))
        .arg("--identity-jwks")
        .arg(&jwks_path)
        .args(["--issuer", ISSUER, "--audience", AUDIENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn start(scratch: &Scratch, key: &TestKey) -> (Child, Client<ChildStdout, ChildStdin>) {
    let mut child = command(scratch, &key.jwks()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut client = Client::new(stdout, stdin);
    client.initialize().await;
    (child, client)
}

#[tokio::test]
async fn the_binary_serves_stdio_and_keeps_its_database_across_restarts() {
    let scratch = Scratch::new("restart");
    let key = TestKey::generate("gw-1");
    let editor = key.assert("editor-a", "tenant-a", &["editor"]);
    let (mut child, mut client) = start(&scratch, &key).await;
    let response = client
        .call(
            &editor,
            "create_ticket",
            json!({"title": "Survives a restart"}),
        )
        .await;
    let id = structured(&response)["id"].as_str().unwrap().to_owned();
    let refused = client
        .as_caller(
            None,
            "tools/call",
            json!({"name": "read_policy", "arguments": {"id": "POL-A1"}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], json!(-31010));
    drop(client);
    child.kill().await.unwrap();
    assert!(scratch.0.join("workspace.db").exists());

    let (mut child, mut client) = start(&scratch, &key).await;
    let response = client
        .call(
            &editor,
            "describe_object",
            json!({"kind": "ticket", "id": id}),
        )
        .await;
    assert_eq!(structured(&response)["exists"], json!(true));
    // Seeding happens once: the sample documents are not duplicated.
    let response = client
        .call(&editor, "search_policies", json!({"query": "annual"}))
        .await;
    assert_eq!(
        structured(&response)["policies"].as_array().unwrap().len(),
        1
    );
    drop(client);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_an_unusable_key_set() {
    let scratch = Scratch::new("bad-jwks");
    for jwks in [
        "not json",
        r#"{"keys": []}"#,
        r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
    ] {
        let status = command(&scratch, jwks).status().await.unwrap();
        assert_eq!(status.code(), Some(2), "{jwks}");
    }
}
