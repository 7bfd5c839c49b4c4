//! The four lists as one: forwarded to a single upstream page by page, or gathered from every
//! upstream (renamed with their prefixes) as one page; then filtered for the caller by the same
//! policies that decide its calls, and marked private to it.

use portcullis_audit::Durability;
use portcullis_core::{McpMethod, message};
use portcullis_mcp::Outcome;
use portcullis_policy::{Call, CapabilityKind, Decision, PolicyEngine, Principal};
use serde_json::{Map, Value};

use super::{
    call::{Answer, exchange},
    reply::Final,
    serve::{self, Context},
    shape,
};
use crate::{
    access::{Authorized, record},
    upstreams::list_key,
};

// Pages read of each upstream when several are gathered into one.
const MAX_PAGES: usize = 100;
// What one upstream's pages may add up to in one gathered list. SECURITY: an upstream that
// always has a next page of large items grew the gateway by gigabytes for one `tools/list`.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// A list, as this caller may see it.
pub(crate) async fn list(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let method = request.method.as_str();
    let Some(key) = list_key(method) else {
        return serve::internal(request, &context.caller.correlation);
    };
    let upstreams = &context.gateway().upstreams;
    let (items, mut page) = if upstreams.count() == 1 {
        match one_page(context, proof, key).await {
            Ok(page) => page,
            Err(done) => return done,
        }
    } else {
        (gather(context, proof, key).await, Map::new())
    };
    let before = items.len();
    let items = visible(context, &request.method, items);
    let shown = items.len();
    if let (Some(session), Some(principal), McpMethod::ToolsList) = (
        &context.session,
        &session_principal(context),
        &request.method,
    ) {
        // What this caller now sees is the baseline its list_changed is judged against.
        session
            .shown
            .replace(super::live::visible_tools(context.gateway(), principal));
    }
    page.insert(key.to_owned(), Value::Array(items));
    if context.caller.policy.is_some() {
        // Filtered for this caller: no shared cache may keep it.
        page.insert("cacheScope".to_owned(), "private".into());
        let policy_version = context
            .caller
            .policy
            .as_ref()
            .map(|p| p.version().to_owned());
        let listed = record::listed(
            context.scene(),
            request,
            (shown, before - shown),
            policy_version.as_deref(),
        );
        let _ = context
            .gateway()
            .access
            .record(listed, Durability::Queued)
            .await;
    }
    if context.era == portcullis_core::Era::Stateless {
        page.entry("ttlMs").or_insert_with(|| 0.into());
        page.entry("cacheScope").or_insert_with(|| "private".into());
    }
    let result = shape::complete(context.era, Value::Object(page));
    Final::ok(message::result_message(
        Some(&request.id),
        &result.to_string(),
    ))
}

/// The caller as its token said, for its session's view.
fn session_principal(context: &Context) -> Option<Principal> {
    context
        .caller
        .identity
        .as_ref()
        .map(|identity| identity.token.clone())
}

/// One upstream's page at the caller's cursor: its items (public form, routes learned) and the
/// rest of the page.
async fn one_page(
    context: &Context,
    proof: &Authorized,
    key: &str,
) -> Result<(Vec<Value>, Map<String, Value>), Final> {
    let request = proof.request();
    let forward = context.gateway().upstreams.prepare(proof, 0);
    let Answer { outcome, forwarded } = exchange(context, proof, forward).await?;
    let page = match outcome {
        Outcome::Result(raw) => portcullis_core::json::parse(raw.get().as_bytes()).ok(),
        Outcome::Error(error) => {
            forwarded.finish("error");
            return Err(serve::upstream_error(request, context.era, &error));
        }
    };
    let Some(Value::Object(mut page)) = page else {
        forwarded.finish("error");
        return Err(serve::error(
            request,
            -32603,
            "upstream answered with an invalid list",
            None,
        ));
    };
    forwarded.finish("ok");
    let found = match page.remove(key) {
        Some(Value::Array(found)) => found,
        _ => Vec::new(),
    };
    let mut items = Vec::with_capacity(found.len());
    for item in found {
        context
            .gateway()
            .upstreams
            .adopt(0, request.method.as_str(), item, &mut items);
    }
    Ok((items, page))
}

/// Every page of every upstream, as one page. Cursors of different upstreams cannot be
/// combined into one honest cursor; an upstream that fails is left out.
async fn gather(context: &Context, proof: &Authorized, key: &str) -> Vec<Value> {
    let upstreams = &context.gateway().upstreams;
    let method = proof.request().method.as_str();
    let mut items = Vec::new();
    for index in 0..upstreams.count() {
        let mut cursor = None;
        let mut read = 0usize;
        for _ in 0..MAX_PAGES {
            let mut forward = upstreams.prepare(proof, index);
            forward.page(cursor.take());
            let Ok(Answer { outcome, forwarded }) = exchange(context, proof, forward).await else {
                tracing::warn!(upstream = %upstreams.name(index), "list failed; upstream left out");
                break;
            };
            if let Outcome::Result(raw) = &outcome {
                read = read.saturating_add(raw.get().len());
            }
            if read > MAX_LIST_BYTES {
                forwarded.finish("error");
                tracing::warn!(upstream = %upstreams.name(index), bytes = read, "list larger than the gateway reads of one upstream; its later pages left out");
                break;
            }
            let page = match outcome.into_value() {
                Ok(Value::Object(page)) => {
                    forwarded.finish("ok");
                    page
                }
                _ => {
                    forwarded.finish("error");
                    tracing::warn!(upstream = %upstreams.name(index), "list failed; upstream left out");
                    break;
                }
            };
            if let Some(Value::Array(found)) = page.get(key) {
                for item in found.iter().cloned() {
                    upstreams.adopt(index, method, item, &mut items);
                }
            }
            match page.get("nextCursor") {
                Some(next @ Value::String(_)) => cursor = Some(next.clone()),
                _ => break,
            }
        }
    }
    items
}

/// The items the caller could use: tools, prompts and templates when some call to them could
/// be allowed; a resource when reading it could be (its URI may name its tenant and object).
fn visible(context: &Context, method: &McpMethod, items: Vec<Value>) -> Vec<Value> {
    let (Some(policy), Some(principal)) = (&context.caller.policy, context.caller.principal())
    else {
        return items;
    };
    let (kind, field) = match method {
        McpMethod::ToolsList => (CapabilityKind::Tool, "name"),
        McpMethod::PromptsList => (CapabilityKind::Prompt, "name"),
        McpMethod::ResourceTemplatesList => (CapabilityKind::Resource, "uriTemplate"),
        McpMethod::ResourcesList => {
            let era = context.era.as_str();
            return items
                .into_iter()
                .filter(|item| {
                    item.get("uri")
                        .and_then(Value::as_str)
                        .is_some_and(|uri| resource_listed(policy, principal, era, uri))
                })
                .collect();
        }
        _ => return Vec::new(),
    };
    let names: Vec<&str> = items
        .iter()
        .map(|item| item.get(field).and_then(Value::as_str).unwrap_or_default())
        .collect();
    let keep = policy.visible_all(principal, kind, &names);
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect()
}

/// A resource is listed when reading it could be allowed.
fn resource_listed(policy: &PolicyEngine, principal: &Principal, era: &str, uri: &str) -> bool {
    let call = Call {
        kind: CapabilityKind::Resource,
        name: uri,
        arguments: None,
        era,
        object: None,
        risk_hint: None,
        credential: Default::default(),
    };
    !matches!(policy.authorize(principal, &call), Decision::Deny { .. })
}
