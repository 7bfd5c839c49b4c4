//! Step 1 of every request: who is calling, within the rates that apply to it, and the 429
//! for a request past one, held back.

use axum::response::Response;
use http::StatusCode;
use portcullis_audit::AuditDecision;

use super::{Endpoint, lifecycle, wire};
use crate::access::{Reason, record};

/// Step 1: who is calling, within the rates that apply to it. A source whose failed
/// authentications used up its bucket is refused before a new token is even looked at (a
/// token verified moments ago still passes: others behind the same address are not locked
/// out); a verified caller is held to its own and its tenant's rate.
pub(super) async fn who(
    endpoint: &Endpoint,
    parts: &http::request::Parts,
    verb: &str,
) -> Result<crate::access::Caller, Response> {
    let access = &endpoint.gateway.access;
    let line = format!("{verb} {}", endpoint.path);
    let peer = parts.extensions.get::<crate::http::Peer>();
    let source = peer.map(|peer| peer.source);
    let rates = access.rates();
    let recognized = access.recognizes(&parts.headers);
    let past_rate = || {
        let source = source.filter(|_| !recognized)?;
        let over = rates.source_may_try(source).err()?;
        let mut record = record::refused_early(
            portcullis_core::CorrelationId::fresh().as_str(),
            &line,
            AuditDecision::Deny,
            429,
            Reason::RateLimited,
            None,
        );
        record.source = Some(source.to_string());
        Some((record, over))
    };
    if let Some((record, over)) = past_rate() {
        return Err(too_many(endpoint, peer, record, over).await);
    }
    // SECURITY: a token nobody has seen pass takes one of its address's places for checks in
    // progress (one HTTP/2 connection sends many at once), and its check runs to the end in a
    // task of its own: a client that cancels its request cannot stop a failure from being
    // counted against its address, or recorded, after spending a check. The address's rate is
    // looked at again once a place is had: the failures of those ahead may have used it up.
    // A token that passed before is checked in line (its answer is remembered, or its
    // introspection within a budget of its own).
    let place = match peer {
        Some(peer) if !recognized && parts.headers.contains_key(http::header::AUTHORIZATION) => {
            let place = peer.checking().await;
            if let Some((record, over)) = past_rate() {
                drop(place);
                return Err(too_many(endpoint, Some(peer), record, over).await);
            }
            Some(place)
        }
        _ => None,
    };
    let checked = match place {
        None => check(access, &parts.headers, &line, source).await,
        Some(place) => {
            let (access, headers, line) = (access.clone(), parts.headers.clone(), line.clone());
            let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
                let checked = check(&access, &headers, &line, source).await;
                drop(place);
                checked
            }));
            task.await.unwrap_or_else(|failed| {
                let correlation = portcullis_core::CorrelationId::fresh();
                tracing::error!(%correlation, error = %failed, "the token check failed");
                Err(crate::access::Refused::Unavailable(correlation))
            })
        }
    };
    let caller = match checked {
        Ok(caller) => caller,
        Err(refused) => return Err(lifecycle::refused(access, refused)),
    };
    if let Some(peer) = peer {
        peer.authenticated();
    }
    if let Some(id) = caller.id() {
        let tenant = caller.principal().and_then(|p| p.tenant.as_deref());
        if let Err(over) = rates.admit(id, tenant) {
            let record = record::of_caller(&caller, &line, AuditDecision::Deny);
            return Err(too_many(endpoint, peer, record, over).await);
        }
    }
    Ok(caller)
}

/// The caller `headers` name, a refused token counted against its `source`.
async fn check(
    access: &crate::access::Access,
    headers: &http::HeaderMap,
    line: &str,
    source: Option<std::net::IpAddr>,
) -> Result<crate::access::Caller, crate::access::Refused> {
    let checked = access.caller(headers, line, source).await;
    // Only a refused token counts against its address: an identity provider that cannot be
    // reached is nobody's doing, and must not leave addresses refused after it recovers.
    if let (Some(source), Err(crate::access::Refused::Challenge(_))) = (source, &checked) {
        access.rates().source_failed(source);
    }
    checked
}

/// A request past a rate before it was read: `record` counted as refused for it (see
/// `rate::counted`), and the held-back 429.
async fn too_many(
    endpoint: &Endpoint,
    peer: Option<&crate::http::Peer>,
    record: portcullis_audit::AuditRecord,
    over: crate::rate::Over,
) -> Response {
    crate::rate::counted(&endpoint.gateway.access, record);
    held_back(endpoint, peer, over).await
}

/// 429 with `Retry-After`, held back for `[limits] refusal_delay` first. SECURITY: refusing
/// costs little but not nothing; a client that ignores `Retry-After` would otherwise get
/// thousands of refusals a second on a few connections and slow everyone else. Held back one
/// at a time per connection (`peer`), each connection gets at most one refusal per delay,
/// however many requests HTTP/2 lets it have open.
pub(crate) async fn held_back(
    endpoint: &Endpoint,
    peer: Option<&crate::http::Peer>,
    (limit, wait): crate::rate::Over,
) -> Response {
    let held = async {
        let _turn = match peer {
            Some(peer) => Some(peer.refusing().await),
            None => None,
        };
        tokio::time::sleep(endpoint.refusal_delay).await;
    };
    // Shutting down, refusals are not held back: they would hold up the calls' drain.
    tokio::select! {
        () = held => {}
        () = endpoint.draining.cancelled() => {}
    }
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = wire::rpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        -32000,
        &format!(
            "Too Many Requests: {} is exceeded; retry after {seconds} s",
            limit.as_str()
        ),
        None,
    );
    if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}
