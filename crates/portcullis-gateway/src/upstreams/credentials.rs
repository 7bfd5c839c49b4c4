//! Tokens for an upstream that wants its own (`credentials = "token-exchange"`): for each
//! caller, one its authorization server issues on that caller's behalf (RFC 8693, the caller's
//! token as `subject_token`), kept for that caller and that token of its alone until shortly
//! before it expires; for the gateway's own requests there (its handshake, learning lists),
//! one it asks for itself. No token is ever logged, recorded or sent to another upstream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use http::HeaderValue;
use portcullis_authn::{BearerToken, IssuedToken, TokenClient, TokenError};
use portcullis_core::CallerId;
use url::Url;

use crate::config::{TokenEndpoint, TokenExchange};

/// Callers whose tokens are kept, per upstream; past it, expired ones go, then all.
const MAX_CALLERS: usize = 10_000;
/// A token is used until this long before it expires (at most a tenth of its life).
const MARGIN: Duration = Duration::from_secs(30);
/// After the token service could not be asked, how long requests fail at once.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// A token issued without `expires_in` is kept this long.
const UNSTATED_LIFETIME: Duration = Duration::from_secs(60);

/// Who a token is asked for, and under which entitlements.
pub(crate) struct OnBehalf<'a> {
    /// Issuer and subject: the key no other caller shares.
    pub(crate) id: &'a CallerId,
    /// The caller's own token, as it presented it (the `subject_token`).
    pub(crate) token: &'a BearerToken,
    /// The gateway's generation of entitlements and policies: a token kept from an earlier
    /// one is dropped (the caller's roles or standing may have changed).
    pub(crate) generation: u64,
}

/// Tokens for one upstream.
pub(crate) struct Exchanger {
    upstream: String,
    config: TokenExchange,
    /// For the issuer's metadata (redirects followed as for its keys).
    http: reqwest::Client,
    /// For the token endpoint. SECURITY: never redirected: a redirect would carry the
    /// caller's token (and a posted client secret) in its body to wherever it points.
    token_http: reqwest::Client,
    endpoint: tokio::sync::OnceCell<Url>,
    own: tokio::sync::Mutex<Option<Kept>>,
    /// Kept per caller and per token it presented: a token exchanged for one of its tokens
    /// (say one of wide scope) is never used for a request made with another (a narrower one).
    callers: Mutex<HashMap<(CallerId, [u8; 32]), Slot>>,
    /// When the token service last could not be asked: for a moment after, requests fail
    /// at once instead of each waiting out its own timeout (an outage is not a queue).
    failed_at: Mutex<Option<Instant>>,
}

/// One caller's token, behind a lock held while it is asked for.
type Slot = Arc<tokio::sync::Mutex<Option<Kept>>>;

struct Kept {
    header: HeaderValue,
    until: Instant,
    generation: u64,
}

impl Exchanger {
    pub(crate) fn new(upstream: &str, config: TokenExchange) -> Self {
        Self {
            upstream: upstream.to_owned(),
            http: crate::access::issuer_client(config.insecure),
            token_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                // As `issuer_client`: a TLS backend that cannot start fails each request.
                .unwrap_or_default(),
            config,
            endpoint: tokio::sync::OnceCell::new(),
            own: tokio::sync::Mutex::new(None),
            callers: Mutex::default(),
            failed_at: Mutex::default(),
        }
    }

