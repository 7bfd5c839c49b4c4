//! Issue 19: an upstream is not to be trusted; one cannot harm callers, other upstreams, or the
//! gateway.

use portcullis_e2e::{DevIssuer, Hostility, Recorder, TestGateway, fixture_bin};
use serde_json::json;

use crate::stdio_upstream;

const RESOURCE: &str = "http://127.0.0.1/mcp";

// See: issue 19. An upstream that always returns a next page made one `tools/list` grow the
// gateway by gigabytes. What one upstream's pages may add up to is bounded: past 16 MiB its
// later pages are left out, and the honest upstream's tools are still listed.
#[tokio::test]
async fn an_upstream_with_endless_large_pages_is_read_only_so_far() {
    let _ = fixture_bin();
    let hostile = Recorder::hostile(Hostility::EndlessPages(1024 * 1024)).await;
    let issuer = DevIssuer::start("hostile-pages", RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}\n\
         [[upstream]]\nname = \"pages\"\nurl = \"{}\"\n",
        issuer.issuer,
        stdio_upstream("honest"),
        hostile.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let (status, body) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "tools/list",
        json!({}),
        json!({}),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(
        names.iter().any(|name| name.starts_with("honest__")),
        "the honest upstream's tools are listed: {names:?}"
    );
    let pages = hostile
        .received()
        .iter()
        .filter(|message| message.method == "tools/list")
        .count();
    // 16 MiB of 1 MiB pages (and the one that crossed it); unbounded, it was asked for 100.
    assert!(
        (10..=20).contains(&pages),
        "the hostile upstream was asked for {pages} pages"
    );
}

// See: issue 19. A burst of `list_changed` from one upstream reached idle sessions thousands of
// times. An upstream's announcements are coalesced: at once, then at most once per second.
#[tokio::test]
async fn a_burst_of_list_changed_reaches_a_session_a_few_times_not_a_thousand() {
    let flooding = Recorder::hostile(Hostility::ListChangedFlood(1000)).await;
    let issuer = DevIssuer::start("hostile-list-changed", RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[upstream]]\nname = \"flood\"\nurl = \"{}\"\n",
        issuer.issuer, flooding.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let http = reqwest::Client::new();
    let session = crate::open_session(&http, &gateway.url, Some(&token)).await;
    let mut stream = http
        .get(&gateway.url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("the session's stream");
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(2500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, stream.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let heard = seen.matches("notifications/tools/list_changed").count();
    assert!(
        (1..=4).contains(&heard),
        "the session's client heard list_changed {heard} times"
    );
}

/// A request in `session` as the holder of `token`; its HTTP status.
async fn in_session(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: &str,
    body: serde_json::Value,
) -> u16 {
    http.post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

// See: issue 19. `logging/setLevel` sent the caller's identity to upstreams it never used. It
// now reaches the upstreams the session used, and one used later on its first request.
#[tokio::test]
async fn set_level_reaches_only_the_upstreams_the_caller_used() {
    let (used, unused) = (Recorder::start().await, Recorder::start().await);
    let issuer = DevIssuer::start("hostile-set-level", RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[upstream]]\nname = \"used\"\nurl = \"{}\"\n\n\
         [[upstream]]\nname = \"unused\"\nurl = \"{}\"\n",
        issuer.issuer, used.url, unused.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let http = reqwest::Client::new();
    let session = crate::open_session(&http, &gateway.url, Some(&token)).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "used__echo", "arguments": {}}});
    assert_eq!(
        in_session(&http, &gateway.url, &token, &session, call).await,
        200
    );
    let level = json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel",
                       "params": {"level": "error"}});
    assert_eq!(
        in_session(&http, &gateway.url, &token, &session, level).await,
        200
    );
    let set_levels = |recorder: &Recorder| {
        recorder
            .received()
            .iter()
            .filter(|message| message.method == "logging/setLevel")
            .count()
    };
    assert_eq!(set_levels(&used), 1, "the upstream the caller used is told");
    assert_eq!(
        set_levels(&unused),
        0,
        "the one it never used learns nothing"
    );
    // Used later: told first, then asked.
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "unused__echo", "arguments": {}}});
    assert_eq!(
        in_session(&http, &gateway.url, &token, &session, call).await,
        200
    );
    let methods: Vec<String> = unused
        .received()
        .into_iter()
        .filter(|message| message.session.is_some())
        .map(|message| message.method)
        .filter(|method| method != "notifications/initialized")
        .collect();
    let told = methods.iter().position(|m| m == "logging/setLevel");
    let asked = methods.iter().position(|m| m == "tools/call");
    assert!(
        told.is_some() && told < asked,
        "told the level before its first call: {methods:?}"
    );
}

