//! End-to-end tests: rmcp clients of both eras, through a gateway on a loopback socket, to
//! fixture upstreams over stdio and HTTP.
//!
//! - `relay`: calls, lists, progress, logging, elicitation and sampling through the gateway;
//! - `audit`: the records each refusal and decision leaves, the chain, failing closed;
//! - `authn`: bearer tokens verified at every request, challenges, session ownership;
//! - `authz`: Cedar policies deciding lists and calls, safe denials, role changes mid-session;
//! - `tasks`: a task answers only the caller it was made for;
//! - `workspace`: the reference backend behind the gateway, identity assertions, a cross-tenant
//!   sweep;
//! - `stepup`: 403 `insufficient_scope` from the capability catalog, with the embedded
//!   authorization server as the issuer;
//! - `aggregate`: several upstreams behind one endpoint, names prefixed and routed back;
//! - `crash`: SIGKILL mid-load loses no record of a call the client saw succeed;
//! - `differential`: generated bodies through the gateway to a recording upstream; whatever
//!   reached it was allowed and recorded as that request;
//! - `credential`: HTTP upstreams see the gateway's own credential, never the caller's token;
//! - `binary`: the real `portcullis demo` process, its banner, a client, SIGTERM;
//! - `bridge`: a 2025-11-25 upstream's questions asked of a 2026-07-28 caller in results;
//! - `failure`: an upstream that dies mid-call, and its restart;
//! - `golden_authz`: the data-driven cases of tests/authz/*.yaml, both eras;
//! - `operator`: `portcullis matrix`, `review` and `explain`, against golden files;
//! - `hygiene`: Origin, Host, body size, terminated sessions, graceful shutdown;
//! - `regression`: what outside reviews broke, each named after its issue;
//! - `decisions`: checks that decide on the right facts (issue 14), against the demo;
//! - `limits`: one caller cannot crowd out another (issue 15).

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test helper that cannot go on fails loudly"
)]

mod aggregate;
mod audit;
mod audit_outage;
mod authn;
mod authz;
mod binary;
mod bridge;
mod cli;
mod consent;
mod consent_page;
mod crash;
mod credential;
mod decisions;
mod differential;
mod failure;
mod golden_authz;
mod hostile;
mod http2;
mod hygiene;
mod limits;
mod live;
mod operator;
mod proxy;
mod regression;
mod relay;
mod replicas;
mod resume;
mod stepup;
mod tasks;
mod tls;
mod traces;
mod workspace;

use portcullis_e2e::{HttpFixture, fixture_bin};

/// An `[[upstream]]` table for the fixture over stdio.
fn stdio_upstream(name: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\ncommand = {bin:?}\nargs = [\"--stdio\"]\n",
        bin = fixture_bin().to_string_lossy()
    )
}

/// An `[[upstream]]` table for a fixture over HTTP.
fn http_upstream(name: &str, fixture: &HttpFixture) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nurl = \"{}\"\n",
        fixture.url
    )
}

/// Opens a 2025-11-25 session by hand (`initialize` over plain HTTP) and returns its id.
async fn open_session(http: &reqwest::Client, url: &str, token: Option<&str>) -> String {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request
        .body(
            serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "0"}}})
            .to_string(),
        )
        .send()
        .await
        .expect("initialize");
    let session = answer
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let _ = answer.text().await;
    session
}

/// The text of the first content block of a tool result.
fn first_text(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).expect("serialize result");
    value["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
