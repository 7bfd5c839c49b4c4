//! 2025-11-25 sessions: opened by `initialize`, bound to the caller who opened it, ended by
//! DELETE, by idleness or by shutdown. A session id is never a credential: every request still
//! carries its own token, and a session answers only the caller (issuer and subject) who
//! opened it; anyone else is told it does not exist.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use portcullis_authn::BearerToken;
use portcullis_core::CallerId;
use portcullis_mcp::{ClientIdentity, Event};
use portcullis_policy::Principal;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::upstreams::SessionLinks;

// Bound on live sessions; a session that cannot be opened is refused, never another's evicted.
const MAX_SESSIONS: usize = 100_000;
/// Sessions one caller holds at once; opening one more ends that caller's least recently used
/// session, never anyone else's.
pub(crate) const MAX_SESSIONS_PER_CALLER: usize = 64;
// What a session's own connections may say before the session reads it.
const BACKLOG: usize = 256;
/// Messages, and bytes, kept for a standalone stream not open yet; later ones are dropped.
const EARLY: usize = 64;
/// Questions from upstreams waiting on one session's client at once.
const MAX_QUESTIONS: usize = 16;
const EARLY_BYTES: usize = 1024 * 1024;

/// Where messages for a client go: the JSON text of each, framed by the stream's writer.
pub(crate) type Outlet = mpsc::Sender<String>;

/// One session.
pub(crate) struct Session {
    /// Its id (`Mcp-Session-Id`).
    pub(crate) id: String,
    /// Who opened it; `None` on an unauthenticated gateway.
    pub(crate) owner: Option<CallerId>,
    /// Its own upstream connections.
    pub(crate) links: SessionLinks,
    /// The caller as its token said when it opened the session: its view is followed from it.
    pub(crate) token_principal: Option<Principal>,
    /// The tools its caller was last shown, for per-caller `list_changed`.
    pub(crate) shown: super::live::Shown,
    /// Ended with the session.
    pub(crate) alive: CancellationToken,
    log_level: Mutex<Option<String>>,
    /// The upstreams the caller sent a request to in this session, and its last
    /// `logging/setLevel` (as decided), which reaches only those, each on first use.
    used: Mutex<(
        std::collections::BTreeSet<usize>,
        Option<Arc<crate::access::Authorized>>,
    )>,
    asks: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
    /// Questions its upstreams may have waiting on the client at once. SECURITY: an upstream
    /// asking in a loop would otherwise grow tasks and `asks` without bound.
    pub(crate) questions: Arc<tokio::sync::Semaphore>,
    next_ask: AtomicU64,
    standalone: Mutex<Option<Outlet>>,
    /// Messages for the standalone stream while none is open (a client opens it just after
    /// `initialize`, when its upstreams have often spoken already), at most `EARLY`.
    early: Mutex<std::collections::VecDeque<String>>,
    last_seen: Mutex<Instant>,
    /// The opaque token it last used, kept (in memory only, never logged) so its owner's
    /// introspection answer can be asked again while the session lives.
    opaque: Mutex<Option<BearerToken>>,
    /// Requests in progress, by the client's id, so `notifications/cancelled` can stop them.
    inflight: Mutex<HashMap<String, CancellationToken>>,
    /// Its recent request streams, for a client that resumes one.
    pub(crate) streams: super::resume::Streams,
}

/// Every live session.
pub(crate) struct Sessions {
    map: Mutex<Table>,
    idle: Duration,
    /// How this replica's session ids start.
    prefix: String,
}

/// Sessions by id, and each caller's ids (so that counting a caller's sessions does not read
/// everyone's): the two kept in step by the only methods that change them.
#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Session>>,
    by_owner: HashMap<CallerId, std::collections::HashSet<String>>,
}

impl Table {
    fn insert(&mut self, session: Arc<Session>) {
        if let Some(owner) = &session.owner {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(session.id.clone());
        }
        self.by_id.insert(session.id.clone(), session);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let session = self.by_id.remove(id)?;
        if let Some(owner) = &session.owner
            && let Some(ids) = self.by_owner.get_mut(owner)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        Some(session)
    }

    /// Remove (and return) the sessions `gone` says should go.
    fn remove_where(&mut self, gone: impl Fn(&Session) -> bool) -> Vec<Arc<Session>> {
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, session)| gone(session))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// `owner`'s sessions, with when each was last used.
    fn owned_by(&self, owner: &CallerId) -> Vec<(Instant, String)> {
        self.by_owner.get(owner).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter_map(|id| Some((self.by_id.get(id)?.seen(), id.clone())))
                .collect()
        })
    }
}

/// A session just opened, and what its own upstream connections will say on their own.
pub(crate) type Opened = (Arc<Session>, mpsc::Receiver<(usize, Event)>);

/// Too many sessions are open.
#[derive(Debug)]
pub(crate) struct Full;

