//! Policy hot reload for `serve` and `demo`: on SIGHUP, or when the policy file changes
//! (checked every second), the configuration is read again and its policy set validated; a
//! valid one is put in force whole, atomically, and every connected caller's view is
//! recomputed; an invalid one is refused with its file and line, and the policies in force
//! stay. Only the policies reload: other settings need a restart.

use std::{path::PathBuf, sync::Arc, time::Duration};

use portcullis_gateway::{Gateway, config::Config};
use tokio_util::sync::CancellationToken;

/// How a fresh configuration is read (again from its file, or the demo's built-in text).
pub(crate) type Source = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

const CHECK: Duration = Duration::from_secs(1);

/// Reload the policies of `gateway` from `source` on SIGHUP or a change of `file`, until
/// `stop`.
pub(crate) async fn run(
    gateway: Arc<Gateway>,
    source: Source,
    file: Option<PathBuf>,
    version: String,
    stop: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last = file.as_deref().and_then(portcullis_gateway::file_stamp);
    let mut version = version;
    loop {
        #[cfg(unix)]
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hung_up = std::future::pending::<()>();
        tokio::select! {
            () = stop.cancelled() => return,
            () = hung_up => tracing::info!("SIGHUP: reloading policies"),
            () = tokio::time::sleep(CHECK) => {
                let now = file.as_deref().and_then(portcullis_gateway::file_stamp);
                if now == last {
                    continue;
                }
                last = now;
                tracing::info!("policy file changed: reloading policies");
            }
        }
        match source().map(|config| config.auth.map(|auth| (auth.policy, auth.shadow))) {
            Ok(Some((engine, shadow))) => {
                if engine.version() == version {
                    tracing::info!(version = %version, "policies in force unchanged");
                } else {
                    tracing::info!(from = %version, to = %engine.version(), "policies reloaded");
                }
                version = engine.version().to_owned();
                gateway.reload_policy(engine, shadow);
            }
            Ok(None) => tracing::error!(
                "policy reload refused: the configuration has no [auth] now; the policies in force stay"
            ),
            Err(error) => {
                tracing::error!("policy reload refused, the policies in force stay: {error:#}");
            }
        }
    }
}
