//! Which upstream owns a name, a resource URI or a task.

use super::{Gateway, MAX_LEARNED_ROUTES};

impl Gateway {
    /// The public name of an upstream's capability `name`.
    pub(super) fn public_name(&self, index: usize, name: &str) -> String {
        match &self.upstreams[index].prefix {
            Some(prefix) => format!("{prefix}{}{name}", self.naming.separator),
            None => name.to_owned(),
        }
    }

    /// The upstream and upstream-side name for a public tool or prompt name.
    pub(super) fn route_name(&self, public: &str) -> Option<(usize, String)> {
        let separator = &self.naming.separator;
        let prefixed = self
            .upstreams
            .iter()
            .enumerate()
            .find_map(|(index, upstream)| {
                let prefix = upstream.prefix.as_deref()?;
                let rest = public
                    .strip_prefix(prefix)?
                    .strip_prefix(separator.as_str())?;
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

    /// The upstreams that may own a resource URI, most likely first.
    pub(super) fn route_uri(&self, uri: &str) -> Vec<usize> {
        let routes = self.routes();
        if let Some(index) = routes.resources.get(uri) {
            return vec![*index];
        }
        let by_template = routes
            .templates
            .iter()
            .filter(|(literal, _)| !literal.is_empty() && uri.starts_with(literal.as_str()))
            .max_by_key(|(literal, _)| literal.len())
            .map(|(_, index)| *index);
        drop(routes);
        let mut order: Vec<usize> = by_template.into_iter().collect();
        order.extend((0..self.upstreams.len()).filter(|index| Some(*index) != by_template));
        order
    }

    pub(super) fn learn_resource(&self, uri: &str, index: usize) {
        let mut routes = self.routes();
        if routes.resources.len() < MAX_LEARNED_ROUTES {
            routes.resources.insert(uri.to_owned(), index);
        }
    }

    pub(super) fn learn_template(&self, template: &str, index: usize) {
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

    pub(super) fn learn_tool(&self, tool: &rmcp::model::Tool) {
        let mut routes = self.routes();
        if routes.tools.len() < MAX_LEARNED_ROUTES || routes.tools.contains_key(tool.name.as_ref())
        {
            routes.tools.insert(tool.name.to_string(), tool.clone());
        }
    }

    pub(super) fn tool(&self, public: &str) -> Option<rmcp::model::Tool> {
        self.routes().tools.get(public).cloned()
    }

    pub(crate) fn learn_task(&self, task_id: &str, index: usize, owner: Option<(String, String)>) {
        let mut routes = self.routes();
        if routes.tasks.len() >= MAX_LEARNED_ROUTES {
            routes.tasks.clear();
        }
        routes.tasks.insert(task_id.to_owned(), (index, owner));
    }

    /// Where a task lives, for `caller`. SECURITY: a task's result is its caller's; a task id
    /// someone else learned answers like one that does not exist.
    pub(super) fn route_task(&self, task_id: &str, caller: Option<&(String, String)>) -> TaskRoute {
        match self.routes().tasks.get(task_id) {
            Some((index, owner)) if owner.as_ref() == caller => TaskRoute::Owned(*index),
            Some(_) => TaskRoute::Foreign,
            None => TaskRoute::Unknown,
        }
    }

    /// The configured name of upstream `index`, for logs.
    pub(super) fn upstream_name(&self, index: usize) -> &str {
        &self.upstreams[index].shared.spec().name
    }

    /// How many upstreams there are.
    pub(super) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }
}

/// What the gateway knows of a task id.
pub(super) enum TaskRoute {
    /// Made by this caller, on this upstream.
    Owned(usize),
    /// Made by someone else.
    Foreign,
    /// Never seen here (it may have been made through the byte relay, which does not read
    /// answers).
    Unknown,
}
