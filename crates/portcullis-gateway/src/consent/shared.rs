//! Approval state shared by replicas, in PostgreSQL (`[cluster] postgres`): the approval
//! page's requests and their answers, and the one-time ids of sealed approvals already used
//! (and the tables of people's upstream connections, which `crate::connections` keeps).
//! Every operation is one statement, so two replicas racing for the same answer or the same id
//! cannot both win: an approval made through any replica runs its call once, through any.
//! Unreachable, nothing is approved (callers are told to try again).

use std::{sync::Arc, time::Duration};

use tokio_postgres::Client;

use super::{Answer, Binding, Claim, Granted, PageRefusal, Shown, now};

/// How long connecting, and any one statement, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connection, how long requests fail at once before one tries again.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Spent ids are kept this long past their expiry: a replica whose clock is behind by less
/// still finds them (and refuses the state) rather than taking it for unused.
const CLOCK_MARGIN: u64 = 300;
/// Signed-in browsers kept in all, and per person; forms kept per browser.
const MAX_PAGE_SESSIONS: i64 = 10_000;
const MAX_PAGE_SESSIONS_PER_PERSON: i64 = 16;
const MAX_FORMS_PER_BROWSER: i64 = super::MAX_FORMS_PER_BROWSER as i64;
/// Unanswered requests kept per caller (as in memory).
const MAX_WAITING_PER_CALLER: i64 = super::MAX_WAITING as i64;
/// The advisory lock serialises the replicas' first `CREATE TABLE` (its key is "pcapprov" in
/// ASCII): run at once, two would race on the catalog.
const SCHEMA: &str = "BEGIN;
SELECT pg_advisory_xact_lock(8098423690493063030);
CREATE TABLE IF NOT EXISTS portcullis_approvals (
    id TEXT PRIMARY KEY,
    iss TEXT NOT NULL,
    sub TEXT NOT NULL,
    cap TEXT NOT NULL,
    digest TEXT NOT NULL,
    pv TEXT NOT NULL,
    exp BIGINT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT 'waiting'
);
CREATE UNIQUE INDEX IF NOT EXISTS portcullis_approvals_call
    ON portcullis_approvals (iss, sub, cap, digest, pv);
