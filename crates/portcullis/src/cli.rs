use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_gateway::{
    Gateway,
    config::Config,
    http::{self, Inflight, app},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PORTCULLIS_COMMIT"),
    ")"
);

/// Portcullis: an authorization gateway for remote MCP servers.
///
/// It authenticates every caller (OAuth 2.1 resource server), shows each only the tools,
/// resources and prompts it may use, decides every call, asks a person before risky ones, and
/// records every decision.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version = VERSION)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The configuration an operator command reads: a file, or the demo's.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ConfigArg {
    /// The configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A `portcullis demo` data dir: the configuration the demo runs (written there when it
    /// starts), its identities as the sample.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration file.
    fn path(&self) -> PathBuf {
        match (&self.config, &self.data_dir) {
            (Some(config), _) => config.clone(),
            (None, Some(dir)) => dir.join(crate::demo::CONFIG_FILE),
            (None, None) => PathBuf::from("portcullis.toml"),
        }
    }
}

impl Args {
    /// The `[telemetry]` of the configuration `serve` runs: the traces URL and service name.
    pub(crate) fn telemetry(&self) -> Option<(String, String)> {
        match &self.command {
            Command::Serve { config, .. } => Config::telemetry(config),
            _ => None,
        }
    }

    /// Whether the log is JSON lines: `PORTCULLIS_LOG_FORMAT=json`, or the `[log] format` of
    /// the configuration `serve` runs.
    pub(crate) fn log_json(&self, from_env: Option<&str>) -> bool {
        if let Some(format) = from_env {
            return format == "json";
        }
        match &self.command {
            Command::Serve { config, .. } => {
                Config::log_format(config).is_some_and(|format| format == "json")
            }
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway from a TOML configuration file.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of `[server] listen` (replicas sharing one file).
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<SocketAddr>,
        /// Serve `/metrics`, `/healthz` and `/readyz` here instead of `[admin] listen`.
        #[arg(long, value_name = "ADDRESS")]
        admin: Option<SocketAddr>,
    },
    /// Check a configuration file as `serve` reads it (values, files, policies against the
    /// capabilities) without serving, connecting or opening the audit trail.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also reach what it names: issuers' metadata and keys, PostgreSQL, HTTP upstreams.
        #[arg(long)]
        online: bool,
    },
    /// Print a shell completion script (`portcullis completions bash > /etc/bash_completion.d/portcullis`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run a ready-made gateway on loopback: a built-in upstream behind an embedded OAuth
    /// authorization server; no config needed.
    Demo {
        /// Port to listen on (127.0.0.1 only).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the demo keeps its signing key and sample identities
        /// [default: $XDG_DATA_HOME/portcullis/demo or ~/.local/share/portcullis/demo].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// How long an approval request stays answerable (tests shorten it).
        #[arg(long, default_value = "10m", hide = true)]
        consent_ttl: String,
    },
    /// Print an access token that the running demo (same data dir) accepts, for curl.
    Token {
        /// The identity to issue it for (a subject in the data dir's identities.toml).
        #[arg(long = "as", value_name = "IDENTITY")]
        identity: String,
        /// The demo's data dir [default: as for `demo`].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A scope to grant (repeat for several) [default: every scope the identity may hold].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Print the authorization matrix: per capability its scopes, checks, approval and the
    /// policies that can permit or forbid it.
    Matrix {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: crate::operator::Format,
    },
    /// Run sample identities (different tenants and roles) through every capability and print
    /// each decision with its reasons.
    Review {
        #[command(flatten)]
        config: ConfigArg,
        /// Sample identities, in the demo's `identities.toml` format [default: the
        /// configuration's `[entitlements] file`].
        #[arg(long)]
        identities: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: crate::operator::Format,
    },
    /// Explain one decision: `explain --config F --identities I --as user-42 tools/call
    /// read_policy '{"id":"POL-B1"}'`.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// Sample identities, in the demo's `identities.toml` format [default: the
        /// configuration's `[entitlements] file`].
        #[arg(long)]
        identities: Option<PathBuf>,
        /// The identity making the request.
        #[arg(long = "as", value_name = "IDENTITY")]
        identity: String,
        /// The token's scopes [default: every scope the identity may hold].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// The MCP method: tools/call, prompts/get or resources/read.
        method: String,
        /// The tool or prompt name, or the resource URI.
        name: String,
        /// The arguments, as a JSON object.
        #[arg(value_name = "ARGS-JSON")]
        arguments: Option<String>,
    },
    /// Walk through what the gateway does when something changes, decided by the real policies.
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
    },
    /// Policies: compare a candidate set with the one in force.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Upstream definitions changed since they were pinned: see them, approve them.
    Pins {
        #[command(subcommand)]
        command: PinsCommand,
    },
    /// People's connections to upstreams that want their own tokens (`user-oauth`): list them,
    /// or disconnect one.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Read the audit trail: verify its chain, query it, or follow it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The demo's built-in upstream, the reference backend on stdin/stdout (started by `demo`).
    #[command(hide = true)]
    DemoUpstream {
        /// Its SQLite database.
        #[arg(long)]
        db: PathBuf,
        /// The gateway's identity assertion key set.
        #[arg(long)]
        identity_jwks: PathBuf,
        /// The assertions' issuer.
        #[arg(long)]
        issuer: String,
    },
}