    /// The `Authorization` for a request of `caller`'s: its own exchanged token.
    pub(crate) async fn for_caller(
        &self,
        caller: &OnBehalf<'_>,
    ) -> Result<HeaderValue, TokenError> {
        // SECURITY: a token goes only to a server that issued it, or that the operator named
        // as accepting it: another issuer's token sent there could be replayed by that server
        // at this gateway, whose audience it names.
        if !self
            .config
            .subject_issuers
            .iter()
            .any(|issuer| issuer == caller.id.issuer())
        {
            tracing::info!(
                upstream = %self.upstream,
                issuer = caller.id.issuer(),
                "a caller of an issuer this upstream's token exchange does not take"
            );
            return Err(TokenError::Refused {
                error: "subject_issuer_not_accepted".into(),
            });
        }
        let key = (caller.id.clone(), caller.token.digest());
        let slot = {
            let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
            if callers.len() >= MAX_CALLERS && !callers.contains_key(&key) {
                let now = Instant::now();
                callers.retain(|_, slot| {
                    slot.try_lock()
                        .map_or(true, |kept| kept.as_ref().is_some_and(|k| k.until > now))
                });
                if callers.len() >= MAX_CALLERS {
                    callers.clear();
                }
            }
            callers.entry(key).or_default().clone()
        };
        // One exchange at a time per caller: a burst of its calls waits for the first.
        let mut kept = slot.lock().await;
        if let Some(token) = kept.as_ref()
            && token.until > Instant::now()
            && token.generation == caller.generation
        {
            return Ok(token.header.clone());
        }
        *kept = None;
        let client = self.client().await?;
        let issued = client
            .exchange(&self.token_http, caller.token, &self.config.target)
            .await
            .inspect_err(|error| self.failed(error, Some(caller.id)))?;
        let fresh = keep(&issued, caller.generation)?;
        let header = fresh.header.clone();
        *kept = Some(fresh);
        Ok(header)
    }

    /// The `Authorization` for the gateway's own requests there.
    pub(crate) async fn own(&self) -> Result<HeaderValue, TokenError> {
        let mut kept = self.own.lock().await;
        if let Some(token) = kept.as_ref()
            && token.until > Instant::now()
        {
            return Ok(token.header.clone());
        }
        let client = self.client().await?;
        let issued = client
            .client_credentials(&self.token_http, &self.config.target)
            .await
            .inspect_err(|error| self.failed(error, None))?;
        let fresh = keep(&issued, 0)?;
        let header = fresh.header.clone();
        *kept = Some(fresh);
        Ok(header)
    }

    async fn client(&self) -> Result<TokenClient, TokenError> {
        let resting = self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if resting {
            return Err(TokenError::Unavailable(
                "the token service could not be asked a moment ago".into(),
            ));
        }
        let endpoint = self
            .endpoint
            .get_or_try_init(|| async {
                match &self.config.endpoint {
                    TokenEndpoint::Url(url) => Ok(url.clone()),
                    TokenEndpoint::Issuer(issuer) => {
                        portcullis_authn::token_endpoint(&self.http, issuer, self.config.insecure)
                            .await
                            .ok_or_else(|| {
                                let error = TokenError::Unavailable(format!(
                                    "no token endpoint in the metadata of `{issuer}`"
                                ));
                                self.failed(&error, None);
                                error
                            })
                    }
                }
            })
            .await?;
        Ok(TokenClient {
            endpoint: endpoint.clone(),
            client: self.config.client.clone(),
        })
    }

