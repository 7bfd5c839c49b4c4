//! The MCP proxy: one downstream MCP server (rmcp's streamable HTTP service, both eras) whose
//! handler forwards every operation to the upstream that owns it.
//!
//! A [`Gateway`] is built once per process and holds the supervised upstreams. A [`GatewayHandler`]
//! is made per downstream session (2025-11-25) or per stateless request (2026-07-28). A session
//! talking to a session-era upstream gets connections of its own to that upstream, so that what
//! the upstream says in one caller's session (log lines, elicitation, resource updates) reaches
//! that caller and nobody else. Stateless requests and stateless upstreams share one connection.

mod consent;
mod forward;
mod guard;
mod handler;
mod list;
mod live;
mod relay;
mod resolve;
mod route;
mod session;

pub use live::TokenPrincipal;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use portcullis_mcp::{SharedUpstream, UpstreamStatus};
use portcullis_policy::PolicyEngine;
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, ServerNotification,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Naming};

pub use handler::GatewayHandler;
pub use relay::RelayTarget;
pub use resolve::ResolveError;

/// How long a request waits for an upstream that is (re)starting before it is answered with an
/// error.
const READY_WAIT: Duration = Duration::from_secs(5);
// Bounds on what the gateway remembers for routing; past these, lookups fall back to probing.
const MAX_LEARNED_ROUTES: usize = 100_000;

/// Process-wide proxy state: the upstreams and what the gateway learned about routing.
pub struct Gateway {
    upstreams: Vec<Upstream>,
    /// Permits for per-session upstream connections; bounds child processes and sockets that
    /// clients can make the gateway hold by opening sessions.
    session_connections: Arc<tokio::sync::Semaphore>,
    max_session_connections: usize,
    naming: Naming,
    request_timeout: Duration,
    changes: broadcast::Sender<ServerNotification>,
    routes: Mutex<Routes>,
    /// The policies every call and list goes through, swapped whole on reload; `None` only on
    /// an unauthenticated gateway.
    policy: Option<std::sync::RwLock<Arc<PolicyEngine>>>,
    /// Candidate policies decided beside the ones in force, only to audit disagreements.
    shadow: std::sync::RwLock<Option<Arc<PolicyEngine>>>,
    /// Live entitlements beside the tokens' claims, if configured.
    entitlements: Option<Arc<crate::entitlements::Entitlements>>,
    /// What introspection last said of each connected caller with an opaque token, asked
    /// again while its session lives (`None`: its token is no longer active).
    reintrospected: Mutex<HashMap<(String, String), Option<portcullis_policy::Principal>>>,
    /// Bumped whenever what callers may see can have changed (entitlements, policies): each
    /// connected caller's view is then recomputed.
    generation: tokio::sync::watch::Sender<u64>,
    /// When the tool list was last re-learned for an unknown name.
    tools_learned: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Signs who the caller is for upstreams, if configured.
    asserter: Option<crate::identity::Asserter>,
    /// Object attributes learned from resolvers, briefly.
    objects: resolve::ObjectCache,
    /// Where outcomes of allowed calls are recorded (set once the HTTP app is built).
    trail: std::sync::OnceLock<crate::trail::Trail>,
    /// Approvals asked for and used.
    consent: Arc<crate::consent::Consent>,
}

struct Upstream {
    shared: Arc<SharedUpstream>,
    prefix: Option<String>,
    /// Set once the upstream refused a session handshake while answering stateless requests.
    stateless_only: std::sync::atomic::AtomicBool,
}

/// Which upstream owns a resource URI or a task id, learned from results passing through.
#[derive(Default)]
struct Routes {
    resources: HashMap<String, usize>,
    templates: Vec<(String, usize)>,
    /// Task ids, with the upstream that made each and the caller (issuer, subject) it is for.
    tasks: HashMap<String, (usize, Option<(String, String)>)>,
    /// The last listed definition of each tool, by public name: rmcp validates `Mcp-Param-*`
    /// headers of stateless calls against its input schema.
    tools: HashMap<String, rmcp::model::Tool>,
}

