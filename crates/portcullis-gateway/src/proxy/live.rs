//! What callers may see, kept current while they are connected: the entitlements file is
//! re-read when it changes, a policy reload swaps the set whole, and either bumps the
//! gateway's generation. Each connected session (and each 2026-07-28 `subscriptions/listen`
//! stream) then recomputes its own caller's visible tools (and its configured prompts and
//! resources) and is told `tools/list_changed` (and the twins) only if they changed: never a
//! broadcast, and a caller whose view did not change hears nothing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Weak},
};

use portcullis_policy::{CapabilityKind, Principal};
use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ServerNotification,
    ToolListChangedNotification,
};
use tokio_util::sync::CancellationToken;

use super::Gateway;

/// The caller as its token says, before entitlements: what a view is recomputed from.
#[derive(Debug, Clone)]
pub struct TokenPrincipal(pub Principal);

/// Re-read the entitlements file every `refresh` while the gateway lives.
pub(super) async fn watch_entitlements(
    gateway: Weak<Gateway>,
    entitlements: Arc<crate::entitlements::Entitlements>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(entitlements.refresh()) => {}
        }
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        match entitlements.reload() {
            Ok(true) => {
                tracing::info!("entitlements changed");
                gateway
                    .generation
                    .send_modify(|generation| *generation += 1);
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "entitlements file rejected; the previous reading stays");
            }
        }
    }
}

impl Gateway {
    /// Introspection's latest answer about a connected caller (`None`: no longer active);
    /// every view is recomputed when it changed.
    pub(crate) fn reintrospected(&self, owner: (String, String), answer: Option<Principal>) {
        let changed = {
            let mut answers = self
                .reintrospected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            answers.insert(owner, answer.clone()) != Some(answer)
        };
        if changed {
            self.generation.send_modify(|generation| *generation += 1);
        }
    }

    /// Drop introspection answers about callers no longer connected (not keys of `live`).
    pub(crate) fn forget_reintrospected_except<T>(&self, live: &HashMap<(String, String), T>) {
        self.reintrospected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|owner, _| live.contains_key(owner));
    }

    /// The caller whose token said `principal`, as a view is computed for it now: what
    /// introspection last said of it (for opaque tokens), then its entitlements.
    fn viewed_as(&self, principal: &Principal) -> Result<Principal, crate::entitlements::Disabled> {
        let owner = (principal.issuer.clone(), principal.subject.clone());
        let answer = self
            .reintrospected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&owner)
            .cloned();
        match answer {
            Some(None) => Err(crate::entitlements::Disabled),
            Some(Some(now)) => self.entitled(now),
            None => self.entitled(principal.clone()),
        }
    }

    /// Each known tool, and whether `principal` (as its token says) may see it now.
    pub(super) fn visible_tools(&self, principal: &Principal) -> BTreeMap<String, bool> {
        let names: Vec<String> = self.routes().tools.keys().cloned().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let visible = match (self.policy(), self.viewed_as(principal)) {
            (Some(policy), Ok(principal)) => {
                policy.visible_all(&principal, CapabilityKind::Tool, &refs)
            }
            _ => vec![false; names.len()],
        };
        names.into_iter().zip(visible).collect()
    }

    /// Each configured prompt and resource, and whether `principal` may see it now. (Prompts and
    /// resources the catalog does not name are not followed.)
    pub(super) fn visible_configured(
        &self,
        principal: &Principal,
    ) -> BTreeMap<(CapabilityKind, String), bool> {
        let (Some(policy), entitled) = (self.policy(), self.viewed_as(principal)) else {
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

    /// Wait for the next change that can alter a view; `false` once the gateway is gone.
    pub(super) async fn changed(receiver: &mut tokio::sync::watch::Receiver<u64>) -> bool {
        receiver.changed().await.is_ok()
    }

    pub(super) fn generations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// What a caller was last shown: each tool it was listed against, and whether it was visible.
pub(super) type Shown = Arc<std::sync::Mutex<BTreeMap<String, bool>>>;

/// Tell `send` each time `principal`'s visible tools change from what it was `shown`, until
/// `stop`.
pub(super) async fn follow<F, Fut>(
    gateway: Arc<Gateway>,
    principal: Principal,
    shown: Shown,
    stop: CancellationToken,
    send: F,
) where
    F: Fn(ServerNotification) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut generations = gateway.generations();
    {
        let mut shown = shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shown.is_empty() {
            *shown = gateway.visible_tools(&principal);
        }
    }
    let mut configured = gateway.visible_configured(&principal);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = Gateway::changed(&mut generations) => if !changed { return },
        }
        let configured_now = gateway.visible_configured(&principal);
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
                ServerNotification::PromptListChangedNotification(
                    PromptListChangedNotification::default(),
                ),
            ),
            (
                flipped_kind(CapabilityKind::Resource),
                ServerNotification::ResourceListChangedNotification(
                    ResourceListChangedNotification::default(),
                ),
            ),
        ];
        configured = configured_now;
        for (flipped, notification) in twins {
            if flipped && !send(notification).await {
                return;
            }
        }
        let now = gateway.visible_tools(&principal);
        let flipped = {
            let mut shown = shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            let notification = ServerNotification::ToolListChangedNotification(
                ToolListChangedNotification::default(),
            );
            if !send(notification).await {
                return;
            }
        }
    }
}
