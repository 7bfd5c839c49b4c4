//! Signing a person in on the approval page: the page is an OAuth client of the authorization
//! server (authorization code with PKCE S256, the MCP resource as RFC 8707 `resource`), and the
//! access token it gets back is verified exactly as an MCP caller's would be. By default the
//! client is the page's own client ID metadata document, so nothing has to be registered. A
//! sign-in is bound to the browser that started it (a cookie it must bring to the callback),
//! and one address holds only a few sign-ins in progress.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;

/// How long a sign-in may take, from the redirect to the callback.
pub(super) const SIGN_IN_TIME: Duration = Duration::from_secs(600);
/// Sign-ins in progress kept at most, so nobody can grow the table; one address may hold only
/// its share (`[limits] unauthenticated_connections`), so nobody fills it for everyone.
const MAX_STARTED: usize = 10_000;

/// Keep sign-in `state` unless `max` (in all, from its source) are already in progress.
/// SECURITY: anyone can start a sign-in without signing in, so a full table refuses the
/// newcomer; it never evicts a sign-in a person is in the middle of.
fn admit(
    started: &mut HashMap<String, Started>,
    state: String,
    sign_in: Started,
    (max, per_source): (usize, usize),
) -> bool {
    started.retain(|_, s| s.at.elapsed() < SIGN_IN_TIME);
    let from_there = started
        .values()
        .filter(|s| sign_in.source.is_some() && s.source == sign_in.source)
        .count();
    if started.len() >= max || from_there >= per_source {
        return false;
    }
    started.insert(state, sign_in);
    true
}

/// Why a sign-in could not start.
pub(super) enum NotStarted {
    /// Too many are in progress (in all, or from this address).
    Busy,
    /// The authorization server's metadata could not be had or used.
    Unreachable(String),
}

/// A sign-in started: where to send the browser, and the value of the cookie that binds the
/// sign-in to that browser.
pub(super) struct Redirect {
    pub(super) to: String,
    pub(super) browser: String,
}

/// How long learned endpoints are used before the metadata is read again.
const ENDPOINTS_FOR: Duration = Duration::from_secs(3600);

/// A sign-in started: what the callback needs.
struct Started {
    verifier: String,
    return_to: String,
    at: Instant,
    /// The cookie value the browser that started it holds. SECURITY: a callback arriving in
    /// another browser (an attacker's link, carrying the attacker's own code and state) is
    /// refused: nobody is signed in as someone else by following a link (login CSRF).
    browser: String,
    source: Option<std::net::IpAddr>,
}

/// The authorization server's endpoints (RFC 8414).
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
}

pub(super) struct SignIn {
    issuer: String,
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    resource: String,
    /// The scopes asked for (the resource's, space-separated), if any: a server that grants
    /// nothing unasked refuses a sign-in that asks for none.
    scope: Option<String>,
    http: reqwest::Client,
    /// The authorization server's endpoints, and when they were learned.
    endpoints: tokio::sync::Mutex<Option<(Instant, Endpoints)>>,
    started: Mutex<HashMap<String, Started>>,
    /// Sign-ins one address may have in progress.
    per_source: usize,
    /// Where sign-ins in progress are kept when replicas share them (the callback may reach
    /// another replica than the one that started it).
    shared: Option<std::sync::Arc<crate::consent::shared::Shared>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

impl SignIn {
    pub(super) fn new(
        issuer: String,
        client_id: String,
        redirect_uri: String,
        (resource, scope): (String, Option<String>),
        per_source: usize,
        shared: Option<std::sync::Arc<crate::consent::shared::Shared>>,
    ) -> Self {
        Self {
            issuer,
            client_id,
            redirect_uri,
            resource,
            scope,
            // Redirects never go to plain http here, whatever `[danger]` says: a person signs in.
            http: crate::access::issuer_client(false),
            endpoints: tokio::sync::Mutex::new(None),
            started: Mutex::new(HashMap::new()),
            per_source,
            shared,
        }
    }

    /// The authorization server's endpoints, learned from its metadata at most an hour ago.
    /// SECURITY: a document that names another issuer, or endpoints a person's sign-in could
    /// not safely go to (plain http off loopback), is not used (RFC 8414 §3.3).
    async fn endpoints(&self) -> Result<Endpoints, String> {
        let mut known = self.endpoints.lock().await;
        if let Some((at, endpoints)) = known.as_ref()
            && at.elapsed() < ENDPOINTS_FOR
        {
            return Ok(endpoints.clone());
        }
        let endpoints =
            portcullis_authn::issuer_metadata(&self.http, &self.issuer, |e: Endpoints| {
                let safe = |endpoint: &str| {
                    reqwest::Url::parse(endpoint)
                        .is_ok_and(|url| portcullis_authn::trusted_transport(&url, false))
                };
                if !safe(&e.authorization_endpoint) || !safe(&e.token_endpoint) {
                    return Err("names endpoints that are not https".to_owned());
                }
                Ok(e)
            })
            .await?;
        *known = Some((Instant::now(), endpoints.clone()));
        Ok(endpoints)
    }