#[derive(Debug, Subcommand)]
enum SimulateCommand {
    /// An identity loses a role mid-session: list, list_changed, list again, a call denied.
    RoleChange {
        #[command(flatten)]
        config: ConfigArg,
        /// The identity (a subject of the identities file).
        #[arg(long = "as", value_name = "IDENTITY")]
        identity: String,
        /// The role it loses.
        #[arg(long)]
        remove: String,
        /// Identities in the demo's `identities.toml` format [default: the configuration's
        /// `[entitlements] file`].
        #[arg(long)]
        identities: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Which sample identities would gain or lose which capabilities with other policies.
    Diff {
        /// The configuration (its policies are the ones in force).
        #[command(flatten)]
        config: ConfigArg,
        /// The candidate policy file (Cedar).
        #[arg(long)]
        against: PathBuf,
        /// Sample identities in the demo's `identities.toml` format [default: the
        /// configuration's `[entitlements] file`].
        #[arg(long)]
        identities: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PinsCommand {
    /// Every pinned definition, as `[[upstream]] pins` in the config takes it.
    List {
        /// The configuration file (its `[pins] store`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Each changed definition waiting for approval, pinned and offered side by side.
    Diff {
        /// The configuration file (its `[pins] store`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make the offered definitions the pins: the gateway lists and calls them again.
    Approve {
        /// The configuration file (its `[pins] store`).
        #[arg(long, short)]
        config: PathBuf,
        /// Changes to approve, as `pins diff` names them (`upstream/tool:name`).
        ids: Vec<String>,
        /// Approve every change waiting.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// Who connected which upstream, and when.
    List {
        /// The configuration file (its `[connections]`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Disconnect a person: their tokens are forgotten; their next call asks them to connect.
    Revoke {
        /// The configuration file (its `[connections]`).
        #[arg(long, short)]
        config: PathBuf,
        /// The person (`sub`).
        #[arg(long)]
        subject: String,
        /// Their issuer, when several issuers have that subject.
        #[arg(long)]
        issuer: Option<String>,
        /// The upstream [default: every one of theirs].
        #[arg(long)]
        upstream: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check that every record links to the one before it; name the first that does not.
    Verify {
        #[command(flatten)]
        source: crate::audit::Source,
    },
    /// Print the records that match.
    Query {
        #[command(flatten)]
        source: crate::audit::Source,
        #[command(flatten)]
        filters: crate::audit::Filters,
    },
    /// Print matching records as they are written, until Ctrl-C.
    Tail {
        #[command(flatten)]
        source: crate::audit::Source,
        #[command(flatten)]
        filters: crate::audit::Filters,
    },
}

pub(crate) async fn run_command(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Serve {
            config: file,
            listen,
            admin,
        } => {
            let mut config = Config::load(&file)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if admin.is_some() {
                config.admin = admin;
            }
            if let Some(replica) = replica_from_env()? {
                config.cluster.name_replica(replica)?;
            }
            let path = config.path.clone();
            let scheme = if config.tls_files.is_some() {
                "https"
            } else {
                "http"
            };
            // Scripts and tests read the bound address from this line (the port may be 0).
            let banner = move |address: SocketAddr| format!("listening {scheme}://{address}{path}");
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let source: crate::reload::Source = Box::new(move || Ok(Config::load(&file)?));
            serve(config, listener, axum::Router::new(), &banner, source).await
        }
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "portcullis", &mut script);
            print(&String::from_utf8_lossy(&script))
        }
        Command::Check {
            config: file,
            online,
        } => {
            let file = file.path();
            let config = Config::load(&file)?;
            // The listener's certificate and key and the approval keys, as serve reads them.
            config.load_tls()?;
            config.consent.read_keys()?;
            portcullis_gateway::connections::check_key(&config).map_err(anyhow::Error::msg)?;
            let mut out = String::new();
            for path in config.files_to_write() {
                out.push_str(&format!("serve would write {}\n", path.display()));
            }
            if online {
                let mut unreachable = Vec::new();
                for (what, found) in portcullis_gateway::config::online::probe(&config).await {
                    match found {
                        Ok(said) => out.push_str(&format!("ok    {what}: {said}\n")),
                        Err(error) => {
                            out.push_str(&format!("FAIL  {what}: {error}\n"));
                            unreachable.push(what);
                        }
                    }
                }
                if !unreachable.is_empty() {
                    anyhow::bail!(
                        "{out}{}: valid, but not reachable: {}",
                        file.display(),
                        unreachable.join(", ")
                    );
                }
            }
            print(&format!(
                "{out}{}: valid; {} upstream(s), policy {}, {}\n",
                file.display(),
                config.upstreams.len(),
                config
                    .auth
                    .as_ref()
                    .map_or("none (no [auth])", |auth| auth.policy.version()),
                if config.cluster.clustered() {
                    "a replica ([cluster])"
                } else {
                    "a single gateway"
                }
            ))
        }
        Command::Demo {
            port,
            data_dir,
            consent_ttl,
        } => {
            let data_dir = data_dir.unwrap_or_else(crate::demo::default_data_dir);
            crate::demo::run(port, data_dir, &consent_ttl).await
        }
        Command::Token {
            identity,
            data_dir,
            scopes,
        } => {
            let data_dir = data_dir.unwrap_or_else(crate::demo::default_data_dir);
            let token = crate::demo::token(&data_dir, &identity, &scopes)?;
            #[expect(clippy::print_stdout, reason = "the token is the command's output")]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Audit { command } => match command {
            AuditCommand::Verify { source } => print(&crate::audit::verify(&source)?),
            AuditCommand::Query { source, filters } => {
                print(&crate::audit::query(&source, &filters)?)
            }
            AuditCommand::Tail { source, filters } => crate::audit::tail(&source, &filters).await,
        },
        Command::Simulate {
            command:
                SimulateCommand::RoleChange {
                    config,
                    identity,
                    remove,
                    identities,
                },
        } => print(&crate::simulate::role_change(
            &config.path(),
            identities.as_deref(),
            &identity,
            &remove,
        )?),
        Command::Policy {
            command:
                PolicyCommand::Diff {
                    config,
                    against,
                    identities,
                },
        } => print(&crate::policy_diff::diff(
            &config.path(),
            &against,
            identities.as_deref(),
        )?),
        Command::Connections {
            command: ConnectionsCommand::List { config },
        } => print(&crate::connections::list(&config).await?),
        Command::Connections {
            command:
                ConnectionsCommand::Revoke {
                    config,
                    subject,
                    issuer,
                    upstream,
                },
        } => print(
            &crate::connections::revoke(&config, &subject, issuer.as_deref(), upstream.as_deref())
                .await?,
        ),
        Command::Pins {
            command: PinsCommand::List { config },
        } => print(&crate::pins::list(&config)?),
        Command::Pins {
            command: PinsCommand::Diff { config },
        } => print(&crate::pins::diff(&config)?),
        Command::Pins {
            command: PinsCommand::Approve { config, ids, all },
        } => print(&crate::pins::approve(&config, &ids, all)?),
        Command::Matrix { config, format } => {
            print(&crate::operator::matrix(&config.path(), format)?)
        }
        Command::Review {
            config,
            identities,
            format,
        } => print(&crate::operator::review(
            &config.path(),
            identities.as_deref(),
            format,
        )?),
        Command::Explain {
            config,
            identities,
            identity,
            scopes,
            method,
            name,
            arguments,
        } => print(&crate::operator::explain(&crate::operator::Explain {
            config: &config.path(),
            identities: identities.as_deref(),
            subject: &identity,
            scopes: &scopes,
            method: &method,
            name: &name,
            arguments: arguments.as_deref(),
        })?),
        Command::DemoUpstream {
            db,
            identity_jwks,
            issuer,
        } => crate::demo_upstream::run(db, identity_jwks, issuer).await,
    }
}

/// This replica's name (`PORTCULLIS_REPLICA`), if the orchestrator set one: one config file
/// serves every replica.
#[expect(
    clippy::disallowed_methods,
    reason = "the binary reads the environment and passes the value down"
)]
fn replica_from_env() -> anyhow::Result<Option<String>> {
    let name = portcullis_gateway::config::REPLICA_ENV;
    match std::env::var(name) {
        Ok(replica) => Ok(Some(replica)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{name}: not valid UTF-8 (letters, digits, `-` and `_` only)")
        }
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    #[expect(clippy::print_stdout, reason = "the report is the command's output")]
    {
        print!("{text}");
    }
    Ok(())
}

/// Run the gateway on `listener` until SIGTERM or Ctrl-C, with `beside` served next to it.
/// `banner` is printed on stdout once the gateway is ready.
pub(crate) async fn serve(
    config: Config,
    listener: TcpListener,
    beside: axum::Router,
    banner: &dyn Fn(SocketAddr) -> String,
    reload: crate::reload::Source,
) -> anyhow::Result<()> {
    config.write_files()?;
    // Secrets are read here, not with the configuration (the operator commands read it too).
    let tls = config.load_tls()?;
    config.consent.read_keys()?;
    portcullis_gateway::connections::open_for_operator(&config).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let upstreams = CancellationToken::new();
    let draining = http::Draining::default();
    let local = listener.local_addr()?;
    let gateway = Gateway::start(&config, &upstreams);
    // Up to 10 s for the upstreams' first connections, saying every 2 s which are awaited.
    let mut statuses = gateway.wait_ready(Duration::from_secs(2)).await;
    for _ in 0..4 {
        let waiting: Vec<&str> = statuses
            .iter()
            .filter(|(_, status)| matches!(status, portcullis_gateway::UpstreamStatus::Starting))
            .map(|(name, _)| name.as_str())
            .collect();
        if waiting.is_empty() {
            break;
        }
        tracing::info!(
            upstreams = %waiting.join(", "),
            "waiting for upstreams to answer their first connection (at most 10 s; then serving without them)"
        );
        statuses = gateway.wait_ready(Duration::from_secs(2)).await;
    }
    for (name, status) in statuses {
        tracing::info!(upstream = %name, ?status, "upstream status at start");
    }
    let inflight = Inflight::default();
    let streams = CancellationToken::new();
    let trail = portcullis_gateway::trail::Trail::open(&config)?;
    if config.audit.is_none() {
        tracing::warn!(
            "no [audit] section: decisions are counted at /metrics but not recorded; add \
             `[audit] sqlite = \"audit.db\"` for a durable trail"
        );
    }
    if let Some(auth) = &config.auth {
        tokio::spawn(crate::reload::run(
            gateway.clone(),
            reload,
            auth.policy_file.clone(),
            auth.policy.version().to_owned(),
            upstreams.clone(),
        ));
    }
    if config.cluster.clustered() && config.admin.is_none() {
        tracing::warn!(
            "a replica without [admin]: no /readyz for the load balancer to watch, so a draining \
             replica cannot be taken out before it closes"
        );
    }
    if let Some(admin) = config.admin {
        let listener = TcpListener::bind(admin)
            .await
            .with_context(|| format!("cannot listen on {admin} (admin)"))?;
        tracing::info!(address = %listener.local_addr()?, "/metrics, /healthz and /readyz");
        let app = http::admin_app(trail.clone(), gateway.clone(), draining.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let router = app(
        &config,
        gateway,
        inflight.clone(),
        streams.clone(),
        beside,
        trail,
    );
    tracing::info!(address = %local, path = %config.path, "listening");
    #[expect(clippy::print_stdout, reason = "the banner is the command's output")]
    {
        println!("{}", banner(local));
    }
    tokio::spawn(signal(shutdown.clone(), draining, config.drain_delay()));
    http::run(
        listener,
        router,
        http::Listening::of(&config).with_tls(tls),
        inflight,
        streams,
        shutdown,
    )
    .await?;
    upstreams.cancel();
    // Let supervisors close their connections (stdio children get a clean end of input).
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Wait for Ctrl-C (shut down now) or SIGTERM (an orchestrator's: `/readyz` says draining for
/// `drain_delay` while everything is still served, so load balancers stop sending first).
/// Then the listener closes and in-flight calls get `[server] shutdown_grace`.
async fn signal(shutdown: CancellationToken, draining: http::Draining, drain_delay: Duration) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM; Ctrl-C still works");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {
                draining.start();
                if !drain_delay.is_zero() {
                    tracing::info!(?drain_delay, "SIGTERM: draining (not ready), then shutting down");
                    // Another signal cuts the drain short.
                    tokio::select! {
                        () = tokio::time::sleep(drain_delay) => {}
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    draining.start();
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
