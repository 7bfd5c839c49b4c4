//! Load benchmark: what the gateway hop costs.
//!
//! Starts the fixture upstream (streamable HTTP) and `portcullis serve` in front of it, both as
//! separate release processes, then drives `tools/call` and `tools/list` at concurrency 1 and 16,
//! first directly on the upstream and then through the gateway, in the same run. Requests are
//! stateless 2026-07-28 POSTs so that both paths do exactly the same work per call.
//!
//! Run: `cargo bench -p portcullis-e2e --bench gateway_hop` (env BENCH_SECONDS, default 5;
//! BENCH_UPSTREAM=stdio; BENCH_AUTH=1 for authentication and Cedar authorization on).
//!
//! BENCH_AUDIT=sqlite|jsonl|postgres compares two gateways instead, both with authentication
//! and policies on: without an audit trail (the baseline) and with one (postgres needs
//! PORTCULLIS_TEST_POSTGRES). Its `greet` call is state-changing, so its decision record is
//! durable before the call is forwarded; the echo call's record is queued.
//!
//! BENCH_TLS=1 compares one gateway serving TLS (a self-signed certificate) with itself: HTTP/1.1
//! (the baseline, a connection per concurrent caller) against HTTP/2 (one connection carrying
//! them all), with authentication and policies on.

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
    // BENCH_AUTH=1 turns authentication and authorization on: every request carries a JWT
    // from an in-process authorization server, verified and decided by Cedar policies.
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let audit = std::env::var("BENCH_AUDIT")
        .ok()
        .map(|sink| audit_section(&sink));
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let authenticated = audit.is_some() || std::env::var("BENCH_AUTH").is_ok_and(|v| v == "1");
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let tls =
        (audit.is_none() && std::env::var("BENCH_TLS").is_ok_and(|v| v == "1")).then(certificate);
    let authenticated = authenticated || tls.is_some();
    let (security, token, _issuer) = if authenticated {
        let (section, token, issuer) = auth_section().await;
        (section, Some(token), Some(issuer))
    } else {
        ("[danger]\nunauthenticated = true\n".to_owned(), None, None)
    };
    let listener_tls = tls
        .as_ref()
        .map(|(cert, key, _)| format!("tls_cert = {cert:?}\ntls_key = {key:?}\n"))
        .unwrap_or_default();
    let start_gateway = |label: &str, extra: &str| {
        let config = std::env::temp_dir().join(format!(
            "portcullis-bench-{label}-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{listener_tls}\n[limits]\ncaller = {{ per_second = 1000000 }}\ntenant = {{ per_second = 1000000 }}\nconcurrent_per_caller = 1000000\n\n[[upstream]]\nname = \"fixture\"\n{upstream}\n\n{security}\n{extra}"
            ),
        )
        .expect("write bench config");
        let config_arg = config.to_string_lossy().into_owned();
        async move {
            HttpFixture::start_program(
                workspace_bin("portcullis", "portcullis"),
                &["serve", "--config", &config_arg],
            )
            .await
        }
    };
    let gateway = start_gateway("measured", audit.as_deref().unwrap_or_default()).await;
    // The baseline: the upstream itself, or (comparing audit) the gateway without a trail.
    let baseline_gateway = match &audit {
        Some(_) => Some(start_gateway("baseline", "").await),
        None => None,
    };
    let measured_url = match tls {
        Some(_) => gateway.url.replacen("http://", "https://", 1),
        None => gateway.url.clone(),
    };
    let (baseline_label, baseline_url) = match (&baseline_gateway, &tls) {
        (Some(gateway), _) => ("gateway without audit", gateway.url.as_str()),
        (None, Some(_)) => ("gateway over TLS, HTTP/1.1", measured_url.as_str()),
        (None, None) => ("direct", fixture.url.as_str()),
    };
    let baseline_token = match tls {
        Some(_) => token.as_deref(),
        None => audit.as_ref().and(token.as_deref()),
    };
    println!(
        "baseline: {baseline_label}; measured: {}",
        match (&audit, &tls) {
            (Some(_), _) => "gateway with audit",
            (None, Some(_)) => "gateway over TLS, HTTP/2",
            (None, None) => "gateway",
        }
    );
    // Over TLS the baseline speaks HTTP/1.1 only; the measured client offers HTTP/2 (ALPN).
    let client = |http1_only: bool| {
        let mut builder = reqwest::Client::builder().tcp_nodelay(true);
        if let Some((_, _, pem)) = &tls {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).expect("the certificate"),
            );
        }
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().expect("http client")
    };
    let (baseline_http, measured_http) = (client(true), client(false));

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
        Operation {
            label: "tools/call greet (state-changing)",
            method: "tools/call",
            name: Some("greet"),
            body: format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"greet","arguments":{{"name":"bench"}},{META}}}}}"#
            ),
        },
    ];
    let duration = Duration::from_secs(seconds);
    println!(
        "| operation | concurrency | baseline calls/s | measured calls/s | throughput ratio | baseline p50 | measured p50 | added p50 | baseline p99 | measured p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for operation in &operations {
        for concurrency in [1usize, 16] {
            // Warm both paths (connections, caches) before measuring.
            let warm = Duration::from_millis(500);
            let baseline = (&baseline_http, baseline_url);
            let measured = (&measured_http, measured_url.as_str());
            drive(baseline, operation, concurrency, warm, baseline_token).await;
            drive(measured, operation, concurrency, warm, token.as_deref()).await;
            let direct = drive(baseline, operation, concurrency, duration, baseline_token).await;
            let through = drive(measured, operation, concurrency, duration, token.as_deref()).await;
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
}

/// The policies of the authenticated run: viewers call the echo tool; everything else the
/// fixture offers is open to every caller.
const BENCH_POLICIES: &str = r#"
@id("viewers-echo")
permit (principal in Role::"viewer", action in Action::"family:demo", resource);
@id("everyone-else")
permit (principal, action in [Action::"tool", Action::"prompt", Action::"resource"], resource);
"#;

/// An in-process authorization server, and the `[auth]`, `[policy]` and catalog sections that
/// trust it; with a token for `user-42` (a viewer). Keep the issuer alive while it serves.
async fn auth_section() -> (String, String, portcullis_e2e::DevIssuer) {
    let resource = "http://127.0.0.1:8080/mcp";
    let issuer = portcullis_e2e::DevIssuer::start("bench", resource, &[]).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    let policies = toml_literal(BENCH_POLICIES);
    let section = format!(
        "[auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{issuer}\"\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nfamily = \"demo\"\nscopes = [\"policies:read\"]\nrisk = \"read\"\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"write\"\n\n\
         [policy]\ncedar = {policies}\n",
        issuer = issuer.issuer,
    );
    (section, token, issuer)
}

/// The `[audit]` section for `sink`, in a fresh place.
fn audit_section(sink: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench audit dir");
    match sink {
        "sqlite" => format!("[audit]\nsqlite = {:?}\n", dir.join("audit.db")),
        "jsonl" => format!("[audit]\njsonl = {:?}\n", dir.join("audit.jsonl")),
        "postgres" => {
            #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
            let url = std::env::var("PORTCULLIS_TEST_POSTGRES")
                .expect("BENCH_AUDIT=postgres needs PORTCULLIS_TEST_POSTGRES");
            format!("[audit]\npostgres = {url:?}\n")
        }
        other => {
            eprintln!("BENCH_AUDIT={other}: use sqlite, jsonl or postgres");
            std::process::exit(2)
        }
    }
}

/// A TOML multi-line literal string holding `text` (which has no `'''`).
fn toml_literal(text: &str) -> String {
    format!("'''{text}'''")
}

fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

/// A self-signed certificate for 127.0.0.1, written out: its file, its key's file, its PEM.
fn certificate() -> (std::path::PathBuf, std::path::PathBuf, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a certificate");
    let dir = std::env::temp_dir().join(format!("portcullis-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
    std::fs::write(&key_file, signing_key.serialize_pem()).expect("write the key");
    (cert_file, key_file, cert.pem())
}

async fn drive(
    (http, url): (&reqwest::Client, &str),
    operation: &Operation,
    concurrency: usize,
    duration: Duration,
    token: Option<&str>,
) -> Measurement {
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..concurrency).map(|_| {
        let http = http.clone();
        let url = url.to_owned();
        let body = operation.body.clone();
        let method = operation.method;
        let name = operation.name;
        let token = token.map(str::to_owned);
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
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
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
