//! Which upstream owns a name, a resource URI or a task, learned from what passes through.

use std::collections::HashMap;

use portcullis_core::CallerId;
use serde_json::Value;

use super::Upstreams;
use crate::access::TaskRoute;

// Bounds on what the gateway remembers for routing; past these, lookups fall back to asking.
const MAX_LEARNED_ROUTES: usize = 100_000;
/// Tasks remembered for one caller.
const MAX_TASKS_PER_CALLER: usize = 1000;

/// What the gateway learned from lists and results.
#[derive(Default)]
pub(super) struct Routes {
    /// Each resource URI and the one upstream that listed it; `None` when two did (refused).
    resources: HashMap<String, Option<usize>>,
    templates: Vec<(String, usize)>,
    /// Task ids, with the upstream that made each and the caller it is for.
    tasks: HashMap<String, (usize, Option<CallerId>)>,
    /// Each caller's task ids, oldest first.
    tasks_by_owner: HashMap<Option<CallerId>, std::collections::VecDeque<String>>,
    /// The last listed definition of each tool, by public name (annotations, input schema).
    tools: HashMap<String, std::sync::Arc<Value>>,
}

/// `uri` with its scheme and authority in lower case, as namespaces compare. SECURITY: both
/// are case-insensitive (RFC 3986 §6.2.2.1): `HR://salaries` is under `hr://` as much as
/// `hr://salaries`, and another upstream listing it takes nothing.
pub(crate) fn folded(uri: &str) -> String {
    let end = match uri.find("://") {
        Some(at) => uri[at + 3..]
            .find('/')
            .map_or(uri.len(), |slash| at + 3 + slash),
        None => uri.find(':').map_or(0, |colon| colon + 1),
    };
    format!("{}{}", uri[..end].to_ascii_lowercase(), &uri[end..])
}

impl Upstreams {
    /// The public name of an upstream's tool or prompt `name`.
    pub(crate) fn public_name(&self, index: usize, name: &str) -> String {
        match &self.upstreams[index].prefix {
            Some(prefix) => format!("{prefix}{}{name}", self.separator),
            None => name.to_owned(),
        }
    }

    /// The upstream and upstream-side name of a public tool or prompt name.
    pub(crate) fn route_name(&self, public: &str) -> Option<(usize, String)> {
        let prefixed = self
            .upstreams
            .iter()
            .enumerate()
            .find_map(|(index, upstream)| {
                let prefix = upstream.prefix.as_deref()?;
                let rest = public
                    .strip_prefix(prefix)?
                    .strip_prefix(self.separator.as_str())?;
                Some((index, rest.to_owned()))
            });
        // Unprefixed upstreams own whatever no prefix claims; the first one wins.
        prefixed.or_else(|| {
            let index = self
                .upstreams
                .iter()
                .position(|upstream| upstream.prefix.is_none())?;
            Some((index, public.to_owned()))
        })
    }

    /// The upstream that owns a resource URI: the one that listed it, else the one whose
    /// template matches it; with a single upstream, that one. SECURITY: a URI two upstreams
    /// claim (both listed it, or templates of both match it) belongs to neither, and a URI no
    /// upstream claims is not tried on each in turn: a caller's read, with its identity, never
    /// goes to an upstream that did not say the URI is its own.
    pub(crate) fn route_uri(&self, uri: &str) -> Option<usize> {
        // A namespace the configuration gives an upstream is its own, whatever anyone listed
        // (but not under a template of it held back: see `pins`).
        if let Some(owner) = self.declared_owner(uri) {
            if self.pins.template_held_over(self.name(owner), uri) {
                return None;
            }
            if !self.pins.holds_new() {
                return Some(owner);
            }
            // With new definitions held for review, a namespace carries only what its owner
            // listed or showed under a reviewed template (an unreviewed one may be what the
            // URI is under), as everywhere else.
            let routes = self.routes();
            let shown = routes.resources.get(uri) == Some(&Some(owner))
                || routes.templates.iter().any(|(literal, index)| {
                    *index == owner && !literal.is_empty() && uri.starts_with(literal.as_str())
                });
            return shown.then_some(owner);
        }
        let routes = self.routes();
        if let Some(owner) = routes.resources.get(uri) {
            return *owner;
        }
        let mut claims: Vec<usize> = routes
            .templates
            .iter()
            .filter(|(literal, _)| !literal.is_empty() && uri.starts_with(literal.as_str()))
            .map(|(_, index)| *index)
            .collect();
        claims.sort_unstable();
        claims.dedup();
        drop(routes);
        // A shown template starting like a held one of the same upstream does not carry URIs
        // under the held one (which one a URI is under cannot be told from its start).
        claims.retain(|index| {
            self.may_claim(*index, uri) && !self.pins.template_held_over(self.name(*index), uri)
        });
        match claims.as_slice() {
            [one] => Some(*one),
            [] if self.upstreams.len() == 1
                && self.may_claim(0, uri)
                && self.pins.fallback_allowed(self.name(0), uri) =>
            {
                Some(0)
            }
            [] => None,
            _ => {
                tracing::warn!(
                    uri,
                    "templates of two upstreams match this URI; it is refused"
                );
                None
            }
        }
    }

