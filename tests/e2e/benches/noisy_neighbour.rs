//! Noisy-neighbour benchmark: how much one client flooding the gateway slows another.
//!
//! Starts `bench-upstream` and `portcullis serve` (release builds, default `[limits]`, JWT +
//! Cedar + SQLite audit) pinned to CPU 0. A victim (user-42, tenant-a, from 127.0.0.2) calls
//! `tools/call echo` 100 times a second on CPU 1 and its latency is measured in four phases of
//! the same run: quiet, then while a flooder (a second copy of this program, `nice`d, on CPU 1,
//! from 127.0.0.1) sends as fast as it can: (1) made-up tokens (JWTs of the real issuer with a
//! wrong signature, which cost a signature check each until the address's limit refuses
//! them), (2) authenticated as another tenant (editor-b, tenant-b), (3) the same with distinct
//! 64 KiB arguments. Reports the victim's p50/p99 against the quiet run, what the flooder got
//! back, and the gateway's resident memory.
//!
//! Each phase runs `BENCH_ROUNDS` times (default 3), the phases in turn, and the victim's
//! latencies are pooled per phase.
//!
//! Run: `cargo bench -p portcullis-e2e --bench noisy_neighbour` (env BENCH_SECONDS per phase
//! and round, default 5; BENCH_CONCURRENCY of the flooder, default 32; BENCH_LIMITS, lines of a `[limits]`
//! table to use instead of the defaults).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use portcullis_e2e::{Pinned, workspace_bin};

const ERA: &str = "2026-07-28";
const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

#[expect(
    clippy::disallowed_methods,
    reason = "benchmark knobs and the flooder's orders"
)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match env("NOISY_FLOOD") {
        Some(kind) => runtime.block_on(flood(&kind)),
        None => {
            portcullis_e2e::pin_this_process(1);
            runtime.block_on(run());
        }
    }
}

