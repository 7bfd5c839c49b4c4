//! The upstream side of the gateway: the supervised upstreams, which one owns what, and the
//! only ways to send them anything: [`Upstreams::send`], which takes a caller's request with
//! its [`Authorized`](crate::access::Authorized) proof, and [`Upstreams::learn`] and object
//! lookups, which take the gateway's own [`Internal`] proof.

mod credentials;
mod forward;
mod links;
mod permits;
pub mod pins;
mod resolve;
pub(crate) mod route;

use std::{sync::Arc, time::Duration};

use portcullis_core::CallerId;
use portcullis_mcp::{Change, Connection, SharedUpstream, UpstreamStatus};
use portcullis_policy::{ObjectAttributes, Principal, Resolver, RiskTier};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub(crate) use credentials::OnBehalf;
pub(crate) use forward::{Forward, Forwarded, Via};
pub(crate) use links::SessionLinks;

use crate::{
    access::{Internal, Objects, TaskRoute},
    config::Config,
    identity::Asserter,
};

/// How long a request waits for an upstream that is (re)starting before it is answered with an
/// error.
const READY_WAIT: Duration = Duration::from_secs(5);

/// The upstreams behind the gateway.
pub struct Upstreams {
    upstreams: Vec<Upstream>,
    separator: String,
    /// Time an upstream has to answer one request.
    pub(crate) request_timeout: Duration,
    /// Changes the upstreams announce (list changes, resource updates).
    changes: broadcast::Sender<Change>,
    routes: std::sync::Mutex<route::Routes>,
    /// Permits for per-session upstream connections; bounds the children and sockets callers
    /// can make the gateway hold by opening sessions.
    session_connections: permits::Permits,
    /// Signs who the caller is, for each upstream, if configured.
    asserter: Option<Asserter>,
    /// Object attributes learned from resolvers, briefly.
    objects: resolve::ObjectCache,
    /// When the tool list was last learned for a name nobody had listed.
    tools_learned: tokio::sync::Mutex<Option<std::time::Instant>>,
    resources_learned: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Each definition as first shown (`[pins]`).
    pub(crate) pins: pins::Pins,
    /// People's own tokens at upstreams with `credentials = "user-oauth"`; `None` when none
    /// has it, or the store or key could not be opened (their requests then fail closed).
    pub(crate) connections: Option<Arc<crate::connections::Connections>>,
}

struct Upstream {
    shared: Arc<SharedUpstream>,
    /// Tokens exchanged for callers (`credentials = "token-exchange"`).
    exchanger: Option<Arc<credentials::Exchanger>>,
    /// The credential kind its requests carry, for records: `None` when they carry none.
    credential: Option<&'static str>,
    /// Whether the gateway's own requests there carry a credential of its own.
    gateway_credential: bool,
    prefix: Option<String>,
    /// The resource URI prefixes it owns (`[[upstream]] resources`), scheme and authority
    /// folded to lower case (`route::folded`); empty: none declared.
    namespaces: Vec<String>,
    /// Set once the upstream refused a session handshake while answering stateless requests.
    stateless_only: std::sync::atomic::AtomicBool,
}

