use std::{path::Path, sync::Arc, time::Duration};

use portcullis_gateway::{
    Gateway,
    config::Config,
    http::{self, Inflight},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A gateway on `127.0.0.1:0`, built through the same `http::run` that `portcullis serve` uses.
pub struct TestGateway {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The MCP endpoint.
    pub url: String,
    /// The proxy, for status checks.
    pub gateway: Arc<Gateway>,
    /// Its audit trail and counters.
    pub trail: portcullis_gateway::trail::Trail,
    shutdown: CancellationToken,
    upstreams: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    /// Start a gateway from TOML text (its `listen` is ignored).
    pub async fn spawn(toml: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        Self::spawn_on(listener, toml).await
    }

    /// Start a gateway on `listener`, bound by the caller so that its configuration (and an
    /// authorization server's resource) can name the real port.
    pub async fn spawn_on(listener: TcpListener, toml: &str) -> Self {
        let address = listener.local_addr().expect("local address");
        // Tests of the proxy itself run open; tests of authentication bring their own `[auth]`.
        let open = "\n[danger]\nunauthenticated = true\n";
        let toml = if toml.contains("[auth]") {
            toml.to_owned()
        } else {
            format!("{toml}{open}")
        };
        let config = Config::parse(&toml, Path::new("<test>")).expect("test config resolves");
        config
            .write_files()
            .expect("the config's files are written");
        let upstreams = CancellationToken::new();
        let gateway = Gateway::start(&config, &upstreams);
        gateway.wait_ready(Duration::from_secs(20)).await;
        let inflight = Inflight::default();
        let streams = CancellationToken::new();
        let trail =
            portcullis_gateway::trail::Trail::open(&config).expect("test audit trail opens");
        let app = http::app(
            &config,
            gateway.clone(),
            inflight.clone(),
            streams.clone(),
            axum::Router::new(),
            trail.clone(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(http::run(
            listener,
            app,
            http::Listening::of(&config).with_tls(config.load_tls().expect("the TLS files load")),
            inflight,
            streams,
            shutdown.clone(),
        ));
        let base = format!("http://{address}");
        Self {
            url: format!("{base}{}", config.path),
            base,
            gateway,
            trail,
            shutdown,
            upstreams,
            task: Some(task),
        }
    }

    /// Ask for a graceful shutdown and wait until the listener loop has returned.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        self.upstreams.cancel();
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.upstreams.cancel();
    }
}