async fn run() {
    let seconds: u64 = env("BENCH_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: usize = env("BENCH_ROUNDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let concurrency: usize = env("BENCH_CONCURRENCY")
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let upstream = Pinned::start(0, workspace_bin("portcullis-e2e", "bench-upstream"), &[]).await;
    let resource = "http://127.0.0.1:8080/mcp";
    let issuer = portcullis_e2e::DevIssuer::start("noisy", resource, &[]).await;
    let victim = issuer.auth.mint("user-42", None).expect("token");
    let other_tenant = issuer.auth.mint("editor-b", None).expect("token");
    let dir = std::env::temp_dir().join(format!("portcullis-noisy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let config = dir.join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"bench\"\nurl = \"{}\"\n\n\
         [auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n[audit]\nsqlite = {:?}\n",
        upstream.url,
        issuer.issuer,
        dir.join("audit.db"),
    );
    // BENCH_LIMITS: a `[limits]` table to try instead of the defaults.
    let text = match env("BENCH_LIMITS") {
        Some(limits) => format!("{text}\n[limits]\n{limits}\n"),
        None => text,
    };
    std::fs::write(&config, text).expect("write config");
    let gateway = Pinned::start(
        0,
        workspace_bin("portcullis", "portcullis"),
        &["serve", "--config", &config.to_string_lossy()],
    )
    .await;
    // Made-up tokens: JWTs of the real issuer whose signatures are wrong (the flooder changes
    // each), so that each costs what verifying a good one does.
    let forged = issuer.auth.mint("admin-a", None).expect("token");
    let duration = Duration::from_secs(seconds);
    println!(
        "gateway and upstream on CPU 0; victim and (niced) flooder on CPU 1; {rounds} rounds of {seconds} s per phase, flooder concurrency {concurrency}"
    );
    println!(
        "| phase | victim calls | victim p50 ms | victim p99 ms | p99 vs quiet | p99 vs quiet, each round | flooder requests/s | flooder answers | gateway RSS MiB (end / peak) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let phases = [
        ("quiet", None),
        (
            "made-up tokens (unauthenticated)",
            Some(("forged", forged.as_str())),
        ),
        (
            "another tenant, as fast as it can",
            Some(("tenant", other_tenant.as_str())),
        ),
        (
            "another tenant, distinct 64 KiB arguments",
            Some(("large", other_tenant.as_str())),
        ),
    ];
    // Rounds of every phase, quiet included, pooled per phase: one p99 of a few hundred
    // calls moved by 2x between runs on this machine with nothing else changed.
    let mut seen: Vec<Seen> = phases.iter().map(|_| Seen::default()).collect();
    for _ in 0..rounds {
        for ((_, flood), seen) in phases.iter().zip(&mut seen) {
            let flooder = flood.map(|(kind, token)| {
                tokio::process::Command::new("nice")
                    .args(["-n", "19", "taskset", "-c", "1"])
                    .arg(std::env::current_exe().expect("this program"))
                    .env("NOISY_FLOOD", kind)
                    .env("NOISY_URL", &gateway.url)
                    .env("NOISY_TOKEN", token)
                    .env("NOISY_SECONDS", (seconds + 1).to_string())
                    .env("NOISY_CONCURRENCY", concurrency.to_string())
                    .stdout(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start the flooder")
            });
            if flooder.is_some() {
                // Let the flood reach full speed first.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut latencies = victim_run(&gateway.url, &victim, duration).await;
            if let Some(flooder) = flooder {
                let output = flooder.wait_with_output().await.expect("flooder ends");
                seen.flooder
                    .push(String::from_utf8_lossy(&output.stdout).trim().to_owned());
            }
            latencies.sort();
            seen.p99s.push(quantile(&latencies, 0.99));
            seen.latencies.extend(latencies);
            let (rss, peak) = gateway.memory_kib();
            seen.memory = (rss / 1024, peak / 1024);
        }
    }
    let quiet_p99s = seen[0].p99s.clone();
    let mut quiet_p99 = None;
    for ((name, _), mut seen) in phases.iter().zip(seen) {
        seen.latencies.sort();
        let (p50, p99) = (
            quantile(&seen.latencies, 0.5),
            quantile(&seen.latencies, 0.99),
        );
        let quiet = *quiet_p99.get_or_insert(p99);
        let rounds: Vec<String> = seen
            .p99s
            .iter()
            .zip(&quiet_p99s)
            .map(|(p99, quiet)| format!("{:.2}", p99 / quiet))
            .collect();
        let (rate, answers) = seen.flooder.last().map_or(("-", "-"), |flooded| {
            flooded.split_once(' ').unwrap_or(("-", flooded))
        });
        println!(
            "| {name} | {} | {p50:.2} | {p99:.2} | {:.2} | {} | {rate} | {answers} | {} / {} |",
            seen.latencies.len(),
            p99 / quiet,
            rounds.join(", "),
            seen.memory.0,
            seen.memory.1,
        );
    }
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What one phase saw over the rounds.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    /// The victim's p99 in each round, ms.
    p99s: Vec<f64>,
    /// The flooder's report in each round.
    flooder: Vec<String>,
    /// The gateway's resident memory after the phase's last round, and its peak, MiB.
    memory: (u64, u64),
}

/// The `q` quantile of sorted `latencies`, ms.
fn quantile(latencies: &[Duration], q: f64) -> f64 {
    let index = ((latencies.len().saturating_sub(1)) as f64 * q).round() as usize;
    latencies
        .get(index)
        .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1000.0)
}

/// The victim: `tools/call echo` every 10 ms for `duration` on one connection from 127.0.0.2;
/// every call must succeed. Returns each call's latency.
async fn victim_run(url: &str, token: &str, duration: Duration) -> Vec<Duration> {
    let mut connection = Connection::open(url, "127.0.0.2").await;
    let list = format!(r#"{{"jsonrpc":"2.0","id":0,"method":"tools/list","params":{{{META}}}}}"#);
    let (status, _) = connection.post(Some(token), "tools/list", None, list).await;
    assert_eq!(status, 200, "the victim lists");
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let end = Instant::now() + duration;
    let mut id = 1;
    while Instant::now() < end {
        tick.tick().await;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}},{META}}}}}"#
        );
        let started = Instant::now();
        let (status, text) = connection
            .post(Some(token), "tools/call", Some("echo"), body)
            .await;
        latencies.push(started.elapsed());
        assert!(
            status == 200 && text.contains("hello"),
            "the victim's call failed: {status} {text}"
        );
        id += 1;
    }
    latencies
}

