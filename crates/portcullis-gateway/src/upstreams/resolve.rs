//! Object attributes from the backend's source of truth: before a call on a named object is
//! decided, the gateway asks the capability's upstream (its resolver tool, with the caller's
//! identity assertion) what the object is: whether it exists for this caller, its tenant, owner
//! and classification. Answers are kept a few seconds; a failed lookup fails the call closed.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_mcp::Outbound;
use portcullis_policy::{CapabilityKind, ObjectAttributes, Principal, Resolver};
use serde_json::{Map, Value};

use super::{Upstreams, forward::IDENTITY_KEY};
use crate::access::Internal;

const TTL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CACHED: usize = 10_000;

/// Why an object could not be resolved: the call is refused as a malfunction.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// No upstream routes the capability, or it is down.
    #[error("the capability's upstream is unavailable")]
    Unavailable,
    /// The resolver failed or answered something else than its contract.
    #[error("the resolver answered unusably: {0}")]
    Answer(String),
}

#[derive(Default)]
pub(super) struct ObjectCache(Mutex<HashMap<String, (Instant, Option<ObjectAttributes>)>>);

impl Upstreams {
    /// `object`'s attributes as the backend of the tool `public_name` reports them to
    /// `principal`; `None` when it does not exist (for this caller).
    pub(crate) async fn resolve_object(
        &self,
        _proof: &Internal,
        principal: &Principal,
        (kind, public_name): (CapabilityKind, &str),
        resolver: &Resolver,
        object: &str,
    ) -> Result<Option<ObjectAttributes>, ResolveError> {
        // The resolver is a tool of the upstream that serves the capability.
        let index = match kind {
            CapabilityKind::Resource => self.owner_of(public_name, Some(principal)).await,
            _ => self.route_name(public_name).map(|(index, _)| index),
        }
        .ok_or(ResolveError::Unavailable)?;
        // What the backend may answer depends on who asks: the key holds all of the caller the
        // assertion carries.
        let key = format!(
            "{index}\0{}\0{object}\0{}\0{}\0{}\0{}",
            resolver.tool,
            principal.issuer,
            principal.subject,
            principal.tenant.as_deref().unwrap_or_default(),
            principal.roles.join("\0")
        );
        if let Some((at, known)) = self.cache().get(&key)
            && at.elapsed() < TTL
        {
            return Ok(known.clone());
        }
        let connection = self
            .shared(index)
            .await
            .map_err(|_| ResolveError::Unavailable)?;
        let arguments: Map<String, Value> = resolver
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
        let mut params = Map::new();
        params.insert("name".to_owned(), resolver.tool.clone().into());
        params.insert("arguments".to_owned(), Value::Object(arguments));
        let request = ("tools/call", resolver.tool.as_str());
        if let Some(assertion) = self.assertion(principal, index, (request.0, Some(request.1))) {
            let mut meta = Map::new();
            meta.insert(IDENTITY_KEY.to_owned(), assertion.into());
            params.insert("_meta".to_owned(), Value::Object(meta));
        }
        let asked = async {
            let exchange = connection
                .send(Outbound::new("tools/call", params))
                .await
                .map_err(|error| ResolveError::Answer(error.to_string()))?;
            exchange
                .answer()
                .await
                .map_err(|error| ResolveError::Answer(error.to_string()))
        };
        let outcome = tokio::time::timeout(TIMEOUT, asked)
            .await
            .map_err(|_| ResolveError::Answer("timed out".to_owned()))??;
        let result = outcome
            .into_value()
            .map_err(|error| ResolveError::Answer(error.message))?;
        let attributes = parse(&result)?;
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), attributes.clone()));
        Ok(attributes)
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<ObjectAttributes>)>> {
        self.objects
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `{"exists": bool, "tenant"?, "owner"?, "classification"?}` in the structured content.
fn parse(result: &Value) -> Result<Option<ObjectAttributes>, ResolveError> {
    if result.get("isError") == Some(&Value::Bool(true)) {
        return Err(ResolveError::Answer(
            "the resolver reported an error".to_owned(),
        ));
    }
    let content = result
        .get("structuredContent")
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
