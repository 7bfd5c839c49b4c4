//! Object attributes from the backend's source of truth: before a call on a named object is
//! decided, the gateway asks the capability's upstream (its resolver tool, with the caller's
//! identity assertion) what the object is: whether it exists for this caller, its tenant, owner
//! and classification. Answers are kept a few seconds; a failed lookup fails the call closed.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_policy::{ObjectAttributes, Principal, Resolver};
use rmcp::model::{CallToolRequestParams, ClientRequest, Request, RequestMetaObject, ServerResult};
use rmcp::service::PeerRequestOptions;
use serde_json::Value;

use super::{Gateway, forward::IDENTITY_KEY};

const TTL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CACHED: usize = 10_000;

/// Why an object could not be resolved: the call is refused as a malfunction.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No upstream routes the capability, or it is down.
    #[error("the capability's upstream is unavailable")]
    Unavailable,
    /// The resolver failed or answered something else than its contract.
    #[error("the resolver answered unusably: {0}")]
    Answer(String),
}

#[derive(Default)]
pub(super) struct ObjectCache(Mutex<HashMap<String, (Instant, Option<ObjectAttributes>)>>);

impl Gateway {
    /// `object`'s attributes as the backend of the tool `public_name` reports them to
    /// `principal`; `None` when it does not exist (for this caller).
    pub async fn resolve_object(
        &self,
        principal: &Principal,
        public_name: &str,
        resolver: &Resolver,
        object: &str,
    ) -> Result<Option<ObjectAttributes>, ResolveError> {
        let (index, _) = self
            .route_name(public_name)
            .ok_or(ResolveError::Unavailable)?;
        // What the backend may answer depends on who asks: the key holds all of the caller
        // the assertion carries.
        let key = format!(
            "{index}\0{}\0{object}\0{}\0{}\0{}",
            resolver.tool,
            principal.subject,
            principal.tenant.as_deref().unwrap_or_default(),
            principal.roles.join("\0")
        );
        if let Some((at, known)) = self
            .objects
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < TTL
        {
            return Ok(known.clone());
        }
        let live = self.upstreams[index]
            .shared
            .live()
            .map_err(|_| ResolveError::Unavailable)?;
        let arguments = resolver
            .arguments
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::String(text) if text == "{object}" => Value::String(object.to_owned()),
                    other => other.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new(resolver.tool.clone()).with_arguments(arguments),
        ));
        let mut meta = RequestMetaObject::default();
        if let Some(assertion) = self.assertion_for(principal, index) {
            meta.0.0.insert(IDENTITY_KEY.to_owned(), assertion.into());
        }
        let options = PeerRequestOptions::with_timeout(TIMEOUT).with_meta(meta);
        let answer = live
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|error| ResolveError::Answer(error.to_string()))?
            .await_response()
            .await
            .map_err(|error| ResolveError::Answer(error.to_string()))?;
        let attributes = parse(answer)?;
        let mut cache = self
            .objects
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), attributes.clone()));
        Ok(attributes)
    }
}

/// `{"exists": bool, "tenant"?, "owner"?, "classification"?}` in the structured content.
fn parse(answer: ServerResult) -> Result<Option<ObjectAttributes>, ResolveError> {
    let ServerResult::CallToolResult(result) = answer else {
        return Err(ResolveError::Answer("not a tool result".to_owned()));
    };
    if result.is_error == Some(true) {
        return Err(ResolveError::Answer(
            "the resolver reported an error".to_owned(),
        ));
    }
    let content = result
        .structured_content
        .ok_or_else(|| ResolveError::Answer("no structured content".to_owned()))?;
    match content.get("exists") {
        Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        _ => return Err(ResolveError::Answer("`exists` is missing".to_owned())),
    }
    let field = |name: &str| content.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(Some(ObjectAttributes {
        tenant: field("tenant"),
        owner: field("owner"),
        classification: field("classification"),
    }))
}
