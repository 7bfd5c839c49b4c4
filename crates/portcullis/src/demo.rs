//! `portcullis demo`: a gateway on loopback in front of the built-in upstream, no config needed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use portcullis_gateway::config::Config;

pub(crate) async fn run(port: u16, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = &data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[upstream]]\nname = \"demo\"\ncommand = {command}\nargs = [\"demo-upstream\"]\n\n# The embedded authorization server is not built yet; until it is, the demo is open.\n[danger]\nunauthenticated = true\n",
        command = toml_string(&exe.to_string_lossy()),
    );
    let config = Config::parse(&text, Path::new("<built-in demo configuration>"))?;
    let path = config.path.clone();
    let banner = move |address: std::net::SocketAddr| {
        format!(
            "Portcullis demo is running.\n\n  MCP endpoint:  http://{address}{path}\n\n\
             Connect a client, for example:\n  \
             npx @modelcontextprotocol/inspector --transport http --server-url http://{address}{path}\n\n\
             This demo has no authentication yet: keep it on loopback.\n\n\
             Stop with Ctrl-C."
        )
    };
    crate::cli::serve(config, &banner).await
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"portcullis\"".to_owned())
}
