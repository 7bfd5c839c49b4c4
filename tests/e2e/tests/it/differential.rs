//! The request path's invariant, tried on generated bodies: whatever a caller sends (duplicate
//! members at any depth, odd methods and casing, odd types, look-alike and odd names, either
//! era, headers that agree with the body or with a lenient reading of it), every request an
//! upstream receives on a caller's behalf has an allow record with the same method, name and
//! argument digest, and a request refused reaches nothing. A fixed seed keeps the run
//! repeatable; the budget keeps it quick enough for every CI run.
//
// See: issue 12.

use std::collections::HashMap;

use portcullis_audit::{AuditDecision, AuditRecord, Filter};
use portcullis_e2e::{DevIssuer, Recorder, TestGateway, last_message};
use serde_json::Value;

use crate::open_session;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const SEED: u64 = 0x5eed_1234_abcd_0012;
const CASES: usize = 600;

const POLICIES: &str = r#"
@id("everyone-echoes")
permit (principal, action in [Action::"tool:echo", Action::"prompt", Action::"resource"], resource);
@id("admins")
permit (principal in Role::"admin", action in [Action::"tool:wipe", Action::"rpc:x/custom", Action::"rpc:completion/complete", Action::"rpc:logging/setLevel"], resource);
@id("never-secret")
forbid (principal, action == Action::"tool:secret", resource);
"#;

const CATALOG: &str = r#"
[[capability]]
tool = "echo"
family = "demo"
risk = "read"
[[capability]]
tool = "wipe"
family = "demo"
risk = "write"
[[capability]]
tool = "secret"
family = "demo"
[[capability]]
method = "x/custom"
family = "demo"
risk = "read"
"#;

/// A small deterministic generator (xorshift).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.roll(items.len())]
    }
}

const METHODS: [&str; 14] = [
    "tools/call",
    "tools/call",
    "tools/call",
    "tools/call",
    "Tools/Call",
    "tools/call ",
    "prompts/get",
    "resources/read",
    "completion/complete",
    "logging/setLevel",
    "x/custom",
    "x/other",
    "tasks/get",
    "tools/list",
];

const NAMES: [&str; 10] = [
    "echo",
    "echo",
    "wipe",
    "secret",
    "ech\\u043e",
    "ECHO",
    "",
    "echo\\u0000",
    "hello",
    "note://one",
];

#[derive(Debug, Clone, Copy)]
enum Mutation {
    None,
    DuplicateName,
    DuplicateNameOther,
    DuplicateMethod,
    DuplicateParams,
    DuplicateArguments,
    NestedDuplicate,
    NameNumber,
    ArgumentsString,
    IdFloat,
    IdNull,
    ParamsArray,
    Trailing,
    LoneSurrogate,
    ExtraMember,
}

const MUTATIONS: [Mutation; 22] = [
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::None,
    Mutation::DuplicateName,
    Mutation::DuplicateNameOther,
    Mutation::DuplicateMethod,
    Mutation::DuplicateParams,
    Mutation::DuplicateArguments,
    Mutation::NestedDuplicate,
    Mutation::NameNumber,
    Mutation::ArgumentsString,
    Mutation::IdFloat,
    Mutation::IdNull,
    Mutation::ParamsArray,
    Mutation::Trailing,
    Mutation::LoneSurrogate,
    Mutation::ExtraMember,
];

