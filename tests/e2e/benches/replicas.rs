//! Replicas benchmark: stateless `tools/call` throughput through HAProxy to one replica and to
//! three, against one replica reached directly, in the same run.
//!
//! Starts `bench-upstream` and three `portcullis serve` release builds sharing PostgreSQL (the
//! audit chain and the approval state, as replicas run), HAProxy from Debian's package in
//! front, and drives 2026-07-28 `tools/call echo` (a state-changing call: its record is
//! committed to the shared chain before it goes upstream) from keep-alive connections.
//! Every process shares this machine's cores: the figures say what the balancer and the
//! shared chain cost, and whether more replicas help when the cores are already busy.
//!
//! Run: `cargo bench -p portcullis-e2e --bench replicas` with PORTCULLIS_TEST_POSTGRES set (as
//! `eval "$(tests/postgres/start.sh)"` sets it) and haproxy installed (env BENCH_SECONDS,
//! default 5; BENCH_CONCURRENCY, default 16).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::{process::Stdio, time::Duration};

use portcullis_e2e::{
    Pinned,
    load::{Era, Operation, drive},
    workspace_bin,
};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

#[expect(
    clippy::disallowed_methods,
    reason = "benchmark knobs and the test database"
)]
fn knobs() -> (u64, usize, String) {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16usize);
    let database = std::env::var("PORTCULLIS_TEST_POSTGRES")
        .expect("PORTCULLIS_TEST_POSTGRES: eval \"$(tests/postgres/start.sh)\"");
    (seconds, concurrency, database)
}

async fn run() {
    let (seconds, concurrency, database) = knobs();
    let dir = std::env::temp_dir().join(format!("portcullis-replicas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let upstream = Pinned::start(0, workspace_bin("portcullis-e2e", "bench-upstream"), &[]).await;
    let resource = "http://127.0.0.1:8080/mcp";
    let issuer = portcullis_e2e::DevIssuer::start("replicas-bench", resource, &[]).await;
    let token = issuer.auth.mint("user-42", None).expect("token");
    std::fs::write(
        dir.join("approval.keys"),
        "a-key-shared-by-the-replicas-of-this-benchmark-0123456789\n",
    )
    .expect("keys");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [limits]\ncaller = {{ per_second = 1000000 }}\ntenant = {{ per_second = 1000000 }}\n\
             concurrent_per_caller = 1000000\n\n\
             [auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
             [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
             [[capability]]\ntool = \"echo\"\nrisk = \"write\"\n\n\
             [audit]\npostgres = \"{database}\"\n\n[cluster]\npostgres = \"{database}\"\n\n\
             [consent]\nkeys = \"approval.keys\"\n\n\
             [[upstream]]\nname = \"bench\"\nurl = \"{}\"\n",
            issuer.issuer, upstream.url
        ),
    )
    .expect("config");
    let mut replicas = Vec::new();
    for cpu in [0, 1, 0] {
        replicas.push(
            Pinned::start(
                cpu,
                workspace_bin("portcullis", "portcullis"),
                &["serve", "--config", &config.to_string_lossy()],
            )
            .await,
        );
    }
    let ports: Vec<String> = replicas
        .iter()
        .map(|replica| {
            replica
                .url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .expect("address")
                .to_owned()
        })
        .collect();
    let duration = Duration::from_secs(seconds);
    println!(
        "concurrency {concurrency}, {seconds} s per row, every process on this machine's 2 cores"
    );
    println!("| path | calls/s | vs one replica directly |");
    println!("|---|---|---|");
    let direct = measure(&replicas[0].url, &token, concurrency, duration).await;
    println!("| one replica, directly | {direct:.0} | 1.00 |");
    for count in [1, 3] {
        let (balancer, url) = haproxy(&dir, &ports[..count]).await;
        let through = measure(&url, &token, concurrency, duration).await;
        println!(
            "| HAProxy, {count} replica{} | {through:.0} | {:.2} |",
            if count == 1 { "" } else { "s" },
            through / direct
        );
        drop(balancer);
    }
    drop(replicas);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn measure(url: &str, token: &str, concurrency: usize, duration: Duration) -> f64 {
    let warm = Duration::from_secs(1);
    drive(
        url,
        Some(token),
        Era::Stateless,
        Operation::Call,
        concurrency,
        warm,
    )
    .await;
    let (calls, took) = drive(
        url,
        Some(token),
        Era::Stateless,
        Operation::Call,
        concurrency,
        duration,
    )
    .await;
    assert!(calls > 0, "no call completed");
    calls as f64 / took.as_secs_f64()
}

/// HAProxy round robin over `servers`, on a free port: the process and the MCP URL.
async fn haproxy(dir: &std::path::Path, servers: &[String]) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let lines: String = servers
        .iter()
        .enumerate()
        .map(|(n, address)| format!("  server r{n} {address}\n"))
        .collect();
    let file = dir.join(format!("haproxy-{}.cfg", servers.len()));
    std::fs::write(
        &file,
        format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 2s\n  \
             timeout client 60s\n  timeout server 60s\n\nfrontend mcp\n  bind 127.0.0.1:{port}\n  \
             default_backend gateways\n\nbackend gateways\n  balance roundrobin\n{lines}"
        ),
    )
    .expect("haproxy config");
    let child = tokio::process::Command::new("/usr/sbin/haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, format!("http://127.0.0.1:{port}/mcp"))
}