    /// Say why no token was had; when the service could not be asked, rest a moment.
    fn failed(&self, error: &TokenError, caller: Option<&CallerId>) {
        if matches!(error, TokenError::Unavailable(_)) {
            *self
                .failed_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        let upstream = &self.upstream;
        match (error, caller) {
            (TokenError::Refused { error }, Some(caller)) => tracing::info!(
                %upstream, subject = caller.subject(), %error,
                "the authorization server refused a token for this caller"
            ),
            (TokenError::Refused { error }, None) => tracing::error!(
                %upstream, %error,
                "the authorization server refused the gateway a token of its own for this upstream"
            ),
            (TokenError::Unavailable(reason), _) => {
                tracing::warn!(%upstream, %reason, "no token for this upstream");
            }
        }
    }
}

/// The exchanger of an upstream configured with `credentials`, its own requests then asking it
/// for the gateway's token; and the credential kind its requests carry, for records.
pub(super) fn start(
    spec: &mut portcullis_mcp::UpstreamSpec,
    credentials: Option<&crate::config::UpstreamCredentials>,
) -> (Option<Arc<Exchanger>>, Option<&'static str>) {
    let portcullis_mcp::UpstreamTransport::Http { credential, .. } = &mut spec.transport else {
        return (None, None);
    };
    match credentials {
        Some(crate::config::UpstreamCredentials::TokenExchange(config)) => {
            let exchanger = Arc::new(Exchanger::new(&spec.name, (**config).clone()));
            *credential = Some(portcullis_mcp::Credential::fetched(Arc::new(OwnToken(
                exchanger.clone(),
            ))));
            (Some(exchanger), Some("token-exchange"))
        }
        // Each person's own token on their requests; the gateway's own carry
        // `credential_file`, if any.
        Some(crate::config::UpstreamCredentials::UserOauth(_)) => (None, Some("user-oauth")),
        _ => (None, credential.is_some().then_some("gateway")),
    }
}

/// An issued token as kept: until a margin before it expires.
fn keep(issued: &IssuedToken, generation: u64) -> Result<Kept, TokenError> {
    let header = portcullis_mcp::bearer(issued.expose())
        .ok_or_else(|| TokenError::Unavailable("the token cannot be sent in a header".into()))?;
    // (The client clamps `expires_in` to a day, so the addition below cannot overflow.)
    let lifetime = issued.expires_in.unwrap_or(UNSTATED_LIFETIME);
    let usable = lifetime.saturating_sub(MARGIN.min(lifetime / 10));
    Ok(Kept {
        header,
        until: Instant::now() + usable,
        generation,
    })
}

/// The gateway's own token at an upstream, for its connection's requests.
pub(crate) struct OwnToken(pub(crate) Arc<Exchanger>);

impl portcullis_mcp::TokenSource for OwnToken {
    fn authorization(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HeaderValue, String>> + Send + '_>>
    {
        Box::pin(async move { self.0.own().await.map_err(|error| error.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn after_the_token_service_failed_requests_fail_at_once_for_a_moment() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let exchanger =
            Exchanger::new("up", exchange_to(&format!("http://127.0.0.1:{port}/token")));

        let first = exchanger.own().await;
        assert!(
            matches!(&first, Err(TokenError::Unavailable(reason)) if reason.contains("cannot be reached")),
            "{first:?}"
        );
        let second = exchanger.own().await;
        assert!(
            matches!(&second, Err(TokenError::Unavailable(reason)) if reason.contains("a moment ago")),
            "{second:?}"
        );
    }

    fn exchange_to(endpoint: &str) -> TokenExchange {
        TokenExchange {
            endpoint: TokenEndpoint::Url(Url::parse(endpoint).unwrap()),
            client: portcullis_authn::ClientAuth::Basic {
                id: "portcullis".into(),
                secret: portcullis_authn::ClientSecret::new("s".into()),
            },
            target: portcullis_authn::TokenTarget::default(),
            subject_issuers: Vec::new(),
            insecure: false,
        }
    }

    #[tokio::test]
    async fn a_token_of_another_issuer_is_never_sent_to_the_token_endpoint() {
        // Nothing listens there: reaching it would be `Unavailable`, not a refusal.
        let mut config = exchange_to("http://127.0.0.1:9/token");
        config.subject_issuers = vec!["https://a.example".into()];
        let exchanger = Exchanger::new("up", config);
        let token = BearerToken::from_authorization(std::iter::once(b"Bearer t".as_slice()))
            .unwrap()
            .unwrap();
        let caller = CallerId::new("https://b.example", "user-1");
        let refused = exchanger
            .for_caller(&OnBehalf {
                id: &caller,
                token: &token,
                generation: 0,
            })
            .await;
        assert!(
            matches!(refused, Err(TokenError::Refused { ref error }) if error == "subject_issuer_not_accepted"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_token_is_used_until_shortly_before_it_expires() {
        let issued =
            |seconds: Option<u64>| IssuedToken::new("t".into(), seconds.map(Duration::from_secs));
        let until = |seconds| {
            keep(&issued(seconds), 0)
                .unwrap()
                .until
                .saturating_duration_since(Instant::now())
                .as_secs()
        };
        assert!(
            (3560..=3570).contains(&until(Some(3600))),
            "{}",
            until(Some(3600))
        );
        assert!((50..=54).contains(&until(Some(60))), "{}", until(Some(60)));
        assert!((50..=54).contains(&until(None)), "{}", until(None));
        assert_eq!(until(Some(0)), 0);
    }
}
