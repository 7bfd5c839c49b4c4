//! The capability catalog: each capability the gateway exposes and the scopes it needs.

use std::collections::HashMap;

use crate::ScopeHierarchy;

/// What kind of thing a capability is, as MCP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapabilityKind {
    /// A tool, called with `tools/call`.
    Tool,
    /// A prompt, fetched with `prompts/get`.
    Prompt,
    /// A resource, read with `resources/read` or subscribed to, named by its URI.
    Resource,
}

impl CapabilityKind {
    /// The kind of capability an MCP method acts on, if it acts on one by name.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/call" => Some(Self::Tool),
            "prompts/get" => Some(Self::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Some(Self::Resource)
            }
            _ => None,
        }
    }
}

/// One capability as configured.
#[derive(Debug, Clone)]
pub struct Capability {
    /// Its kind.
    pub kind: CapabilityKind,
    /// Its name as clients see it (a resource's URI).
    pub name: String,
    /// Every scope a call needs.
    pub scopes: Vec<String>,
}

/// Every configured capability, and the hierarchy their scopes are read through.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    capabilities: HashMap<(CapabilityKind, String), Capability>,
    hierarchy: ScopeHierarchy,
}

impl Catalog {
    /// A catalog of `capabilities`; a later entry for the same kind and name replaces an
    /// earlier one (configuration rejects duplicates before this).
    pub fn new(
        capabilities: impl IntoIterator<Item = Capability>,
        hierarchy: ScopeHierarchy,
    ) -> Self {
        Self {
            capabilities: capabilities
                .into_iter()
                .map(|c| ((c.kind, c.name.clone()), c))
                .collect(),
            hierarchy,
        }
    }

    /// Whether any capability needs a scope (if none does, no request needs to be inspected).
    pub fn requires_scopes(&self) -> bool {
        self.capabilities.values().any(|c| !c.scopes.is_empty())
    }

    /// The scopes a call to `name` needs that `granted` does not provide. When any is
    /// missing, the answer is **all** the scopes the call needs (so that one re-authorization
    /// is enough, MCP's step-up), otherwise `None`.
    pub fn missing_scopes<'a>(
        &'a self,
        kind: CapabilityKind,
        name: &str,
        granted: &[String],
    ) -> Option<&'a [String]> {
        let capability = self.capabilities.get(&(kind, name.to_owned()))?;
        let held = |needed: &String| {
            self.hierarchy
                .satisfies(granted.iter().map(String::as_str), needed)
        };
        (!capability.scopes.iter().all(held)).then_some(capability.scopes.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(
            [
                Capability {
                    kind: CapabilityKind::Tool,
                    name: "update_policy".into(),
                    scopes: vec!["policies:write".into(), "audit:write".into()],
                },
                Capability {
                    kind: CapabilityKind::Tool,
                    name: "search_policies".into(),
                    scopes: vec!["policies:read".into()],
                },
            ],
            ScopeHierarchy::new([("policies:write".into(), vec!["policies:read".into()])]),
        )
    }

    #[test]
    fn a_missing_scope_names_every_scope_the_call_needs() {
        let c = catalog();
        let granted = vec!["policies:write".to_owned()];
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "update_policy", &granted),
            Some(&["policies:write".to_owned(), "audit:write".to_owned()][..])
        );
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "search_policies", &granted),
            None
        );
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "search_policies", &[])
                .map(<[_]>::len),
            Some(1)
        );
    }

    #[test]
    fn kinds_do_not_share_names_and_unlisted_capabilities_need_nothing_here() {
        let c = catalog();
        assert_eq!(
            c.missing_scopes(CapabilityKind::Prompt, "update_policy", &[]),
            None
        );
        assert_eq!(c.missing_scopes(CapabilityKind::Tool, "echo", &[]), None);
    }
}
