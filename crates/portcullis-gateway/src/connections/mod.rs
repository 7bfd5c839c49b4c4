//! People's own tokens at upstreams that want them (`credentials = "user-oauth"`): a person
//! connects an upstream once, by signing in to its authorization server from the gateway's
//! page (authorization code, PKCE, the upstream as `resource`); the tokens are kept sealed
//! per (issuer, subject, upstream), refreshed shortly before they expire, sent to that
//! upstream only, on that person's requests only, and forgotten when the person or an
//! operator disconnects it.

mod oauth;
mod seal;
mod store;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use http::HeaderValue;
use portcullis_authn::{ClientAuth, TokenClient, TokenError};
use portcullis_core::CallerId;
use serde::{Deserialize, Serialize};

pub(crate) use store::{Key, Listed};

use crate::{
    config::{Config, UpstreamCredentials, UserOauth},
    consent::shared::Unavailable,
};

/// How long a sign-in at an upstream's server may take.
const SIGN_IN_TIME: i64 = 600;
/// A token is refreshed this long before it expires (at most half its life).
const MARGIN: i64 = 60;
/// A token issued without `expires_in` is used this long.
const UNSTATED_LIFETIME: i64 = 3600;
/// The shortest life a token is taken to have.
const MIN_LIFETIME: i64 = 10;
/// After the upstream's authorization server could not be found, how long asking fails at once.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A refused refresh waits this long before ending the connection: another replica may have
/// refreshed it with the same refresh token a moment before (a server rotating refresh tokens
/// refuses the second use), and its result is used instead.
const RACE_WAIT: Duration = Duration::from_secs(1);
/// How long what an upstream's metadata says is believed.
const METADATA_FOR: Duration = Duration::from_secs(3600);
/// Refreshes of different people run at once; of one person, one at a time (a stripe each).
const STRIPES: usize = 64;

/// A person's tokens at one upstream, as kept (sealed).
#[derive(Serialize, Deserialize)]
struct Tokens {
    access: String,
    refresh: Option<String>,
    /// Issued and expiring, seconds since the epoch.
    iat: i64,
    exp: i64,
    /// The authorization server that issued them and the resource they are for. SECURITY:
    /// tokens are used only while both are still the upstream's: an upstream whose URL was
    /// changed, or whose metadata now names another server, never gets (or makes the
    /// gateway send elsewhere) tokens issued for what it was.
    server: String,
    resource: String,
}