impl Sessions {
    /// No sessions yet; an idle one is closed after `idle`.
    /// Sessions idle past `idle` end; ids start with `replica.` when the replica has a name.
    pub(crate) fn new(idle: Duration, replica: Option<&str>) -> Self {
        Self {
            map: Mutex::new(Table::default()),
            idle,
            prefix: replica.map_or_else(|| "ps-".to_owned(), |replica| format!("{replica}.ps-")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open a session for `owner`, whose client declared `identity`;
    /// what its own upstream connections say on their own comes out of the receiver.
    pub(crate) fn open(
        &self,
        owner: Option<CallerId>,
        identity: ClientIdentity,
        (token_principal, opaque): (Option<Principal>, Option<BearerToken>),
    ) -> Result<Opened, Full> {
        let (unattributed, receiver) = mpsc::channel(BACKLOG);
        let session = Arc::new(Session {
            // A load balancer routes a session to the replica holding it by this prefix; the
            // rest is unguessable, and a replica knows only its own sessions (another's id is
            // unknown here: 404, as for any unknown session).
            id: format!(
                "{}{}",
                self.prefix,
                portcullis_authn::signing::random_token()
            ),
            links: SessionLinks::new(owner.clone(), identity, unattributed),
            owner,
            token_principal,
            shown: super::live::Shown::default(),
            alive: CancellationToken::new(),
            log_level: Mutex::new(None),
            used: Mutex::new((std::collections::BTreeSet::new(), None)),
            asks: Mutex::new(HashMap::new()),
            questions: Arc::new(tokio::sync::Semaphore::new(MAX_QUESTIONS)),
            next_ask: AtomicU64::new(1),
            standalone: Mutex::new(None),
            early: Mutex::new(std::collections::VecDeque::new()),
            last_seen: Mutex::new(Instant::now()),
            opaque: Mutex::new(opaque),
            inflight: Mutex::new(HashMap::new()),
            streams: super::resume::Streams::default(),
        });
        let mut map = self.lock();
        // SECURITY: one caller opening sessions in a loop crowds out only itself.
        // (Under `[danger] unauthenticated` nobody is known: only the global bound applies.)
        let mut mine = session
            .owner
            .as_ref()
            .map_or_else(Vec::new, |owner| map.owned_by(owner));
        if mine.len() >= MAX_SESSIONS_PER_CALLER {
            mine.sort();
            for (_, id) in &mine[..=mine.len() - MAX_SESSIONS_PER_CALLER] {
                if let Some(oldest) = map.remove(id) {
                    tracing::info!(session = %id, "a caller's least recently used session ended: it opened too many");
                    oldest.end();
                }
            }
        }
        if map.by_id.len() >= MAX_SESSIONS {
            let idle = self.idle;
            for stale in map.remove_where(|session| session.idle_for() >= idle) {
                stale.end();
            }
            if map.by_id.len() >= MAX_SESSIONS {
                return Err(Full);
            }
        }
        map.insert(session.clone());
        Ok((session, receiver))
    }

    /// The session `id`, if it exists and belongs to `caller`. SECURITY: another caller's
    /// session is exactly as absent as one that never existed.
    pub(crate) fn get(&self, id: &str, caller: Option<&CallerId>) -> Lookup {
        let Some(session) = self.lock().by_id.get(id).cloned() else {
            return Lookup::Missing;
        };
        if session.owner.as_ref() != caller {
            return Lookup::NotOwned;
        }
        session.touch();
        Lookup::Found(session)
    }

    /// End session `id` (DELETE).
    pub(crate) fn close(&self, id: &str) {
        if let Some(session) = self.lock().remove(id) {
            session.end();
        }
    }

    /// End sessions idle longer than the idle timeout; run periodically.
    pub(crate) fn sweep(&self) {
        let idle = self.idle;
        let ended = self
            .lock()
            .remove_where(|session| session.idle_for() >= idle);
        for session in ended {
            session.end();
        }
    }

    /// End every session (shutdown).
    pub(crate) fn close_all(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (_, session) in all.by_id {
            session.end();
        }
    }

    /// Each live session's caller with the opaque token it last used.
    pub(crate) fn opaque_tokens(&self) -> HashMap<CallerId, BearerToken> {
        let idle = self.idle;
        self.lock()
            .by_id
            .values()
            .filter(|session| session.idle_for() < idle)
            .filter_map(|session| {
                let token = session
                    .opaque
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()?;
                Some((session.owner.clone()?, token))
            })
            .collect()
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// What a session id names for a caller.
pub(crate) enum Lookup {
    /// Its session.
    Found(Arc<Session>),
    /// Someone else's.
    NotOwned,
    /// None.
    Missing,
}

impl Session {
    fn seen(&self) -> Instant {
        *self
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn idle_for(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// The session is in use.
    pub(crate) fn touch(&self) {
        *self
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Remember the opaque token the caller used last.
    pub(crate) fn used(&self, opaque: Option<&BearerToken>) {
        if let Some(token) = opaque {
            *self.opaque.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        }
    }

    fn end(&self) {
        self.alive.cancel();
        *self
            .standalone
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        for (_, token) in self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            token.cancel();
        }
    }

    /// The level from the session's last `logging/setLevel`, or everything if it never chose
    /// (session-era servers log everything until told otherwise).
    pub(crate) fn log_level(&self) -> String {
        self.log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "debug".to_owned())
    }

    /// Remember the level the client chose.
    pub(crate) fn set_log_level(&self, level: String) {
        *self
            .log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(level);
    }

    /// Remember `set_level` (an allowed `logging/setLevel`) and say which upstreams the caller
    /// has used: only those are told now.
    pub(crate) fn set_level_for_used(
        &self,
        set_level: Arc<crate::access::Authorized>,
    ) -> Vec<usize> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.1 = Some(set_level);
        used.0.iter().copied().collect()
    }

    /// Note that the caller uses upstream `index`; the first time, the `logging/setLevel` it
    /// chose before, if any, which that upstream has yet to be told.
    pub(crate) fn use_upstream(&self, index: usize) -> Option<Arc<crate::access::Authorized>> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if used.0.insert(index) {
            used.1.clone()
        } else {
            None
        }
    }

    /// Ask the client `method` on `outlet` (a call's own stream, or the session's standalone
    /// one) and wait up to `wait` for its answer: `Err` carries a JSON-RPC error object.
    pub(crate) async fn ask(
        &self,
        outlet: &Outlet,
        method: &str,
        params: Map<String, Value>,
        wait: Duration,
    ) -> Result<Value, Value> {
        let id = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.asks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, answer);
        let message = portcullis_core::message::outgoing_message(Some(id.into()), method, params);
        let sent = outlet.send(message).await.is_ok();
        let outcome = if sent {
            tokio::select! {
                answer = tokio::time::timeout(wait, answered) => match answer {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) | Err(_) => Err(no_answer()),
                },
                () = self.alive.cancelled() => Err(no_answer()),
            }
        } else {
            Err(no_answer())
        };
        self.asks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        outcome
    }

    /// The client answered request `id`; false if the session asked no such thing.
    pub(crate) fn answer(&self, id: &Value, outcome: Result<Value, Value>) -> bool {
        let Some(id) = id.as_u64() else {
            return false;
        };
        let waiting = self
            .asks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        waiting.is_some_and(|waiting| waiting.send(outcome).is_ok())
    }

    /// Open the standalone stream (GET): what the session's upstreams and the gateway say on
    /// their own goes there. A second GET takes over from the first.
    pub(crate) fn open_standalone(&self) -> mpsc::Receiver<String> {
        let (outlet, receiver) = mpsc::channel(BACKLOG);
        for message in self
            .early
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = outlet.try_send(message);
        }
        *self
            .standalone
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outlet);
        receiver
    }

