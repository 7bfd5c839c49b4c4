//! What callers may see, kept current while they are connected. The entitlements file changing,
//! a policy reload, or introspection answering differently wakes every connected caller's
//! follower, which recomputes that caller's visible tools (and its configured prompts and
//! resources) and tells it `tools/list_changed` (and the twins) only if they changed: never a
//! broadcast, and a caller whose view did not change hears nothing.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use portcullis_policy::{CapabilityKind, Principal};
use tokio_util::sync::CancellationToken;

use crate::{access::principal, gateway::Gateway};

/// What a caller was last shown: each tool it was listed against, and whether it was visible.
#[derive(Clone, Default)]
pub(crate) struct Shown(Arc<Mutex<BTreeMap<String, bool>>>);

impl Shown {
    /// Replace what was shown.
    pub(crate) fn replace(&self, now: BTreeMap<String, bool>) {
        *self.lock() = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Each known tool, and whether `principal` (as its token says) may see it now.
pub(crate) fn visible_tools(gateway: &Gateway, principal: &Principal) -> BTreeMap<String, bool> {
    let names = gateway.upstreams.tool_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let access = &gateway.access;
    let visible = match (access.policy(), access.viewed_as(principal)) {
        (Some(policy), Ok(principal)) => {
            policy.visible_all(&principal, CapabilityKind::Tool, &refs)
        }
        _ => vec![false; names.len()],
    };
    names.into_iter().zip(visible).collect()
}

/// Each configured prompt and resource, and whether `principal` may see it now. (Prompts and
/// resources the catalog does not name are not followed.)
fn visible_configured(
    gateway: &Gateway,
    principal: &Principal,
) -> BTreeMap<(CapabilityKind, String), bool> {
    let access = &gateway.access;
    let (Some(policy), entitled) = (access.policy(), access.viewed_as(principal)) else {
        return BTreeMap::new();
    };
    let mut view = BTreeMap::new();
    for kind in [CapabilityKind::Prompt, CapabilityKind::Resource] {
        let names: Vec<&str> = policy
            .catalog()
            .capabilities()
            .iter()
            .filter(|capability| capability.kind == kind)
            .map(|capability| capability.name.as_str())
            .collect();
        let visible = match &entitled {
            Ok(principal) => policy.visible_all(principal, kind, &names),
            Err(_) => vec![false; names.len()],
        };
        for (name, visible) in names.into_iter().zip(visible) {
            view.insert((kind, name.to_owned()), visible);
        }
    }
    view
}

/// Tell `send` (a notification method) each time `principal`'s view changes from what it was
/// `shown`, until `stop`. `send` answers false once nobody can be told any more.
pub(crate) async fn follow<F, Fut>(
    gateway: Arc<Gateway>,
    principal: Principal,
    shown: Shown,
    stop: CancellationToken,
    send: F,
) where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut generations = gateway.access.generations();
    {
        let mut shown = shown.lock();
        if shown.is_empty() {
            *shown = visible_tools(&gateway, &principal);
        }
    }
    let mut configured = visible_configured(&gateway, &principal);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = generations.changed() => if changed.is_err() { return },
        }
        let configured_now = visible_configured(&gateway, &principal);
        let flipped_kind = |kind: CapabilityKind| {
            configured_now.iter().any(|((of, name), visible)| {
                *of == kind
                    && configured
                        .get(&(*of, name.clone()))
                        .is_some_and(|before| before != visible)
            })
        };
        let twins = [
            (
                flipped_kind(CapabilityKind::Prompt),
                "notifications/prompts/list_changed",
            ),
            (
                flipped_kind(CapabilityKind::Resource),
                "notifications/resources/list_changed",
            ),
        ];
        configured = configured_now;
        for (flipped, method) in twins {
            if flipped && !send(method).await {
                return;
            }
        }
        let now = visible_tools(&gateway, &principal);
        let flipped = {
            let mut shown = shown.lock();
            // Tools learned since are no change of this caller's view; a tool whose visibility
            // flipped is.
            let flipped = now
                .iter()
                .any(|(name, visible)| shown.get(name).is_some_and(|before| before != visible));
            *shown = now;
            flipped
        };
        if flipped {
            tracing::debug!(subject = %principal.subject, "this caller's tools changed: list_changed");
            if !send("notifications/tools/list_changed").await {
                return;
            }
        }
    }
}

/// While sessions live, ask again every `every` what their opaque tokens' owners hold now, and
/// hand each answer (`None`: the token is no longer active) to the access part, which has
/// those callers' views recomputed.
pub(crate) async fn reintrospect(gateway: Arc<Gateway>, every: Duration, stop: CancellationToken) {
    let Some(authenticator) = gateway.access.authenticator() else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let tokens = gateway.sessions.opaque_tokens();
        // Callers whose sessions ended are forgotten, so the answers kept stay bounded.
        gateway.access.forget_reintrospected_except(&tokens);
        for (caller, token) in tokens {
            // Unreachable introspection proves nothing: the last answer stays.
            if let Ok(answer) = authenticator.reintrospect(&token).await {
                gateway
                    .access
                    .reintrospected(caller, answer.as_ref().map(principal));
            }
        }
    }
}