impl Upstreams {
    /// Start supervising every configured upstream. Returns at once; they connect in the
    /// background and [`Upstreams::wait_ready`] waits for them.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Self {
        let (changes, _) = broadcast::channel(256);
        let connections = crate::connections::Connections::open(config).unwrap_or_else(|error| {
            tracing::error!(%error, "people's upstream connections cannot be used: requests needing them fail");
            None
        });
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(index, (spec, prefix))| {
                let mut spec = spec.clone();
                let gateway_credential = matches!(
                    &spec.transport,
                    portcullis_mcp::UpstreamTransport::Http {
                        credential: Some(_),
                        ..
                    }
                );
                let (exchanger, credential) =
                    credentials::start(&mut spec, config.upstream_credentials.get(index));
                Upstream {
                    shared: SharedUpstream::start(spec, changes.clone(), shutdown.child_token()),
                    exchanger,
                    credential,
                    gateway_credential,
                    prefix: prefix.clone(),
                    namespaces: config
                        .resource_namespaces
                        .get(index)
                        .map(|namespaces| namespaces.iter().map(|n| route::folded(n)).collect())
                        .unwrap_or_default(),
                    stateless_only: std::sync::atomic::AtomicBool::new(false),
                }
            })
            .collect();
        Self {
            upstreams,
            separator: config.naming.separator.clone(),
            request_timeout: config.request_timeout,
            changes,
            routes: std::sync::Mutex::default(),
            session_connections: permits::Permits::new(config.max_session_connections),
            asserter: config.identity.clone().map(Asserter::new),
            objects: resolve::ObjectCache::default(),
            tools_learned: tokio::sync::Mutex::new(None),
            resources_learned: tokio::sync::Mutex::new(None),
            pins: pins::Pins::open(&config.pins)
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "the pin store cannot be opened: every upstream definition is held back until it can");
                    pins::Pins::broken()
                }),
            connections,
        }
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
        self.session_connections.in_use()
    }

    /// How many upstreams there are.
    pub(crate) fn count(&self) -> usize {
        self.upstreams.len()
    }

    /// The configured name of upstream `index`.
    pub(crate) fn name(&self, index: usize) -> &str {
        &self.upstreams[index].shared.spec().name
    }

    /// The era upstream `index` speaks now (`None` while it is down).
    pub(crate) fn era(&self, index: usize) -> Option<portcullis_core::Era> {
        self.upstreams.get(index)?.shared.era()
    }

    /// Changes the upstreams announce.
    pub(crate) fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// What every connected upstream said about itself (name, era, capabilities,
    /// instructions), in routing order; upstreams that are down are left out.
    pub(crate) fn negotiated(&self) -> Vec<(usize, portcullis_mcp::Negotiated)> {
        self.upstreams
            .iter()
            .enumerate()
            .filter_map(|(index, upstream)| {
                let live = upstream.shared.live().ok()?;
                Some((index, live.negotiated()?.clone()))
            })
            .collect()
    }

    /// The shared connection to upstream `index`, waiting briefly for one that is starting.
    pub(crate) async fn shared(
        &self,
        index: usize,
    ) -> Result<Connection, portcullis_mcp::UpstreamError> {
        self.upstreams[index].shared.ready(READY_WAIT).await
    }

    /// The identity assertion for a request to upstream `index` on behalf of `principal`;
    /// `None` without assertions configured.
    pub(crate) fn assertion(
        &self,
        principal: &Principal,
        index: usize,
        request: (&str, Option<&str>),
    ) -> Option<String> {
        let asserter = self.asserter.as_ref()?;
        asserter.assert(principal, self.name(index), request)
    }

    /// Learn what upstream `index` offers of `method` (a list), every page, for the gateway's
    /// own routing: never for a caller's eyes. `on_behalf` is the caller whose request made
    /// the gateway look (a backend that checks identities gets its assertion).
    pub(crate) async fn learn(
        &self,
        proof: &Internal,
        index: usize,
        method: &str,
        on_behalf: Option<&Principal>,
    ) -> Result<Vec<Value>, String> {
        tracing::debug!(upstream = %self.name(index), purpose = proof.purpose(), method, "learning");
        let connection = self.shared(index).await.map_err(|e| e.to_string())?;
        let key = list_key(method).ok_or_else(|| format!("`{method}` is not a list"))?;
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        let mut read = 0usize;
        // A bounded number of pages: an upstream that always has a next page cannot keep the
        // gateway reading.
        for _ in 0..MAX_LEARNED_PAGES {
            let mut params = serde_json::Map::new();
            if let Some(cursor) = cursor.take() {
                params.insert("cursor".to_owned(), cursor);
            }
            if let Some(assertion) =
                on_behalf.and_then(|p| self.assertion(p, index, (method, None)))
            {
                let mut meta = serde_json::Map::new();
                meta.insert(forward::IDENTITY_KEY.to_owned(), assertion.into());
                params.insert("_meta".to_owned(), Value::Object(meta));
            }
            let exchange = connection
                .send(portcullis_mcp::Outbound::new(method, params))
                .await
                .map_err(|e| e.to_string())?;
            let answer = tokio::time::timeout(self.request_timeout, exchange.answer())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            if let portcullis_mcp::Outcome::Result(raw) = &answer {
                read = read.saturating_add(raw.get().len());
            }
            if read > MAX_LEARNED_BYTES {
                return Err("the list is larger than the gateway reads of one upstream".to_owned());
            }
            let Ok(Value::Object(mut page)) = answer.into_value() else {
                return Err("the upstream refused the list".to_owned());
            };
            if let Some(Value::Array(found)) = page.remove(key) {
                for item in found {
                    self.adopt(index, method, item, &mut items);
                }
            }
            match page.remove("nextCursor") {
                Some(next @ Value::String(_)) => cursor = Some(next),
                _ => break,
            }
        }
        Ok(items)
    }

    /// Give a listed item its public form and learn its route; `out` gets it, unless its
    /// definition changed since it was pinned and is held back (`[pins]`).
    pub(crate) fn adopt(&self, index: usize, method: &str, mut item: Value, out: &mut Vec<Value>) {
        if let Some((kind, member)) = pins::Kind::of_list(method) {
            let Some(name) = item.get(member).and_then(Value::as_str) else {
                return;
            };
            match self.pins.check(self.name(index), kind, name, &item) {
                pins::Use::Show => {}
                pins::Use::Flagged { previous, current } => {
                    let changed = serde_json::json!({"previous": previous, "current": current});
                    if let Some(object) = item.as_object_mut() {
                        let meta = object
                            .entry("_meta")
                            .or_insert_with(|| Value::Object(serde_json::Map::new()));
                        if let Some(meta) = meta.as_object_mut() {
                            meta.insert(pins::CHANGED_KEY.to_owned(), changed);
                        }
                    }
                }
                pins::Use::Hold => {
                    match kind {
                        pins::Kind::Tool => self.forget_tool(&self.public_name(index, name)),
                        pins::Kind::Template => self.forget_template(index, name),
                        pins::Kind::Prompt => {}
                    }
                    return;
                }
            }
        }
        match method {
            "tools/list" | "prompts/list" => {
                let Some(name) = item.get("name").and_then(Value::as_str) else {
                    return;
                };
                let public = self.public_name(index, name);
                item["name"] = Value::String(public.clone());
                if method == "tools/list" {
                    self.learn_tool(&public, &item);
                }
            }
            "resources/list" | "resources/templates/list" => {
                // URIs are global names already: they are routed, never rewritten.
                let member = if method == "resources/list" {
                    "uri"
                } else {
                    "uriTemplate"
                };
                let Some(uri) = item.get(member).and_then(Value::as_str) else {
                    return;
                };
                // SECURITY: a URI in another upstream's declared namespace, or outside this
                // one's own, is not this upstream's to list (nor to be sent reads of).
                if !self.may_claim(index, uri) {
                    tracing::warn!(upstream = %self.name(index), uri, "an upstream listed a URI outside its namespace; refused");
                    return;
                }
                if method == "resources/list" {
                    self.learn_resource(uri, index);
                } else {
                    self.learn_template(uri, index);
                }
            }
            _ => return,
        }
        out.push(item);
    }

    /// Whether the tool or prompt of this public name is held back because its definition
    /// changed (`[pins]`): a call to it answers as to one that does not exist.
    pub(crate) fn held(&self, kind: pins::Kind, public: &str) -> bool {
        self.route_name(public)
            .is_some_and(|(index, name)| self.pins.held(self.name(index), kind, &name))
    }

    /// Read the operator's approvals of changed definitions; if any, the lists are learned
    /// again and callers told their lists changed.
    pub(crate) async fn reread_pins(self: Arc<Self>) {
        // SQLite waits up to its busy timeout for an operator's approval being written: not
        // on a worker of the runtime.
        let upstreams = self.clone();
        let approved = tokio::task::spawn_blocking(move || upstreams.pins.reread())
            .await
            .unwrap_or(false);
        if approved {
            self.forget_tools().await;
            for index in 0..self.count() {
                for kind in [
                    portcullis_mcp::ChangeKind::Tools,
                    portcullis_mcp::ChangeKind::Prompts,
                    portcullis_mcp::ChangeKind::Resources,
                ] {
                    let _ = self.changes.send(portcullis_mcp::Change {
                        upstream: self.name(index).into(),
                        kind,
                    });
                }
            }
        }
    }

    /// The upstream that owns resource `uri`, learning every upstream's resources and templates
    /// again (at most once a second) when none is known to own it yet.
    pub(crate) async fn owner_of(&self, uri: &str, on_behalf: Option<&Principal>) -> Option<usize> {
        let owner = self.route_uri(uri);
        if owner.is_some() || self.routes_known(uri) {
            return owner;
        }
        let mut last = self.resources_learned.lock().await;
        if last.is_none_or(|at| at.elapsed() >= RELEARN_INTERVAL) {
            for index in 0..self.count() {
                for method in ["resources/list", "resources/templates/list"] {
                    if let Err(error) = self
                        .learn(&Internal::learning(), index, method, on_behalf)
                        .await
                    {
                        tracing::debug!(upstream = %self.name(index), %error, method, "not learned");
                    }
                }
            }
            *last = Some(std::time::Instant::now());
        }
        self.route_uri(uri)
    }

    /// Forget every learned tool definition: the next call learns the lists again at once.
    pub(crate) async fn forget_tools(&self) {
        let mut last = self.tools_learned.lock().await;
        self.forget_tool_definitions();
        *last = None;
    }

    /// Whether a tool of this public name exists upstream, learning the lists again (at most
    /// once a second) when nobody has listed it: a hidden tool and one that does not exist
    /// must get the same answer, so with policies on the gateway answers both itself.
    pub(crate) async fn tool_exists(&self, public: &str, on_behalf: Option<&Principal>) -> bool {
        if self.knows_tool(public) {
            return true;
        }
        // Callers that arrive while the list is being learned wait for it, rather than
        // answering "not found" for a tool the upstream has.
        let mut last = self.tools_learned.lock().await;
        if self.knows_tool(public) {
            return true;
        }
        if last.is_none_or(|at| at.elapsed() >= RELEARN_INTERVAL) {
            for index in 0..self.count() {
                let learned = self
                    .learn(&Internal::learning(), index, "tools/list", on_behalf)
                    .await;
                if let Err(error) = learned {
                    tracing::debug!(upstream = %self.name(index), %error, "tools not learned");
                }
            }
            *last = Some(std::time::Instant::now());
        }
        self.knows_tool(public)
    }
}