CREATE INDEX IF NOT EXISTS portcullis_approvals_exp ON portcullis_approvals (exp);
CREATE TABLE IF NOT EXISTS portcullis_spent (id TEXT PRIMARY KEY, exp BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS portcullis_spent_exp ON portcullis_spent (exp);
CREATE TABLE IF NOT EXISTS portcullis_page_sign_ins (
    state TEXT PRIMARY KEY,
    browser TEXT NOT NULL,
    verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    source TEXT,
    exp BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_page_sign_ins_source ON portcullis_page_sign_ins (source);
CREATE TABLE IF NOT EXISTS portcullis_page_sessions (
    cookie TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    who TEXT NOT NULL,
    exp BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_page_sessions_who ON portcullis_page_sessions (who);
CREATE TABLE IF NOT EXISTS portcullis_page_forms (
    token TEXT PRIMARY KEY,
    cookie TEXT NOT NULL,
    exp BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_page_forms_cookie ON portcullis_page_forms (cookie);
CREATE TABLE IF NOT EXISTS portcullis_connections (
    iss TEXT NOT NULL,
    sub TEXT NOT NULL,
    upstream TEXT NOT NULL,
    sealed TEXT NOT NULL,
    connected BIGINT NOT NULL,
    PRIMARY KEY (iss, sub, upstream)
);
CREATE TABLE IF NOT EXISTS portcullis_registrations (
    upstream TEXT NOT NULL,
    issuer TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (upstream, issuer)
);
COMMIT;";

/// The shared state `config` names, if any. A URL that cannot be used is refused at load
/// (`config::cluster`); one that fails here still leaves nothing approvable (fail closed).
pub(crate) fn from_config(config: &crate::config::Config) -> Option<Arc<Shared>> {
    let url = config.cluster.postgres.as_deref()?;
    match Shared::new(url) {
        Ok(shared) => Some(Arc::new(shared)),
        Err(error) => {
            tracing::error!(%error, "the shared approval state cannot be used: nothing will be approved");
            Some(Arc::new(Shared::broken()))
        }
    }
}

/// The shared state could not be reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

/// The connection to the shared state, opened on first use and again when lost.
pub(crate) struct Shared {
    config: tokio_postgres::Config,
    tls: Option<portcullis_audit::pg_tls::Tls>,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// When connecting last failed.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The state at `url` (checked now, connected on first use; over verified TLS unless on
    /// loopback, as `portcullis_audit::pg_tls` says).
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let (config, tls) =
            portcullis_audit::pg_tls::configure(url, "portcullis-approvals", TIMEOUT)
                .map_err(|error| format!("cluster.postgres: {error}"))?;
        Ok(Self {
            config,
            tls: Some(tls),
            client: tokio::sync::Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
        })
    }

    /// A state that never answers (it has no way to connect).
    fn broken() -> Self {
        Self {
            config: tokio_postgres::Config::new(),
            tls: None,
            client: tokio::sync::Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
        }
    }

    /// Whether connecting failed a moment ago.
    fn resting(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }

    /// A connection failed now: requests in the next moments fail at once rather than each
    /// waiting to connect again (one outage must not become a queue of timeouts).
    fn failed(&self) {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    pub(crate) async fn client(&self) -> Result<Arc<Client>, Unavailable> {
        let Some(tls) = self.tls.clone().filter(|_| !self.resting()) else {
            return Err(Unavailable);
        };
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        // Those who waited for the lock while a connection failed fail now, not in turn.
        if self.resting() {
            return Err(Unavailable);
        }
        let connected = tokio::time::timeout(TIMEOUT, self.config.connect(tls)).await;
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the shared approval state cannot be reached");
                self.failed();
                return Err(Unavailable);
            }
            Err(_) => {
                tracing::warn!("the shared approval state did not answer in time");
                self.failed();
                return Err(Unavailable);
            }
        };
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "the connection to the shared approval state ended");
            }
        });
        if let Err(unavailable) = run(client.batch_execute(SCHEMA)).await {
            self.failed();
            return Err(unavailable);
        }
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Whether the state answers now.
    pub(crate) async fn reachable(&self) -> bool {
        match self.client().await {
            Ok(client) => self.exec(client.simple_query("SELECT 1")).await.is_ok(),
            Err(Unavailable) => false,
        }
    }

    /// Use one-time id `id` (valid until `exp`): whether it was still unused.
    pub(crate) async fn spend(&self, id: &str, exp: u64) -> Result<bool, Unavailable> {
        let client = self.client().await?;
        // SECURITY: by the database's clock, one for every replica: a replica whose clock
        // ran ahead would otherwise forget ids the others still honour, and a spent
        // approval could run again there.
        self.exec(client.execute(
            "DELETE FROM portcullis_spent \
             WHERE exp <= extract(epoch from now())::bigint - $1",
            &[&seconds(CLOCK_MARGIN)],
        ))
        .await?;
        let inserted = self
            .exec(client.execute(
                "INSERT INTO portcullis_spent (id, exp) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &seconds(exp)],
            ))
            .await?;
        Ok(inserted == 1)
    }

    /// As [`super::Ledger::claim`].
    pub(crate) async fn claim(
        &self,
        binding: Binding,
        question: String,
    ) -> Result<Claim, Unavailable> {
        match self.claim_once(binding.clone(), &question).await? {
            // Another replica asked for the same call and it was answered in between: what
            // was answered is found from the top.
            None => Ok(self
                .claim_once(binding.clone(), &question)
                .await?
                .unwrap_or(Claim::Waiting {
                    binding,
                    new: false,
                })),
            Some(claim) => Ok(claim),
        }
    }

    /// One pass of [`Shared::claim`]; `None` when another replica's request for the same call
    /// was inserted and then answered while this one looked.
    async fn claim_once(
        &self,
        binding: Binding,
        question: &str,
    ) -> Result<Option<Claim>, Unavailable> {
        let client = self.client().await?;
        let now = seconds(now());
        self.exec(client.execute("DELETE FROM portcullis_approvals WHERE exp <= $1", &[&now]))
            .await?;
        let call: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &binding.iss,
            &binding.sub,
            &binding.cap,
            &binding.digest,
            &binding.pv,
        ];
        // An answer for this very call, used up here: of replicas racing, one deletes it.
        let answered = self
            .exec(client.query_opt(
                "DELETE FROM portcullis_approvals WHERE iss = $1 AND sub = $2 AND cap = $3 \
             AND digest = $4 AND pv = $5 AND answer <> 'waiting' RETURNING id, answer, exp",
                &call,
            ))
            .await?;
        if let Some(row) = answered {
            let (id, answer, exp): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            return Ok(Some(if answer == "approved" {
                Claim::Approved(Granted::new(id))
            } else {
                Claim::Declined(stored(binding, id, exp))
            }));
        }
        if let Some(waiting) = self.waiting_call(&client, &call).await? {
            return Ok(Some(Claim::Waiting {
                binding: stored(binding, waiting.0, waiting.1),
                new: false,
            }));
        }
        // A caller cannot pile up requests, answered or not: past the cap, its oldest go.
        self.exec(client.execute(
            "DELETE FROM portcullis_approvals WHERE id IN (SELECT id \
             FROM portcullis_approvals WHERE iss = $1 AND sub = $2 \
             ORDER BY exp DESC OFFSET $3)",
            &[&binding.iss, &binding.sub, &(MAX_WAITING_PER_CALLER - 1)],
        ))
        .await?;
        let inserted = self
            .exec(client.execute(
                "INSERT INTO portcullis_approvals (id, iss, sub, cap, digest, pv, exp, question) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &binding.id,
                    &binding.iss,
                    &binding.sub,
                    &binding.cap,
                    &binding.digest,
                    &binding.pv,
                    &seconds(binding.exp),
                    &question,
                ],
            ))
            .await?;
        if inserted == 1 {
            return Ok(Some(Claim::Waiting { binding, new: true }));
        }
        // Another replica asked for the same call a moment ago: that request is the one.
        Ok(self
            .waiting_call(&client, &call)
            .await?
            .map(|(id, exp)| Claim::Waiting {
                binding: stored(binding, id, exp),
                new: false,
            }))
    }

    async fn waiting_call(
        &self,
        client: &Client,
        call: &[&(dyn tokio_postgres::types::ToSql + Sync); 5],
    ) -> Result<Option<(String, i64)>, Unavailable> {
        let row = self
            .exec(client.query_opt(
                "SELECT id, exp FROM portcullis_approvals WHERE iss = $1 AND sub = $2 AND cap = $3 \
             AND digest = $4 AND pv = $5 AND answer = 'waiting'",
                call,
            ))
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// As [`super::Ledger::answer`].
    pub(crate) async fn answer(&self, id: &str) -> Result<Option<Answer>, Unavailable> {
        Ok(self.request(id).await?.map(|(_, _, answer)| answer))
    }

    /// As [`super::Ledger::waiting_for`].
    pub(crate) async fn waiting_for(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<Shown>, Unavailable> {
        let client = self.client().await?;
        let now = now();
        let rows = self
            .exec(client.query(
                "SELECT id, question, exp FROM portcullis_approvals WHERE iss = $1 AND sub = $2 \
             AND answer = 'waiting' AND exp > $3 ORDER BY exp",
                &[&issuer, &subject, &seconds(now)],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|row| Shown {
                id: row.get(0),
                question: row.get(1),
                expires_in: u64::try_from(row.get::<_, i64>(2))
                    .unwrap_or(0)
                    .saturating_sub(now),
            })
            .collect())
    }

    /// Request `id` as the page sees it: its caller and answer, unless gone.
    pub(crate) async fn request(
        &self,
        id: &str,
    ) -> Result<Option<(String, String, Answer)>, Unavailable> {
        let client = self.client().await?;
        let row = self
            .exec(client.query_opt(
                "SELECT iss, sub, answer FROM portcullis_approvals WHERE id = $1 AND exp > $2",
                &[&id, &seconds(now())],
            ))
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1), parse_answer(row.get(2)))))
    }

    /// As [`super::Ledger::decide`].
    pub(crate) async fn decide(
        &self,
        id: &str,
        (issuer, subject): (&str, &str),
        approve: bool,
    ) -> Result<Result<String, PageRefusal>, Unavailable> {
        let client = self.client().await?;
        let answer = if approve { "approved" } else { "declined" };
        let decided = self.exec(client.query_opt(
            "UPDATE portcullis_approvals SET answer = $4 WHERE id = $1 AND iss = $2 AND sub = $3 \
             AND answer = 'waiting' AND exp > $5 RETURNING cap",
            &[&id, &issuer, &subject, &answer, &seconds(now())],
        ))
        .await?;
        if let Some(row) = decided {
            return Ok(Ok(row.get(0)));
        }
        Ok(Err(match self.request(id).await? {
            None => PageRefusal::Gone,
            Some((iss, sub, _)) if (iss.as_str(), sub.as_str()) != (issuer, subject) => {
                PageRefusal::NotYours
            }
            Some(_) => PageRefusal::Answered,
        }))
    }
}