    /// The upstream whose declared namespace (`[[upstream]] resources`) holds `uri`, if any
    /// (the configuration lets at most one).
    fn declared_owner(&self, uri: &str) -> Option<usize> {
        let uri = folded(uri);
        self.upstreams.iter().position(|upstream| {
            upstream
                .namespaces
                .iter()
                .any(|namespace| uri.starts_with(namespace.as_str()))
        })
    }

    /// Whether upstream `index` may own `uri` (or a template starting so): within its own
    /// namespaces if it declared any, else anywhere no other upstream declared.
    pub(crate) fn may_claim(&self, index: usize, uri: &str) -> bool {
        let literal = uri.split('{').next().unwrap_or_default();
        match self.declared_owner(literal) {
            Some(owner) => owner == index,
            None => self.upstreams[index].namespaces.is_empty(),
        }
    }

    pub(crate) fn learn_resource(&self, uri: &str, index: usize) {
        let mut routes = self.routes();
        match routes.resources.get(uri) {
            Some(Some(owner)) if *owner != index => {
                tracing::error!(
                    uri,
                    "two upstreams list this resource URI; it is refused for both"
                );
                routes.resources.insert(uri.to_owned(), None);
            }
            Some(_) => {}
            None if routes.resources.len() < MAX_LEARNED_ROUTES => {
                routes.resources.insert(uri.to_owned(), Some(index));
            }
            None => {}
        }
    }

    /// Whether two upstreams are known to claim `uri` (then learning again changes nothing).
    pub(crate) fn routes_known(&self, uri: &str) -> bool {
        matches!(self.routes().resources.get(uri), Some(None))
    }

    pub(crate) fn learn_template(&self, template: &str, index: usize) {
        // The literal text before the first expression is what a concrete URI must start with.
        let literal = template.split('{').next().unwrap_or_default().to_owned();
        let mut routes = self.routes();
        if !routes
            .templates
            .iter()
            .any(|(known, i)| *known == literal && *i == index)
            && routes.templates.len() < MAX_LEARNED_ROUTES
        {
            routes.templates.push((literal, index));
        }
    }

    /// Remember a tool's definition under its public name.
    pub(crate) fn learn_tool(&self, public: &str, tool: &Value) {
        let mut routes = self.routes();
        match routes.tools.get(public) {
            // Lists repeat: the same definition again changes nothing.
            Some(known) if known.as_ref() == tool => {}
            Some(_) => {
                routes
                    .tools
                    .insert(public.to_owned(), std::sync::Arc::new(tool.clone()));
            }
            None if routes.tools.len() < MAX_LEARNED_ROUTES => {
                routes
                    .tools
                    .insert(public.to_owned(), std::sync::Arc::new(tool.clone()));
            }
            None => {}
        }
    }

    /// Forget the route a template of upstream `index` gave (held back: see `pins`); another
    /// of its templates starting the same way goes with it (fail closed).
    pub(super) fn forget_template(&self, index: usize, template: &str) {
        let literal = template.split('{').next().unwrap_or_default();
        self.routes()
            .templates
            .retain(|(known, i)| !(known == literal && *i == index));
    }

    /// Forget one tool's definition (held back: see `pins`).
    pub(super) fn forget_tool(&self, public: &str) {
        self.routes().tools.remove(public);
    }

    pub(super) fn forget_tool_definitions(&self) {
        self.routes().tools.clear();
    }

    /// The last listed definition of a tool, by public name.
    pub(crate) fn tool(&self, public: &str) -> Option<std::sync::Arc<Value>> {
        self.routes().tools.get(public).cloned()
    }

    /// Whether a tool of this public name was listed.
    pub(crate) fn knows_tool(&self, public: &str) -> bool {
        self.routes().tools.contains_key(public)
    }