// An unknown tool name makes the gateway learn the tool lists again at most this often: often
// enough for a new upstream tool to be found, rarely enough that random names cannot make the
// gateway hammer its upstreams.
const RELEARN_INTERVAL: Duration = Duration::from_secs(1);
// Pages the gateway reads of one list for itself, and bytes.
const MAX_LEARNED_PAGES: usize = 100;
const MAX_LEARNED_BYTES: usize = 16 * 1024 * 1024;

/// Where a list result holds its items.
pub(crate) fn list_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/list" => Some("tools"),
        "prompts/list" => Some("prompts"),
        "resources/list" => Some("resources"),
        "resources/templates/list" => Some("resourceTemplates"),
        _ => None,
    }
}

impl Objects for Upstreams {
    async fn resolve(
        &self,
        proof: &Internal,
        principal: &Principal,
        target: (portcullis_policy::CapabilityKind, &str),
        resolver: &Resolver,
        object: &str,
    ) -> Result<Option<ObjectAttributes>, String> {
        self.resolve_object(proof, principal, target, resolver, object)
            .await
            .map_err(|error| error.to_string())
    }

    fn task(&self, task: &str, caller: Option<&CallerId>) -> TaskRoute {
        self.route_task(task, caller)
    }

    fn routes_other_methods(&self) -> bool {
        self.count() == 1
    }