impl Tokens {
    fn of(
        issued: &portcullis_authn::IssuedToken,
        refresh: Option<String>,
        (server, resource): (&str, &str),
    ) -> Self {
        let iat = store::now();
        let life = issued.expires_in.map_or(UNSTATED_LIFETIME, |life| {
            i64::try_from(life.as_secs()).unwrap_or(UNSTATED_LIFETIME)
        });
        Self {
            access: issued.expose().to_owned(),
            refresh: issued.refresh_token().map(str::to_owned).or(refresh),
            iat,
            // A token said to live (almost) no time is used for ten seconds, not refreshed on
            // every call.
            exp: iat.saturating_add(life.max(MIN_LIFETIME)),
            server: server.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// From when it is refreshed rather than used.
    fn refresh_at(&self) -> i64 {
        self.exp - MARGIN.min((self.exp - self.iat) / 2)
    }
}

/// A sign-in at an upstream's server in progress: sealed into its `state`, so any replica
/// with the key can finish it and nothing is kept for a sign-in never finished.
#[derive(Serialize, Deserialize)]
struct Started {
    upstream: String,
    iss: String,
    sub: String,
    verifier: String,
    /// A digest of the page cookie of the browser that started it.
    browser: String,
    /// The authorization server it went to.
    server: String,
    exp: i64,
}

const STATE_CONTEXT: &str = "connect-state";

/// Why a request has no token of its person's at an upstream.
#[derive(Debug)]
pub(crate) enum Missing {
    /// The person has not connected it (or the connection ended: revoked, refresh refused).
    NotConnected,
    /// The store or the authorization server cannot be reached now.
    Unavailable(String),
}

/// Why a sign-in at an upstream's server did not connect it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotFinished {
    /// The link or state is not one this gateway gave this browser and person, or expired.
    #[error("{0}")]
    Invalid(&'static str),
    /// The authorization server refused the code.
    #[error("the authorization server refused the code: {0}")]
    Refused(String),
    /// Something could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

struct Upstream {
    config: UserOauth,
    server: tokio::sync::Mutex<Option<(Instant, oauth::Server)>>,
    /// When finding its server last failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// The client the gateway is there, per authorization server.
    client: tokio::sync::Mutex<Option<(String, ClientAuth)>>,
}

pub(crate) struct Connections {
    store: store::Store,
    sealer: seal::Sealer,
    upstreams: HashMap<String, Upstream>,
    /// The gateway page's address (`https://gateway.example/approvals`), once served.
    page: OnceLock<String>,
    /// For metadata, token endpoints and registration. SECURITY: never redirected: a redirect
    /// would carry a code, a refresh token or a client secret to wherever it points.
    token_http: reqwest::Client,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

impl Connections {
    /// The connections `config` asks for, if any upstream has `user-oauth`: `Err` when the
    /// key or the store cannot be used.
    pub(crate) fn open(config: &Config) -> Result<Option<Arc<Self>>, String> {
        let Some(kept) = &config.connections else {
            return Ok(None);
        };
        let sealer = seal::Sealer::from_file(&kept.key_file)
            .map_err(|error| format!("connections.key_file: {error}"))?;
        let store = match &kept.postgres {
            Some(url) => {
                store::Store::Postgres(Arc::new(crate::consent::shared::Shared::new(url)?))
            }
            None => store::Store::sqlite(&kept.database)
                .map_err(|error| format!("connections.database: {error}"))?,
        };
        let upstreams = config
            .upstreams
            .iter()
            .zip(&config.upstream_credentials)
            .filter_map(|((spec, _), credentials)| match credentials {
                UpstreamCredentials::UserOauth(user) => Some((
                    spec.name.clone(),
                    Upstream {
                        config: (**user).clone(),
                        server: tokio::sync::Mutex::new(None),
                        failed_at: std::sync::Mutex::new(None),
                        client: tokio::sync::Mutex::new(None),
                    },
                )),
                _ => None,
            })
            .collect();
        Ok(Some(Arc::new(Self {
            store,
            sealer,
            upstreams,
            page: OnceLock::new(),
            // SECURITY: no fallback to a default client, which would follow redirects.
            token_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|error| format!("connections: no HTTP client: {error}"))?,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })))
    }

    /// The gateway page's address, once the page is served.
    pub(crate) fn set_page(&self, page: String) {
        let _ = self.page.set(page);
    }

    /// Whether `upstream` takes each person's own token.
    pub(crate) fn handles(&self, upstream: &str) -> bool {
        self.upstreams.contains_key(upstream)
    }

    /// The link a person follows to connect `upstream`, if the page is served.
    pub(crate) fn link(&self, upstream: &str) -> Option<String> {
        let page = self.page.get()?;
        let mut url = url::Url::parse(&format!("{page}/connect")).ok()?;
        url.query_pairs_mut().append_pair("upstream", upstream);
        Some(url.to_string())
    }

    /// Where `upstream`'s server sends people back to: a path of its own, so that a code
    /// one server issued arriving for a sign-in started at another (a mix-up) is refused even
    /// where servers do not name themselves in their answers (RFC 9207).
    pub(crate) fn redirect_uri(&self, upstream: &str) -> String {
        format!(
            "{}/connect/{upstream}/callback",
            self.page.get().map_or("", String::as_str)
        )
    }

    /// The gateway's client ID metadata document, and its URL (the client id).
    pub(crate) fn client_document(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.document_url(),
            "client_name": "Portcullis",
            "redirect_uris": self.upstreams.keys().map(|name| self.redirect_uri(name)).collect::<Vec<_>>(),
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    }

    fn document_url(&self) -> String {
        format!(
            "{}/connect/client.json",
            self.page.get().map_or("", String::as_str)
        )
    }

    /// The `Authorization` for a request of `caller` to `upstream`: its own token there,
    /// refreshed first when it is about to expire.
    pub(crate) async fn authorization(
        &self,
        caller: &CallerId,
        upstream: &str,
    ) -> Result<HeaderValue, Missing> {
        let key = Key::of(caller, upstream);
        let (_, tokens) = self.read(&key).await?;
        if store::now() < tokens.refresh_at() {
            return header(&tokens);
        }
        // One refresh per person and upstream at a time; those waiting find it done.
        let _turn = self.stripes[stripe(&key)].lock().await;
        let (sealed, tokens) = self.read(&key).await?;
        if store::now() < tokens.refresh_at() {
            return header(&tokens);
        }
        self.refresh(&key, &sealed, tokens).await
    }

    /// Forget `caller`'s connection to `upstream` if it still holds the token `sent` (the
    /// upstream refused it): a connection made again meanwhile is kept.
    pub(crate) async fn forget_token(&self, caller: &CallerId, upstream: &str, sent: &HeaderValue) {
        let key = Key::of(caller, upstream);
        let Ok((sealed, tokens)) = self.read(&key).await else {
            return;
        };
        if header(&tokens).is_ok_and(|kept| kept == sent)
            && self.store.remove(&key, Some(&sealed)).await == Ok(true)
        {
            tracing::info!(%upstream, subject = %key.sub, "the upstream refused a person's token; the connection ends and they are asked to connect again");
        }
    }

    /// Whether `caller` has connected `upstream` (a connection that can still be used or
    /// refreshed); `Err` when the store cannot be read.
    pub(crate) async fn connected(
        &self,
        caller: &CallerId,
        upstream: &str,
    ) -> Result<bool, String> {
        let key = Key::of(caller, upstream);
        match self.read(&key).await {
            Ok((_, tokens)) => Ok(tokens.refresh.is_some() || store::now() < tokens.exp),
            Err(Missing::NotConnected) => Ok(false),
            Err(Missing::Unavailable(reason)) => Err(reason),
        }
    }

    async fn read(&self, key: &Key) -> Result<(String, Tokens), Missing> {
        let sealed = self
            .store
            .get(key)
            .await
            .map_err(|Unavailable| Missing::Unavailable("the connections store".into()))?
            .ok_or(Missing::NotConnected)?;
        // A row that does not open under this key (another key, altered, copied from another
        // person's) is no connection.
        let tokens = self
            .sealer
            .open(&key.context(), &sealed)
            .and_then(|plain| serde_json::from_slice::<Tokens>(&plain).ok())
            .ok_or_else(|| {
                tracing::warn!(upstream = %key.upstream, "a kept connection does not open with the key; the person is asked to connect again");
                Missing::NotConnected
            })?;
        let resource = self
            .upstream(&key.upstream)
            .map(|u| u.config.resource.as_str());
        if resource != Ok(tokens.resource.as_str()) {
            tracing::info!(upstream = %key.upstream, "a kept connection is for the upstream's former URL; the person is asked to connect again");
            return Err(Missing::NotConnected);
        }
        Ok((sealed, tokens))
    }

    async fn refresh(
        &self,
        key: &Key,
        sealed: &str,
        tokens: Tokens,
    ) -> Result<HeaderValue, Missing> {
        let now = store::now();
        let Some(refresh) = tokens.refresh.clone() else {
            if now < tokens.exp {
                return header(&tokens);
            }
            let _ = self.store.remove(key, Some(sealed)).await;
            return Err(Missing::NotConnected);
        };
        let upstream = self.upstream(&key.upstream).map_err(Missing::Unavailable)?;
        let refreshed = async {
            let server = self
                .server(upstream)
                .await
                .map_err(TokenError::Unavailable)?;
            // SECURITY: a refresh token goes only to the server that issued it.
            if server.issuer != tokens.server {
                return Err(TokenError::Refused {
                    error: "the upstream now names another authorization server".into(),
                });
            }
            let client = self
                .client(&key.upstream, upstream, &server)
                .await
                .map_err(TokenError::Unavailable)?;
            TokenClient {
                endpoint: server.token_endpoint.clone(),
                client,
            }
            .refresh(
                &self.token_http,
                &refresh,
                upstream.config.resource.as_str(),
            )
            .await
        }
        .await;
        match refreshed {
            Ok(issued) => {
                let fresh = Tokens::of(&issued, Some(refresh), (&tokens.server, &tokens.resource));
                let plain = serde_json::to_vec(&fresh).unwrap_or_default();
                let new = self.sealer.seal(&key.context(), &plain);
                match self.store.swap(key, sealed, new).await {
                    Ok(true) => {
                        tracing::info!(upstream = %key.upstream, subject = %key.sub, "a connection's token was refreshed");
                        header(&fresh)
                    }
                    // Changed meanwhile: another replica refreshed it (what it kept is used),
                    // or the person disconnected (the refreshed token is not).
                    Ok(false) => self.kept_usable(key).await,
                    Err(Unavailable) => Err(Missing::Unavailable("the connections store".into())),
                }
            }
            Err(TokenError::Refused { error }) => {
                tokio::time::sleep(RACE_WAIT).await;
                match self.store.remove(key, Some(sealed)).await {
                    Ok(true) => {
                        tracing::info!(upstream = %key.upstream, subject = %key.sub, %error, "a connection's refresh was refused; the person is asked to connect again");
                        Err(Missing::NotConnected)
                    }
                    // Another replica refreshed it first (a rotated refresh token is refused
                    // the second time): what it kept is used.
                    Ok(false) => self.kept_usable(key).await,
                    Err(Unavailable) => Err(Missing::Unavailable("the connections store".into())),
                }
            }
            // The server cannot be asked now: the token is used while it is still good.
            Err(TokenError::Unavailable(_)) if now < tokens.exp => header(&tokens),
            Err(TokenError::Unavailable(reason)) => Err(Missing::Unavailable(reason)),
        }
    }

    /// What is kept under `key` now, if it can be used as it is.
    async fn kept_usable(&self, key: &Key) -> Result<HeaderValue, Missing> {
        let (_, tokens) = self.read(key).await?;
        if store::now() < tokens.exp {
            header(&tokens)
        } else {
            Err(Missing::NotConnected)
        }
    }

    fn upstream(&self, name: &str) -> Result<&Upstream, String> {
        self.upstreams
            .get(name)
            .ok_or_else(|| format!("`{name}` takes no person's sign-in"))
    }

    async fn server(&self, upstream: &Upstream) -> Result<oauth::Server, String> {
        let mut known = upstream.server.lock().await;
        if let Some((at, server)) = known.as_ref()
            && at.elapsed() < METADATA_FOR
        {
            return Ok(server.clone());
        }
        let resting = upstream
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if resting {
            return Err(
                "the upstream's authorization server could not be found a moment ago".into(),
            );
        }
        let config = &upstream.config;
        // Never redirected: what the metadata says decides where tokens and secrets go.
        let found = oauth::discover(
            &self.token_http,
            &config.resource,
            config.issuer.as_deref(),
            config.insecure,
        )
        .await;
        let server = found.inspect_err(|error| {
            tracing::warn!(resource = %config.resource, %error, "cannot find the upstream's authorization server");
            *upstream
                .failed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        })?;
        *known = Some((Instant::now(), server.clone()));
        Ok(server)
    }

    /// The client the gateway is at `server`: configured, its metadata document, or a
    /// registration (made once, kept for every replica).
    async fn client(
        &self,
        name: &str,
        upstream: &Upstream,
        server: &oauth::Server,
    ) -> Result<ClientAuth, String> {
        if let Some(client) = &upstream.config.client {
            return Ok(client.clone());
        }
        let mut known = upstream.client.lock().await;
        if let Some((issuer, client)) = known.as_ref()
            && *issuer == server.issuer
        {
            return Ok(client.clone());
        }
        let client = if server.metadata_documents && self.document_url().starts_with("https://") {
            ClientAuth::Public {
                id: self.document_url(),
            }
        } else if let Some(endpoint) = &server.registration_endpoint {
            let context = format!("registration\0{name}\0{}", server.issuer);
            let kept = self
                .store
                .registration((name, &server.issuer), None)
                .await
                .map_err(|Unavailable| "the connections store cannot be reached".to_owned())?;
            let sealed = match kept {
                Some(sealed) => sealed,
                None => {
                    let made =
                        oauth::register(&self.token_http, endpoint, &self.redirect_uri(name))
                            .await?;
                    tracing::info!(upstream = %name, server = %server.issuer, "registered the gateway as a client");
                    let sealed = self
                        .sealer
                        .seal(&context, &serde_json::to_vec(&made).unwrap_or_default());
                    self.store
                        .registration((name, &server.issuer), Some(sealed))
                        .await
                        .map_err(|Unavailable| {
                            "the connections store cannot be reached".to_owned()
                        })?
                        .ok_or("the registration was not kept")?
                }
            };
            self.sealer
                .open(&context, &sealed)
                .and_then(|plain| serde_json::from_slice::<oauth::Registered>(&plain).ok())
                .ok_or("the kept registration does not open with the key")?
                .client()
        } else {
            return Err(format!(
                "`{}` takes neither client metadata documents nor registrations: configure `client_id`",
                server.issuer
            ));
        };
        *known = Some((server.issuer.clone(), client.clone()));
        Ok(client)
    }

    /// Start `who`'s sign-in at `upstream`'s server from the browser whose page cookie is
    /// `browser`: the URL to send it to.
    pub(crate) async fn start(
        &self,
        who: (&str, &str),
        upstream: &str,
        browser: &str,
    ) -> Result<String, String> {
        let entry = self.upstream(upstream)?;
        let server = self.server(entry).await?;
        let client = self.client(upstream, entry, &server).await?;
        let verifier = portcullis_authn::signing::random_token();
        let started = Started {
            upstream: upstream.to_owned(),
            iss: who.0.to_owned(),
            sub: who.1.to_owned(),
            verifier: verifier.clone(),
            browser: portcullis_authn::signing::s256(browser),
            server: server.issuer.clone(),
            exp: store::now() + SIGN_IN_TIME,
        };
        let state = self.sealer.seal(
            STATE_CONTEXT,
            &serde_json::to_vec(&started).unwrap_or_default(),
        );
        let scopes = if entry.config.scopes.is_empty() {
            &server.scopes
        } else {
            &entry.config.scopes
        };
        let mut url = server.authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", client.id())
                .append_pair("redirect_uri", &self.redirect_uri(upstream))
                .append_pair("state", &state)
                .append_pair(
                    "code_challenge",
                    &portcullis_authn::signing::s256(&verifier),
                )
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", entry.config.resource.as_str());
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
        }
        Ok(url.to_string())
    }

    /// Finish a sign-in `who` started in the browser whose page cookie is `browser`, with what
    /// `upstream`'s server sent back to its callback (`code`, `state`, `iss`): the upstream
    /// now connected.
    pub(crate) async fn finish(
        &self,
        (who, upstream): ((&str, &str), &str),
        (code, state, iss): (&str, &str, Option<&str>),
        browser: &str,
    ) -> Result<String, NotFinished> {
        let started = self
            .sealer
            .open(STATE_CONTEXT, state)
            .and_then(|plain| serde_json::from_slice::<Started>(&plain).ok())
            .ok_or(NotFinished::Invalid("not a sign-in this gateway started"))?;
        if started.exp <= store::now() {
            return Err(NotFinished::Invalid("the sign-in took too long"));
        }
        // SECURITY: only the browser and the person that started it finish it: a link
        // carrying someone else's code would otherwise connect their account to this person.
        if started.browser != portcullis_authn::signing::s256(browser) {
            return Err(NotFinished::Invalid(
                "the sign-in was started in another browser",
            ));
        }
        if (started.iss.as_str(), started.sub.as_str()) != who {
            return Err(NotFinished::Invalid(
                "the sign-in was started by someone else",
            ));
        }
        if started.upstream != upstream {
            return Err(NotFinished::Invalid(
                "the answer came back for another service than the sign-in went to",
            ));
        }
        let entry = self
            .upstream(&started.upstream)
            .map_err(|_| NotFinished::Invalid("the service is no longer configured"))?;
        let server = self.server(entry).await.map_err(NotFinished::Unavailable)?;
        // RFC 9207: the answer says which server sent it; a mix-up sends the code elsewhere.
        if server.issuer != started.server
            || iss.is_some_and(|iss| iss != server.issuer)
            || (server.names_itself && iss.is_none())
        {
            return Err(NotFinished::Invalid(
                "the answer is not from the server the sign-in went to",
            ));
        }
        let client = self
            .client(&started.upstream, entry, &server)
            .await
            .map_err(NotFinished::Unavailable)?;
        let issued = TokenClient {
            endpoint: server.token_endpoint.clone(),
            client,
        }
        .authorization_code(
            &self.token_http,
            (
                code,
                &started.verifier,
                &self.redirect_uri(&started.upstream),
            ),
            entry.config.resource.as_str(),
        )
        .await
        .map_err(|error| match error {
            TokenError::Refused { error } => NotFinished::Refused(error),
            TokenError::Unavailable(reason) => NotFinished::Unavailable(reason),
        })?;
        let key = Key {
            iss: started.iss,
            sub: started.sub,
            upstream: started.upstream,
        };
        let tokens = Tokens::of(
            &issued,
            None,
            (&server.issuer, entry.config.resource.as_str()),
        );
        let sealed = self.sealer.seal(
            &key.context(),
            &serde_json::to_vec(&tokens).unwrap_or_default(),
        );
        self.store
            .put(&key, sealed)
            .await
            .map_err(|Unavailable| NotFinished::Unavailable("the connections store".into()))?;
        Ok(key.upstream)
    }

    /// The connections of `who`, or everyone's.
    pub(crate) async fn list(&self, who: Option<(&str, &str)>) -> Result<Vec<Listed>, Unavailable> {
        self.store.list(who).await
    }

    /// Forget a connection: whether there was one.
    pub(crate) async fn revoke(&self, key: &Key) -> Result<bool, Unavailable> {
        self.store.remove(key, None).await
    }
}

/// Whether the sealing key `config` names can be used (for `check`: nothing is opened).
pub fn check_key(config: &Config) -> Result<(), String> {
    match &config.connections {
        Some(kept) => seal::Sealer::from_file(&kept.key_file)
            .map(drop)
            .map_err(|error| format!("connections.key_file: {error}")),
        None => Ok(()),
    }
}

/// The connections of the configuration's store, for an operator's command.
pub fn open_for_operator(config: &Config) -> Result<Option<Operator>, String> {
    Ok(Connections::open(config)?.map(Operator))
}

/// People's connections as an operator sees them: who connected what, and disconnecting.
pub struct Operator(Arc<Connections>);

impl Operator {
    /// Every connection: issuer, subject, upstream, connected since (seconds since the epoch).
    pub async fn list(&self) -> Result<Vec<(String, String, String, i64)>, String> {
        let listed = self
            .0
            .list(None)
            .await
            .map_err(|Unavailable| "the connections store cannot be reached".to_owned())?;
        Ok(listed
            .into_iter()
            .map(|l| (l.key.iss, l.key.sub, l.key.upstream, l.connected))
            .collect())
    }

    /// Forget the connections of `subject` (of `issuer`, if given) to `upstream` (every one
    /// of theirs, if not given): how many there were.
    pub async fn revoke(
        &self,
        subject: &str,
        issuer: Option<&str>,
        upstream: Option<&str>,
    ) -> Result<usize, String> {
        let mut gone = 0;
        for listed in self
            .0
            .list(None)
            .await
            .map_err(|Unavailable| "the connections store cannot be reached".to_owned())?
        {
            let key = listed.key;
            if key.sub == subject
                && issuer.is_none_or(|issuer| issuer == key.iss)
                && upstream.is_none_or(|upstream| upstream == key.upstream)
                && self
                    .0
                    .revoke(&key)
                    .await
                    .map_err(|Unavailable| "the connections store cannot be reached".to_owned())?
            {
                gone += 1;
            }
        }
        Ok(gone)
    }
}

fn header(tokens: &Tokens) -> Result<HeaderValue, Missing> {
    portcullis_mcp::bearer(&tokens.access)
        .ok_or_else(|| Missing::Unavailable("the token cannot be sent in a header".into()))
}

fn stripe(key: &Key) -> usize {
    use std::hash::BuildHasher;
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let hash = SEED.get_or_init(Default::default).hash_one(key);
    usize::try_from(hash % STRIPES as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections to one upstream `tickets` (its server on a closed port: nothing here may
    /// reach it), kept in a fresh SQLite file.
    fn connections() -> Connections {
        let dir = std::env::temp_dir().join(format!(
            "pc-connect-{}",
            portcullis_authn::signing::random_token()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = UserOauth {
            resource: url::Url::parse("http://127.0.0.1:9/mcp").unwrap(),
            issuer: None,
            client: None,
            scopes: Vec::new(),
            insecure: false,
        };
        let connections = Connections {
            store: store::Store::sqlite(&dir.join("c.db")).unwrap(),
            sealer: seal::test_sealer(),
            upstreams: HashMap::from([(
                "tickets".to_owned(),
                Upstream {
                    config,
                    server: tokio::sync::Mutex::new(None),
                    failed_at: std::sync::Mutex::new(None),
                    client: tokio::sync::Mutex::new(None),
                },
            )]),
            page: OnceLock::new(),
            token_http: reqwest::Client::new(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        };
        connections.set_page("https://gw.example/approvals".to_owned());
        connections
    }

    fn state(connections: &Connections, edit: impl FnOnce(&mut Started)) -> String {
        let mut started = Started {
            upstream: "tickets".into(),
            iss: "https://id.example".into(),
            sub: "alice".into(),
            verifier: "v".into(),
            browser: portcullis_authn::signing::s256("alices-browser"),
            server: "https://as.example".into(),
            exp: store::now() + 60,
        };
        edit(&mut started);
        connections
            .sealer
            .seal(STATE_CONTEXT, &serde_json::to_vec(&started).unwrap())
    }

    // SECURITY: whoever opens a connect link signs in as themselves: a callback carrying a
    // sign-in another browser or another person started never connects anything.
    #[tokio::test]
    async fn a_callback_connects_only_the_browser_and_person_that_started_it() {
        let connections = connections();
        let alice = ("https://id.example", "alice");
        let finish = |state: String, who: (&'static str, &'static str), browser: &'static str| {
            let connections = &connections;
            async move {
                connections
                    .finish((who, "tickets"), ("code", &state, None), browser)
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        let ours = state(&connections, |_| {});
        assert!(
            finish(ours.clone(), alice, "mallorys-browser")
                .await
                .contains("another browser")
        );
        assert!(
            finish(
                ours.clone(),
                ("https://id.example", "mallory"),
                "alices-browser"
            )
            .await
            .contains("someone else")
        );
        assert!(
            finish(
                ours,
                ("https://other-id.example", "alice"),
                "alices-browser"
            )
            .await
            .contains("someone else")
        );
        let old = state(&connections, |s| s.exp = store::now() - 1);
        assert!(
            finish(old, alice, "alices-browser")
                .await
                .contains("too long")
        );
        assert!(
            finish("v1.forged".into(), alice, "alices-browser")
                .await
                .contains("not a sign-in")
        );
        let elsewhere = state(&connections, |s| s.upstream = "unknown".into());
        assert!(
            finish(elsewhere, alice, "alices-browser")
                .await
                .contains("another service")
        );
        // A state sealed for a connection row (same key, another context) is not a state.
        let key = Key {
            iss: alice.0.into(),
            sub: alice.1.into(),
            upstream: "tickets".into(),
        };
        let row = connections.sealer.seal(&key.context(), b"{}");
        assert!(
            finish(row, alice, "alices-browser")
                .await
                .contains("not a sign-in")
        );
        assert!(connections.list(None).await.unwrap().is_empty());
    }

    /// Alice of `https://id.example`, as a caller and as her connection's key to `tickets`.
    fn alice() -> (CallerId, Key) {
        (
            CallerId::new("https://id.example", "alice"),
            Key {
                iss: "https://id.example".into(),
                sub: "alice".into(),
                upstream: "tickets".into(),
            },
        )
    }

    /// Tokens `access` (refreshable with `refresh`) issued `age` seconds ago, living `life`.
    fn tokens(access: &str, refresh: Option<&str>, (age, life): (i64, i64)) -> Tokens {
        let now = store::now();
        Tokens {
            access: access.into(),
            refresh: refresh.map(str::to_owned),
            iat: now - age,
            exp: now - age + life,
            server: "https://as.example".into(),
            resource: "http://127.0.0.1:9/mcp".into(),
        }
    }

    /// Keep `tokens` under `key`, sealed for `sealed_for`'s row.
    async fn keep(connections: &Connections, (key, sealed_for): (&Key, &Key), tokens: &Tokens) {
        let sealed = connections
            .sealer
            .seal(&sealed_for.context(), &serde_json::to_vec(tokens).unwrap());
        connections.store.put(key, sealed).await.unwrap();
    }

    #[tokio::test]
    async fn a_row_that_does_not_open_is_no_connection_and_an_expired_one_without_refresh_ends() {
        let connections = connections();
        let (caller, key) = alice();
        assert!(matches!(
            connections.authorization(&caller, "tickets").await,
            Err(Missing::NotConnected)
        ));
        // Bob's sealed row copied onto alice's key does not open.
        let bobs = Key {
            sub: "bob".into(),
            ..key.clone()
        };
        let fresh = tokens("t", None, (0, 600));
        keep(&connections, (&key, &bobs), &fresh).await;
        assert!(matches!(
            connections.authorization(&caller, "tickets").await,
            Err(Missing::NotConnected)
        ));
        // Alice's own: used.
        keep(&connections, (&key, &key), &fresh).await;
        assert_eq!(
            connections.authorization(&caller, "tickets").await.unwrap(),
            "Bearer t"
        );
        // Expired, nothing to refresh it with: gone, and the person is asked again.
        keep(&connections, (&key, &key), &tokens("t", None, (600, 599))).await;
        assert!(matches!(
            connections.authorization(&caller, "tickets").await,
            Err(Missing::NotConnected)
        ));
        assert!(connections.list(None).await.unwrap().is_empty());
    }

    // The upstream's server unreachable (a closed port) when a refresh is due: a token still
    // good is used; an expired one fails as unavailable, and the connection is kept (the
    // person is not asked to sign in again because of an outage).
    #[tokio::test]
    async fn an_outage_at_refresh_time_loses_no_connection() {
        let connections = connections();
        let (caller, key) = alice();
        keep(
            &connections,
            (&key, &key),
            &tokens("due", Some("r"), (590, 600)),
        )
        .await;
        assert_eq!(
            connections.authorization(&caller, "tickets").await.unwrap(),
            "Bearer due"
        );
        keep(
            &connections,
            (&key, &key),
            &tokens("old", Some("r"), (600, 599)),
        )
        .await;
        assert!(matches!(
            connections.authorization(&caller, "tickets").await,
            Err(Missing::Unavailable(_))
        ));
        assert_eq!(connections.list(None).await.unwrap().len(), 1);
    }

    // A token the upstream refused ends its connection, but never one made again meanwhile.
    #[tokio::test]
    async fn a_refused_token_ends_only_the_connection_that_holds_it() {
        let connections = connections();
        let (caller, key) = alice();
        keep(
            &connections,
            (&key, &key),
            &tokens("current", None, (0, 600)),
        )
        .await;
        let older = HeaderValue::from_static("Bearer older");
        connections.forget_token(&caller, "tickets", &older).await;
        assert_eq!(connections.list(None).await.unwrap().len(), 1);
        let current = HeaderValue::from_static("Bearer current");
        connections.forget_token(&caller, "tickets", &current).await;
        assert!(connections.list(None).await.unwrap().is_empty());
    }

    #[test]
    fn a_token_is_refreshed_a_minute_before_it_expires_or_at_half_its_life() {
        let tokens = |life: i64| Tokens {
            access: "a".into(),
            refresh: None,
            iat: 1000,
            exp: 1000 + life,
            server: "https://as.example".into(),
            resource: "http://127.0.0.1:9/mcp".into(),
        };
        assert_eq!(tokens(3600).refresh_at(), 1000 + 3540);
        assert_eq!(tokens(20).refresh_at(), 1010);
        assert_eq!(tokens(0).refresh_at(), 1000);
    }
}