    /// Every tool name listed so far.
    pub(crate) fn tool_names(&self) -> Vec<String> {
        self.routes().tools.keys().cloned().collect()
    }

    /// Remember that `task` was made on upstream `index` for `owner`. SECURITY: a task id
    /// already known is never given to another caller or upstream (an upstream choosing an id
    /// another made would take that task over); a caller keeps at most
    /// `MAX_TASKS_PER_CALLER`, its own oldest forgotten first, so nobody's tasks crowd out
    /// anyone else's.
    pub(crate) fn learn_task(&self, task: &str, index: usize, owner: Option<CallerId>) {
        let mut routes = self.routes();
        if let Some((known, known_owner)) = routes.tasks.get(task) {
            if (*known, known_owner) != (index, &owner) {
                tracing::warn!(task, upstream = %self.name(index), "a task id already known for someone else; not routed");
            }
            return;
        }
        let routes = &mut *routes;
        let at_its_bound = routes
            .tasks_by_owner
            .get(&owner)
            .is_some_and(|mine| mine.len() >= MAX_TASKS_PER_CALLER);
        if !at_its_bound && routes.tasks.len() >= MAX_LEARNED_ROUTES {
            tracing::warn!("too many tasks remembered; a new one is not routed");
            return;
        }
        let mine = routes.tasks_by_owner.entry(owner.clone()).or_default();
        if at_its_bound && let Some(oldest) = mine.pop_front() {
            routes.tasks.remove(&oldest);
        }
        mine.push_back(task.to_owned());
        routes.tasks.insert(task.to_owned(), (index, owner));
    }

    /// Whether `task` is `caller`'s, and on which upstream. SECURITY: a task's result is its
    /// caller's; a task id someone else learned answers like one that does not exist.
    pub(crate) fn route_task(&self, task: &str, caller: Option<&CallerId>) -> TaskRoute {
        match self.routes().tasks.get(task) {
            Some((index, owner)) if owner.as_ref() == caller => TaskRoute::Owned(*index),
            Some(_) => TaskRoute::Foreign,
            // An open gateway does not bind tasks to callers: with one upstream, it is there.
            None if caller.is_none() && self.upstreams.len() == 1 => TaskRoute::Owned(0),
            None => TaskRoute::Unknown,
        }
    }

    /// The task ids `caller` made on upstream `index`.
    pub(crate) fn tasks_of(&self, index: usize, caller: Option<&CallerId>) -> Vec<String> {
        let routes = self.routes();
        let Some(mine) = routes.tasks_by_owner.get(&caller.cloned()) else {
            return Vec::new();
        };
        mine.iter()
            .filter(|task| routes.tasks.get(*task).is_some_and(|(at, _)| *at == index))
            .cloned()
            .collect()
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Upstreams {
        let config = crate::config::Config::parse(
            "[[upstream]]\nname = \"a\"\ncommand = \"true\"\n[[upstream]]\nname = \"b\"\ncommand = \"true\"\n[danger]\nunauthenticated = true\n",
            std::path::Path::new("<test>"),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        Upstreams::start(&config, &tokio_util::sync::CancellationToken::new())
    }

    // See: issue 15 (and the review's M6). The task map was cleared for everyone at 100,000,
    // and a task id learned again replaced its owner.
    #[tokio::test]
    async fn a_callers_tasks_crowd_out_only_its_own_and_a_known_id_is_never_taken_over() {
        let upstreams = upstreams();
        let ada = Some(CallerId::new("i", "ada"));
        let bob = Some(CallerId::new("i", "bob"));
        upstreams.learn_task("bob-task", 0, bob.clone());
        for n in 0..=MAX_TASKS_PER_CALLER {
            upstreams.learn_task(&format!("ada-{n}"), 0, ada.clone());
        }
        assert!(matches!(
            upstreams.route_task("bob-task", bob.as_ref()),
            TaskRoute::Owned(0)
        ));
        assert!(matches!(
            upstreams.route_task("ada-0", ada.as_ref()),
            TaskRoute::Unknown
        ));
        assert!(matches!(
            upstreams.route_task("ada-1", ada.as_ref()),
            TaskRoute::Owned(0)
        ));
        // Upstream 1 answering with bob's task id for ada takes nothing over.
        upstreams.learn_task("bob-task", 1, ada.clone());
        assert!(matches!(
            upstreams.route_task("bob-task", bob.as_ref()),
            TaskRoute::Owned(0)
        ));
        assert!(matches!(
            upstreams.route_task("bob-task", ada.as_ref()),
            TaskRoute::Foreign
        ));
    }
}