    /// The standalone stream, if open.
    pub(crate) fn standalone(&self) -> Option<Outlet> {
        self.standalone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|outlet| !outlet.is_closed())
    }

    /// Send a notification on the standalone stream, or keep it for the stream the client
    /// opens next (a bounded number); false when it was dropped.
    pub(crate) fn notify(&self, method: &str, params: Map<String, Value>) -> bool {
        let message = portcullis_core::message::outgoing_message(None, method, params);
        if let Some(outlet) = self.standalone() {
            return outlet.try_send(message).is_ok();
        }
        let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: usize = early.iter().map(String::len).sum();
        if early.len() >= EARLY || kept + message.len() > EARLY_BYTES {
            return false;
        }
        early.push_back(message);
        true
    }

    /// The standalone stream, waiting up to `within` for the client to open one.
    pub(crate) async fn standalone_within(&self, within: std::time::Duration) -> Option<Outlet> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(outlet) = self.standalone() {
                return Some(outlet);
            }
            if tokio::time::Instant::now() >= until || self.alive.is_cancelled() {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// A request of the client's is in progress under `id`: cancelling the returned token
    /// stops it.
    pub(crate) fn started(&self, id: &portcullis_core::RequestId) -> CancellationToken {
        let token = self.alive.child_token();
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_json(), token.clone());
        token
    }

    /// The request `id` is over.
    pub(crate) fn finished(&self, id: &portcullis_core::RequestId) {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.to_json());
    }

    /// The client cancelled request `id`.
    pub(crate) fn cancel(&self, id: &Value) {
        if let Some(token) = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.to_string())
        {
            token.cancel();
        }
    }
}

/// The error object for a question the client did not answer.
fn no_answer() -> Value {
    serde_json::json!({"code": -32603, "message": "the client did not answer"})
}
