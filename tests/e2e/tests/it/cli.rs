//! Issue 18: the command line tells the truth — its version and commit, a product line on
//! top of `--help`, completions, `check` that validates without side effects and points at
//! the line of a bad value, and `audit query` that compares times, not text.

use std::process::Command;

use portcullis_e2e::{TestGateway, workspace_bin};
use serde_json::json;

/// Run `portcullis args`: whether it succeeded, its output, and its output with its log and
/// errors after it.
fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(workspace_bin("portcullis", "portcullis"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let both = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout, both)
}

fn portcullis(args: &[&str]) -> (bool, String) {
    let (ok, _, both) = run(args);
    (ok, both)
}

#[test]
fn version_help_and_completions_describe_the_product() {
    let (ok, version) = portcullis(&["--version"]);
    assert!(ok, "{version}");
    assert!(
        version.starts_with(&format!(
            "portcullis {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let (ok, help) = portcullis(&["--help"]);
    assert!(
        ok && help.starts_with("Portcullis: an authorization gateway for remote MCP servers"),
        "{help}"
    );
    assert!(!help.contains("CLI only"), "{help}");
    let (ok, script) = portcullis(&["completions", "bash"]);
    assert!(
        ok && script.contains("complete") && script.contains("serve"),
        "{script}"
    );
}

#[test]
fn check_validates_without_writing_and_points_at_a_bad_value() {
    let dir = std::env::temp_dir().join(format!("cli-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = "[auth]\npublic_url = \"http://127.0.0.1:9/mcp\"\n\n[[auth.issuer]]\n\
                issuer = \"http://127.0.0.1:9\"\n\n[policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
                [identity]\nkey_file = \"identity-key.pem\"\njwks_file = \"identity-jwks.json\"\n\n\
                [[upstream]]\nname = \"a\"\ncommand = \"unused\"\n";
    let good = dir.join("good.toml");
    std::fs::write(&good, base).unwrap();
    let (ok, said) = portcullis(&["check", "--config", good.to_str().unwrap()]);
    assert!(ok && said.contains("valid"), "{said}");
    assert!(said.contains("serve would write"), "{said}");
    assert!(
        !dir.join("identity-key.pem").exists() && !dir.join("identity-jwks.json").exists(),
        "check writes nothing"
    );

    // A value refused after parsing: its file, line and the line itself; nothing written.
    let bad = dir.join("bad.toml");
    let bad_text = format!("{base}\n[server]\nrequest_timeout = \"soon\"\n");
    let bad_line = bad_text.lines().count();
    std::fs::write(&bad, &bad_text).unwrap();
    let (ok, said) = portcullis(&["check", "--config", bad.to_str().unwrap()]);
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("bad.toml`, line {bad_line}:"))
            && said.contains("server.request_timeout")
            && said.contains("request_timeout = …"),
        "{said}"
    );
    let (ok, said) = portcullis(&["pins", "list", "--config", bad.to_str().unwrap()]);
    assert!(!ok, "{said}");
    assert!(
        !dir.join("identity-key.pem").exists(),
        "no command that fails writes a key"
    );

    // Secrets are read by serve and check, not by every command that reads the configuration:
    // an approval keys file missing fails `check`, and not an operator command.
    let keyed = dir.join("keyed.toml");
    std::fs::write(
        &keyed,
        format!(
            "{base}\n[cluster]\npostgres = \"postgres://u@127.0.0.1:9/db\"\n\n\
             [consent]\nkeys = \"missing.keys\"\n"
        ),
    )
    .unwrap();
    let (ok, said) = portcullis(&["check", "--config", keyed.to_str().unwrap()]);
    assert!(!ok && said.contains("consent.keys"), "{said}");
    let (ok, said) = portcullis(&["pins", "list", "--config", keyed.to_str().unwrap()]);
    assert!(
        !ok && said.contains("[pins] store") && !said.contains("consent.keys"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn audit_query_compares_times_and_refuses_what_it_cannot_read() {
    let dir = std::env::temp_dir().join(format!("cli-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    // The test gateway adds `[danger] unauthenticated` itself; the file needs it said.
    let text = format!(
        "[audit]\nsqlite = {trail:?}\n\n{}",
        crate::stdio_upstream("fixture")
    );
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!("{text}\n[danger]\nunauthenticated = true\n"),
    )
    .unwrap();
    let gateway = TestGateway::spawn(&text).await;
    let (status, _) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        None,
        "tools/call",
        json!({"name": "fixture_echo", "arguments": {"text": "hi"}}),
        json!({}),
    )
    .await;
    assert!(status.is_success());
    // Queued records reach the file a moment later.
    for _ in 0..100 {
        let stored = portcullis_audit::Store::Sqlite(trail.clone())
            .query(&portcullis_audit::Filter::default())
            .map(|records| records.len())
            .unwrap_or(0);
        if stored > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(gateway);
    let config = config.to_str().unwrap();
    // The output alone (the log goes to stderr), and the errors.
    let query = |extra: &[&str]| {
        let mut args = vec!["audit", "query", "--config", config];
        args.extend_from_slice(extra);
        let (ok, stdout, both) = run(&args);
        (ok, if ok { stdout } else { both })
    };
    let (ok, table) = query(&["--since", "1h"]);
    assert!(ok, "{table}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["kind", "target", "outcome", "correlation"] {
        assert!(header.contains(column), "{header}");
    }
    // The call's outcome record says so in its own column.
    assert!(
        table
            .lines()
            .skip(1)
            .any(|row| row.contains(" outcome ") && row.contains(" ok ")),
        "records of the last hour: {table}"
    );
    // The same moment written with an offset is the same moment.
    let (ok, none) = query(&["--since", "2999-01-01T01:00:00+01:00"]);
    assert!(
        ok && none.lines().count() == 1,
        "nothing after a future time: {none}"
    );
    let (ok, all) = query(&[
        "--until",
        "2999-01-01T00:00:00Z",
        "--since",
        "2000-01-01T00:00:00-05:00",
    ]);
    assert!(ok && all.lines().count() == table.lines().count(), "{all}");
    // At the boundary: a record's own time, written with an offset, is `--since` it and not
    // `--until` it (times compared, not text: the text of `+01:00` sorts after `Z`).
    let (ok, json) = query(&["--format", "json"]);
    assert!(ok, "{json}");
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().unwrap_or_default()).unwrap();
    let at = portcullis_audit::rfc3339_millis(first["time"].as_str().unwrap()).unwrap();
    let shifted = portcullis_audit::rfc3339_from_millis(at + 3_600_000).replace('Z', "+01:00");
    let (_, from) = query(&["--since", &shifted, "--format", "json"]);
    assert!(
        from.contains(first["correlation"].as_str().unwrap()),
        "since {shifted}: {from}"
    );
    let (_, before) = query(&["--until", &shifted, "--format", "json"]);
    assert!(
        !before.contains(&format!("\"time\":\"{}\"", first["time"].as_str().unwrap())),
        "until {shifted}: {before}"
    );
    let (ok, said) = query(&["--since", "yesterday"]);
    assert!(!ok && said.contains("RFC 3339"), "{said}");
    let (ok, said) = query(&["--decision", "allowed"]);
    assert!(
        !ok && said.contains("allow"),
        "an unknown decision is an error: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// See: issue 18. `[log] format = "json"`: one JSON object a line, every line, with the
// request's correlation id on the lines of its handling.
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_correlation_id() {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("cli-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n\n{}\n\
             [danger]\nunauthenticated = true\n",
            crate::stdio_upstream("fixture")
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut banner = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = banner.next_line().await.unwrap().expect("a banner");
        if let Some(url) = line.strip_prefix("listening ") {
            break url.to_owned();
        }
    };
    let refused = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill().await;
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(lines.iter().all(|line| line["level"].is_string()), "{log}");
    let refusal = lines
        .iter()
        .find(|line| line["fields"]["message"] == "malformed request refused")
        .unwrap_or_else(|| panic!("the refusal is logged: {log}"));
    // The request's span carries it, whatever the event itself says.
    let correlation = refusal["span"]["correlation"].as_str().unwrap_or_default();
    assert!(correlation.starts_with("pc-"), "{refusal}");
    let (ok, said) = portcullis(&["check", "--config", config.to_str().unwrap()]);
    assert!(ok, "{said}");
    std::fs::write(&config, "[log]\nformat = \"xml\"\n").unwrap();
    let (ok, said) = portcullis(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok && said.contains("log.format"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

// See: issue 18. `serve` sat silent for ten seconds in front of an upstream slow to start.
// It now says which upstreams it is waiting for.
#[tokio::test]
async fn serve_says_which_upstream_it_waits_for() {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("cli-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    let slow = format!(
        "sleep 4; exec {} --stdio",
        portcullis_e2e::fixture_bin().to_string_lossy()
    );
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"sleepy\"\n\
             command = \"sh\"\nargs = [\"-c\", {slow:?}]\n\n[danger]\nunauthenticated = true\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTCULLIS_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let said = tokio::time::timeout(std::time::Duration::from_secs(4), async {
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("waiting for upstreams") {
                return line;
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(said.contains("sleepy"), "said: {said:?}");
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// See: issue 18. `check --online` reaches what the configuration names, as serve would: the
// issuer's metadata and keys, and each HTTP upstream; one that cannot be reached fails the
// check, by name.
// The checks run in another process while this one serves the issuer: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reaches_the_issuer_and_the_upstreams() {
    let issuer =
        portcullis_e2e::DevIssuer::start("cli-online", "http://127.0.0.1:9/mcp", &[]).await;
    let upstream = portcullis_e2e::Recorder::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("cli-online-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("exchange-secret"), "s3cret\n").unwrap();
    let config = |second: &str| {
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            format!(
                "[auth]\npublic_url = \"http://127.0.0.1:9/mcp\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
                 [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
                 [[upstream]]\nname = \"up\"\nurl = \"{}\"\ncredentials = \"token-exchange\"\n\n\
                 [upstream.token_exchange]\nissuer = \"{}\"\nclient_id = \"portcullis\"\n\
                 client_secret_file = \"exchange-secret\"\naudience = \"up\"\n\n\
                 [[upstream]]\nname = \"down\"\nurl = \"{second}\"\n",
                issuer.issuer, upstream.url, issuer.issuer
            ),
        )
        .unwrap();
        path
    };
    let good = config(&upstream.url);
    let (ok, said) = portcullis(&["check", "--online", "--config", good.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("ok    issuer {}", issuer.issuer)) && said.contains("key(s)"),
        "{said}"
    );
    assert!(said.contains("ok    upstream up"), "{said}");
    assert!(
        said.contains("ok    token endpoint of upstream up") && said.contains("/token"),
        "{said}"
    );
    let bad = config(&format!("http://127.0.0.1:{closed}/mcp"));
    let (ok, said) = portcullis(&["check", "--online", "--config", bad.to_str().unwrap()]);
    assert!(
        !ok && said.contains("FAIL  upstream down")
            && said.contains("not reachable: upstream down"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
