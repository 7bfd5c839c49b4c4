//! `portcullis demo`: the gateway on loopback in front of the built-in upstream, protected by
//! the embedded authorization server on the same port; and `portcullis token` for curl users.

use std::path::{Path, PathBuf};

use anyhow::Context;
use portcullis_devauth::{DevAuth, DevAuthConfig};
use portcullis_gateway::config::Config;
use tokio::net::TcpListener;

/// The demo's audit trail, in its data dir (also what `portcullis audit --data-dir` reads).
pub(crate) const AUDIT_FILE: &str = "audit.db";
/// The configuration the demo runs, written to its data dir for the operator commands.
pub(crate) const CONFIG_FILE: &str = "portcullis.toml";

/// The scope a client starts with; `update_policy` needs more (the step-up walk-through).
const START_SCOPES: &[&str] = &["policies:read"];

pub(crate) async fn run(port: u16, data_dir: PathBuf, consent_ttl: &str) -> anyhow::Result<()> {
    // Private to this user: it will hold a signing key, sign-in secrets and the audit trail.
    let mut private = std::fs::DirBuilder::new();
    private.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut private, 0o700);
    private
        .create(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    // Bound first: the issuer and the resource URL name the real port, also when it is 0.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let address = listener.local_addr()?;
    let issuer = format!("http://{address}");
    let resource = format!("{issuer}/mcp");
    let auth = DevAuth::open(
        &data_dir,
        DevAuthConfig {
            issuer: issuer.clone(),
            resources: vec![resource.clone()],
            default_scopes: START_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        },
    )?;
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    let policies = data_dir.join("policies.cedar");
    if !policies.exists() {
        std::fs::write(&policies, DEMO_POLICIES)
            .with_context(|| format!("cannot write {}", policies.display()))?;
    }
    let path = |name: &str| toml_string(&data_dir.join(name).to_string_lossy());
    let text = format!(
        r#"[server]
listen = "{address}"

[[upstream]]
name = "demo"
command = {command}
args = ["demo-upstream", "--db", {db}, "--identity-jwks", {jwks}, "--issuer", "{resource}"]

[auth]
public_url = "{resource}"
resource_name = "Portcullis demo"
scopes = {start}

[[auth.issuer]]
issuer = "{issuer}"

[auth.scope_hierarchy]
"policies:write" = ["policies:read"]
"tickets:write" = ["tickets:read"]

[identity]
key_file = {key}
jwks_file = {jwks}

[audit]
sqlite = {audit}

[consent]
ttl = {consent_ttl}

[entitlements]
file = {entitlements}

[policy]
file = {policies}

{CATALOG}"#,
        command = toml_string(&exe.to_string_lossy()),
        start = serde_json::to_string(START_SCOPES).unwrap_or_default(),
        policies = toml_string(&policies.to_string_lossy()),
        db = path("workspace.db"),
        jwks = path("identity-jwks.json"),
        key = path("identity-key.pem"),
        audit = path(AUDIT_FILE),
        consent_ttl = toml_string(consent_ttl),
        entitlements = toml_string(&DevAuth::identities_path(&data_dir).to_string_lossy()),
    );
    let config = Config::parse(&text, Path::new("<built-in demo configuration>"))?;
    // The operator commands read what the demo runs (`--data-dir`).
    std::fs::write(data_dir.join(CONFIG_FILE), &text)
        .with_context(|| format!("cannot write {}", data_dir.join(CONFIG_FILE).display()))?;
    let reload: crate::reload::Source = Box::new(move || {
        Ok(Config::parse(
            &text,
            Path::new("<built-in demo configuration>"),
        )?)
    });
    let identities = DevAuth::identities_path(&data_dir);
    let people: Vec<String> = auth
        .directory()
        .identities
        .iter()
        .map(|identity| identity.subject.clone())
        .collect();
    let dir = data_dir.display().to_string();
    let policies_shown = policies.display().to_string();
    let banner = move |address: std::net::SocketAddr| {
        format!(
            "Portcullis demo is running.\n\n  \
             MCP endpoint:  http://{address}/mcp\n  \
             Sign-in:       http://{address}/authorize (embedded authorization server, dev-grade)\n  \
             Identities:    {people} (from {identities})\n  \
             Policies:      {policies} (Cedar; reloaded when the file changes)\n  \
             Approvals:     http://{address}/approvals (granting access is approved here, after sign-in)\n  \
             Audit trail:   portcullis audit query --data-dir '{dir}'\n\n\
             Connect a client; it finds the sign-in page by itself, for example:\n  \
             npx @modelcontextprotocol/inspector --transport http --server-url http://{address}/mcp\n\n\
             Or with curl:\n  \
             TOKEN=$(portcullis token --as user-42 --data-dir '{dir}')\n  \
             curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n    \
             -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \\\n    \
             -H 'Mcp-Method: tools/list' http://{address}/mcp \\\n    \
             -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{{\"_meta\":{{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"io.modelcontextprotocol/clientCapabilities\":{{}}}}}}}}'\n\n\
             Anyone who can reach this port can sign in as anyone: keep it on loopback.\n\n\
             Stop with Ctrl-C.",
            people = people.join(", "),
            identities = identities.display(),
            policies = policies_shown,
        )
    };
    crate::cli::serve(config, listener, auth.router(), &banner, reload).await
}

/// The reference backend's capabilities: what each needs, how risky it is, what it targets.
const CATALOG: &str = include_str!("../demo/catalog.toml");

/// Who may do what in the demo, written to the data dir on first start for people to edit.
const DEMO_POLICIES: &str = include_str!("../demo/policies.cedar");

/// A token for `identity` from the demo recorded in `data_dir`.
pub(crate) fn token(data_dir: &Path, identity: &str, scopes: &[String]) -> anyhow::Result<String> {
    let auth = DevAuth::open_recorded(data_dir)?;
    let scopes = (!scopes.is_empty()).then_some(scopes);
    Ok(auth.mint(identity, scopes)?)
}

/// `$XDG_DATA_HOME/portcullis/demo`, else `~/.local/share/portcullis/demo`, else
/// `./portcullis-demo`: the same place for `demo` and `token`, so they agree by default.
pub(crate) fn default_data_dir() -> PathBuf {
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary reads the environment, here and in main only"
    )]
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    base.map_or_else(
        || PathBuf::from("portcullis-demo"),
        |base| base.join("portcullis").join("demo"),
    )
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"portcullis\"".to_owned())
}