/// The flooder (a second copy of this program): as fast as it can for NOISY_SECONDS on
/// NOISY_CONCURRENCY connections; prints `requests/s answers`.
async fn flood(kind: &str) {
    let url = env("NOISY_URL").expect("NOISY_URL");
    let token = env("NOISY_TOKEN").expect("NOISY_TOKEN");
    let seconds: u64 = env("NOISY_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = env("NOISY_CONCURRENCY")
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let end = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (url, token, kind) = (url.clone(), token.clone(), kind.to_owned());
            tokio::spawn(async move {
                let mut connection = Connection::open(&url, "127.0.0.1").await;
                let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
                let mut n = 0u64;
                while Instant::now() < end {
                    n += 1;
                    let text = match kind.as_str() {
                        "large" => format!("{worker}-{n}-{}", "x".repeat(64 * 1024)),
                        _ => "hello".to_owned(),
                    };
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},{META}}}}}"#
                    );
                    let token = match kind.as_str() {
                        // Each forged token differs, so nothing about one is remembered.
                        "forged" => {
                            let (signed, signature) = token.rsplit_once('.').expect("a JWT");
                            format!("{signed}.{:04}{}", n % 10_000, &signature[4..])
                        }
                        _ => token.clone(),
                    };
                    // The gateway may close a connection rather than read a large body it
                    // refuses: count that, and connect again.
                    let status = match connection.try_post(Some(&token), "tools/call", Some("echo"), body).await {
                        Some((status, _)) => status,
                        None => {
                            connection = Connection::open(&url, "127.0.0.1").await;
                            0
                        }
                    };
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut all = std::collections::BTreeMap::<u16, u64>::new();
    for worker in workers {
        for (status, count) in worker.await.expect("flood worker") {
            *all.entry(status).or_default() += count;
        }
    }
    let total: u64 = all.values().sum();
    let answers: Vec<String> = all
        .iter()
        .map(|(status, n)| match status {
            0 => format!("{n}×closed"),
            _ => format!("{n}×{status}"),
        })
        .collect();
    println!("{:.0} {}", total as f64 / seconds as f64, answers.join(" "));
}

/// One keep-alive HTTP/1.1 connection from `source`.
struct Connection {
    url: http::Uri,
    authority: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(url: &str, source: &str) -> Self {
        let url: http::Uri = url.parse().expect("url");
        let authority = url.authority().expect("authority").as_str().to_owned();
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{source}:0").parse().expect("source"))
            .expect("bind");
        let stream = socket
            .connect(authority.parse().expect("address"))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        Self {
            url,
            authority,
            sender,
        }
    }

    async fn post(
        &mut self,
        token: Option<&str>,
        method: &str,
        name: Option<&str>,
        body: String,
    ) -> (u16, String) {
        self.try_post(token, method, name, body)
            .await
            .expect("request answered")
    }

    /// A POST, or `None` if the connection ended before the answer.
    async fn try_post(
        &mut self,
        token: Option<&str>,
        method: &str,
        name: Option<&str>,
        body: String,
    ) -> Option<(u16, String)> {
        let mut request = http::Request::post(self.url.clone())
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", ERA)
            .header("mcp-method", method);
        if let Some(name) = name {
            request = request.header("mcp-name", name);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let response = self.sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}
