//! A child process speaking MCP on its stdin and stdout, one message per line.
//!
//! The child inherits none of the gateway's environment beyond what it needs to run, its stderr
//! goes to the gateway's log line by line (prefixed with the upstream's name, control characters
//! escaped, so a child cannot forge the gateway's own log lines), and it is killed when its
//! connection ends.

use std::{process::Stdio, sync::Weak};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::Mutex,
};

use crate::{
    ClientIdentity, UpstreamError,
    connection::{Attribution, Connection, Event, Inner, Wire},
    frame::Frame,
};

// A line longer than this is not an MCP message the gateway will read: the child is stopped.
const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;
// A stderr line is cut at this length in the log.
const MAX_LOG_LINE: usize = 2048;

/// The child's stdin.
pub(crate) struct Pipe {
    stdin: Mutex<ChildStdin>,
}

impl Pipe {
    /// Write one message and its newline.
    pub(crate) async fn write(&self, mut line: Vec<u8>) -> std::io::Result<()> {
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await?;
        stdin.flush().await
    }
}

/// Start the child and connect to it.
pub(crate) fn spawn(
    name: &str,
    (command, args, env, cwd): (
        &str,
        &[String],
        &std::collections::BTreeMap<String, String>,
        Option<&std::path::Path>,
    ),
    identity: ClientIdentity,
    attribution: Attribution,
) -> Result<(Connection, tokio::sync::mpsc::Receiver<Event>), UpstreamError> {
    let mut cmd = Command::new(command);
    cmd.args(args)
        .env_clear()
        .envs(inherited_env())
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|source| UpstreamError::Spawn {
        upstream: name.to_owned(),
        command: command.to_owned(),
        source,
    })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(UpstreamError::Transport {
            upstream: name.to_owned(),
            reason: "the child's standard streams are missing".to_owned(),
        });
    };
    let pipe = Pipe {
        stdin: Mutex::new(stdin),
    };
    let (connection, unattributed) =
        Connection::new(name, Wire::Stdio(pipe), identity, attribution);
    tokio::spawn(read(std::sync::Arc::downgrade(&connection.0), stdout));
    tokio::spawn(log_stderr(name.to_owned(), stderr));
    tokio::spawn(watch(connection.0.closed.clone(), child, name.to_owned()));
    Ok((connection, unattributed))
}

async fn read(connection: Weak<Inner>, stdout: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        let Some(inner) = connection.upgrade() else {
            return;
        };
        let connection = Connection(inner);
        match read {
            Ok(0) | Err(_) => {
                connection.close();
                return;
            }
            Ok(_) if line.len() > MAX_LINE_BYTES => {
                tracing::warn!(upstream = %connection.upstream(), "upstream wrote a line over the size limit; stopped");
                connection.close();
                return;
            }
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Frame::parse(text) {
            Ok(frame) => connection.dispatch(frame),
            Err(error) => {
                tracing::warn!(upstream = %connection.upstream(), %error, "upstream wrote something that is not an MCP message; ignored");
            }
        }
    }
}

async fn log_stderr(name: String, stderr: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let mut shown: String = text
            .trim_end()
            .chars()
            .flat_map(char::escape_debug)
            .take(MAX_LOG_LINE)
            .collect();
        if shown.len() >= MAX_LOG_LINE {
            shown.push('…');
        }
        tracing::info!(upstream = %name, stderr = %shown, "upstream stderr");
    }
}

async fn watch(closed: tokio_util::sync::CancellationToken, mut child: Child, name: String) {
    tokio::select! {
        status = child.wait() => {
            tracing::debug!(upstream = %name, ?status, "upstream child exited");
        }
        () = closed.cancelled() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    closed.cancel();
}

// SECURITY: a child gets only what it needs to run (PATH, HOME, locale), never the gateway's
// secrets from its environment; the operator passes anything else explicitly with `env`.
fn inherited_env() -> Vec<(String, String)> {
    const KEEP: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];
    std::env::vars()
        .filter(|(key, _)| KEEP.contains(&key.as_str()))
        .collect()
}