impl Gateway {
    /// Start supervising every configured upstream. Returns at once; upstreams connect in the
    /// background and [`Gateway::wait_ready`] waits for them.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Arc<Self> {
        let (changes, _) = broadcast::channel(256);
        let upstreams = config
            .upstreams
            .iter()
            .map(|(spec, prefix)| Upstream {
                shared: SharedUpstream::start(
                    spec.clone(),
                    client_info(),
                    changes.clone(),
                    shutdown.child_token(),
                ),
                prefix: prefix.clone(),
                stateless_only: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        let gateway = Arc::new(Self {
            upstreams,
            session_connections: Arc::new(tokio::sync::Semaphore::new(
                config.max_session_connections,
            )),
            max_session_connections: config.max_session_connections,
            naming: config.naming.clone(),
            request_timeout: config.request_timeout,
            changes,
            routes: Mutex::new(Routes::default()),
            policy: config
                .auth
                .as_ref()
                .map(|auth| std::sync::RwLock::new(auth.policy.clone())),
            shadow: std::sync::RwLock::new(
                config.auth.as_ref().and_then(|auth| auth.shadow.clone()),
            ),
            entitlements: config.entitlements.clone(),
            reintrospected: Mutex::new(HashMap::new()),
            generation: tokio::sync::watch::Sender::new(0),
            tools_learned: tokio::sync::Mutex::new(None),
            asserter: config.identity.clone().map(crate::identity::Asserter::new),
            objects: resolve::ObjectCache::default(),
            trail: std::sync::OnceLock::new(),
            consent: Arc::new(crate::consent::Consent::from_config(&config.consent)),
        });
        if let Some(entitlements) = gateway.entitlements.clone() {
            tokio::spawn(live::watch_entitlements(
                Arc::downgrade(&gateway),
                entitlements,
                shutdown.child_token(),
            ));
        }
        gateway
    }

    /// The identity assertion for a request to upstream `index` on behalf of the caller of
    /// `context`; `None` without assertions configured or without a caller (unauthenticated).
    fn assertion(
        &self,
        index: usize,
        context: &rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Option<String> {
        let principal = context
            .extensions
            .get::<http::request::Parts>()?
            .extensions
            .get::<portcullis_policy::Principal>()?;
        self.assertion_for(principal, index)
    }

    fn assertion_for(
        &self,
        principal: &portcullis_policy::Principal,
        index: usize,
    ) -> Option<String> {
        let asserter = self.asserter.as_ref()?;
        asserter.assert(principal, &self.upstreams.get(index)?.shared.spec().name)
    }

    /// Record the outcomes of allowed calls to `trail` (the first trail attached stays).
    pub fn attach_trail(&self, trail: crate::trail::Trail) {
        let _ = self.trail.set(trail);
    }

    /// The policy set in force now.
    pub(crate) fn policy(&self) -> Option<Arc<PolicyEngine>> {
        self.policy.as_ref().map(|slot| {
            slot.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// Put `engine` in force for every decision from now on, and have every connected caller's
    /// view recomputed. (Nothing on an unauthenticated gateway, which has no policies.)
    pub fn reload_policy(&self, engine: Arc<PolicyEngine>, shadow: Option<Arc<PolicyEngine>>) {
        if let Some(slot) = &self.policy {
            *slot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = engine;
            *self
                .shadow
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = shadow;
            self.generation.send_modify(|generation| *generation += 1);
        }
    }

    /// The candidate policies in shadow, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<PolicyEngine>> {
        self.shadow
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `principal` (as its token says) as its entitlements say it is now.
    pub(crate) fn entitled(
        &self,
        principal: portcullis_policy::Principal,
    ) -> Result<portcullis_policy::Principal, crate::entitlements::Disabled> {
        match &self.entitlements {
            Some(entitlements) => entitlements.apply(principal),
            None => Ok(principal),
        }
    }

    /// Approvals asked for and used (shared with the approval page).
    pub(crate) fn consent(&self) -> Arc<crate::consent::Consent> {
        self.consent.clone()
    }

    /// The trail records go to, once attached.
    pub(crate) fn trail(&self) -> Option<&crate::trail::Trail> {
        self.trail.get()
    }

    /// Record what became of an allowed call (typed path or byte relay), under its decision's
    /// correlation id; nothing for a call no policy decided.
    pub async fn record_outcome(
        &self,
        extensions: &http::Extensions,
        (method, capability): (&str, &str),
        upstream: &str,
        outcome: &str,
        latency: Duration,
    ) {
        let Some(trail) = self.trail.get() else {
            return;
        };
        let (Some(principal), Some(correlation)) = (
            extensions.get::<portcullis_policy::Principal>(),
            extensions
                .get::<crate::verdict::CallVerdict>()
                .and_then(crate::verdict::CallVerdict::allowed),
        ) else {
            return;
        };
        let record = crate::trail::outcome(
            principal,
            correlation.as_str(),
            method,
            capability,
            upstream,
            outcome,
            latency,
        );
        let _ = trail
            .record(record, portcullis_audit::Durability::Queued)
            .await;
    }

    /// The tier a tool's own annotations suggest, from its last listing: `destructiveHint`
    /// raises a tier; `readOnlyHint` is never trusted to lower one, so it suggests nothing.
    pub fn risk_hint(&self, public_name: &str) -> Option<portcullis_policy::RiskTier> {
        let annotations = self.tool(public_name)?.annotations?;
        (annotations.destructive_hint == Some(true))
            .then_some(portcullis_policy::RiskTier::Destructive)
    }

    /// Wait up to `timeout` for every upstream's first connection; report each one's status.
    pub async fn wait_ready(&self, timeout: Duration) -> Vec<(String, UpstreamStatus)> {
        let waits = self.upstreams.iter().map(|u| u.shared.ready(timeout));
        futures::future::join_all(waits).await;
        self.status()
    }

    /// Each upstream's name and status.
    pub fn status(&self) -> Vec<(String, UpstreamStatus)> {
        self.upstreams
            .iter()
            .map(|u| (u.shared.spec().name.clone(), u.shared.status()))
            .collect()
    }

    /// How many per-session upstream connections are held now.
    pub fn session_connections_in_use(&self) -> usize {
        self.max_session_connections
            .saturating_sub(self.session_connections.available_permits())
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the gateway's shared connections announce to upstreams.
fn client_info() -> ClientConfig {
    // Shared connections serve many callers; announce what the gateway can relay for them.
    let capabilities: ClientCapabilities = serde_json::from_value(serde_json::json!({
        "elicitation": { "form": {}, "url": {} },
        "sampling": {},
    }))
    .unwrap_or_default();
    let mut info = ClientConfig::new(
        capabilities,
        Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
    );
    info.protocol_version = ProtocolVersion::V_2025_11_25;
    info
}