/// The names `tools/list` shows `token` (2026-07-28).
async fn tool_names(url: &str, token: &str) -> Vec<String> {
    let (status, body) =
        portcullis_e2e::stateless_rpc(url, Some(token), "tools/list", json!({}), json!({})).await;
    assert!(status.is_success(), "{status} {body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

/// `portcullis pins <args>` on `config`: its output, and whether it succeeded.
fn pins_command(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output =
        std::process::Command::new(portcullis_e2e::workspace_bin("portcullis", "portcullis"))
            .arg("pins")
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .expect("portcullis pins");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

// See: issue 19. An upstream could change a tool's description after review (a "rug pull")
// and the gateway served the new one silently. Definitions are pinned when first seen; a
// changed one is held back (not listed, not callable, in both eras) and recorded until an
// operator approves it with `portcullis pins approve`, after which it is served again.
#[tokio::test]
async fn a_changed_tool_definition_is_held_until_an_operator_approves_it() {
    let upstream = Recorder::hostile(Hostility::RugPull).await;
    let issuer = DevIssuer::start("hostile-pins", RESOURCE, &[]).await;
    let dir = std::env::temp_dir().join(format!("hostile-pins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let trail = dir.join("audit.jsonl");
    let store = dir.join("pins.db");
    let config_text = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [audit]\njsonl = {trail:?}\n\n[pins]\nstore = {store:?}\n\n\
         [[upstream]]\nname = \"tickets\"\nurl = \"{}\"\n",
        issuer.issuer, upstream.url,
    );
    let config = dir.join("gateway.toml");
    std::fs::write(&config, &config_text).expect("config");
    let gateway = TestGateway::spawn(&config_text).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let call = || {
        portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
            json!({}),
        )
    };
    assert!(
        tool_names(&gateway.url, &token)
            .await
            .contains(&"echo".to_owned())
    );
    let (_, body) = call().await;
    assert!(body.contains("done"), "the pinned tool runs: {body}");

    upstream.pull_rug();
    let names = tool_names(&gateway.url, &token).await;
    assert!(!names.contains(&"echo".to_owned()), "held back: {names:?}");
    assert!(
        names.contains(&"wipe".to_owned()),
        "the others are not: {names:?}"
    );
    let (_, body) = call().await;
    assert!(
        body.contains("tool not found"),
        "a held tool cannot be called: {body}"
    );
    // The session era too.
    let http = reqwest::Client::new();
    let session = crate::open_session(&http, &gateway.url, Some(&token)).await;
    let answer = http
        .post(&gateway.url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {}}})
            .to_string(),
        )
        .send()
        .await
        .expect("call")
        .text()
        .await
        .expect("body");
    assert!(
        answer.contains("tool not found"),
        "nor in a session: {answer}"
    );

    let (ok, diff) = pins_command(&config, &["diff"]);
    assert!(ok, "{diff}");
    assert!(diff.contains("tickets/tool:echo"), "{diff}");
    assert!(
        diff.contains("+ ") && diff.contains("id_rsa"),
        "the change is shown: {diff}"
    );
    let (ok, refused) = pins_command(&config, &["approve", "tickets/tool:wipe"]);
    assert!(!ok, "nothing waits under that name: {refused}");
    let (ok, approved) = pins_command(&config, &["approve", "tickets/tool:echo"]);
    assert!(
        ok && approved.contains("approved tickets/tool:echo"),
        "{approved}"
    );
    let mut shown = false;
    for _ in 0..50 {
        if tool_names(&gateway.url, &token)
            .await
            .contains(&"echo".to_owned())
        {
            shown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(shown, "approved, it is listed again");
    let (_, body) = call().await;
    assert!(body.contains("done"), "and runs: {body}");

    assert_recorded(
        &gateway,
        &trail,
        &[
            "definition_changed",
            "definition_held",
            "definition_approved",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

// See: issue 19. With a single upstream every URI routed to it, so a template held back
// because it changed still had its reads sent through. And a tool an upstream added (or
// renamed) was served at first sight. With `on_new = "hold"` and definitions pinned in the
// config, only what was reviewed is served: `echo`, pinned ahead of time, is listed; `wipe`
// and `secret`, never approved, are not until `pins approve`; the changed template's reads
// stop; and a change to the config's pin is held and recorded but not the store's to approve.
#[tokio::test]
async fn with_pins_in_the_config_only_reviewed_definitions_are_served() {
    let upstream = Recorder::hostile(Hostility::RugPull).await;
    let issuer = DevIssuer::start("hostile-fixed", RESOURCE, &[]).await;
    let dir = std::env::temp_dir().join(format!("hostile-fixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (trail, store) = (dir.join("audit.jsonl"), dir.join("pins.db"));
    // The digest `pins list` shows for the reviewed `echo`: SHA-256 over the canonical JSON of
    // the members a definition is pinned by.
    let echo = portcullis_audit::arguments_digest(&json!({
        "name": "echo", "description": "Echoes.", "inputSchema": {"type": "object"},
    }));
    let config_text = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [audit]\njsonl = {trail:?}\n\n[pins]\nstore = {store:?}\non_new = \"hold\"\n\n\
         [[upstream]]\nname = \"tickets\"\nurl = \"{}\"\npins = [\"tool:echo@sha256:{echo}\", \
         \"template:note://{{id}}@sha256:{}\"]\n",
        issuer.issuer,
        upstream.url,
        portcullis_audit::arguments_digest(&json!({
            "uriTemplate": "note://{id}", "name": "note", "description": "A note.",
        })),
    );
    let config = dir.join("gateway.toml");
    std::fs::write(&config, &config_text).expect("config");
    let gateway = TestGateway::spawn(&config_text).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    assert_eq!(tool_names(&gateway.url, &token).await, ["echo"]);
    let (_, body) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "tools/call",
        json!({"name": "wipe", "arguments": {}}),
        json!({}),
    )
    .await;
    assert!(body.contains("tool not found"), "never approved: {body}");
    let (ok, diff) = pins_command(&config, &["diff"]);
    assert!(
        ok && diff.contains("tickets/tool:wipe") && diff.contains("first seen"),
        "{diff}"
    );
    let (ok, approved) = pins_command(&config, &["approve", "tickets/tool:wipe"]);
    assert!(ok, "{approved}");
    let mut names = Vec::new();
    for _ in 0..50 {
        names = tool_names(&gateway.url, &token).await;
        if names.contains(&"wipe".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        names,
        ["echo", "wipe"],
        "approved: served; `secret` still waits"
    );
    let (ok, list) = pins_command(&config, &["list"]);
    assert!(
        ok && list.contains("\"tool:wipe@sha256:") && list.contains("tool:secret  (first seen"),
        "{list}"
    );

    let read = || {
        portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "resources/read",
            json!({"uri": "note://7"}),
            json!({}),
        )
    };
    let reads = || {
        upstream
            .received()
            .iter()
            .filter(|message| message.method == "resources/read")
            .count()
    };
    let templates = || async {
        let (_, body) = portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "resources/templates/list",
            json!({}),
            json!({}),
        )
        .await;
        body
    };
    assert!(templates().await.contains("note://{id}"));
    let (_, body) = read().await;
    assert!(
        body.contains("\"one\""),
        "the pinned template reads: {body}"
    );
    assert_eq!(reads(), 1);

    upstream.pull_rug();
    let listed = templates().await;
    assert!(
        !listed.contains("note://"),
        "the changed template is held: {listed}"
    );
    assert_eq!(tool_names(&gateway.url, &token).await, ["wipe"]);
    let (_, body) = read().await;
    assert!(!body.contains("\"one\""), "{body}");
    assert_eq!(
        reads(),
        1,
        "a read under the held template never reaches the upstream"
    );
    let (ok, diff) = pins_command(&config, &["diff"]);
    assert!(
        ok && !diff.contains("tool:echo"),
        "a config pin's change is not approvable in the store: {diff}"
    );
    let (ok, refused) = pins_command(&config, &["approve", "tickets/tool:echo"]);
    assert!(!ok && refused.contains("pinned in the config"), "{refused}");

    assert_recorded(
        &gateway,
        &trail,
        &[
            "definition_new",
            "definition_changed",
            "definition_approved",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

// See: review of issue 19. With `on_new = "hold"`, a read sent before anybody listed the
// templates went to the only upstream through the single-upstream fallback, under a template
// nobody had reviewed. The fallback is closed while new definitions wait for review: the read
// is refused, and the upstream never sees it.
#[tokio::test]
async fn a_read_before_any_list_is_not_sent_under_an_unreviewed_template() {
    a_read_under_an_unreviewed_template_is_refused("hostile-read-first", "").await;
}

// See: review of the pins. The same read under a namespace the configuration gives the
// upstream went to it: the declared owner was not asked whether the URI was reviewed.
#[tokio::test]
async fn a_read_in_a_declared_namespace_is_not_sent_under_an_unreviewed_template() {
    a_read_under_an_unreviewed_template_is_refused(
        "hostile-read-declared",
        "resources = [\"note://\"]\n",
    )
    .await;
}

async fn a_read_under_an_unreviewed_template_is_refused(label: &str, upstream_lines: &str) {
    let upstream = Recorder::hostile(Hostility::RugPull).await;
    let issuer = DevIssuer::start(label, RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [pins]\non_new = \"hold\"\n\n[[upstream]]\nname = \"tickets\"\nurl = \"{}\"\n{upstream_lines}",
        issuer.issuer, upstream.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let (_, body) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "resources/read",
        json!({"uri": "note://7"}),
        json!({}),
    )
    .await;
    assert!(!body.contains("\"one\""), "{body}");
    let reads = upstream
        .received()
        .iter()
        .filter(|message| message.method == "resources/read")
        .count();
    assert_eq!(reads, 0, "the upstream never sees the read");
}

/// Wait (at most 5 s) until `trail`, the jsonl trail of `gateway`, holds a record with each
/// reason `wanted`; fail naming the reasons it holds otherwise.
async fn assert_recorded(gateway: &TestGateway, trail: &std::path::Path, wanted: &[&str]) {
    gateway.trail.flush_floods(true);
    let mut reasons = Vec::new();
    for _ in 0..50 {
        reasons = portcullis_audit::Store::Lines(trail.to_path_buf())
            .query(&portcullis_audit::Filter::default())
            .expect("the trail reads")
            .into_iter()
            .flat_map(|(_, record)| record.reasons)
            .collect();
        if wanted.iter().all(|want| reasons.iter().any(|r| r == want)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        wanted.iter().all(|want| reasons.iter().any(|r| r == want)),
        "not every one of {wanted:?} is recorded: {reasons:?}"
    );
}

/// What `resources/list` shows `token` (2026-07-28): the URIs.
async fn resource_uris(url: &str, token: &str) -> Vec<String> {
    let (status, body) =
        portcullis_e2e::stateless_rpc(url, Some(token), "resources/list", json!({}), json!({}))
            .await;
    assert!(status.is_success(), "{status} {body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    listed["result"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|resource| resource["uri"].as_str().map(str::to_owned))
        .collect()
}

// See: issue 19. A `weather` upstream that listed `hr://salaries/2026` received every caller's
// read of it, with each reader's identity. With `resources = ["hr://"]` on the `hr` upstream,
// that namespace is `hr`'s whatever anyone lists: weather's claim is refused and logged, and
// reads go to hr alone.
#[tokio::test]
async fn a_uri_in_another_upstreams_declared_namespace_is_never_routed_to_the_claimant() {
    namespace_holds("hr://salaries/2026", "hr://salaries/2026").await;
}

// See: review of issue 19. Namespaces compared the URI's text: `weather` listing
// `HR://salaries/2026` (the same URI: schemes and hosts are case-insensitive) took its reads.
#[tokio::test]
async fn a_uri_written_in_other_case_is_still_the_namespaces_owners() {
    namespace_holds("HR://salaries/2026", "HR://salaries/2026").await;
    namespace_holds("hr://salaries/2026", "Hr://salaries/2026").await;
}

/// `weather` lists `claimed`; `hr` declares `hr://`; a caller reads `read`: weather lists
/// nothing of it and gets no read, hr gets the one read.
async fn namespace_holds(claimed: &'static str, read: &str) {
    let (hr, weather) = (
        Recorder::start().await,
        Recorder::hostile(Hostility::ClaimsUri(claimed)).await,
    );
    // Each its own issuer data dir: these run side by side.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let issuer = DevIssuer::start(&format!("hostile-namespace-{run}"), RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[upstream]]\nname = \"weather\"\nurl = \"{}\"\n\n\
         [[upstream]]\nname = \"hr\"\nurl = \"{}\"\nresources = [\"hr://\"]\n",
        issuer.issuer, weather.url, hr.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let uris = resource_uris(&gateway.url, &token).await;
    assert!(
        !uris
            .iter()
            .any(|uri| uri.to_ascii_lowercase().starts_with("hr://")),
        "weather's claim is not listed: {uris:?}"
    );
    let _ = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "resources/read",
        json!({"uri": read}),
        json!({}),
    )
    .await;
    let reads = |recorder: &Recorder| {
        recorder
            .received()
            .iter()
            .filter(|message| message.method == "resources/read")
            .count()
    };
    assert_eq!(
        reads(&weather),
        0,
        "the claimant never gets the read of {read}"
    );
    assert_eq!(reads(&hr), 1, "the namespace's owner does");
}

// See: issue 19. With `on_change = "flag"`, a changed definition is shown, marked as changed
// with both digests, and the change recorded; nothing is held back.
#[tokio::test]
async fn a_changed_definition_is_flagged_when_so_configured() {
    let upstream = Recorder::hostile(Hostility::RugPull).await;
    let issuer = DevIssuer::start("hostile-flag", RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [pins]\non_change = \"flag\"\n\n\
         [[upstream]]\nname = \"tickets\"\nurl = \"{}\"\n",
        issuer.issuer, upstream.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let echo = |body: &str| -> serde_json::Value {
        let listed: serde_json::Value = serde_json::from_str(body).expect("json");
        listed["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .find(|tool| tool["name"] == "echo")
            .cloned()
            .expect("echo listed")
    };
    let list = || {
        portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "tools/list",
            json!({}),
            json!({}),
        )
    };
    let (_, body) = list().await;
    assert!(echo(&body)["_meta"]["io.portcullis/definitionChanged"].is_null());
    upstream.pull_rug();
    let (_, body) = list().await;
    let changed = &echo(&body)["_meta"]["io.portcullis/definitionChanged"];
    assert!(
        changed["previous"].is_string()
            && changed["current"].is_string()
            && changed["previous"] != changed["current"],
        "flagged with both digests: {changed}"
    );
    let (_, answer) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "tools/call",
        json!({"name": "echo", "arguments": {}}),
        json!({}),
    )
    .await;
    assert!(answer.contains("done"), "not held back: {answer}");
}
