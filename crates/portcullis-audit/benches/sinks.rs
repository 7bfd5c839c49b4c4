//! Records per second each sink keeps, on this machine, in one run.
//!
//! For every sink: (1) a stream of queued records from 16 writers, closed by one durable
//! record (group commit at full speed); (2) 64 callers each waiting for every record to be
//! durable, as concurrent state-changing calls do. PostgreSQL runs when PORTCULLIS_TEST_POSTGRES
//! names a server (`eval "$(tests/postgres/start.sh)"`).
//!
//! Run: `cargo bench -p portcullis-audit --bench sinks` (env BENCH_RECORDS, default 100000).

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and stops on setup failure"
)]

use std::time::{Duration, Instant};

use portcullis_audit::{AuditDecision, AuditRecord, Durability, LineTarget, Sink};

fn record(i: usize) -> AuditRecord {
    let mut record = AuditRecord::new("pc-0123456789abcdef", "tools/call", AuditDecision::Allow);
    record.era = Some("2026-07-28".to_owned());
    record.issuer = Some("https://issuer.example".to_owned());
    record.subject = Some(format!("user-{}", i % 1000));
    record.tenant = Some("tenant-a".to_owned());
    record.capability = Some("update_policy".to_owned());
    record.arguments_digest = Some("ab".repeat(32));
    record.policies = vec!["editors-write".to_owned()];
    record.reasons = vec!["permitted".to_owned()];
    record.policy_version = Some("cd".repeat(8));
    record
}

/// `count` records from `writers` tasks, each waiting per record when `durable`.
async fn run(sink: &Sink, writers: usize, count: usize, durable: bool) -> (f64, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut waits = Vec::new();
                for i in (w..count).step_by(writers) {
                    let durability = if durable {
                        Durability::Durable
                    } else {
                        Durability::Queued
                    };
                    let sent = Instant::now();
                    sink.record(record(i), durability).await.expect("recorded");
                    waits.push(sent.elapsed());
                }
                waits
            })
        })
        .collect();
    let mut waits = Vec::new();
    for task in tasks {
        waits.extend(task.await.expect("writer"));
    }
    // Queued records are only counted once the last of them is durable.
    sink.record(record(0), Durability::Durable)
        .await
        .expect("recorded");
    let elapsed = started.elapsed();
    waits.sort_unstable();
    let p50 = waits.get(waits.len() / 2).copied().unwrap_or_default();
    ((count + 1) as f64 / elapsed.as_secs_f64(), p50)
}

#[tokio::main]
async fn main() {
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    let count = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000usize);
    let dir = std::env::temp_dir().join(format!("portcullis-bench-sinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut sinks = vec![
        (
            "sqlite",
            portcullis_audit::sqlite(&dir.join("audit.db")).expect("sqlite"),
        ),
        (
            "jsonl",
            portcullis_audit::lines(LineTarget::File {
                path: dir.join("audit.jsonl"),
                max_bytes: 1 << 30,
            })
            .expect("jsonl"),
        ),
    ];
    #[expect(clippy::disallowed_methods, reason = "benchmark knob")]
    match std::env::var("PORTCULLIS_TEST_POSTGRES") {
        Ok(url) => sinks.push(("postgres", portcullis_audit::postgres(&url).expect("pg"))),
        Err(_) => println!("postgres: skipped (PORTCULLIS_TEST_POSTGRES not set)"),
    }
    println!(
        "| sink | queued records/s (16 writers) | durable records/s (64 callers) | durable p50 wait |"
    );
    println!("|---|---|---|---|");
    for (name, sink) in &sinks {
        let (queued, _) = run(sink, 16, count, false).await;
        let (durable, p50) = run(sink, 64, count / 10, true).await;
        println!(
            "| {name} | {queued:.0} | {durable:.0} | {} µs |",
            p50.as_micros()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
