//! Load benchmark: what the gateway hop costs.
//!
//! Starts the fixture upstream (streamable HTTP) and `portcullis serve` in front of it, both as
//! separate release processes, then drives `tools/call` and `tools/list` at concurrency 1 and 16,
//! first directly on the upstream and then through the gateway, in the same run. Requests are
//! stateless 2026-07-28 POSTs so that both paths do exactly the same work per call.
//!
//! Run: `cargo bench -p portcullis-e2e --bench gateway_hop` (env BENCH_SECONDS, default 5).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::time::{Duration, Instant};

use portcullis_e2e::{HttpFixture, workspace_bin};

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

struct Operation {
    label: &'static str,
    method: &'static str,
    name: Option<&'static str>,
    body: String,
}

struct Measurement {
    calls: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() {
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let fixture = HttpFixture::start().await;
    let config = std::env::temp_dir().join(format!("portcullis-bench-{}.toml", std::process::id()));
    // BENCH_UPSTREAM=stdio puts the fixture behind the gateway as a child process instead; the
    // direct baseline stays the HTTP fixture.
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let upstream = match std::env::var("BENCH_UPSTREAM").as_deref() {
        Ok("stdio") => format!(
            "command = {:?}\nargs = [\"--stdio\"]",
            portcullis_e2e::fixture_bin().to_string_lossy()
        ),
        _ => format!("url = \"{}\"", fixture.url),
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"fixture\"\n{upstream}\n\n[danger]\nunauthenticated = true\n"
        ),
    )
    .expect("write bench config");
    let config_arg = config.to_string_lossy().into_owned();
    let gateway = HttpFixture::start_program(
        workspace_bin("portcullis", "portcullis"),
        &["serve", "--config", &config_arg],
    )
    .await;

    let operations = [
        Operation {
            label: "tools/call fixture_echo",
            method: "tools/call",
            name: Some("fixture_echo"),
            body: format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"fixture_echo","arguments":{{"text":"hello"}},{META}}}}}"#
            ),
        },
        Operation {
            label: "tools/list",
            method: "tools/list",
            name: None,
            body: format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#
            ),
        },
    ];
    let duration = Duration::from_secs(seconds);
    println!(
        "| operation | concurrency | direct calls/s | gateway calls/s | throughput ratio | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for operation in &operations {
        for concurrency in [1usize, 16] {
            // Warm both paths (connections, caches) before measuring.
            drive(
                &fixture.url,
                operation,
                concurrency,
                Duration::from_millis(500),
            )
            .await;
            drive(
                &gateway.url,
                operation,
                concurrency,
                Duration::from_millis(500),
            )
            .await;
            let direct = drive(&fixture.url, operation, concurrency, duration).await;
            let through = drive(&gateway.url, operation, concurrency, duration).await;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {} |",
                operation.label,
                concurrency,
                direct.per_second,
                through.per_second,
                through.per_second / direct.per_second,
                micros(direct.p50),
                micros(through.p50),
                micros(through.p50.saturating_sub(direct.p50)),
                micros(direct.p99),
                micros(through.p99),
            );
            assert!(direct.calls > 0 && through.calls > 0, "no call completed");
        }
    }
    let _ = std::fs::remove_file(&config);
}

fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

async fn drive(
    url: &str,
    operation: &Operation,
    concurrency: usize,
    duration: Duration,
) -> Measurement {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..concurrency).map(|_| {
        let http = http.clone();
        let url = url.to_owned();
        let body = operation.body.clone();
        let method = operation.method;
        let name = operation.name;
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            // Bounded by time and by count, whichever ends first.
            while Instant::now() < deadline && latencies.len() < 2_000_000 {
                let sent = Instant::now();
                let mut request = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", method)
                    .body(body.clone());
                if let Some(name) = name {
                    request = request.header("mcp-name", name);
                }
                let response = request.send().await.expect("request sent");
                assert!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let text = response.text().await.expect("body read");
                assert!(text.contains("\"result\""), "not a result: {text}");
                latencies.push(sent.elapsed());
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Measurement {
        calls: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}
