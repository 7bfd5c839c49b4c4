//! Benchmark support: a release binary of this workspace pinned to one CPU, with its CPU time
//! and memory read from /proc.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Pin every thread of this process to `cpu` (call it before a runtime starts threads).
pub fn pin_this_process(cpu: u32) {
    let me = std::process::id().to_string();
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &me])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(pinned, "taskset could not pin this process to CPU {cpu}");
}

/// A release binary of this workspace, started on `cpu`; it prints `listening URL` once it
/// serves.
pub struct Pinned {
    /// Where it listens.
    pub url: String,
    /// The process.
    pub child: Child,
}

impl Pinned {
    /// Start `program` with `args` on `cpu` and wait for its banner.
    pub async fn start(cpu: u32, program: std::path::PathBuf, args: &[&str]) -> Self {
        let mut child = Command::new("taskset")
            .args(["-c", &cpu.to_string()])
            .arg(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a pinned process");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await
                .expect("read banner")
                .expect("a `listening URL` banner");
            if let Some(url) = line.strip_prefix("listening ") {
                break url.to_owned();
            }
        };
        // Keep reading stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { url, child }
    }

    fn proc(&self, file: &str) -> String {
        let pid = self.child.id().expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/{file}")).expect("proc file")
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu(&self) -> Duration {
        let stat = self.proc("stat");
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // Linux reports these in USER_HZ, 100 per second on every architecture it supports.
        Duration::from_millis(ticks * 10)
    }

    /// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = self.proc("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}