/// One generated request.
struct Case {
    stateless: bool,
    subject: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

fn generate(dice: &mut Dice, nonce: usize) -> Case {
    let stateless = dice.roll(2) == 0;
    let subject = *dice.pick(&["user-42", "admin-a"]);
    let method = *dice.pick(&METHODS);
    let name = *dice.pick(&NAMES);
    let other = *dice.pick(&NAMES);
    let mutation = *dice.pick(&MUTATIONS);
    let target_key = match method {
        "resources/read" => "uri",
        "tasks/get" => "taskId",
        _ => "name",
    };
    let mut arguments = format!(r#"{{"nonce":{nonce}}}"#);
    let mut params: Vec<(String, String)> = Vec::new();
    let name_text = match mutation {
        Mutation::NameNumber => "7".to_owned(),
        Mutation::LoneSurrogate => "\"\\ud800\"".to_owned(),
        _ => format!("\"{name}\""),
    };
    params.push((target_key.to_owned(), name_text));
    if matches!(
        mutation,
        Mutation::DuplicateName | Mutation::DuplicateNameOther
    ) {
        let second = if matches!(mutation, Mutation::DuplicateName) {
            name
        } else {
            other
        };
        // The same member spelled with an escape half the time.
        let key = if dice.roll(2) == 0 {
            target_key.to_owned()
        } else {
            target_key.replacen('a', "\\u0061", 1)
        };
        params.push((key, format!("\"{second}\"")));
    }
    if matches!(mutation, Mutation::NestedDuplicate) {
        arguments = format!(r#"{{"nonce":{nonce},"x":1,"x":2}}"#);
    }
    if matches!(mutation, Mutation::ArgumentsString) {
        arguments = "\"x\"".to_owned();
    }
    if method == "completion/complete" {
        params.push((
            "ref".to_owned(),
            r#"{"type":"ref/prompt","name":"hello"}"#.to_owned(),
        ));
        params.push((
            "argument".to_owned(),
            r#"{"name":"a","value":"b"}"#.to_owned(),
        ));
    }
    if method == "logging/setLevel" {
        params.push(("level".to_owned(), "\"info\"".to_owned()));
    }
    params.push(("arguments".to_owned(), arguments));
    if matches!(mutation, Mutation::DuplicateArguments) {
        params.push((
            "arguments".to_owned(),
            format!(r#"{{"nonce":{}}}"#, nonce + 1_000_000),
        ));
    }
    if stateless {
        params.push((
            "_meta".to_owned(),
            r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"differential","version":"0"}}"#.to_owned(),
        ));
    }
    let params_text = match mutation {
        Mutation::ParamsArray => "[]".to_owned(),
        _ => format!(
            "{{{}}}",
            params
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let id = match mutation {
        Mutation::IdFloat => "1.5".to_owned(),
        Mutation::IdNull => "null".to_owned(),
        _ => nonce.to_string(),
    };
    let mut envelope = vec![
        ("jsonrpc", "\"2.0\"".to_owned()),
        ("id", id),
        ("method", format!("\"{method}\"")),
        ("params", params_text),
    ];
    match mutation {
        Mutation::DuplicateMethod => envelope.push(("method", "\"tools/call\"".to_owned())),
        Mutation::DuplicateParams => envelope.push((
            "params",
            format!(
                r#"{{"name":"wipe","arguments":{{"nonce":{}}}}}"#,
                nonce + 2_000_000
            ),
        )),
        Mutation::ExtraMember => envelope.push(("extra", "{\"name\":\"wipe\"}".to_owned())),
        _ => {}
    }
    let mut body = format!(
        "{{{}}}",
        envelope
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    if matches!(mutation, Mutation::Trailing) {
        body.push_str(" {}");
    }
    // Headers that agree with a lenient reading of the body (the last of two members wins), or
    // with the first, or with nothing in particular.
    let lenient: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut headers = Vec::new();
    if stateless {
        headers.push(("mcp-protocol-version", "2026-07-28".to_owned()));
        let header_method = match dice.roll(5) {
            0 => method.to_owned(),
            4 => "tools/call".to_owned(),
            _ => lenient["method"].as_str().unwrap_or(method).to_owned(),
        };
        headers.push(("mcp-method", header_method));
        let header_name = match dice.roll(5) {
            0 => name.replace("\\u043e", "о").replace("\\u0000", ""),
            4 => other.replace("\\u043e", "о").replace("\\u0000", ""),
            _ => lenient["params"][target_key]
                .as_str()
                .unwrap_or(name)
                .to_owned(),
        };
        if !header_name.is_empty() && header_name.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            headers.push(("mcp-name", header_name));
        }
    } else {
        headers.push(("mcp-protocol-version", "2025-11-25".to_owned()));
    }
    Case {
        stateless,
        subject,
        body,
        headers,
    }
}

#[tokio::test]
async fn every_request_an_upstream_receives_was_decided_and_recorded() {
    let recorder = Recorder::start().await;
    let issuer = DevIssuer::start("differential", RESOURCE, &[]).await;
    let scratch = Scratch::new();
    let trail = scratch.0.join("audit.db");
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = '''{POLICIES}'''\n{CATALOG}\n\
         [audit]\nsqlite = {trail:?}\n\n\
         [[upstream]]\nname = \"recorder\"\nurl = \"{}\"\n",
        issuer.issuer, recorder.url,
    );
    let gateway = TestGateway::spawn(&config).await;
    let http = reqwest::Client::new();
    let mut tokens = HashMap::new();
    let mut sessions = HashMap::new();
    for subject in ["user-42", "admin-a"] {
        let token = issuer.auth.mint(subject, None).expect("token");
        sessions.insert(
            subject,
            open_session(&http, &gateway.url, Some(&token)).await,
        );
        tokens.insert(subject, token);
    }
    let mut dice = Dice(SEED);
    let mut refused = 0;
    let mut answered = 0;
    for nonce in 0..CASES {
        let case = generate(&mut dice, nonce);
        let mut request = http
            .post(&gateway.url)
            .bearer_auth(&tokens[case.subject])
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if !case.stateless {
            request = request.header("mcp-session-id", &sessions[case.subject]);
        }
        let response = request.body(case.body.clone()).send().await.expect("post");
        let status = response.status();
        let text = response.text().await.expect("body");
        let message: Value = serde_json::from_str(&last_message(&text)).unwrap_or(Value::Null);
        if status.is_success() && message.get("result").is_some() {
            answered += 1;
        } else {
            refused += 1;
        }
    }
    // Both kinds happen, or the run proves nothing.
    assert!(
        answered > CASES / 10 && refused > CASES / 10,
        "answered {answered}, refused {refused}"
    );
    let allowed = allowed_records(&trail).await;
    let received = recorder.received();
    let mut unmatched: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for record in &allowed {
        *unmatched
            .entry((
                record.method.clone(),
                record.capability.clone().unwrap_or_default(),
                record.arguments_digest.clone(),
            ))
            .or_default() += 1;
    }
    let mut on_behalf = 0;
    for receipt in received.iter().filter(|r| on_a_callers_behalf(r)) {
        on_behalf += 1;
        let key = key_of(receipt);
        match unmatched.get_mut(&key) {
            Some(count) if *count > 0 => *count -= 1,
            _ => panic!("the upstream received a request nothing allowed: {receipt:?}"),
        }
    }
    assert!(
        on_behalf > CASES / 20,
        "requests reached the upstream: {on_behalf}"
    );
    gateway.shutdown().await;
}

/// A directory for the trail (and SQLite's side files), removed however the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("differential-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a received message was sent for a caller (not the gateway's own handshake, list
/// learning, listen stream or notifications).
fn on_a_callers_behalf(receipt: &portcullis_e2e::Received) -> bool {
    if receipt.method.starts_with("notifications/")
        || matches!(
            receipt.method.as_str(),
            "initialize" | "server/discover" | "subscriptions/listen"
        )
    {
        return false;
    }
    // The gateway's own requests travel on its shared connection under its own name.
    let gateways_own = receipt.session.is_none()
        && receipt.params["_meta"]["io.modelcontextprotocol/clientInfo"]["name"] == "portcullis";
    !gateways_own
}

/// What a decision record and an upstream receipt of the same request share.
fn key_of(receipt: &portcullis_e2e::Received) -> (String, String, Option<String>) {
    // The member that names a method's target, as MCP defines it; other methods name none.
    let field = match receipt.method.as_str() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update" => Some("taskId"),
        _ => None,
    };
    let target = field
        .and_then(|key| receipt.params.get(key).and_then(Value::as_str))
        .unwrap_or(&receipt.method)
        .to_owned();
    let digest = match receipt.method.as_str() {
        "tools/call" | "prompts/get" => receipt
            .params
            .get("arguments")
            .map(portcullis_audit::arguments_digest),
        _ => None,
    };
    (receipt.method.clone(), target, digest)
}

/// The trail's allow decisions (not outcomes, not list counts), once the queue has flushed.
async fn allowed_records(trail: &std::path::Path) -> Vec<AuditRecord> {
    let mut last = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let count = portcullis_audit::query(trail, &Filter::default())
            .map(|records| records.len())
            .unwrap_or(0);
        if count == last && count > 0 {
            break;
        }
        last = count;
    }
    portcullis_audit::query(trail, &Filter::default())
        .expect("the trail reads")
        .into_iter()
        .map(|(_, record)| record)
        .filter(|record| {
            record.decision == AuditDecision::Allow
                && record.outcome.is_none()
                && record.listed.is_none()
        })
        .collect()
}
