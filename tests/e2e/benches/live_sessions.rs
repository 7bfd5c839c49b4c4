//! What a per-caller `tools/list_changed` costs with many callers connected.
//!
//! One in-process gateway with live entitlements (checked every 10 ms) in front of the fixture
//! upstream, and N connected 2025-11-25 sessions, each of its own subject, each having listed
//! its tools. One subject loses its role in the entitlements file; the time until that
//! subject's client hears `list_changed` is measured, and every other session must hear
//! nothing. Run for N = 1 and N = BENCH_SESSIONS (default 1000) in the same run: on each change
//! every session recomputes its caller's view, so the difference is that work.
//!
//! Run: `cargo bench -p portcullis-e2e --bench live_sessions` (env BENCH_SESSIONS, BENCH_ROUNDS).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::time::{Duration, Instant};

use portcullis_e2e::{DevIssuer, Era, TestClient, TestGateway, connect_as};

const REFRESH_MS: u64 = 10;

fn identities(n: usize, demoted: Option<usize>) -> String {
    (0..n)
        .map(|i| {
            let roles = if Some(i) == demoted { "" } else { "\"editor\"" };
            format!("[[identity]]\nsubject = \"s{i}\"\ntenant = \"t\"\nroles = [{roles}]\nscopes = []\n\n")
        })
        .collect()
}

/// Median time from the file change to the demoted caller's notification, over `rounds`.
async fn measure(n: usize, rounds: usize) -> (Duration, Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let resource = format!("http://{}/mcp", listener.local_addr().expect("address"));
    let issuer = DevIssuer::start_with(
        &format!("live-{n}"),
        &resource,
        &[],
        Some(&identities(n, None)),
    )
    .await;
    let file = issuer.dir().join("entitlements.toml");
    replace(&file, &identities(n, None));
    let config = format!(
        "[auth]\npublic_url = \"{resource}\"\n\n\
         [entitlements]\nfile = {file:?}\nrefresh = \"{REFRESH_MS}ms\"\n\n\
         [policy]\ncedar = '''\n\
         permit (principal in Role::\"editor\", action == Action::\"tool:greet\", resource);\n\
         permit (principal, action == Action::\"tool:fixture_echo\", resource);\n'''\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"read\"\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nrisk = \"read\"\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\n\n\
         [[upstream]]\nname = \"fixture\"\ncommand = {:?}\nargs = [\"--stdio\"]\n",
        issuer.issuer,
        portcullis_e2e::fixture_bin().to_string_lossy()
    );
    let gateway = TestGateway::spawn_on(listener, &config).await;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let client = TestClient::default();
        let heard = client.tools_changed.clone();
        let token = issuer.auth.mint(&format!("s{i}"), None).expect("token");
        let service = connect_as(&gateway.url, Era::Sessions, client, Some(&token)).await;
        service.list_all_tools().await.expect("list");
        clients.push((service, heard));
    }
    println!(
        "  {n} sessions connected and listed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut latencies = Vec::new();
    let mut previous: Option<usize> = None;
    for round in 0..rounds {
        let demoted = round % n;
        // The last one demoted is an editor again: it is told, and re-lists as a client would.
        if let Some(previous) = previous {
            replace(&file, &identities(n, None));
            let (service, heard) = &clients[previous];
            let waiting = Instant::now();
            while heard.lock().expect("lock").is_empty() {
                assert!(
                    waiting.elapsed() < Duration::from_secs(30),
                    "restore never told"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            service.list_all_tools().await.expect("relist");
            heard.lock().expect("lock").clear();
        }
        previous = Some(demoted);
        let changed = Instant::now();
        replace(&file, &identities(n, Some(demoted)));
        let heard = &clients[demoted].1;
        while heard.lock().expect("lock").is_empty() {
            assert!(changed.elapsed() < Duration::from_secs(30), "never told");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(heard.lock().expect("lock")[0].duration_since(changed));
        // Heard and counted: the next notification this caller hears is the next change's.
        heard.lock().expect("lock").clear();
        tokio::time::sleep(Duration::from_millis(REFRESH_MS * 5)).await;
        let others: Vec<usize> = clients
            .iter()
            .enumerate()
            .filter(|(i, (_, heard))| *i != demoted && !heard.lock().expect("lock").is_empty())
            .map(|(i, _)| i)
            .collect();
        assert!(
            others.is_empty(),
            "round {round}: only s{demoted} should be told, also told: {others:?}"
        );
    }
    for (service, _) in clients {
        let _ = service.cancel().await;
    }
    latencies.sort_unstable();
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    )
}

#[tokio::main]
async fn main() {
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let sessions = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000usize);
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20usize);
    println!("entitlements checked every {REFRESH_MS} ms; {rounds} role removals each");
    let (one, one_max) = measure(1, rounds).await;
    let (many, many_max) = measure(sessions, rounds).await;
    println!("| connected sessions | change to list_changed, median | max |");
    println!("|---|---|---|");
    println!(
        "| 1 | {:.1} ms | {:.1} ms |",
        one.as_secs_f64() * 1e3,
        one_max.as_secs_f64() * 1e3
    );
    println!(
        "| {sessions} | {:.1} ms | {:.1} ms |",
        many.as_secs_f64() * 1e3,
        many_max.as_secs_f64() * 1e3
    );
    println!(
        "recomputing {sessions} callers' views adds about {:.1} ms per change",
        (many.as_secs_f64() - one.as_secs_f64()) * 1e3
    );
}

/// Replace `path` whole (write beside it, then rename), as an operator's tools should.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write");
    std::fs::rename(&next, path).expect("rename");
}
