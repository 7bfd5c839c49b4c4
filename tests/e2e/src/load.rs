//! A load generator for benchmarks: workers on keep-alive HTTP/1.1 connections, each a client
//! of its own (a session of its own in the session era), calling one operation as fast as
//! answers come.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// The 2026-07-28 revision.
pub const STATELESS: &str = "2026-07-28";
/// The 2025-11-25 revision.
pub const SESSIONS: &str = "2025-11-25";

/// Which era the workers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: a session per worker.
    Sessions,
    /// 2026-07-28: stateless POSTs.
    Stateless,
}

/// What each worker calls.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    /// `tools/call echo`.
    Call,
    /// `tools/list`.
    List,
}

/// Drive `operation` at `concurrency` for `duration`: one keep-alive connection per worker,
/// each a client of its own (a session of its own in the session era). Returns the calls
/// completed and the time taken.
pub async fn drive(
    url: &str,
    token: Option<&str>,
    era: Era,
    operation: Operation,
    concurrency: usize,
    duration: Duration,
) -> (usize, Duration) {
    // Every worker connects (and opens its session) first; the clock starts once all have.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let (start_tx, start_rx) = tokio::sync::watch::channel(None);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let url: http::Uri = url.parse().expect("url");
            let token = token.map(str::to_owned);
            let ready = ready.clone();
            let start = start_rx.clone();
            tokio::spawn(worker(url, token, era, operation, (ready, start)))
        })
        .collect();
    ready.wait().await;
    let start = Instant::now();
    start_tx.send_replace(Some(start + duration));
    let mut calls = 0;
    for worker in workers {
        calls += worker.await.expect("worker");
    }
    (calls, start.elapsed())
}

async fn worker(
    url: http::Uri,
    token: Option<String>,
    era: Era,
    operation: Operation,
    (ready, mut start): (
        std::sync::Arc<tokio::sync::Barrier>,
        tokio::sync::watch::Receiver<Option<Instant>>,
    ),
) -> usize {
    let authority = url.authority().expect("authority").as_str().to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let client = Client {
        url,
        authority,
        token,
        era,
    };
    let mut session = None;
    if era == Era::Sessions {
        let initialize = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{SESSIONS}","capabilities":{{}},"clientInfo":{{"name":"bench","version":"0"}}}}}}"#
        );
        let (headers, _) = client
            .send(&mut sender, None, "initialize", None, initialize)
            .await;
        session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        client
            .send(
                &mut sender,
                session.as_deref(),
                "notifications/initialized",
                None,
                initialized.to_owned(),
            )
            .await;
    }
    let meta = match era {
        Era::Stateless => format!(
            r#","_meta":{{"io.modelcontextprotocol/protocolVersion":"{STATELESS}","io.modelcontextprotocol/clientInfo":{{"name":"bench","version":"0"}},"io.modelcontextprotocol/clientCapabilities":{{}}}}"#
        ),
        Era::Sessions => String::new(),
    };
    // A client lists before it calls; the gateway learns the tools from that list.
    let list = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"tools/list","params":{{{}}}}}"#,
        meta.trim_start_matches(',')
    );
    client
        .send(&mut sender, session.as_deref(), "tools/list", None, list)
        .await;
    ready.wait().await;
    let deadline = *start
        .wait_for(Option::is_some)
        .await
        .expect("the clock starts")
        .as_ref()
        .expect("a deadline");
    let mut calls = 0;
    let mut id = 1u64;
    while Instant::now() < deadline {
        let (method, name, body) = match operation {
            Operation::Call => (
                "tools/call",
                Some("echo"),
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}}{meta}}}}}"#
                ),
            ),
            Operation::List => (
                "tools/list",
                None,
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{{}}}}}"#,
                    meta.trim_start_matches(',')
                ),
            ),
        };
        let (_, text) = client
            .send(&mut sender, session.as_deref(), method, name, body)
            .await;
        assert!(text.contains("\"result\""), "not a result: {text}");
        calls += 1;
        id += 1;
    }
    calls
}

struct Client {
    url: http::Uri,
    authority: String,
    token: Option<String>,
    era: Era,
}

impl Client {
    async fn send(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        session: Option<&str>,
        method: &str,
        name: Option<&str>,
        body: String,
    ) -> (http::HeaderMap, String) {
        let mut request = http::Request::post(self.url.clone())
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        match self.era {
            Era::Stateless => {
                request = request
                    .header("mcp-protocol-version", STATELESS)
                    .header("mcp-method", method);
                if let Some(name) = name {
                    request = request.header("mcp-name", name);
                }
            }
            Era::Sessions if method != "initialize" => {
                request = request.header("mcp-protocol-version", SESSIONS);
            }
            Era::Sessions => {}
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let response = sender.send_request(request).await.expect("request sent");
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(status.is_success(), "{method}: status {status}: {text}");
        (parts.headers, text)
    }
}