/// The approval page's state: sign-ins in progress, signed-in browsers and their one-time form
/// tokens. Cookie values are kept by digest only: whoever reads the table cannot sign in.
impl Shared {
    /// Keep sign-in `state` (started in the browser holding `browser`), unless `max` are in
    /// progress in all or `per_source` from `source`.
    pub(crate) async fn start_sign_in(
        &self,
        state: &str,
        (browser, verifier, return_to): (&str, &str, &str),
        source: Option<std::net::IpAddr>,
        (lasts, max, per_source): (Duration, i64, i64),
    ) -> Result<bool, Unavailable> {
        let client = self.client().await?;
        let now = seconds(now());
        self.exec(client.execute(
            "DELETE FROM portcullis_page_sign_ins WHERE exp <= $1",
            &[&now],
        ))
        .await?;
        let source = source.map(|source| source.to_string());
        let row = self
            .exec(client.query_one(
                "SELECT count(*), count(*) FILTER (WHERE source IS NOT NULL AND source = $1) \
             FROM portcullis_page_sign_ins",
                &[&source],
            ))
            .await?;
        let (all, theirs): (i64, i64) = (row.get(0), row.get(1));
        if all >= max || theirs >= per_source {
            return Ok(false);
        }
        self.exec(client.execute(
            "INSERT INTO portcullis_page_sign_ins (state, browser, verifier, return_to, source, exp) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &state,
                &digest(browser),
                &verifier,
                &return_to,
                &source,
                &(now + seconds(lasts.as_secs())),
            ],
        ))
        .await?;
        Ok(true)
    }

    /// Sign-in `state`, used up, if the browser holding `browser` started it and it has not
    /// expired: its verifier and where to return.
    pub(crate) async fn finish_sign_in(
        &self,
        state: &str,
        browser: &str,
    ) -> Result<Option<(String, String)>, Unavailable> {
        let client = self.client().await?;
        let row = self.exec(client.query_opt(
            "DELETE FROM portcullis_page_sign_ins WHERE state = $1 AND browser = $2 AND exp > $3 \
             RETURNING verifier, return_to",
            &[&state, &digest(browser), &seconds(now())],
        ))
        .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// Remember that the browser holding `cookie` signed in as `principal`, for `lasts`. A
    /// person keeps their newest few browsers, and the table its newest many (as in memory).
    pub(crate) async fn remember(
        &self,
        cookie: &str,
        principal: &portcullis_policy::Principal,
        lasts: Duration,
    ) -> Result<(), Unavailable> {
        let client = self.client().await?;
        let now = seconds(now());
        self.exec(client.execute(
            "DELETE FROM portcullis_page_sessions WHERE exp <= $1",
            &[&now],
        ))
        .await?;
        self.exec(client.execute("DELETE FROM portcullis_page_forms WHERE exp <= $1", &[&now]))
            .await?;
        let who = serde_json::json!([principal.issuer, principal.subject]).to_string();
        for (filter, keep) in [
            ("WHERE who = $1", MAX_PAGE_SESSIONS_PER_PERSON - 1),
            ("WHERE $1 = $1", MAX_PAGE_SESSIONS - 1),
        ] {
            self.exec(client.execute(
                &format!(
                    "DELETE FROM portcullis_page_sessions WHERE cookie IN (SELECT cookie FROM \
                     portcullis_page_sessions {filter} ORDER BY exp DESC OFFSET $2)"
                ),
                &[&who, &keep],
            ))
            .await?;
        }
        let principal = serde_json::to_string(principal).map_err(|_| Unavailable)?;
        self.exec(client.execute(
            "INSERT INTO portcullis_page_sessions (cookie, principal, who, exp) \
             VALUES ($1, $2, $3, $4)",
            &[
                &digest(cookie),
                &principal,
                &who,
                &(now + seconds(lasts.as_secs())),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Who the browser holding `cookie` signed in as, if it did and has not signed out.
    pub(crate) async fn signed_in(
        &self,
        cookie: &str,
    ) -> Result<Option<portcullis_policy::Principal>, Unavailable> {
        let client = self.client().await?;
        let row = self
            .exec(client.query_opt(
                "SELECT principal FROM portcullis_page_sessions WHERE cookie = $1 AND exp > $2",
                &[&digest(cookie), &seconds(now())],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.get(0);
        // A row this gateway did not write (or an older shape) signs nobody in.
        Ok(serde_json::from_str(&text).ok())
    }

    /// Forget the sign-in of the browser holding `cookie`, and its forms.
    pub(crate) async fn sign_out(&self, cookie: &str) -> Result<(), Unavailable> {
        let client = self.client().await?;
        let cookie = digest(cookie);
        self.exec(client.execute(
            "DELETE FROM portcullis_page_sessions WHERE cookie = $1",
            &[&cookie],
        ))
        .await?;
        self.exec(client.execute(
            "DELETE FROM portcullis_page_forms WHERE cookie = $1",
            &[&cookie],
        ))
        .await?;
        Ok(())
    }

    /// A one-time form `token` for the browser holding `cookie`, valid for `lasts`; the
    /// browser keeps its newest few (a page reloaded in a loop does not grow the table).
    pub(crate) async fn give_form(
        &self,
        cookie: &str,
        token: &str,
        lasts: Duration,
    ) -> Result<(), Unavailable> {
        let client = self.client().await?;
        let cookie = digest(cookie);
        self.exec(client.execute(
            "DELETE FROM portcullis_page_forms WHERE token IN (SELECT token FROM \
             portcullis_page_forms WHERE cookie = $1 ORDER BY exp DESC OFFSET $2)",
            &[&cookie, &(MAX_FORMS_PER_BROWSER - 1)],
        ))
        .await?;
        self.exec(client.execute(
            "INSERT INTO portcullis_page_forms (token, cookie, exp) VALUES ($1, $2, $3)",
            &[
                &digest(token),
                &cookie,
                &(seconds(now()) + seconds(lasts.as_secs())),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Use form `token` of the browser holding `cookie`: whether it was given and unused.
    pub(crate) async fn take_form(&self, cookie: &str, token: &str) -> Result<bool, Unavailable> {
        let client = self.client().await?;
        let taken = self
            .exec(client.execute(
                "DELETE FROM portcullis_page_forms WHERE token = $1 AND cookie = $2 AND exp > $3",
                &[&digest(token), &digest(cookie), &seconds(now())],
            ))
            .await?;
        Ok(taken == 1)
    }
}

/// A cookie or token value as the tables keep it.
fn digest(value: &str) -> String {
    portcullis_authn::signing::s256(value)
}

/// `binding` as stored under `id`, expiring at `exp`.
fn stored(binding: Binding, id: String, exp: i64) -> Binding {
    Binding {
        id,
        exp: u64::try_from(exp).unwrap_or(0),
        ..binding
    }
}

fn parse_answer(text: &str) -> Answer {
    match text {
        "approved" => Answer::Approved,
        "declined" => Answer::Declined,
        _ => Answer::Waiting,
    }
}

fn seconds(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

impl Shared {
    /// `work` as [`run`] does it; a connection that failed or timed out is dropped, so the
    /// next request connects afresh (a link gone silent never answers again).
    pub(crate) async fn exec<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Unavailable> {
        let done = run(work).await;
        if done.is_err() {
            *self.client.lock().await = None;
        }
        done
    }
}

/// `work`, within the time any statement gets; failures logged, reported as unavailable.
async fn run<T>(
    work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the shared approval state refused a statement");
            Err(Unavailable)
        }
        Err(_) => {
            tracing::warn!("the shared approval state did not answer in time");
            Err(Unavailable)
        }
    }
}
