use std::{
    path::PathBuf,
    process::Stdio,
    sync::OnceLock,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Path of the `portcullis-fixture` binary, built on first use if cargo has not built it yet.
pub fn fixture_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test executables live in target/<profile>/deps; binaries one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(|deps| deps.parent()).expect("target directory");
        let bin = dir.join("portcullis-fixture");
        if !bin.exists() {
            #[expect(clippy::disallowed_methods, reason = "tests run under cargo, which sets CARGO")]
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "portcullis-fixture"])
                .status()
                .expect("run cargo build -p portcullis-fixture");
            assert!(status.success(), "building portcullis-fixture failed");
        }
        bin
    })
    .clone()
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
        let mut child = Command::new(fixture_bin())
            .args(["--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start portcullis-fixture --http");
        let stdout = child.stdout.take().expect("fixture stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next_line().await.expect("read fixture banner").expect("fixture banner");
        let url = line.strip_prefix("listening ").expect("`listening URL` banner").to_owned();
        Self { url, child }
    }

    /// Kill the fixture process now.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
