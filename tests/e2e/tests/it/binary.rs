use std::{process::Stdio, time::Duration};

use portcullis_e2e::{Era, TestClient, connect_as, workspace_bin};
use rmcp::model::CallToolRequestParams;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::first_text;

/// The real `portcullis demo`: prints its URL, refuses a tokenless client, serves one holding
/// a token from `portcullis token`, and exits cleanly on SIGTERM.
#[tokio::test]
async fn the_demo_serves_a_client_with_a_cli_token_and_stops_gracefully_on_sigterm() {
    let data_dir = std::env::temp_dir().join(format!("portcullis-demo-e2e-{}", std::process::id()));
    let data = data_dir.to_str().expect("utf-8 temp dir");
    let (mut demo, url) = start_demo(data).await;
    assert!(url.starts_with("http://127.0.0.1:"), "loopback only: {url}");

    let refused = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    let token = std::process::Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["token", "--as", "user-42", "--data-dir", data])
        .output()
        .expect("portcullis token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let client = connect_as(&url, Era::Sessions, TestClient::default(), Some(&token)).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert!(names.contains(&"search_policies"), "{names:?}");
    assert!(
        !names.contains(&"update_policy"),
        "a viewer does not see it: {names:?}"
    );
    let mut search = CallToolRequestParams::new("search_policies");
    search.arguments = serde_json::json!({"query": "leave"}).as_object().cloned();
    let result = client
        .call_tool(search)
        .await
        .expect("tools/call search_policies");
    let text = first_text(&result);
    assert!(
        text.contains("POL-A1") && !text.contains("tenant-b"),
        "{text}"
    );
    client.cancel().await.expect("close");

    let pid = demo.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), demo.wait())
        .await
        .expect("the demo exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The seed's exercise on the real `portcullis demo`, with its embedded authorization server:
/// editor-a's session lists `update_policy`; the editor role is taken away in the demo's
/// identities file; that session alone is told `list_changed` within the bound, its next list
/// omits the tool, and its still-valid token cannot call it. user-42's session hears nothing.
#[tokio::test]
async fn the_demo_takes_a_role_away_mid_session() {
    let data_dir =
        std::env::temp_dir().join(format!("portcullis-demo-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_str().expect("utf-8 temp dir");
    let (mut demo, url) = start_demo(data).await;
    // A token from the demo's own authorization server, with the scopes asked for.
    let token = |identity: &str, scopes: &[&str]| {
        let mut args = vec!["token", "--as", identity, "--data-dir", data];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let out = std::process::Command::new(workspace_bin("portcullis", "portcullis"))
            .args(args)
            .output()
            .expect("portcullis token");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let mut sessions = Vec::new();
    for (identity, scopes) in [
        ("editor-a", &["policies:read", "policies:write"][..]),
        ("user-42", &[][..]),
    ] {
        let client = TestClient::default();
        let heard = client.tools_changed.clone();
        let scoped = token(identity, scopes);
        let service = connect_as(&url, Era::Sessions, client, Some(&scoped)).await;
        let names: Vec<String> = service
            .list_all_tools()
            .await
            .expect("list")
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect();
        assert_eq!(
            names.contains(&"update_policy".to_owned()),
            identity == "editor-a",
            "{identity}: {names:?}"
        );
        sessions.push((service, heard));
    }

    let identities = data_dir.join("identities.toml");
    let text = std::fs::read_to_string(&identities).expect("identities");
    let marker = "subject = \"editor-a\"";
    let at = text.find(marker).expect("editor-a in the identities file");
    let roles_at = at
        + text[at..]
            .find("roles = [\"editor\"]")
            .expect("editor-a's roles");
    let edited = format!(
        "{}roles = []{}",
        &text[..roles_at],
        &text[roles_at + "roles = [\"editor\"]".len()..]
    );
    let next = data_dir.join("identities.next");
    std::fs::write(&next, edited).expect("write");
    let changed = std::time::Instant::now();
    std::fs::rename(&next, &identities).expect("replace");

    let (editor, editor_heard) = &sessions[0];
    while editor_heard.lock().expect("lock").is_empty() {
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "editor-a never told"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        changed.elapsed() < Duration::from_secs(3),
        "within the 1 s check plus slack"
    );
    let names: Vec<String> = editor
        .list_all_tools()
        .await
        .expect("list")
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    assert!(!names.contains(&"update_policy".to_owned()), "{names:?}");
    let mut update = CallToolRequestParams::new("update_policy");
    update.arguments = serde_json::json!({"id": "POL-A1", "text": "x"})
        .as_object()
        .cloned();
    let refused = format!("{:?}", editor.call_tool(update).await);
    assert!(refused.contains("tool not found"), "{refused}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        sessions[1].1.lock().expect("lock").is_empty(),
        "user-42 heard nothing"
    );
    for (service, _) in sessions {
        let _ = service.cancel().await;
    }
    let _ = demo.kill().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The real `portcullis demo` on a free port with `data` as its data dir, and its MCP URL.
pub(crate) async fn start_demo(data: &str) -> (tokio::process::Child, String) {
    let mut demo = Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["demo", "--port", "0", "--data-dir", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start portcullis demo");
    let mut lines = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let mut url = None;
    while let Some(line) = lines.next_line().await.expect("read banner") {
        if let Some(found) = line.trim().strip_prefix("MCP endpoint:") {
            url = Some(found.trim().to_owned());
            break;
        }
    }
    // Keep reading what it prints, so its stdout never breaks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (demo, url.expect("the demo banner names the MCP endpoint"))
}

/// The README's operator examples for the demo: every line of it that starts with
/// `portcullis ` and names `--data-dir DIR`, as printed (its trailing comment dropped).
fn readme_demo_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("README.md");
    readme
        .lines()
        .filter(|line| line.starts_with("portcullis ") && line.contains("--data-dir DIR"))
        .map(|line| match line.find("  #") {
            Some(comment) => line[..comment].trim_end().to_owned(),
            None => line.trim_end().to_owned(),
        })
        .collect()
}

// See: issue 18. A newcomer could not run the README's operator examples against the demo
// without writing a config by hand. The demo writes the configuration it runs to its data dir,
// the operator commands take `--data-dir`, and this test runs the README's lines as printed,
// through a shell, against a real demo's data dir.
#[tokio::test]
async fn the_readmes_operator_examples_run_against_the_demo_as_printed() {
    let data_dir =
        std::env::temp_dir().join(format!("portcullis-demo-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_str().expect("utf-8 temp dir");
    let (mut demo, url) = start_demo(data).await;
    // A call or two, so the trail has records to show.
    let token = std::process::Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["token", "--as", "user-42", "--data-dir", data])
        .output()
        .expect("portcullis token");
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let (status, _) = portcullis_e2e::stateless_rpc(
        &url,
        Some(&token),
        "tools/call",
        serde_json::json!({"name": "update_policy", "arguments": {"id": "POL-A1"}}),
        serde_json::json!({}),
    )
    .await;
    assert!(status.is_success());
    let examples = readme_demo_examples();
    assert!(
        examples.len() >= 8,
        "the README's demo examples: {examples:?}"
    );
    // `NEW.cedar` in the policy diff example: the demo's policies with editors' update taken away.
    let work = data_dir.join("readme-examples");
    std::fs::create_dir_all(&work).unwrap();
    let policies = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/portcullis/demo/policies.cedar"),
    )
    .unwrap();
    std::fs::write(
        work.join("NEW.cedar"),
        policies.replace(
            "Role::\"editor\", action == Action::\"tool:update_policy\"",
            "Role::\"admin\", action == Action::\"tool:update_policy\"",
        ),
    )
    .unwrap();
    let bin = workspace_bin("portcullis", "portcullis");
    // `portcullis` on PATH, as the README assumes (`cargo install --path crates/portcullis`).
    #[expect(
        clippy::disallowed_methods,
        reason = "the shell the examples run in needs PATH"
    )]
    let inherited = std::env::var("PATH").unwrap_or_default();
    let path = format!("{}:{inherited}", bin.parent().unwrap().display());
    for example in &examples {
        let line = example.replace("DIR", &format!("'{data}'"));
        let output = std::process::Command::new("sh")
            .args(["-c", &line])
            .current_dir(&work)
            .env("PATH", &path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && !said.trim().is_empty(),
            "`{example}` failed: {said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if example.contains("explain") {
            assert!(
                said.contains("NOT RESOLVED"),
                "explain says it did not resolve the object: {said}"
            );
        }
        if example.contains("policy diff") {
            assert!(said.contains("editor"), "{said}");
        }
    }
    let _ = demo.kill().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