    /// The authorization server's URL to send the browser to; `return_to` is where the page
    /// goes once signed in.
    pub(super) async fn start(
        &self,
        return_to: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Redirect, NotStarted> {
        let endpoints = self.endpoints().await.map_err(NotStarted::Unreachable)?;
        let browser = portcullis_authn::signing::random_token();
        let state = portcullis_authn::signing::random_token();
        let verifier = portcullis_authn::signing::random_token();
        let challenge = portcullis_authn::signing::s256(&verifier);
        let admitted = match &self.shared {
            Some(shared) => shared
                .start_sign_in(
                    &state,
                    (&browser, &verifier, return_to),
                    source,
                    (
                        SIGN_IN_TIME,
                        i64::try_from(MAX_STARTED).unwrap_or(i64::MAX),
                        i64::try_from(self.per_source).unwrap_or(i64::MAX),
                    ),
                )
                .await
                .map_err(|_| NotStarted::Unreachable("the shared approval state".to_owned()))?,
            None => admit(
                &mut self
                    .started
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                state.clone(),
                Started {
                    verifier,
                    return_to: return_to.to_owned(),
                    at: Instant::now(),
                    browser: browser.clone(),
                    source,
                },
                (MAX_STARTED, self.per_source),
            ),
        };
        if !admitted {
            return Err(NotStarted::Busy);
        }
        let mut url = reqwest::Url::parse(&endpoints.authorization_endpoint)
            .map_err(|error| NotStarted::Unreachable(error.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &self.resource);
        if let Some(scope) = &self.scope {
            url.query_pairs_mut().append_pair("scope", scope);
        }
        Ok(Redirect {
            to: url.to_string(),
            browser,
        })
    }

    /// The callback, in the browser holding the cookie value `browser`: the access token for
    /// `code`, and where to go next.
    pub(super) async fn finish(
        &self,
        code: &str,
        state: &str,
        browser: Option<&str>,
    ) -> Result<(String, String), String> {
        let (verifier, return_to) = if let Some(shared) = &self.shared {
            shared
                .finish_sign_in(state, browser.unwrap_or_default())
                .await
                .map_err(|_| "the shared approval state cannot be reached".to_owned())?
                .ok_or("unknown or expired sign-in, or not this browser's")?
        } else {
            let mut started = self
                .started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Only the browser that started it may finish it (and only once).
            let ours = started
                .get(state)
                .is_some_and(|s| Some(s.browser.as_str()) == browser);
            if !ours {
                return Err("unknown sign-in, or not this browser's".to_owned());
            }
            let started = started
                .remove(state)
                .filter(|started| started.at.elapsed() < SIGN_IN_TIME)
                .ok_or("expired sign-in")?;
            (started.verifier, started.return_to)
        };
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", &verifier),
            ("resource", &self.resource),
        ];
        let answer = self
            .http
            .post(&endpoints.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("token endpoint answered HTTP {}", answer.status()));
        }
        let token = answer
            .json::<TokenAnswer>()
            .await
            .map_err(|error| error.to_string())?;
        Ok((token.access_token, return_to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Started {
        from(None)
    }

    fn from(source: Option<&str>) -> Started {
        Started {
            verifier: "v".to_owned(),
            return_to: "/approvals".to_owned(),
            at: Instant::now(),
            browser: "b".to_owned(),
            source: source.map(|s| s.parse().unwrap()),
        }
    }

    // See: review of issue 15. Seventeen requests a second from one address filled the table
    // for everyone; one address now holds at most its share.
    #[test]
    fn one_address_holds_at_most_its_share_of_sign_ins() {
        let mut table = HashMap::new();
        for n in 0..100 {
            admit(
                &mut table,
                format!("flood-{n}"),
                from(Some("192.0.2.1")),
                (1000, 16),
            );
        }
        assert_eq!(table.len(), 16);
        assert!(admit(
            &mut table,
            "person".to_owned(),
            from(Some("192.0.2.2")),
            (1000, 16)
        ));
    }

    // See: issue 15. Unauthenticated `GET /approvals` requests evicted a person's pending sign-in.
    #[test]
    fn a_full_table_refuses_new_sign_ins_and_keeps_the_ones_in_progress() {
        let mut table = HashMap::new();
        assert!(admit(&mut table, "person".to_owned(), started(), (2, 2)));
        assert!(admit(&mut table, "flood-1".to_owned(), started(), (2, 2)));
        for n in 2..50 {
            assert!(!admit(&mut table, format!("flood-{n}"), started(), (2, 2)));
        }
        assert!(
            table.contains_key("person"),
            "the person's sign-in is still there"
        );
    }
}
