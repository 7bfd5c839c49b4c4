//! `subscriptions/listen` (2026-07-28): one long-lived stream of the change notifications the
//! caller asked for. List changes are the caller's own (its view changed, or an upstream's list
//! did); resource updates only for URIs the caller may read, forwarded to the upstream that
//! owns them with this request's proof and relayed back. The acknowledgement says what was
//! agreed: a URI the caller may not read is left out of it, exactly as an unknown one.

use portcullis_core::message;
use portcullis_mcp::{ChangeKind, Event};
use serde_json::{Map, Value, json};

use super::{reply::Final, serve::Context, sessions::Outlet, shape};
use crate::access::{Authorized, record};

const SUBSCRIPTION_KEY: &str = "io.modelcontextprotocol/subscriptionId";
const LIST_CHANGES: [(&str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    ("promptsListChanged", "notifications/prompts/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
];

/// Resource URIs one listen stream may follow; more are not followed (and not decided).
const MAX_SUBSCRIBED_URIS: usize = 100;

/// Hold the stream open, delivering what was agreed, until the caller goes or the gateway
/// shuts down.
pub(crate) async fn listen(context: &Context, proof: &Authorized) -> Final {
    let request = proof.request();
    let asked = request
        .params
        .get("notifications")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut agreed = Map::new();
    for (key, _) in LIST_CHANGES {
        if asked.get(key) == Some(&Value::Bool(true)) {
            agreed.insert(key.to_owned(), Value::Bool(true));
        }
    }
    let mut uris: Vec<String> = Vec::new();
    let named: Vec<&str> = asked
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // Each URI is decided (and its object possibly resolved by its backend): a bounded number.
    for uri in named.iter().take(MAX_SUBSCRIBED_URIS) {
        if readable(context, uri).await {
            uris.push((*uri).to_owned());
        }
    }
    if asked.contains_key("resourceSubscriptions") {
        // What the filter kept and left out is on record, as for a filtered list (how many,
        // never which).
        let policy_version = context
            .caller
            .policy
            .as_ref()
            .map(|p| p.version().to_owned());
        let record = crate::access::record::listed(
            context.scene(),
            request,
            (uris.len(), named.len() - uris.len()),
            policy_version.as_deref(),
        );
        let _ = context
            .gateway()
            .access
            .record(record, portcullis_audit::Durability::Queued)
            .await;
        agreed.insert("resourceSubscriptions".to_owned(), json!(uris));
    }
    let id = request.id.as_value().clone();
    let outlet = Tagged {
        outlet: context.outlet.clone(),
        id: id.clone(),
    };
    let mut ack = Map::new();
    ack.insert("notifications".to_owned(), Value::Object(agreed.clone()));
    if !outlet
        .send("notifications/subscriptions/acknowledged", ack)
        .await
    {
        return closed(context, request);
    }
    let wants = |method: &str| {
        LIST_CHANGES
            .iter()
            .any(|(key, name)| *name == method && agreed.contains_key(*key))
    };
    // The caller's own view changing.
    if let Some(identity) = &context.caller.identity {
        let follower = outlet.clone();
        let wanted: Vec<&'static str> = LIST_CHANGES
            .iter()
            .filter(|(key, _)| agreed.contains_key(*key))
            .map(|(_, name)| *name)
            .collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let _stop_with_stream = stop.clone().drop_guard();
        tokio::spawn(super::live::follow(
            context.endpoint.gateway.clone(),
            identity.token.clone(),
            super::live::Shown::default(),
            stop,
            move |method| {
                let follower = follower.clone();
                let wanted = wanted.contains(&method);
                async move { !wanted || follower.send(method, Map::new()).await }
            },
        ));
        relay(context, proof, &outlet, &uris, &wants).await;
    } else {
        relay(context, proof, &outlet, &uris, &wants).await;
    }
    closed(context, request)
}

/// Deliver upstream changes and resource updates until the caller goes or shutdown.
async fn relay(
    context: &Context,
    proof: &Authorized,
    outlet: &Tagged,
    uris: &[String],
    wants: &impl Fn(&str) -> bool,
) {
    let upstreams = &context.gateway().upstreams;
    let mut changes = upstreams.changes();
    let (updates, mut updated) = tokio::sync::mpsc::channel::<String>(64);
    // Resource updates come from the upstream that owns each URI, asked with this proof.
    let mut by_upstream: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for uri in uris {
        if let Some(index) = upstreams.route_uri(uri) {
            by_upstream.entry(index).or_default().push(uri.clone());
        }
    }
    let mut streams = Vec::new();
    for (index, uris) in by_upstream {
        let mut forward = upstreams.prepare(proof, index);
        forward.listen_filter(json!({ "resourceSubscriptions": uris }));
        let template = record::outcome(context.scene(), proof);
        match upstreams
            .send(
                forward,
                context.via(),
                context.on_behalf(),
                (template, context.gateway().access.trail()),
            )
            .await
        {
            Ok(forwarded) => streams.push(forwarded),
            Err(error) => {
                tracing::debug!(upstream = %upstreams.name(index), %error, "no resource updates from this upstream")
            }
        }
    }
    // Dropped (every task aborted, every upstream stream closed) when this stream ends.
    let mut relays = tokio::task::JoinSet::new();
    for mut forwarded in streams {
        let updates = updates.clone();
        relays.spawn(async move {
            while let Ok(event) = forwarded.next().await {
                if let Event::Notification { method, params } = event
                    && method == "notifications/resources/updated"
                    && let Some(uri) = params.get("uri").and_then(Value::as_str)
                    && updates.send(uri.to_owned()).await.is_err()
                {
                    return;
                }
            }
            forwarded.finish("ok");
        });
    }
    drop(updates);
    let stop = context.endpoint.streams.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = context.outlet.closed() => return,
            Some(uri) = updated.recv() => {
                let mut params = Map::new();
                params.insert("uri".to_owned(), uri.into());
                if !outlet.send("notifications/resources/updated", params).await {
                    return;
                }
            }
            change = changes.recv() => match change {
                Ok(change) => {
                    let delivered = match change.kind {
                        ChangeKind::Tools | ChangeKind::Prompts | ChangeKind::Resources => {
                            let method = match change.kind {
                                ChangeKind::Tools => "notifications/tools/list_changed",
                                ChangeKind::Prompts => "notifications/prompts/list_changed",
                                _ => "notifications/resources/list_changed",
                            };
                            !wants(method) || outlet.send(method, Map::new()).await
                        }
                        ChangeKind::ResourceUpdated(uri) if uris.contains(&uri) => {
                            let mut params = Map::new();
                            params.insert("uri".to_owned(), uri.into());
                            outlet.send("notifications/resources/updated", params).await
                        }
                        ChangeKind::ResourceUpdated(_) => true,
                    };
                    if !delivered {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Whether the caller could read `uri` (nothing is decided with `[danger] unauthenticated`).
async fn readable(context: &Context, uri: &str) -> bool {
    let (Some(policy), Some(principal)) = (&context.caller.policy, context.caller.principal())
    else {
        return true;
    };
    let upstreams = &*context.gateway().upstreams;
    let caller = (principal, context.caller.id());
    crate::access::readable(upstreams, policy, caller, context.era.as_str(), uri).await
}

/// The graceful end of a subscription: a result naming it.
fn closed(context: &Context, request: &portcullis_core::McpRequest) -> Final {
    let mut meta = Map::new();
    meta.insert(SUBSCRIPTION_KEY.to_owned(), request.id.as_value().clone());
    let result = shape::complete(context.era, json!({ "_meta": meta }));
    Final::ok(message::result_message(
        Some(&request.id),
        &result.to_string(),
    ))
}

/// The stream, every notification on it tagged with the subscription.
#[derive(Clone)]
struct Tagged {
    outlet: Outlet,
    id: Value,
}

impl Tagged {
    async fn send(&self, method: &str, mut params: Map<String, Value>) -> bool {
        let mut meta = Map::new();
        meta.insert(SUBSCRIPTION_KEY.to_owned(), self.id.clone());
        params.insert("_meta".to_owned(), Value::Object(meta));
        let mut message = Map::new();
        message.insert("jsonrpc".to_owned(), "2.0".into());
        message.insert("method".to_owned(), method.into());
        message.insert("params".to_owned(), Value::Object(params));
        self.outlet
            .send(Value::Object(message).to_string())
            .await
            .is_ok()
    }
}
