use std::{path::PathBuf, process::Stdio, sync::OnceLock};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Path of the `portcullis-fixture` binary, built on first use if cargo has not built it yet.
pub fn fixture_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("portcullis-fixture", "portcullis-fixture"))
        .clone()
}

/// Path of a binary of this workspace in the same profile as the running test or bench,
/// built with cargo first if it is missing.
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    // Test and bench executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let bin = dir.join(name);
    let release = dir.file_name().is_some_and(|profile| profile == "release");
    // Benchmarks (release) must measure the current code, so they always ask cargo, which is
    // quick when nothing changed. Tests run after `cargo build --workspace`; they build only
    // what is missing.
    if release || !bin.exists() {
        #[expect(
            clippy::disallowed_methods,
            reason = "tests run under cargo, which sets CARGO"
        )]
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", package, "--bin", name]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    bin
}

/// A fixture upstream serving streamable HTTP on an ephemeral loopback port. Killed on drop.
pub struct HttpFixture {
    /// Its MCP endpoint.
    pub url: String,
    child: Child,
}

impl HttpFixture {
    /// Start one and wait until it listens.
    pub async fn start() -> Self {
        Self::start_program(fixture_bin(), &["--http", "127.0.0.1:0"]).await
    }

    /// Start any program that prints `listening URL` on stdout once it serves.
    pub async fn start_program(program: PathBuf, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start portcullis-fixture --http");
        let stdout = child.stdout.take().expect("fixture stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .expect("read fixture banner")
            .expect("fixture banner");
        let url = line
            .strip_prefix("listening ")
            .expect("`listening URL` banner")
            .to_owned();
        Self { url, child }
    }

    /// Its process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kill the fixture process now.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