    fn held(&self, kind: portcullis_policy::CapabilityKind, name: &str) -> bool {
        let kind = match kind {
            portcullis_policy::CapabilityKind::Tool => pins::Kind::Tool,
            portcullis_policy::CapabilityKind::Prompt => pins::Kind::Prompt,
            // A template, by its URI (a completion's reference): held under any upstream.
            portcullis_policy::CapabilityKind::Resource => {
                return (0..self.count())
                    .any(|index| self.pins.template_held_over(self.name(index), name));
            }
            portcullis_policy::CapabilityKind::Method => return false,
        };
        Self::held(self, kind, name)
    }

    async fn credential(
        &self,
        (kind, name): (portcullis_policy::CapabilityKind, &str),
        caller: Option<&portcullis_core::CallerId>,
        connected: bool,
    ) -> Result<portcullis_policy::Credential, String> {
        use portcullis_policy::CapabilityKind;
        let index = match kind {
            CapabilityKind::Tool | CapabilityKind::Prompt => {
                self.route_name(name).map(|(index, _)| index)
            }
            CapabilityKind::Resource => self.route_uri(name),
            CapabilityKind::Method => None,
        };
        let Some(index) = index else {
            return Ok(portcullis_policy::Credential::default());
        };
        let kind = self.upstreams[index].credential.unwrap_or("none");
        let connected = match (kind, caller, &self.connections) {
            ("user-oauth", Some(caller), Some(connections)) if connected => {
                Box::pin(connections.connected(caller, self.name(index))).await?
            }
            _ => false,
        };
        Ok(portcullis_policy::Credential { kind, connected })
    }

    async fn risk_hint(&self, tool: &str, on_behalf: &Principal) -> Option<RiskTier> {
        // SECURITY: learned before deciding, never after: a tier that depended on whether
        // someone had listed tools yet would let the first call run unapproved.
        if !self.tool_exists(tool, Some(on_behalf)).await {
            return None;
        }
        // `destructiveHint` raises a tier; `readOnlyHint` is never trusted to lower one.
        let definition = self.tool(tool)?;
        (definition.pointer("/annotations/destructiveHint") == Some(&Value::Bool(true)))
            .then_some(RiskTier::Destructive)
    }
}
