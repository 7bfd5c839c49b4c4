//! One-core benchmark: authorized calls per second, and CPU per call, with the gateway and a
//! trivial upstream sharing one core and the load generator on the other.
//!
//! Starts `bench-upstream` (an MCP server that does next to nothing) and `portcullis serve` in
//! front of it, both release builds pinned to CPU 0 with `taskset`; this process pins itself to
//! CPU 1. The gateway verifies a JWT on every request, decides every call with Cedar and keeps
//! a SQLite audit trail. For each era (a 2025-11-25 session client, 2026-07-28 stateless POSTs)
//! and each operation (`tools/call echo`, `tools/list` of 40 tools) it drives the upstream
//! directly, then through the gateway, in the same run, and reads the CPU time both processes
//! spent from /proc. "CPU µs per call" is (gateway + upstream) CPU time over completed calls;
//! the direct row's is the upstream's alone.
//!
//! Run: `cargo bench -p portcullis-e2e --bench one_core` (env BENCH_SECONDS, default 5;
//! BENCH_CONCURRENCY, default 16; BENCH_ONLY=sessions|stateless and BENCH_OP=call|list to run
//! one row, e.g. while a profiler watches the gateway, whose pid is printed).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use portcullis_e2e::{Pinned, workspace_bin};

const STATELESS: &str = "2026-07-28";
const SESSIONS: &str = "2025-11-25";
const LIST_TOOLS: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Era {
    Sessions,
    Stateless,
}

#[derive(Clone, Copy)]
enum Operation {
    Call,
    List,
}

struct Measurement {
    per_second: f64,
    cpu_per_call: Duration,
}

fn main() {
    // The load generator gets CPU 1 to itself (every thread, before the runtime starts any).
    portcullis_e2e::pin_this_process(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16usize);
    let upstream = Pinned::start(
        0,
        workspace_bin("portcullis-e2e", "bench-upstream"),
        &["--tools", &LIST_TOOLS.to_string()],
    )
    .await;
    let resource = "http://127.0.0.1:8080/mcp";
    let issuer = portcullis_e2e::DevIssuer::start("one-core", resource, &[]).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let dir = std::env::temp_dir().join(format!("portcullis-one-core-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let config = dir.join("gateway.toml");
    // BENCH_BARE=1: no authentication, no policies, no trail: what the hop alone costs.
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let bare = std::env::var("BENCH_BARE").is_ok_and(|v| v == "1");
    let text = if bare {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"bench\"\nurl = \"{}\"\n\n[danger]\nunauthenticated = true\n",
            upstream.url
        )
    } else {
        format!(
            // One caller sends everything here: its rate limit is set out of the way.
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[limits]\ncaller = {{ per_second = 1000000 }}\ntenant = {{ per_second = 1000000 }}\nconcurrent_per_caller = 1000000\n\n[[upstream]]\nname = \"bench\"\nurl = \"{upstream}\"\n\n\
             [auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{issuer}\"\n\n\
             [[capability]]\ntool = \"echo\"\nfamily = \"demo\"\nscopes = [\"policies:read\"]\nrisk = \"read\"\n\n\
             [policy]\ncedar = '''{POLICIES}'''\n\n[audit]\nsqlite = {audit:?}\n",
            upstream = upstream.url,
            issuer = issuer.issuer,
            audit = dir.join("audit.db"),
        )
    };
    std::fs::write(&config, text).expect("write config");
    let gateway = Pinned::start(
        0,
        workspace_bin("portcullis", "portcullis"),
        &["serve", "--config", &config.to_string_lossy()],
    )
    .await;
    let duration = Duration::from_secs(seconds);
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let only = std::env::var("BENCH_ONLY").ok();
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let only_op = std::env::var("BENCH_OP").ok();
    println!("gateway pid {}", gateway.child.id().unwrap_or_default());
    println!(
        "gateway and upstream on CPU 0, load on CPU 1; concurrency {concurrency}, {seconds} s per cell"
    );
    println!(
        "| era | operation | direct calls/s | direct CPU µs/call | gateway calls/s | gateway+upstream CPU µs/call | throughput ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut through_gateway = 0usize;
    for era in [Era::Sessions, Era::Stateless] {
        let era_name = match era {
            Era::Sessions => "sessions",
            Era::Stateless => "stateless",
        };
        if only.as_deref().is_some_and(|only| only != era_name) {
            continue;
        }
        for operation in [Operation::Call, Operation::List] {
            let op_name = match operation {
                Operation::Call => "call",
                Operation::List => "list",
            };
            if only_op.as_deref().is_some_and(|only| only != op_name) {
                continue;
            }
            let warm = Duration::from_secs(1);
            drive(&upstream.url, None, era, operation, concurrency, warm).await;
            drive(
                &gateway.url,
                Some(&token),
                era,
                operation,
                concurrency,
                warm,
            )
            .await;
            let before = upstream.cpu();
            let direct = drive(&upstream.url, None, era, operation, concurrency, duration).await;
            let direct_cpu = upstream.cpu().saturating_sub(before);
            let before = upstream.cpu() + gateway.cpu();
            let through = drive(
                &gateway.url,
                Some(&token),
                era,
                operation,
                concurrency,
                duration,
            )
            .await;
            let through_cpu = (upstream.cpu() + gateway.cpu()).saturating_sub(before);
            through_gateway += through.0;
            let direct = Measurement::with_cpu(direct, direct_cpu);
            let through = Measurement::with_cpu(through, through_cpu);
            println!(
                "| {} | {} | {:.0} | {} | {:.0} | {} | {:.2} |",
                match era {
                    Era::Sessions => SESSIONS,
                    Era::Stateless => STATELESS,
                },
                match operation {
                    Operation::Call => "tools/call echo",
                    Operation::List => "tools/list (40 tools)",
                },
                direct.per_second,
                direct.cpu_per_call.as_micros(),
                through.per_second,
                through.cpu_per_call.as_micros(),
                through.per_second / direct.per_second,
            );
        }
    }
    if !bare {
        // A trail that stopped writing would make a fast gateway: every call measured has a
        // decision record and an outcome record.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let trail = rusqlite::Connection::open(dir.join("audit.db")).expect("the trail opens");
        let records: i64 = trail
            .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
            .expect("count records");
        println!(
            "audit records: {records} for {through_gateway} measured calls through the gateway"
        );
        assert!(
            records >= 2 * i64::try_from(through_gateway).unwrap_or(i64::MAX),
            "every measured call is recorded twice"
        );
    }
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}

const POLICIES: &str = r#"
@id("viewers-echo")
permit (principal in Role::"viewer", action in Action::"family:demo", resource);
@id("everyone-else")
permit (principal, action in [Action::"tool", Action::"prompt", Action::"resource"], resource);
"#;

impl Measurement {
    fn with_cpu(calls: (usize, Duration), cpu: Duration) -> Self {
        let (count, elapsed) = calls;
        assert!(count > 0, "no call completed");
        Self {
            per_second: count as f64 / elapsed.as_secs_f64(),
            cpu_per_call: cpu / u32::try_from(count.max(1)).unwrap_or(u32::MAX),
        }
    }
}

/// Drive `operation` at `concurrency` for `duration`: one keep-alive connection per worker,
/// each a client of its own (a session of its own in the session era). Returns the calls
/// completed and the time taken.
async fn drive(
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
