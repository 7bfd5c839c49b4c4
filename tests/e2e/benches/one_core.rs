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

use std::time::Duration;

use portcullis_e2e::{
    Pinned,
    load::{Era, Operation, SESSIONS, STATELESS, drive},
    workspace_bin,
};

const LIST_TOOLS: usize = 40;

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
